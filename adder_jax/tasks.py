"""The tasks a run can train on (`config.task`), each a bundle of what differs.

'image_plus_number' (the default): an MNIST image and a random number 0-9 in; the
digit and the sum out (`models.AdderNet`). Each epoch pairs every training image with
a fresh number, avoiding the (digit, number) pairs that `config.data.holdout_pairs`
holds out; each test image has a fixed number, and is also evaluated with all ten.

'two_images': the neuro-symbolic MNIST-addition benchmark: two MNIST images in, their
sum out (`models.TwoImageAdderNet`). Each epoch splits a fresh permutation of the
training images into pairs (30,000 pairs, every image used once); the test set is
5,000 fixed pairs of the 10,000 test images. `config.batch_size` counts pairs.

'multi_digit': multi-digit MNIST addition: two numbers of `config.data.num_digits` = N
images each in, trained on their sum alone through its exact likelihood
(`long_addition.sum_log_likelihood`; `models.NumberPairNet`). Each epoch splits a fresh
permutation of the training images into 60,000 / 2N examples; the test set is the
10,000 / 2N fixed examples of `input_pipeline.test_number_pairs`. Sums are digit
arrays (N + 1 digits), exact for any N. `config.batch_size` counts examples.

The trainer and the evaluation use only the methods below, so they hold no
task-specific code; the functions they call live in the modules of their jobs
(input_pipeline, steps, evaluation, models).
"""

import jax.numpy as jnp
import numpy as np

from adder_jax import evaluation
from adder_jax import input_pipeline
from adder_jax import models
from adder_jax import steps
from adder_jax.constants import IMAGE_SHAPE
from adder_jax.errors import UserError


def _pad_to_multiple(x, multiple):
  return np.pad(x, [(0, -len(x) % multiple)] + [(0, 0)] * (x.ndim - 1))


class ImagePlusNumber:
  """One image plus a random number."""

  def __init__(self, config):
    self.config = config
    # The loss weights, with the unsupervised target's set to 0.
    self.loss_config = steps.supervised_loss_config(config.loss, config.supervision)
    self.objective = steps.cross_entropy_objective(self.loss_config)
    # None, or bool [10, 10]: the (digit, number) pairs training may show.
    self.allowed = input_pipeline.allowed_pairs(config.data.holdout_pairs, config.seed)

  def create_model(self):
    return models.create_model(self.config.model)

  def num_examples(self, num_images):
    """Training examples per epoch, from the number of training images."""
    return num_images

  def example_inputs(self, batch_size=2):
    """Model inputs of the right shapes, for initialisation."""
    return {"images": jnp.zeros((batch_size, *IMAGE_SHAPE), jnp.uint8),
            "numbers": jnp.zeros((batch_size,), jnp.int32)}

  def epoch_plan(self, key, epoch, train_labels):
    """The plan of one epoch, drawn on the device (`input_pipeline.epoch_plan`)."""
    return input_pipeline.epoch_plan(key, epoch, train_labels, self.config.batch_size,
                                     self.allowed)

  gather = staticmethod(input_pipeline.gather_batch)
  predict = staticmethod(evaluation.predict)

  def test_inputs(self, test_split):
    """Host arrays that `predict` takes after the parameters, padded to whole batches."""
    batch = self.config.eval_batch_size
    return (_pad_to_multiple(test_split.images, batch),
            _pad_to_multiple(input_pipeline.test_numbers(len(test_split)), batch))

  def test_metrics(self, predictions, test_split):
    """Test metrics from the numpy outputs of `predict` (padding included)."""
    n = len(test_split)
    predictions = {k: v[:n] for k, v in predictions.items()}
    return evaluation.test_metrics(predictions, test_split.labels,
                                   input_pipeline.test_numbers(n), self.loss_config, self.allowed)


class TwoImages:
  """Two images, trained and tested on their sum."""

  def __init__(self, config):
    self.config = config
    self.loss_config = steps.supervised_loss_config(config.loss, config.supervision)
    self.objective = steps.cross_entropy_objective(self.loss_config)

  def create_model(self):
    return models.create_model(self.config.model, models.TwoImageAdderNet)

  def num_examples(self, num_images):
    return num_images // 2

  def example_inputs(self, batch_size=2):
    return {"images": jnp.zeros((batch_size, 2, *IMAGE_SHAPE), jnp.uint8)}

  def epoch_plan(self, key, epoch, train_labels):
    return input_pipeline.two_image_epoch_plan(key, epoch, train_labels.shape[0],
                                               self.config.batch_size)

  gather = staticmethod(input_pipeline.gather_two_image_batch)
  predict = staticmethod(evaluation.predict_two_images)

  def test_inputs(self, test_split):
    return (_pad_to_multiple(test_split.images, self.config.eval_batch_size),
            input_pipeline.test_image_pairs(len(test_split)))

  def test_metrics(self, predictions, test_split):
    return evaluation.two_image_test_metrics(
        {"digit_logits": predictions["digit_logits"][:len(test_split)],
         "sum_logits": predictions["sum_logits"]},
        test_split.labels, input_pipeline.test_image_pairs(len(test_split)), self.loss_config)


class MultiDigit:
  """Two N-digit numbers, each written as N images, trained and tested on their sum."""

  # The carry program and the digit addition run position by position, unrolled in the
  # compiled step: a bound keeps compilation short.
  MAX_DIGITS = 100

  def __init__(self, config):
    self.config = config
    self.num_digits = config.data.num_digits
    self.objective = steps.sum_likelihood_objective

  @staticmethod
  def check_config(config):
    """Raises UserError for a setting this task cannot train with."""
    num_digits = config.data.num_digits
    if (isinstance(num_digits, bool) or not isinstance(num_digits, int)
        or not 1 <= num_digits <= MultiDigit.MAX_DIGITS):
      raise UserError(f"config.data.num_digits must be a whole number in [1, "
                      f"{MultiDigit.MAX_DIGITS}], got {num_digits!r}.")
    if config.supervision != "sum_only" or config.model.sum_head != "exact":
      raise UserError("config.task='multi_digit' learns from the sum alone through its exact "
                      "likelihood: set config.supervision='sum_only' and "
                      "config.model.sum_head='exact' (configs/multi_digit.py does).")
    if config.loss.label_smoothing:
      raise UserError("config.loss.label_smoothing must be 0 with config.task='multi_digit', "
                      "whose loss is the sum's likelihood, not a cross-entropy.")
    size = config.data.validation_size
    if 0 < size < 2 * num_digits:
      raise UserError(f"config.data.validation_size={size} holds no pair of {num_digits}-digit "
                      f"numbers; make it 0 or at least {2 * num_digits}.")

  def create_model(self):
    return models.create_model(self.config.model, models.NumberPairNet)

  def num_examples(self, num_images):
    return num_images // (2 * self.num_digits)

  def example_inputs(self, batch_size=2):
    return {"images": jnp.zeros((batch_size, 2, self.num_digits, *IMAGE_SHAPE), jnp.uint8)}

  def epoch_plan(self, key, epoch, train_labels):
    return input_pipeline.number_pair_epoch_plan(key, epoch, train_labels.shape[0],
                                                 self.config.batch_size, self.num_digits)

  gather = staticmethod(input_pipeline.gather_number_pair_batch)
  predict = staticmethod(evaluation.predict_digits)

  def test_inputs(self, test_split):
    return (_pad_to_multiple(test_split.images, self.config.eval_batch_size),)

  def test_metrics(self, predictions, test_split):
    return evaluation.number_pair_test_metrics(
        predictions["digit_logits"][:len(test_split)], test_split.labels,
        input_pipeline.test_number_pairs(len(test_split), self.num_digits))


TASKS = {"image_plus_number": ImagePlusNumber, "two_images": TwoImages,
         "multi_digit": MultiDigit}


def create_task(config):
  return TASKS[config.task](config)
