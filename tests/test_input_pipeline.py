"""Loading MNIST through tfds, and pairing images with numbers."""

import jax
import numpy as np
import pytest

from adder_jax import input_pipeline
from adder_jax import steps
from adder_jax.errors import UserError
from conftest import mock_mnist


def test_load_gives_uint8_images_and_int_labels(smoke_config):
  with mock_mnist(num_examples=30):
    data = input_pipeline.load(smoke_config.data)
  for split in ("train", "test"):
    assert data[split].images.shape == (30, 28, 28)
    assert data[split].images.dtype == np.uint8
    assert data[split].labels.dtype == np.int32
    assert set(np.unique(data[split].labels)) <= set(range(10))


def test_manual_dir_without_the_files_is_a_clear_error(smoke_config, tmp_path):
  smoke_config.data.manual_dir = str(tmp_path)
  with pytest.raises(UserError, match="manual_dir"):
    input_pipeline.load(smoke_config.data)


def test_missing_manual_dir_is_a_clear_error(smoke_config, tmp_path):
  smoke_config.data.manual_dir = str(tmp_path / "nowhere")
  with pytest.raises(UserError, match="not a directory"):
    input_pipeline.load(smoke_config.data)


def _plan(key, epoch, num_examples, batch_size, allowed=None, labels=None):
  labels = np.zeros(num_examples, np.int32) if labels is None else labels
  plan = jax.device_get(input_pipeline.epoch_plan(key, epoch, labels, batch_size, allowed))
  return plan["batch_indices"], plan["numbers"]


def test_epoch_plan_is_a_shuffle_with_fresh_numbers_each_epoch():
  key = jax.random.key(0)
  indices, numbers = _plan(key, 0, 100, 32)
  assert indices.shape == (3, 32) and numbers.shape == (100,)
  assert len(set(indices.ravel())) == 96  # no image twice; the last 4 dropped
  assert numbers.min() >= 0 and numbers.max() <= 9
  indices_again, numbers_again = _plan(key, 0, 100, 32)
  np.testing.assert_array_equal(indices, indices_again)
  np.testing.assert_array_equal(numbers, numbers_again)
  next_indices, next_numbers = _plan(key, 1, 100, 32)
  assert not np.array_equal(indices, next_indices)
  assert np.mean(numbers != next_numbers) > 0.7  # fresh numbers: ~90% differ
  other_seed = _plan(jax.random.key(1), 0, 100, 32)
  assert not np.array_equal(numbers, other_seed[1])


def test_every_number_is_drawn_about_equally_often():
  _, numbers = _plan(jax.random.key(0), 0, 60_000, 100)
  counts = np.bincount(numbers, minlength=10)
  assert counts.min() > 5_700 and counts.max() < 6_300


def test_batch_sum_label_is_digit_plus_number():
  images = np.arange(10 * 28 * 28, dtype=np.uint8).reshape(10, 28, 28)
  labels = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3], np.int32)
  numbers = np.array([9, 9, 0, 2, 5, 9, 1, 0, 0, 7], np.int32)
  indices = np.array([5, 0, 2])
  batch = jax.device_get(steps.gather_batch(images, labels, {"numbers": numbers}, indices))
  np.testing.assert_array_equal(batch["inputs"]["images"], images[indices])
  np.testing.assert_array_equal(batch["label"], [9, 3, 4])
  np.testing.assert_array_equal(batch["inputs"]["numbers"], [9, 9, 0])
  np.testing.assert_array_equal(batch["sum"], [18, 12, 4])


def test_test_pairing_is_fixed_whatever_the_seed():
  first = input_pipeline.test_numbers(1000)
  np.testing.assert_array_equal(first, input_pipeline.test_numbers(1000))
  assert first.min() == 0 and first.max() == 9
