"""Random affine transforms of the training images (adder_jax/augment.py), alone and in
the compiled training loop."""

import jax
import numpy as np
import pytest

from adder_jax import augment
from adder_jax import config_checks
from adder_jax import reporting
from adder_jax import train
from adder_jax.errors import UserError
from conftest import mock_mnist

ON = {"max_rotation": 15.0, "max_scale": 0.1, "max_shift": 2.0}


def pattern(shape=(28, 28), seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def test_shapes_and_dtype():
  for shape in [(4, 28, 28), (3, 2, 28, 28)]:  # A batch; a batch of pairs.
    out = augment.random_affine(jax.random.key(0), pattern(shape), **ON)
    assert out.shape == shape and out.dtype == np.float32


def test_identity_gives_the_input_back_exactly():
  images = pattern((5, 28, 28))
  out = augment.random_affine(jax.random.key(0), images, max_rotation=0.0, max_scale=0.0,
                              max_shift=0.0)
  np.testing.assert_array_equal(np.asarray(out), images.astype(np.float32))


def test_an_integer_shift_moves_the_image_by_that_many_pixels():
  image = pattern()
  out = np.asarray(augment.affine(image.astype(np.float32), 0.0, 1.0, np.array([2.0, -3.0])))
  expected = np.zeros_like(image, np.float32)
  expected[2:, :-3] = image[:-2, 3:]  # Down 2 rows, left 3 columns; black comes in.
  np.testing.assert_array_equal(out, expected)


def test_rotation_turns_counter_clockwise_and_scale_enlarges():
  image = np.zeros((29, 29), np.float32)  # Centre (14, 14), a pixel.
  image[14, 20] = 255.0  # Right of the centre.
  turned = np.asarray(augment.affine(image, np.pi / 2, 1.0, np.zeros(2)))
  assert np.unravel_index(turned.argmax(), turned.shape) == (8, 14)  # Above it.
  np.testing.assert_allclose(turned[8, 14], 255.0, rtol=1e-4)
  enlarged = np.asarray(augment.affine(image, 0.0, 2.0, np.zeros(2)))
  assert np.unravel_index(enlarged.argmax(), enlarged.shape) == (14, 26)


def test_same_key_same_images_and_every_image_its_own_transform():
  images = np.repeat(pattern()[None], 8, axis=0)  # The same image 8 times.
  first = np.asarray(augment.random_affine(jax.random.key(3), images, **ON))
  again = np.asarray(augment.random_affine(jax.random.key(3), images, **ON))
  np.testing.assert_array_equal(first, again)
  assert len({out.tobytes() for out in first}) == 8
  other = np.asarray(augment.random_affine(jax.random.key(4), images, **ON))
  assert not np.array_equal(first, other)


def test_off_unless_the_config_asks(smoke_config):
  assert augment.from_config(smoke_config.augment) is None
  smoke_config.augment.max_shift = 1.0
  assert augment.from_config(smoke_config.augment) is not None


def _train(config, workdir):
  with mock_mnist(num_examples=120):
    train.train_and_evaluate(config, str(workdir))
  return reporting.read_metrics(str(workdir))


@pytest.mark.slow
def test_training_with_augmentation_is_deterministic(smoke_config, tmp_path):
  plain = _train(smoke_config.copy_and_resolve_references(), tmp_path / "plain")
  smoke_config.augment.update(ON)
  runs = [_train(smoke_config, tmp_path / f"augmented_{i}") for i in range(2)]
  keys = ("train_loss", "test_loss", "test_digit_accuracy", "test_sum_accuracy")
  assert [[r[k] for k in keys] for r in runs[0]] == [[r[k] for k in keys] for r in runs[1]]
  assert [r["train_loss"] for r in runs[0]] != [r["train_loss"] for r in plain]
  assert all(np.isfinite(r["train_loss"]) for r in runs[0])


@pytest.mark.slow
def test_two_image_task_augments_both_images(smoke_config, tmp_path):
  smoke_config.task = "two_images"
  smoke_config.supervision = "sum_only"
  smoke_config.model.sum_head = "exact"
  smoke_config.batch_size = 16
  smoke_config.augment.update(ON)
  records = _train(smoke_config, tmp_path)
  assert [r["step"] for r in records] == [3, 6]
  assert np.isfinite(records[-1]["train_loss"])


@pytest.mark.parametrize("field, value", [
    ("max_rotation", -1.0), ("max_rotation", 181.0), ("max_scale", 1.0),
    ("max_shift", 15.0),
])
def test_bad_values_are_refused_at_start(smoke_config, field, value):
  smoke_config.augment[field] = value
  with pytest.raises(UserError, match=f"config.augment.{field} must be a number in"):
    config_checks.validate(smoke_config)
