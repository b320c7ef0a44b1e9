"""Saving and restoring the TrainState with orbax, in WORKDIR/checkpoints.

Checkpoints are labelled by optimizer step. Saves are asynchronous (training goes on
while the files are written) and atomic (a killed save leaves no checkpoint that a
restart would pick up).
"""

import os

import jax
import orbax.checkpoint as ocp

from adder_jax.errors import UserError


class Checkpointer:
  """A thin wrapper around `ocp.CheckpointManager` for one TrainState."""

  def __init__(self, workdir, max_to_keep=2):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    # The item handler lets `restore` read a checkpoint's shapes before its arrays.
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_handlers=ocp.StandardCheckpointHandler())

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, state):
    self._manager.save(int(jax.device_get(state.step)), args=ocp.args.StandardSave(state), force=True)

  def restore(self, abstract_state, sharding, step=None):
    """Restores `step` (default: the latest) into the structure, shapes and dtypes of
    `abstract_state` (`steps.abstract_state`), every array placed with `sharding`; None
    when there is no checkpoint."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    abstract_state = restore_target(abstract_state, sharding)
    # Checked up front: a restore that fails on a shape leaves orbax's reads of the
    # other arrays running, and they print tracebacks when the process exits.
    mismatch = _first_mismatch(_shapes(abstract_state), _shapes(self._manager.item_metadata(step)))
    if mismatch:
      raise UserError(f"the checkpoint at step {step} in {self.directory} does not fit this "
                      f"model config ({mismatch}); use the config it was trained with or a "
                      "new workdir.")
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except (ValueError, KeyError, TypeError) as e:
      first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise UserError(
          f"the checkpoint at step {step} in {self.directory} does not fit this model "
          f"config ({first_line[:300]}); use the config it was trained with or a new workdir.") from e

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()


def restore_target(abstract_state, sharding):
  """`abstract_state` with every array's `sharding`: what a checkpoint restores into."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
                      abstract_state)


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
