"""The whole training loop on mock MNIST with each task option: sum head, held-out
pairs, supervision, and the two-image task."""

import numpy as np
import pytest

from adder_jax import reporting
from adder_jax import train
from conftest import mock_mnist

# The whole training loop, once per option: slow (`python -m pytest -m slow`).
pytestmark = pytest.mark.slow

NUM_EXAMPLES = 120
TIMING_KEYS = ("epoch_seconds", "eval_seconds", "images_per_second", "compile_seconds")
HOLDOUT_KEYS = ("test_sum_accuracy_heldout", "test_sum_accuracy_seen",
                "test_sum_accuracy_all_pairs_heldout", "test_sum_accuracy_all_pairs_seen")


def _train(config, workdir):
  with mock_mnist(num_examples=NUM_EXAMPLES):
    train.train_and_evaluate(config, str(workdir))
  return reporting.read_metrics(str(workdir))


@pytest.mark.parametrize("sum_head, holdout_pairs, supervision", [
    ("exact", "3+4,7+2", "sum_only"),
    ("mlp", "10", "digit_only"),
    ("exact", "", "both"),
])
def test_image_plus_number_options(smoke_config, tmp_path, sum_head, holdout_pairs,
                                   supervision):
  smoke_config.model.sum_head = sum_head
  smoke_config.data.holdout_pairs = holdout_pairs
  smoke_config.supervision = supervision
  records = _train(smoke_config, tmp_path)
  assert [r["step"] for r in records] == [3, 6]
  last = records[-1]
  for key in ("train_loss", "test_loss", "test_digit_accuracy", "test_sum_accuracy",
              "test_sum_accuracy_all_pairs"):
    assert np.isfinite(last[key]), key
  assert all(key in last for key in HOLDOUT_KEYS) == bool(holdout_pairs)
  assert any(key in last for key in HOLDOUT_KEYS) == bool(holdout_pairs)
  if holdout_pairs:
    # Every test image is scored with every number, so both all-pairs subsets are
    # measured (the fixed pairing of 120 mock images may miss the held-out pairs).
    assert 0 <= last["test_sum_accuracy_all_pairs_heldout"] <= 100
    assert 0 <= last["test_sum_accuracy_all_pairs_seen"] <= 100
  if sum_head == "exact":
    # The exact sum is right exactly when the digit is: over all pairs, its accuracy
    # is the digit accuracy.
    np.testing.assert_allclose(last["test_sum_accuracy_all_pairs"], last["test_digit_accuracy"])


@pytest.mark.parametrize("sum_head", ["exact", "mlp"])
def test_two_images(smoke_config, tmp_path, sum_head):
  smoke_config.task = "two_images"
  smoke_config.supervision = "sum_only"
  smoke_config.model.sum_head = sum_head
  smoke_config.batch_size = 16  # pairs: 60 pairs of the 120 mock images, 3 steps
  records = _train(smoke_config, tmp_path)
  assert [r["step"] for r in records] == [3, 6]
  last = records[-1]
  assert set(last) >= {"train_loss", "train_digit_accuracy", "train_sum_accuracy", "test_loss",
                       "test_digit_accuracy", "test_sum_accuracy"}
  assert "test_sum_accuracy_all_pairs" not in last
  for key in ("train_loss", "test_loss", "test_digit_accuracy", "test_sum_accuracy"):
    assert np.isfinite(last[key]), key
  if sum_head == "exact":
    again = _train(smoke_config, tmp_path / "again")
    without_timings = lambda rs: [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rs]
    assert without_timings(again) == without_timings(records)


def test_validation_split(smoke_config, tmp_path):
  # 120 mock images less 24: 96 train, 3 steps of 32.
  smoke_config.data.validation_size = 24
  records = _train(smoke_config, tmp_path)
  assert [r["step"] for r in records] == [3, 6]
  last = records[-1]
  for name in ("loss", "digit_accuracy", "sum_accuracy", "sum_accuracy_all_pairs"):
    assert np.isfinite(last["validation_" + name]) and np.isfinite(last["test_" + name]), name
  # Measured on the 24 validation images: a whole number of them right.
  right = last["validation_digit_accuracy"] * 24 / 100
  assert abs(right - round(right)) < 1e-6
