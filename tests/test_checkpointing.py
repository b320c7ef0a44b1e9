"""Checkpoints of named items: saved together, restored one at a time, damaged ones
skipped, and one-line errors for a checkpoint that does not fit or is of the old layout."""

import glob
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from adder_jax import checkpointing
from adder_jax.errors import UserError


def items(step=1):
  """Items like training's, their values depending on `step`; two subtrees are empty. The
  kernel is random, so that orbax neither compresses it to a few bytes nor keeps it in
  the checkpoint's index: it is in a data file of its own."""
  kernel = np.random.default_rng(step).standard_normal((16, 32), np.float32)
  return {
      "model": {"params": {"dense": {"kernel": jnp.asarray(kernel),
                                     "bias": jnp.arange(3, dtype=jnp.float32) + step}},
                "batch_stats": {}, "ema": {}},
      "training": {"opt_state": {"mu": jnp.full((4,), -step, jnp.float32)},
                   "rng": jnp.array([step, 7], jnp.uint32)},
  }


def targets(names, tree=None):
  """What `restore` is given to restore the items `names` of `tree` (`items()`)."""
  tree = tree or items()
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return {name: checkpointing.restore_target(tree[name], sharding) for name in names}


def save(workdir, steps):
  checkpointer = checkpointing.Checkpointer(str(workdir), max_to_keep=len(steps))
  for step in steps:
    checkpointer.save(step, items(step))
  checkpointer.close()


def restore(workdir, names):
  checkpointer = checkpointing.Checkpointer(str(workdir))
  try:
    return checkpointer.restore(targets(names)), checkpointer
  finally:
    checkpointer.close()


def assert_trees_equal(actual, expected):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  jax.tree.map(np.testing.assert_array_equal, actual, expected)


def item_directory(workdir, step, name):
  return os.path.join(workdir, "checkpoints", str(step), name)


def truncate_arrays(workdir, step, name):
  for path in glob.glob(os.path.join(item_directory(workdir, step, name), "ocdbt.process_0",
                                     "d", "*")):
    os.truncate(path, os.path.getsize(path) // 2)


@pytest.fixture(autouse=True)
def quiet_abandoned_reads():
  # As the command lines do: a damaged checkpoint's abandoned reads are not reported.
  checkpointing.quiet_abandoned_reads()


def test_both_items_round_trip_empty_subtrees_included(tmp_path):
  save(tmp_path, [1, 2])
  (step, restored), checkpointer = restore(tmp_path, ["model", "training"])
  assert step == 2 and checkpointer.damaged_steps == []
  assert_trees_equal(restored, items(2))  # "batch_stats" and "ema" come back as {}.


def test_one_item_restores_without_reading_the_others(tmp_path):
  save(tmp_path, [1, 2])
  training = item_directory(tmp_path, 2, "training")
  shutil.rmtree(training)
  os.mkdir(training)  # Every file of the item gone: any read of it would fail.
  (step, restored), _ = restore(tmp_path, ["model"])
  assert step == 2
  assert_trees_equal(restored, {"model": items(2)["model"]})


def test_a_checkpoint_without_a_wanted_item_is_damaged(tmp_path, capsys):
  save(tmp_path, [1, 2])
  shutil.rmtree(item_directory(tmp_path, 2, "training"))
  (step, restored), checkpointer = restore(tmp_path, ["training"])
  assert (step, checkpointer.damaged_steps) == (1, [2])
  assert_trees_equal(restored, {"training": items(1)["training"]})
  assert "it is damaged (it has no item 'training')." in capsys.readouterr().err


def test_a_checkpoint_that_does_not_fit_is_a_one_line_error_naming_the_array(tmp_path):
  save(tmp_path, [1])
  other = items()
  other["model"]["params"]["dense"]["kernel"] = jnp.zeros((16, 16))
  checkpointer = checkpointing.Checkpointer(str(tmp_path))
  with pytest.raises(UserError) as error:
    checkpointer.restore(targets(["model", "training"], other))
  checkpointer.close()
  assert str(error.value) == (
      f"the checkpoint at step 1 in {tmp_path}/checkpoints does not fit this model config "
      "(model/params/dense/kernel has shape (16, 16) in this config but (16, 32) in the "
      "checkpoint); use the config it was trained with or a new workdir.")
  assert checkpointer.damaged_steps == []


def test_training_state_that_does_not_fit_says_the_model_still_reads(tmp_path):
  save(tmp_path, [1])
  newer = items()
  newer["training"]["epoch_totals"] = {"loss": jnp.zeros((), jnp.float32)}
  checkpointer = checkpointing.Checkpointer(str(tmp_path))
  with pytest.raises(UserError) as error:
    checkpointer.restore(targets(["model", "training"], newer))
  checkpointer.close()
  assert str(error.value) == (
      f"the checkpoint at step 1 in {tmp_path}/checkpoints holds a model that fits but "
      "training state that does not (training/epoch_totals/loss is not in the checkpoint): "
      "it was saved by another optimizer config or an older adder_jax. Evaluate and "
      "predict read it; to train on, use the config it was trained with or a new workdir.")


def test_a_damaged_checkpoint_is_skipped_for_the_one_before(tmp_path, capsys):
  save(tmp_path, [1, 2])
  truncate_arrays(tmp_path, 2, "model")
  (step, restored), checkpointer = restore(tmp_path, ["model", "training"])
  assert (step, checkpointer.damaged_steps) == (1, [2])
  assert_trees_equal(restored, items(1))
  warning, = capsys.readouterr().err.strip().splitlines()
  assert warning.startswith(
      f"warning: skipped the checkpoint at step 2 in {tmp_path}/checkpoints: it is damaged (")


def test_every_checkpoint_damaged_is_a_one_line_error(tmp_path):
  save(tmp_path, [1, 2])
  for step in (1, 2):
    os.remove(os.path.join(item_directory(tmp_path, step, "model"), "_METADATA"))
  with pytest.raises(UserError, match=r"^no checkpoint in .* restores \(all of steps 2, 1 "
                     r"are damaged\); move them away to train from scratch\.$"):
    restore(tmp_path, ["model"])


def test_set_aside_damaged_moves_the_damaged_checkpoint(tmp_path, capsys):
  save(tmp_path, [1, 2])
  truncate_arrays(tmp_path, 2, "model")
  checkpointer = checkpointing.Checkpointer(str(tmp_path))
  checkpointer.restore(targets(["model"]))
  checkpointer.set_aside_damaged()
  checkpointer.close()
  assert os.listdir(tmp_path / checkpointing.DAMAGED_DIR) == ["2"]
  assert os.listdir(tmp_path / "checkpoints") == ["1"]
  assert checkpointer.latest_step() == 1
  assert capsys.readouterr().err.strip().endswith(
      f"note: moved the damaged checkpoint at step 2 to {tmp_path}/damaged_checkpoints/2.")


def test_an_old_single_item_checkpoint_is_a_one_line_error(tmp_path, capsys):
  manager = ocp.CheckpointManager(tmp_path / "checkpoints",
                                  item_handlers=ocp.StandardCheckpointHandler())
  manager.save(3, args=ocp.args.StandardSave(items()))
  manager.close()
  checkpointer = checkpointing.Checkpointer(str(tmp_path))
  with pytest.raises(UserError) as error:
    checkpointer.restore(targets(["model"]))
  checkpointer.close()
  assert str(error.value) == (
      f"the checkpoint at step 3 in {tmp_path}/checkpoints was written by an older "
      "adder_jax, whose checkpoints hold the optimizer state and the model together; "
      "retrain in a new workdir.")
  assert checkpointer.damaged_steps == [] and "warning" not in capsys.readouterr().err


def test_no_checkpoint_restores_none(tmp_path):
  (result, checkpointer) = restore(tmp_path, ["model"])
  assert result is None and checkpointer.latest_step() is None
