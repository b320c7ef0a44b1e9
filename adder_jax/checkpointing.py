"""Saving and restoring named items (pytrees of arrays) with orbax, in WORKDIR/checkpoints.

A checkpoint, labelled by optimizer step, holds items that the caller names (say the
model's variables and the optimizer's state), each in a directory of its own, so that one
can be restored without reading the others. Saves are asynchronous (training goes on
while the files are written) and atomic (a killed save leaves no checkpoint that a
restart would pick up). Restoring takes the newest checkpoint that restores: a damaged
one is skipped with a one-line warning (see `Checkpointer.restore`).
"""

import logging as std_logging
import os
import sys

from etils import epath
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_manager

from adder_jax.errors import UserError, first_line


# Where training moves damaged checkpoints, beside WORKDIR/checkpoints.
DAMAGED_DIR = "damaged_checkpoints"

# The one item of a checkpoint saved without item names, as older adder_jax did: orbax
# itself takes a step directory holding it for a single-item checkpoint.
_SINGLE_ITEM = checkpoint_manager.DEFAULT_ITEM_NAME


class _Damaged(Exception):
  """A checkpoint's files cannot be read back; the message says which failure."""


class Checkpointer:
  """A thin wrapper around `ocp.CheckpointManager` for checkpoints of named items."""

  def __init__(self, workdir, max_to_keep=2):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.damaged_steps = []  # Those the last `restore` skipped, newest first.
    # Given no item names, the manager registers a handler for each item on its first
    # save or restore, from the arguments' type: the caller names the items.
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))
    # Reads one item's shapes before its arrays. The manager's `item_metadata` would
    # read every item the checkpoint holds, and only those it has handlers for so far.
    self._metadata_reader = ocp.StandardCheckpointHandler()

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, step, items):
    """Starts saving `items` ({name: pytree of arrays}) as the checkpoint at `step`; the
    files are written in the background and appear complete or not at all."""
    args = ocp.args.Composite(
        **{name: ocp.args.StandardSave(tree) for name, tree in items.items()})
    self._manager.save(int(step), args=args, force=True)

  def restore(self, targets):
    """Restores the items named in `targets` from the newest checkpoint that restores them.

    Args:
      targets: {item name: pytree of `jax.ShapeDtypeStruct`s with shardings (see
        `restore_target`)}, the structure, shapes, dtypes and placement of each item
        wanted. The checkpoint's other items are not read.

    Returns:
      (step, {item name: restored pytree}), or None when there is no checkpoint at all.
      A damaged checkpoint (a file unreadable, cut short or overwritten, an item
      missing) is skipped with a one-line warning on stderr and left where it is; its
      step is kept in `damaged_steps`.

    Raises:
      UserError: the newest readable checkpoint does not fit `targets`, or was written by
        an older adder_jax, or every checkpoint is damaged.
    """
    self.damaged_steps.clear()
    for step in sorted(self._manager.all_steps(), reverse=True):
      self._check_layout(step)
      try:
        return step, self._restore_step(step, targets)
      except _Damaged as e:
        self.damaged_steps.append(step)
        print(f"warning: skipped the checkpoint at step {step} in {self.directory}: it is "
              f"damaged ({e}).", file=sys.stderr)
    if self.damaged_steps:
      raise UserError(f"no checkpoint in {self.directory} restores (all of steps "
                      f"{', '.join(map(str, self.damaged_steps))} are damaged); move them "
                      "away to train from scratch.")
    return None

  def _check_layout(self, step):
    if os.path.isdir(os.path.join(self._step_directory(step), _SINGLE_ITEM)):
      raise UserError(f"the checkpoint at step {step} in {self.directory} was written by an "
                      "older adder_jax, whose checkpoints hold the optimizer state and the "
                      "model together; retrain in a new workdir.")

  def _restore_step(self, step, targets):
    # Checked up front: a restore that fails on a shape leaves orbax's reads of the
    # other arrays running, and they print tracebacks when the process exits.
    saved = {name: self._item_metadata(step, name) for name in targets}
    mismatch = _first_mismatch(_shapes(targets), _shapes(saved))
    if mismatch and mismatch.startswith("training/") and "model" in targets:
      # The items are compared in order: the model's arrays fit.
      raise UserError(f"the checkpoint at step {step} in {self.directory} holds a model that "
                      f"fits but training state that does not ({mismatch}): it was saved by "
                      "another optimizer config or an older adder_jax. Evaluate and predict "
                      "read it; to train on, use the config it was trained with or a new "
                      "workdir.")
    if mismatch:
      raise UserError(f"the checkpoint at step {step} in {self.directory} does not fit this "
                      f"model config ({mismatch}); use the config it was trained with or a "
                      "new workdir.")
    args = ocp.args.Composite(
        **{name: ocp.args.StandardRestore(target) for name, target in targets.items()})
    try:
      restored = self._manager.restore(step, args=args)
    except Exception as e:  # pylint: disable=broad-except
      # The structure and shapes fit (checked above), so what fails is the files.
      raise _Damaged(_root_cause(e)) from e
    return {name: restored[name] for name in targets}

  def _item_metadata(self, step, name):
    """The saved tree of item `name` at `step`, with each array's shape and no data."""
    directory = os.path.join(self._step_directory(step), name)
    if not os.path.isdir(directory):
      raise _Damaged(f"it has no item {name!r}")
    try:
      return self._metadata_reader.metadata(epath.Path(directory))
    except Exception as e:  # pylint: disable=broad-except
      raise _Damaged(_root_cause(e)) from e

  def _step_directory(self, step):
    return os.path.join(self.directory, str(step))

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
        os.rename(self._step_directory(step), target)
        print(f"note: moved the damaged checkpoint at step {step} to {target}.", file=sys.stderr)
    self._manager.reload()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()
    self._metadata_reader.close()


def restore_target(abstract_tree, sharding):
  """`abstract_tree` with every array's `sharding`: what an item restores into."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
                      abstract_tree)


def _root_cause(error):
  """The first line of the innermost explicit cause of `error` (at most 200 characters):
  orbax wraps the error of the file it could not read."""
  while error.__cause__ is not None:
    error = error.__cause__
  return first_line(error)[:200]


def quiet_abandoned_reads():
  """Keeps a failed restore quiet, for the whole process: entry points call it once.

  When one array cannot be read, orbax's restore raises and closes its event loop, but
  the reads of the other arrays go on; as each ends, Python reports it ('Event loop is
  closed' as an unraisable exception, or asyncio's 'Task exception was never retrieved'
  for a read that failed too), possibly before the restore has raised, possibly at exit.
  Those reports, and only those, are dropped from then on; the restore's own error is
  what `Checkpointer.restore` reports. It replaces `sys.unraisablehook` and filters the
  asyncio logger, which is why a library function does not do it on its own.
  """
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
  """{'model/params/digit_net/Dense_0/kernel': shape, ...} for every array in `tree`."""
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
