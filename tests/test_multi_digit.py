"""The multi-digit task: its pairing of images into numbers, its exact labels, its test
set, its config checks, and its training loop on mock MNIST (command line, exact resume,
eight devices)."""

import json
import re
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from adder_jax import config_checks
from adder_jax import interrupts
from adder_jax import pairing
from adder_jax import reporting
from adder_jax import steps
from adder_jax import tasks
from adder_jax import train
from adder_jax.errors import UserError
from configs import multi_digit
from conftest import (REPO_ROOT, TRAIN_ON_DEVICES, ctrl_c_after_chunk, first_training_batch,
                      mock_mnist, run_on_cpu_devices, to_int)

TIMING_KEYS = ("epoch_seconds", "eval_seconds", "images_per_second", "compile_seconds")


def _without_timings(records):
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


@pytest.mark.parametrize("num_digits, batch_size", [(1, 60), (4, 15), (15, 4)])
def test_each_epoch_uses_every_training_image_once(num_digits, batch_size):
  plans = [jax.device_get(pairing.number_pair_epoch_plan(
      jax.random.key(0), epoch, 60_000, batch_size, num_digits)["batch_indices"])
           for epoch in (0, 1)]
  for plan in plans:
    assert plan.shape == (60_000 // (2 * num_digits) // batch_size, batch_size, 2, num_digits)
    np.testing.assert_array_equal(np.sort(plan.ravel()), np.arange(60_000))
  assert not np.array_equal(plans[0], plans[1])  # Reshuffled every epoch.


def _examples(plan):
  """The examples of a plan, as a set of ((digits of the first number), (of the second))."""
  batches = np.asarray(jax.device_get(plan["batch_indices"]))
  return {tuple(map(tuple, example)) for example in batches.reshape(-1, *batches.shape[2:])}


def test_fresh_pairing_splits_a_new_permutation_every_epoch():
  key = jax.random.key(3)
  plan = pairing.number_pair_epoch_plan(key, 1, 600, 5, 4, "fresh")
  order = jax.random.permutation(jax.random.fold_in(key, 1), 600)
  np.testing.assert_array_equal(plan["batch_indices"], np.reshape(order, (15, 5, 2, 4)))


@pytest.mark.parametrize("num_digits, batch_size", [(1, 60), (4, 15), (15, 4)])
def test_fixed_pairing_keeps_the_examples_and_shuffles_their_order(num_digits, batch_size):
  plans = [pairing.number_pair_epoch_plan(jax.random.key(seed), epoch, 60_000, batch_size,
                                          num_digits, "fixed")
           for seed, epoch in ((0, 0), (0, 1), (7, 0))]
  for plan in plans:
    np.testing.assert_array_equal(np.sort(np.ravel(plan["batch_indices"])), np.arange(60_000))
  # The same examples in every epoch, and whatever the run's seed; a new order.
  assert _examples(plans[0]) == _examples(plans[1]) == _examples(plans[2])
  assert len(_examples(plans[0])) == 60_000 // (2 * num_digits)
  assert not np.array_equal(plans[0]["batch_indices"], plans[1]["batch_indices"])
  fresh = pairing.number_pair_epoch_plan(jax.random.key(0), 1, 60_000, batch_size, num_digits)
  assert len(_examples(plans[0]) & _examples(fresh)) < 0.01 * len(_examples(fresh))


def test_fixed_pairs_of_the_two_image_task():
  plans = [pairing.two_image_epoch_plan(jax.random.key(0), epoch, 1_000, 50, "fixed")
           for epoch in (0, 1)]
  pairs = [{tuple(p) for p in np.asarray(plan["batch_indices"]).reshape(-1, 2).tolist()}
           for plan in plans]
  assert len(pairs[0]) == 500 and pairs[0] == pairs[1]


def test_fifteen_digit_labels_are_exact():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, 600).astype(np.int32)
  plan = pairing.number_pair_epoch_plan(jax.random.key(1), 0, 600, 4, 15)
  indices = plan["batch_indices"][0]
  batch = pairing.gather_number_pair_batch(np.zeros((600, 28, 28), np.uint8), labels,
                                                  plan, indices)
  indices = np.asarray(indices)
  assert batch["sum"].shape == (4, 16)
  for example, total in zip(indices, np.asarray(batch["sum"])):
    first, second = ("".join(str(d) for d in labels[number]) for number in example)
    assert to_int(total) == int(first) + int(second)


def test_the_test_set_is_fixed_and_uses_each_image_at_most_once():
  examples = pairing.test_number_pairs(10_000, 15)
  assert examples.shape == (333, 2, 15)
  assert len(np.unique(examples)) == examples.size
  np.testing.assert_array_equal(examples, pairing.test_number_pairs(10_000, 15))
  # One digit per number: the pairs of the two-image task.
  np.testing.assert_array_equal(pairing.test_number_pairs(10_000, 1)[..., 0],
                                pairing.test_image_pairs(10_000))


def test_training_examples_per_epoch():
  config = multi_digit.get_config()
  for num_digits, examples in [(1, 30_000), (2, 15_000), (4, 7_500), (15, 2_000)]:
    config.data.num_digits = num_digits
    assert tasks.create_task(config).num_examples(60_000) == examples


@pytest.mark.parametrize("change, words", [
    ({"num_digits": 0}, "config.data.num_digits must be a whole number in [1, 100], got 0"),
    ({"num_digits": 101}, "config.data.num_digits must be a whole number in [1, 100], got 101"),
    ({"validation_size": 7}, "validation_size=7 holds no pair of 4-digit numbers"),
    ({"label_smoothing": 0.1},
     "config.task='multi_digit' needs config.loss.label_smoothing=0.0, got 0.1"),
    ({"supervision": "both"}, "learns from the sum alone"),
    ({"sum_head": "mlp"}, "needs config.model.sum_head='exact', got 'mlp'"),
    ({"holdout_pairs": "3+4"}, "holds out no pairs, got config.data.holdout_pairs='3+4'"),
    ({"pairing": "once"}, "config.data.pairing 'once' is unknown; choose one of fresh, fixed."),
])
def test_bad_settings_are_refused(change, words):
  config = multi_digit.get_config()
  config.data.num_digits = change.get("num_digits", config.data.num_digits)
  config.supervision = change.get("supervision", config.supervision)
  config.model.sum_head = change.get("sum_head", config.model.sum_head)
  config.data.validation_size = change.get("validation_size", 0)
  config.loss.label_smoothing = change.get("label_smoothing", 0.0)
  config.data.holdout_pairs = change.get("holdout_pairs", "")
  config.data.pairing = change.get("pairing", "fresh")
  with pytest.raises(UserError, match=re.escape(words)):
    config_checks.validate(config)


@pytest.mark.slow
def test_training_never_reads_the_digit_labels():
  config = multi_digit.get_config()
  config.data.num_digits = 3
  config.batch_size = 4
  task = tasks.create_task(config)
  model = task.create_model()
  batch = first_training_batch(task, 48, jax.random.key(0))
  tx = optax.adam(1e-3)
  state = steps.init_state(model, tx, jax.random.key(1), batch["inputs"])
  recipe = steps.Recipe(objective=task.objective, gather=task.gather, batch_sharding=None)
  step = jax.jit(lambda s, b: steps.train_step(s, b, recipe))
  scrambled = dict(batch, label=(batch["label"] + 3) % 10)
  trained, metrics = step(state, batch)
  trained_scrambled, metrics_scrambled = step(state, scrambled)
  for a, b in zip(jax.tree.leaves(trained.params), jax.tree.leaves(trained_scrambled.params)):
    np.testing.assert_array_equal(a, b)
  assert float(metrics["loss"]) == float(metrics_scrambled["loss"])
  # The labels only score the digits.
  assert int(metrics["digits"]) == 4 * 2 * 3 and int(metrics["sums"]) == 4


# Mock MNIST: 120 images make 30 examples of two 2-digit numbers, 3 steps of 8 a epoch.
NUM_EXAMPLES = 120


def _small_config(data_dir):
  config = multi_digit.get_config()
  config.data.num_digits = 2
  config.num_epochs = 2
  config.batch_size = 8
  config.eval_batch_size = 40
  config.steps_per_chunk = 2
  config.data.data_dir = str(data_dir)
  return config


def _train(config, workdir):
  with mock_mnist(num_examples=NUM_EXAMPLES):
    train.train_and_evaluate(config, str(workdir))
  return reporting.read_metrics(str(workdir))


@pytest.mark.slow
def test_command_line_trains_the_multi_digit_config_on_mock_data(tmp_path):
  workdir = tmp_path / "workdir"
  result = subprocess.run(
      [sys.executable, "-m", "tests.mock_main", f"--mock_num_examples={NUM_EXAMPLES}",
       "--config", "configs/multi_digit.py", "--workdir", str(workdir),
       "--config.data.num_digits=2", "--config.num_epochs=2", "--config.batch_size=8",
       "--config.eval_batch_size=40", "--config.steps_per_chunk=2",
       f"--config.data.data_dir={tmp_path / 'tfds'}"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr
  records = reporting.read_metrics(str(workdir))
  assert [r["step"] for r in records] == [3, 6]
  last = records[-1]
  for key in ("train_loss", "train_digit_accuracy", "train_sum_accuracy", "test_loss",
              "test_digit_accuracy", "test_sum_accuracy", "test_sum_accuracy_most_probable"):
    assert np.isfinite(last[key]), key
  assert last["test_most_probable_unresolved"] == 0
  with open(workdir / "config.json") as f:
    assert json.load(f)["data"]["num_digits"] == 2


@pytest.fixture(scope="module")
def unbroken_run(tmp_path_factory):
  """An unbroken run of the literature's protocol (the fresh pairing's plan is tested
  above and its loop on the command line)."""
  workdir = tmp_path_factory.mktemp("unbroken")
  config = _small_config(workdir / "tfds")
  config.data.pairing = "fixed"
  return config, _train(config, workdir)


@pytest.mark.slow
def test_an_interrupted_run_resumes_exactly(unbroken_run, tmp_path, monkeypatch):
  config, records = unbroken_run
  # Stopped in the middle of epoch 2 (after its first chunk), at step 5.
  with ctrl_c_after_chunk(monkeypatch, 3), pytest.raises(interrupts.TrainingInterrupted,
                                                          match="at step 5"):
    _train(config, tmp_path)
  assert _without_timings(_train(config, tmp_path)) == _without_timings(records)


@pytest.mark.slow
def test_eight_devices_give_the_same_metrics_as_one(unbroken_run, tmp_path):
  config, records = unbroken_run
  result = run_on_cpu_devices(TRAIN_ON_DEVICES.format(
      config=config.to_json(), n=NUM_EXAMPLES, workdir=str(tmp_path)), timeout=300)
  assert result["devices"] == 8
  one, eight = records[-1], result["record"]
  for key in ("train_loss", "test_loss"):
    np.testing.assert_allclose(eight[key], one[key], rtol=1e-3)
  for key in ("train_digit_accuracy", "test_digit_accuracy"):
    # Summation order differs across devices: at most one test image may flip.
    assert abs(eight[key] - one[key]) <= 100.0 / NUM_EXAMPLES + 1e-9, key
