"""The tasks a run can train on (`config.task`), each a bundle of what differs.

'image_plus_number' (the default): an MNIST image and a random number 0-9 in; the
digit and the sum out (`models.AdderNet`). Each epoch pairs every training image with
a fresh number, avoiding the (digit, number) pairs that `config.data.holdout_pairs`
holds out; each test image has a fixed number, and is also evaluated with all ten.

'two_images': the neuro-symbolic MNIST-addition benchmark: two MNIST images in, their
sum out (`models.TwoImageAdderNet`). The training images make 30,000 pairs, every image
used once an epoch: new pairs every epoch, or with `config.data.pairing='fixed'` the
same pairs in a new order; the test set is 5,000 fixed pairs of the 10,000 test images.
`config.batch_size` counts pairs.

'multi_digit': multi-digit MNIST addition: two numbers of `config.data.num_digits` = N
images each in, trained on their sum alone through its exact likelihood
(`long_addition.sum_log_likelihood`; `models.NumberPairNet`). The training images make
60,000 / 2N examples, new ones every epoch or (`config.data.pairing='fixed'`) the same
ones in a new order; the test set is the 10,000 / 2N fixed examples of
`pairing.test_number_pairs`. Sums are digit arrays (N + 1 digits), exact for any N.
`config.batch_size` counts examples.

Everything that differs between the tasks is an attribute or a method of its class
here: its network, its objective, its epoch plan and gather, its test set and
metrics, the settings it requires, and the ways a trained run of it can be used. The
trainer, the evaluation and the tools that use a trained model ask the task; none of
them names one.
"""

import jax.numpy as jnp
import numpy as np

from adder_jax import evaluation
from adder_jax import models
from adder_jax import objectives
from adder_jax import pairing
from adder_jax.constants import IMAGE_SHAPE
from adder_jax.errors import UserError

# The ways a trained run is used, for `Task.uses`: `inference.Predictor.predict` and
# predict_files (an image and a number), `inference.Predictor.predict_pairs` (two
# images), `python -m adder_jax.evaluate` (with the per-pair report that training also
# writes at its end). The demo shows whichever of the first two a run has.
USES = ("predict", "predict_pairs", "evaluate")


def _pad_to_multiple(x, multiple):
  return np.pad(x, [(0, -len(x) % multiple)] + [(0, 0)] * (x.ndim - 1))


class Task:
  """What every task has: the class attributes, and the methods the trainer, the
  evaluation and the tools that use a trained model call."""

  name = None
  # The `models` network class of the task.
  model_class = None
  # Settings the task needs: config field path -> (the value it needs, why). The config
  # check reports the first conflict in one line.
  requires = {}
  # Whether `config.data.holdout_pairs` may hold (digit, number) pairs out of training.
  holds_out_pairs = False
  # Whether `config.data.pairing` may be 'fixed' (pairing.PAIRINGS): the task's training
  # examples are made of several images.
  fixes_pairing = False
  # Which of USES read a trained run of this task.
  uses = ()
  # Images of one example that a trained run reads (the demo's pads); 0 if none.
  image_slots = 0
  # The training objective, (model outputs, batch) -> (loss, metrics), objectives.py.
  objective = None

  def __init__(self, config):
    self.config = config

  @classmethod
  def check_config(cls, config):
    """Raises UserError for the first setting this task cannot train with."""
    for path, (value, why) in cls.requires.items():
      section, _, field = path.rpartition(".")
      actual = (config[section] if section else config)[field]
      if actual != value:
        raise UserError(f"config.task={cls.name!r} needs config.{path}={value!r}, got "
                        f"{actual!r}: {why}.")
    if not cls.fixes_pairing and config.data.pairing != "fresh":
      raise UserError(f"config.task={cls.name!r} pairs each image with a fresh number, got "
                      f"config.data.pairing={config.data.pairing!r}: 'fixed' is for the "
                      "tasks whose examples are several images, 'two_images' and "
                      "'multi_digit'.")
    if (not cls.holds_out_pairs
        and pairing.allowed_pairs(config.data.holdout_pairs, config.seed) is not None):
      raise UserError(f"config.task={cls.name!r} holds out no pairs, got config.data."
                      f"holdout_pairs={config.data.holdout_pairs!r}: held-out pairs are "
                      "(digit, number) pairs, which only 'image_plus_number' has.")

  def create_model(self, layers=None):
    """The task's network; `layers` as `models.create_model` takes them."""
    return models.create_model(self.config.model, self.model_class, layers)

  def num_examples(self, num_images):
    """Training examples per epoch, from the number of training images."""
    raise NotImplementedError

  def example_inputs(self, batch_size=2):
    """Model inputs of the right shapes, for initialisation."""
    raise NotImplementedError

  def epoch_plan(self, key, epoch, train_labels):
    """The plan of one epoch, drawn on the device (pairing.py): which images make each
    example of each batch."""
    raise NotImplementedError

  def gather(self, train_images, train_labels, plan, indices):
    """The training batch at `indices` of the plan (pairing.py), on the device."""
    raise NotImplementedError

  def predict(self, params, batch_stats, *inputs, model, batch_size, batch_sharding):
    """The forward pass over a test split (evaluation.py), a pure function to compile."""
    raise NotImplementedError

  def test_inputs(self, test_split):
    """Host arrays that `predict` takes after the parameters, padded to whole batches."""
    raise NotImplementedError

  def test_metrics(self, predictions, test_split):
    """Test metrics from the numpy outputs of `predict` (padding included)."""
    raise NotImplementedError


class ImagePlusNumber(Task):
  """One image plus a random number."""

  name = "image_plus_number"
  model_class = models.AdderNet
  holds_out_pairs = True
  uses = ("predict", "evaluate")
  image_slots = 1

  def __init__(self, config):
    super().__init__(config)
    # The loss weights, with the unsupervised target's set to 0.
    self.loss_config = objectives.supervised_loss_config(config.loss, config.supervision)
    self.objective = objectives.cross_entropy_objective(self.loss_config)
    # None, or bool [10, 10]: the (digit, number) pairs training may show.
    self.allowed = pairing.allowed_pairs(config.data.holdout_pairs, config.seed)

  @classmethod
  def check_config(cls, config):
    super().check_config(config)
    if config.model.sum_head == "exact" and config.loss.label_smoothing > 0:
      raise UserError("config.loss.label_smoothing must be 0 with config.model.sum_head="
                      "'exact': that head gives the sums a number cannot reach probability "
                      "0, so smoothed targets on them make the loss huge.")

  def num_examples(self, num_images):
    return num_images

  def example_inputs(self, batch_size=2):
    return {"images": jnp.zeros((batch_size, *IMAGE_SHAPE), jnp.uint8),
            "numbers": jnp.zeros((batch_size,), jnp.int32)}

  def epoch_plan(self, key, epoch, train_labels):
    return pairing.epoch_plan(key, epoch, train_labels, self.config.batch_size, self.allowed)

  gather = staticmethod(pairing.gather_batch)
  predict = staticmethod(evaluation.predict)

  def test_inputs(self, test_split):
    batch = self.config.eval_batch_size
    return (_pad_to_multiple(test_split.images, batch),
            _pad_to_multiple(pairing.test_numbers(len(test_split)), batch))

  def test_metrics(self, predictions, test_split):
    n = len(test_split)
    predictions = {k: v[:n] for k, v in predictions.items()}
    return evaluation.test_metrics(predictions, test_split.labels, pairing.test_numbers(n),
                                   self.loss_config, self.allowed)


class TwoImages(Task):
  """Two images, trained and tested on their sum."""

  name = "two_images"
  model_class = models.TwoImageAdderNet
  uses = ("predict_pairs",)
  image_slots = 2
  fixes_pairing = True

  def __init__(self, config):
    super().__init__(config)
    self.loss_config = objectives.supervised_loss_config(config.loss, config.supervision)
    self.objective = objectives.cross_entropy_objective(self.loss_config)

  def num_examples(self, num_images):
    return num_images // 2

  def example_inputs(self, batch_size=2):
    return {"images": jnp.zeros((batch_size, 2, *IMAGE_SHAPE), jnp.uint8)}

  def epoch_plan(self, key, epoch, train_labels):
    return pairing.two_image_epoch_plan(key, epoch, train_labels.shape[0],
                                        self.config.batch_size, self.config.data.pairing)

  gather = staticmethod(pairing.gather_two_image_batch)
  predict = staticmethod(evaluation.predict_two_images)

  def test_inputs(self, test_split):
    return (_pad_to_multiple(test_split.images, self.config.eval_batch_size),
            pairing.test_image_pairs(len(test_split)))

  def test_metrics(self, predictions, test_split):
    return evaluation.two_image_test_metrics(
        {"digit_logits": predictions["digit_logits"][:len(test_split)],
         "sum_logits": predictions["sum_logits"]},
        test_split.labels, pairing.test_image_pairs(len(test_split)), self.loss_config)


class MultiDigit(Task):
  """Two N-digit numbers, each written as N images, trained and tested on their sum."""

  name = "multi_digit"
  model_class = models.NumberPairNet
  _SUM_ALONE = "it learns from the sum alone, through its exact likelihood"
  requires = {
      "supervision": ("sum_only", _SUM_ALONE),
      "model.sum_head": ("exact", _SUM_ALONE),
      "loss.label_smoothing": (0.0, "its loss is the sum's likelihood, not a cross-entropy"),
  }
  # The carry program and the digit addition run position by position, unrolled in the
  # compiled step: a bound keeps compilation short.
  MAX_DIGITS = 100
  fixes_pairing = True

  def __init__(self, config):
    super().__init__(config)
    self.num_digits = config.data.num_digits
    self.objective = objectives.sum_likelihood_objective

  @classmethod
  def check_config(cls, config):
    num_digits = config.data.num_digits
    if (isinstance(num_digits, bool) or not isinstance(num_digits, int)
        or not 1 <= num_digits <= cls.MAX_DIGITS):
      raise UserError(f"config.data.num_digits must be a whole number in [1, "
                      f"{cls.MAX_DIGITS}], got {num_digits!r}.")
    super().check_config(config)
    size = config.data.validation_size
    if 0 < size < 2 * num_digits:
      raise UserError(f"config.data.validation_size={size} holds no pair of {num_digits}-digit "
                      f"numbers; make it 0 or at least {2 * num_digits}.")

  def num_examples(self, num_images):
    return num_images // (2 * self.num_digits)

  def example_inputs(self, batch_size=2):
    return {"images": jnp.zeros((batch_size, 2, self.num_digits, *IMAGE_SHAPE), jnp.uint8)}

  def epoch_plan(self, key, epoch, train_labels):
    return pairing.number_pair_epoch_plan(key, epoch, train_labels.shape[0],
                                          self.config.batch_size, self.num_digits,
                                          self.config.data.pairing)

  gather = staticmethod(pairing.gather_number_pair_batch)
  predict = staticmethod(evaluation.predict_digits)

  def test_inputs(self, test_split):
    return (_pad_to_multiple(test_split.images, self.config.eval_batch_size),)

  def test_metrics(self, predictions, test_split):
    return evaluation.number_pair_test_metrics(
        predictions["digit_logits"][:len(test_split)], test_split.labels,
        pairing.test_number_pairs(len(test_split), self.num_digits))


TASKS = {task.name: task for task in (ImagePlusNumber, TwoImages, MultiDigit)}


def create_task(config):
  return TASKS[config.task](config)


def check_use(config, workdir, uses, user):
  """Raises a UserError unless the task of the run in `workdir` (trained with `config`)
  has one of `uses` (of USES); `user`, a command or method, is named in the error."""
  if not set(uses) & set(TASKS[config.task].uses):
    readable = [name for name, task in TASKS.items() if set(uses) & set(task.uses)]
    raise UserError(f"{workdir} was trained on the {config.task!r} task; {user} reads "
                    f"{' and '.join(map(repr, readable))} runs.")
