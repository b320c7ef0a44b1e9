"""Loading MNIST through tfds, and pairing images with numbers."""

import socket

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from adder_jax import mnist
from adder_jax import pairing
from adder_jax.errors import UserError
from conftest import mock_mnist


def test_load_gives_uint8_images_and_int_labels(smoke_config):
  with mock_mnist(num_examples=30):
    data = mnist.load(smoke_config.data)
  for split in ("train", "test"):
    assert data[split].images.shape == (30, 28, 28)
    assert data[split].images.dtype == np.uint8
    assert data[split].labels.dtype == np.int32
    assert set(np.unique(data[split].labels)) <= set(range(10))


def test_manual_dir_without_the_files_is_a_clear_error(smoke_config, tmp_path):
  smoke_config.data.manual_dir = str(tmp_path)
  with pytest.raises(UserError, match="manual_dir"):
    mnist.load(smoke_config.data)


def test_missing_manual_dir_is_a_clear_error(smoke_config, tmp_path):
  smoke_config.data.manual_dir = str(tmp_path / "nowhere")
  with pytest.raises(UserError, match="not a directory"):
    mnist.load(smoke_config.data)


@pytest.fixture
def no_network(monkeypatch):
  """Every connection fails at once, as with no DNS; records (address, timeout) tried."""
  attempts = []

  def unreachable(address, timeout=None, **kwargs):
    attempts.append((address, timeout))
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

  monkeypatch.setattr(socket, "create_connection", unreachable)
  for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy",
               "ALL_PROXY"):
    monkeypatch.delenv(name, raising=False)
  return attempts


def test_no_network_fails_at_once_instead_of_retrying(smoke_config, no_network, monkeypatch):
  def download(*args, **kwargs):
    raise AssertionError("tfds's download (which retries for minutes) was started")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", download)
  with pytest.raises(UserError) as raised:
    mnist.load(smoke_config.data)
  message = str(raised.value)
  assert "by downloading it (cannot reach storage.googleapis.com: Name or service not known)" \
      in message and "--config.data.manual_dir=DIR" in message and "\n" not in message
  assert no_network == [(("storage.googleapis.com", 443), mnist.CONNECT_TIMEOUT_S)]


def _plan(key, epoch, num_examples, batch_size, allowed=None, labels=None):
  labels = np.zeros(num_examples, np.int32) if labels is None else labels
  plan = jax.device_get(pairing.epoch_plan(key, epoch, labels, batch_size, allowed))
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
  batch = jax.device_get(pairing.gather_batch(images, labels, {"numbers": numbers},
                                                     indices))
  np.testing.assert_array_equal(batch["inputs"]["images"], images[indices])
  np.testing.assert_array_equal(batch["label"], [9, 3, 4])
  np.testing.assert_array_equal(batch["inputs"]["numbers"], [9, 9, 0])
  np.testing.assert_array_equal(batch["sum"], [18, 12, 4])


def test_test_pairing_is_fixed_whatever_the_seed():
  first = pairing.test_numbers(1000)
  np.testing.assert_array_equal(first, pairing.test_numbers(1000))
  assert first.min() == 0 and first.max() == 9


def test_holdout_pairs_from_a_list():
  allowed = pairing.allowed_pairs(" 3+4, 7 +2", seed=0)
  assert allowed.shape == (10, 10) and (~allowed).sum() == 2
  assert not allowed[3, 4] and not allowed[7, 2]
  assert pairing.allowed_pairs("", seed=0) is None
  assert pairing.allowed_pairs("0", seed=0) is None


def test_holdout_count_is_drawn_from_the_seed_and_keeps_a_number_for_every_digit():
  ten = pairing.allowed_pairs("10", seed=0)
  assert (~ten).sum() == 10
  np.testing.assert_array_equal(ten, pairing.allowed_pairs("10", seed=0))
  assert not np.array_equal(ten, pairing.allowed_pairs("10", seed=1))
  most = pairing.allowed_pairs("90", seed=3)
  np.testing.assert_array_equal(most.sum(1), np.ones(10))


@pytest.mark.parametrize("spec, match", [
    ("3+", "bad pair"), ("3+10", "bad pair"), ("a+b", "bad pair"), ("3-4", "bad pair"),
    ("1+1,1+1", "twice"), (",".join(f"5+{n}" for n in range(10)), "every number of digit 5"),
    ("91", "at most 90")])
def test_bad_holdout_specs_are_rejected(spec, match):
  with pytest.raises(ValueError, match=match):
    pairing.allowed_pairs(spec, seed=0)


def test_heldout_pairs_never_appear_in_training():
  labels = np.random.default_rng(0).integers(0, 10, 6_000).astype(np.int32)
  allowed = pairing.allowed_pairs("3+4,7+2,7+3,0+0,9+9,1+5,1+6,1+7,1+8,1+9", seed=0)
  counts = np.zeros((10, 10))
  for epoch in range(3):
    indices, numbers = _plan(jax.random.key(0), epoch, 6_000, 100, allowed, labels)
    trained = indices.ravel()
    assert allowed[labels[trained], numbers[trained]].all()
    np.add.at(counts, (labels, numbers), 1)
  assert (counts[~allowed] == 0).all()
  # The remaining numbers of a digit stay about equally likely: digit 1 keeps 0-4.
  share = counts[1, :5] / counts[1, :5].sum()
  np.testing.assert_allclose(share, 0.2, atol=0.04)


def test_holdout_plan_keeps_the_order_and_the_allowed_numbers():
  labels = np.random.default_rng(0).integers(0, 10, 1_000).astype(np.int32)
  allowed = pairing.allowed_pairs("10", seed=0)
  indices, numbers = _plan(jax.random.key(0), 0, 1_000, 100, None, labels)
  held_indices, held_numbers = _plan(jax.random.key(0), 0, 1_000, 100, allowed, labels)
  np.testing.assert_array_equal(indices, held_indices)
  kept = allowed[labels, numbers]
  np.testing.assert_array_equal(numbers[kept], held_numbers[kept])


def test_two_image_plan_uses_every_image_once_per_epoch():
  key = jax.random.key(0)
  plan = jax.device_get(pairing.two_image_epoch_plan(key, 0, 1_000, 50))
  batches = plan["batch_indices"]
  assert batches.shape == (10, 50, 2)  # 500 pairs in batches of 50 pairs
  assert sorted(batches.ravel()) == list(range(1_000))
  again = jax.device_get(pairing.two_image_epoch_plan(key, 0, 1_000, 50))
  np.testing.assert_array_equal(batches, again["batch_indices"])
  following = jax.device_get(pairing.two_image_epoch_plan(key, 1, 1_000, 50))
  assert sorted(following["batch_indices"].ravel()) == list(range(1_000))
  first_pairs = {frozenset(p) for p in batches.reshape(-1, 2).tolist()}
  next_pairs = {frozenset(p) for p in following["batch_indices"].reshape(-1, 2).tolist()}
  assert len(first_pairs & next_pairs) < 10  # fresh pairs every epoch


def test_two_image_test_pairs_are_fixed_and_use_every_test_image_once():
  pairs = pairing.test_image_pairs(10_000)
  assert pairs.shape == (5_000, 2) and pairs.dtype == np.int32
  assert sorted(pairs.ravel()) == list(range(10_000))
  np.testing.assert_array_equal(pairs, pairing.test_image_pairs(10_000))


def test_two_image_batch_sum_label_is_the_sum_of_both_digits():
  images = np.arange(6 * 28 * 28, dtype=np.uint8).reshape(6, 28, 28)
  labels = np.array([3, 1, 4, 1, 5, 9], np.int32)
  indices = np.array([[5, 0], [2, 4]])
  batch = jax.device_get(pairing.gather_two_image_batch(images, labels, {}, indices))
  np.testing.assert_array_equal(batch["inputs"]["images"], images[indices])
  np.testing.assert_array_equal(batch["label"], [[9, 3], [4, 5]])
  np.testing.assert_array_equal(batch["sum"], [12, 9])


def _numbered_split(n):
  """A split whose image i is filled with i % 256 and whose label is i % 10."""
  images = np.broadcast_to((np.arange(n) % 256).astype(np.uint8)[:, None, None], (n, 28, 28))
  return mnist.Split(images=np.array(images), labels=(np.arange(n) % 10).astype(np.int32))


def test_validation_split_takes_fixed_images_out_of_train():
  train = _numbered_split(200)
  kept, held = mnist.split_validation(train, 30)
  assert (len(kept), len(held)) == (170, 30)
  kept_ids, held_ids = kept.images[:, 0, 0], held.images[:, 0, 0]
  assert not set(kept_ids) & set(held_ids)
  assert sorted(np.concatenate([kept_ids, held_ids])) == list(range(200))
  # Each image keeps its label and the order of the training set.
  np.testing.assert_array_equal(kept.labels, kept_ids % 10)
  assert (np.diff(held_ids.astype(int)) > 0).all()
  again, _ = mnist.split_validation(train, 30)
  np.testing.assert_array_equal(again.images, kept.images)


@pytest.mark.parametrize("size", [200, 500])
def test_validation_split_must_leave_training_images(size):
  with pytest.raises(UserError, match="validation_size"):
    mnist.split_validation(_numbered_split(200), size)


def test_load_carves_the_validation_split(smoke_config):
  smoke_config.data.validation_size = 10
  with mock_mnist(num_examples=30):
    data = mnist.load(smoke_config.data)
    test_only = mnist.load(smoke_config.data, splits=("test",))
  assert {name: len(split) for name, split in data.items()} == {
      "train": 20, "validation": 10, "test": 30}
  assert set(test_only) == {"test"}
