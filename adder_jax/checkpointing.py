"""Saving and restoring the TrainState with orbax, in WORKDIR/checkpoints.

Checkpoints are labelled by optimizer step. Saves are asynchronous (training goes on
while the files are written) and atomic (a killed save leaves no checkpoint that a
restart would pick up). Restoring takes the newest checkpoint that restores: a damaged
one is skipped with a one-line warning (see `Checkpointer.restore`).
"""

import logging as std_logging
import os
import sys

import jax
import orbax.checkpoint as ocp

from adder_jax.errors import UserError, first_line


# Where training moves damaged checkpoints, beside WORKDIR/checkpoints.
DAMAGED_DIR = "damaged_checkpoints"


class _Damaged(Exception):
  """A checkpoint's files cannot be read back; the message says which failure."""


class Checkpointer:
  """A thin wrapper around `ocp.CheckpointManager` for one TrainState."""

  def __init__(self, workdir, max_to_keep=2):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.damaged_steps = []  # Those the last `restore` skipped, newest first.
    # The item handler lets `restore` read a checkpoint's shapes before its arrays.
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_handlers=ocp.StandardCheckpointHandler())

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, state):
    self._manager.save(int(jax.device_get(state.step)), args=ocp.args.StandardSave(state), force=True)

  def restore(self, abstract_state, sharding):
    """Restores the newest checkpoint that restores into the structure, shapes and dtypes
    of `abstract_state` (`steps.abstract_state`), every array placed with `sharding`.

    A damaged checkpoint (a file unreadable, cut short or overwritten) is skipped with a
    one-line warning on stderr and left where it is; its step is kept in
    `damaged_steps`. Returns None when there is no checkpoint at all.

    Raises:
      UserError: the newest readable checkpoint does not fit this model config, or
        every checkpoint is damaged.
    """
    abstract_state = restore_target(abstract_state, sharding)
    self.damaged_steps.clear()
    _quiet_abandoned_reads()
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        return self._restore_step(step, abstract_state)
      except _Damaged as e:
        self.damaged_steps.append(step)
        print(f"warning: skipped the checkpoint at step {step} in {self.directory}: it is "
              f"damaged ({e}).", file=sys.stderr)
    if self.damaged_steps:
      raise UserError(f"no checkpoint in {self.directory} restores (all of steps "
                      f"{', '.join(map(str, self.damaged_steps))} are damaged); move them "
                      "away to train from scratch.")
    return None

  def _restore_step(self, step, abstract_state):
    try:
      metadata = self._manager.item_metadata(step)
    except Exception as e:  # pylint: disable=broad-except
      raise _Damaged(_root_cause(e)) from e
    saved = _shapes(metadata)
    # Checked up front: a restore that fails on a shape leaves orbax's reads of the
    # other arrays running, and they print tracebacks when the process exits.
    mismatch = _first_mismatch(_shapes(abstract_state), saved)
    if mismatch:
      raise UserError(f"the checkpoint at step {step} in {self.directory} does not fit this "
                      f"model config ({mismatch}); use the config it was trained with or a "
                      "new workdir.")
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except Exception as e:  # pylint: disable=broad-except
      # The structure and shapes fit (checked above), so what fails is the files.
      raise _Damaged(_root_cause(e)) from e

  def set_aside_damaged(self, move=True):
    """Moves the checkpoints `restore` found damaged to WORKDIR/damaged_checkpoints/ (if
    `move`), so that training can save those steps again and the manager's clean-up of
    old checkpoints never counts them; the files are kept for inspection.

    In a multi-process run process 0 moves them and every process calls this, after it.
    """
    if move and self.damaged_steps:
      aside = os.path.join(os.path.dirname(self.directory), DAMAGED_DIR)
      os.makedirs(aside, exist_ok=True)
      for step in self.damaged_steps:
        target = os.path.join(aside, str(step))
        suffix = 1
        while os.path.exists(target):
          suffix += 1
          target = os.path.join(aside, f"{step}-{suffix}")
        os.rename(os.path.join(self.directory, str(step)), target)
        print(f"note: moved the damaged checkpoint at step {step} to {target}.", file=sys.stderr)
    self._manager.reload()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()


def restore_target(abstract_state, sharding):
  """`abstract_state` with every array's `sharding`: what a checkpoint restores into."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
                      abstract_state)


def _root_cause(error):
  """The first line of the innermost explicit cause of `error` (at most 200 characters):
  orbax wraps the error of the file it could not read."""
  while error.__cause__ is not None:
    error = error.__cause__
  return first_line(error)[:200]


def _quiet_abandoned_reads():
  """Keeps a failed restore quiet. When one array cannot be read, orbax's restore raises
  and closes its event loop, but the reads of the other arrays go on; as each ends,
  Python reports it ('Event loop is closed' as an unraisable exception, or asyncio's
  'Task exception was never retrieved' for a read that failed too), possibly
  before the restore has raised. Those reports, and only those, are dropped from then
  on; the restore's own error is what `restore` reports."""
  if getattr(sys.unraisablehook, "drops_abandoned_reads", False):
    return
  previous = sys.unraisablehook

  def hook(unraisable):
    closed_loop = (isinstance(unraisable.exc_value, RuntimeError)
                   and str(unraisable.exc_value) == "Event loop is closed")
    code = getattr(unraisable.object, "cr_code", None)
    if not (closed_loop or (code is not None and _in_orbax(code.co_filename))):
      previous(unraisable)
  hook.drops_abandoned_reads = True
  sys.unraisablehook = hook
  # adder_jax runs no asyncio code of its own: such reports can only be orbax's.
  std_logging.getLogger("asyncio").addFilter(
      lambda record: "exception was never retrieved" not in str(record.msg))


def _in_orbax(text):
  return f"{os.sep}orbax{os.sep}" in text


def _shapes(tree):
  """{'params/digit_net/Dense_0/kernel': shape, ...} for every array in `tree`."""
  def name(key):
    for attribute in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey.
      if hasattr(key, attribute):
        return str(getattr(key, attribute))
    return str(key)
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(name(k) for k in path): tuple(leaf.shape) for path, leaf in leaves}


def _first_mismatch(wanted, saved):
  """A description of the first difference between two `_shapes`, or None."""
  for path in sorted(wanted.keys() | saved.keys()):
    if path not in saved:
      return f"{path} is not in the checkpoint"
    if path not in wanted:
      return f"the checkpoint has {path}, which this config does not"
    if wanted[path] != saved[path]:
      return f"{path} has shape {wanted[path]} in this config but {saved[path]} in the checkpoint"
  return None
