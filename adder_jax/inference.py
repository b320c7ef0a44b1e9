"""A trained model read back from its workdir, to predict outside training.

`Predictor(workdir)` loads WORKDIR/config.json and the latest checkpoint. For an image +
number run, its `predict` reads the digit in 28x28 images and adds numbers to it, and
`predict_files` does the same for image files, preprocessed as MNIST was (see
preprocess.py); a file that cannot be read does not stop the others: its `Prediction`
carries the `error` instead of a digit. For a two-image run, `predict_pairs` reads both
digits of each pair and their sum. In a notebook:

  from adder_jax import inference
  predictions = inference.predict_files("/tmp/workdir", ["seven.png"], numbers=3)
  predictions[0].digit, predictions[0].sum, predictions[0].error

A damaged checkpoint is skipped with a warning; the command lines also silence the
reports of orbax's abandoned reads that follow it (`checkpointing.quiet_abandoned_reads`,
which a notebook may call once too).
"""

import dataclasses
import functools
import json
import os
from typing import Optional, Tuple

import jax
import ml_collections
import numpy as np

from adder_jax import checkpointing
from adder_jax import config_checks
from adder_jax import evaluation
from adder_jax import image_files
from adder_jax import models
from adder_jax import sharding
from adder_jax import tasks
from adder_jax.constants import IMAGE_SHAPE, NUM_DIGITS
from adder_jax.errors import UserError

CONFIG_FILE = "config.json"


@dataclasses.dataclass(frozen=True)
class Prediction:
  """What the model reads in one image, and the sum it makes with `number`; or, for
  an image file that could not be read, why (`error`, the prediction fields None)."""

  image: Optional[str]  # The file it was read from, if any.
  number: int
  digit: Optional[int] = None
  digit_probability: Optional[float] = None
  sum: Optional[int] = None
  sum_probability: Optional[float] = None
  digit_probabilities: Optional[Tuple[float, ...]] = None  # Over the digits 0-9.
  sum_probabilities: Optional[Tuple[float, ...]] = None  # Over the sums 0-18.
  preprocessed_file: Optional[str] = None  # The PNG of the 28x28 input, if saved.
  error: Optional[str] = None  # Why the image file could not be read.


@dataclasses.dataclass(frozen=True)
class PairPrediction:
  """What a two-image model reads in a pair of images, and the sum it makes of them."""

  digits: Tuple[int, int]
  digit_probabilities: Tuple[Tuple[float, ...], Tuple[float, ...]]  # Each over 0-9.
  sum: int
  sum_probability: float
  sum_probabilities: Tuple[float, ...]  # Over the sums 0-18.


def load_config(workdir):
  """The training config saved in WORKDIR/config.json, checked (without JAX devices)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise UserError(f"{workdir} has no {CONFIG_FILE}; is it a training workdir?")
  try:
    with open(path) as f:
      config = ml_collections.ConfigDict(json.load(f))
  except (OSError, ValueError) as e:
    raise UserError(f"cannot read the training config {path} ({e}).") from e
  # A config without data.pairing trained with its default, a fresh pairing each epoch.
  if "data" in config and "pairing" not in config.data:
    config.data.pairing = "fresh"
  try:
    config_checks.validate(config)
  except (AttributeError, KeyError, TypeError) as e:
    raise UserError(f"{path} is not a training config of this version of adder_jax ({e}); "
                    "retrain in a new workdir.") from e
  return config


def check_has_checkpoint(workdir):
  """Raises a UserError unless `workdir` holds at least one checkpoint."""
  if not os.path.isdir(workdir):
    raise UserError(f"workdir {workdir} does not exist.")
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory) or not any(name.isdigit() for name in os.listdir(directory)):
    raise UserError(f"workdir {workdir} has no checkpoint; train a model there first "
                    f"(python -m adder_jax.main --config CONFIG --workdir {workdir}).")


def restore_variables(workdir, task, mesh):
  """The step and the model variables ({'params', 'batch_stats', 'ema'}, models.py) of
  the newest checkpoint in `workdir` that restores (damaged ones are skipped with a
  warning, see checkpointing.py), replicated over `mesh`. The optimizer's state is not
  read.

  Args:
    workdir: a training workdir with at least one checkpoint.
    task: the `tasks` task of the workdir's config.
    mesh: the devices to place the variables on.

  Raises:
    UserError: the checkpoint does not fit the task's config, or none restores.
  """
  abstract = models.abstract_variables(task.create_model(), task.example_inputs(),
                                       ema=task.config.ema_decay > 0)
  checkpointer = checkpointing.Checkpointer(workdir)
  try:
    restored = checkpointer.restore(
        {"model": checkpointing.restore_target(abstract, sharding.replicated(mesh))})
  finally:
    checkpointer.close()
  if restored is None:
    raise UserError(f"workdir {workdir} has no checkpoint that orbax lists; train a model "
                    "there first.")
  step, items = restored
  return step, items["model"]


class Predictor:
  """The model and variables of the latest checkpoint in a workdir."""

  def __init__(self, workdir, uses=("predict", "predict_pairs"), user="a Predictor"):
    """Loads the run in `workdir`, refused before its checkpoint is read unless its task
    has one of `uses` (`tasks.USES`; `user`, named in the error, needs them)."""
    workdir = os.path.abspath(workdir)
    check_has_checkpoint(workdir)
    self.workdir = workdir
    self.config = load_config(workdir)
    tasks.check_use(self.config, workdir, uses, user)
    self.task = tasks.create_task(self.config)
    self.model = self.task.create_model()
    self._mesh = sharding.create_mesh()
    self.step, variables = restore_variables(workdir, self.task, self._mesh)
    self._params, self._batch_stats = models.evaluation_variables(variables)
    self._compiled = {}

  def predict(self, images, numbers):
    """Reads the digit in each image and adds its number.

    Args:
      images: uint8 [N, 28, 28], MNIST style (white digit on black, centred).
      numbers: an int 0-9 for every image, or a sequence of N of them.

    Returns:
      A list of N `Prediction`s.
    """
    tasks.check_use(self.config, self.workdir, ("predict",), "predict")
    images = _check_images(images)
    count = len(images)
    numbers = check_numbers(numbers, count)
    # A batch must split evenly over the devices.
    padded = -count % self._mesh.size
    out = self._run(evaluation.predict, np.pad(images, ((0, padded), (0, 0), (0, 0))),
                    np.pad(numbers, (0, padded)))
    digit_probabilities = _softmax(out["digit_logits"][:count])
    sum_probabilities = _softmax(out["sum_logits"][:count])
    predictions = []
    for number, digit_p, sum_p in zip(numbers, digit_probabilities, sum_probabilities):
      predictions.append(Prediction(
          image=None, number=int(number),
          digit=int(digit_p.argmax()), digit_probability=float(digit_p.max()),
          sum=int(sum_p.argmax()), sum_probability=float(sum_p.max()),
          digit_probabilities=tuple(float(p) for p in digit_p),
          sum_probabilities=tuple(float(p) for p in sum_p)))
    return predictions

  def predict_pairs(self, first_images, second_images):
    """Reads the digits of a two-image model's pairs and adds them.

    Args:
      first_images, second_images: uint8 [N, 28, 28] each, MNIST style; pair i is
        (first_images[i], second_images[i]).

    Returns:
      A list of N `PairPrediction`s.
    """
    tasks.check_use(self.config, self.workdir, ("predict_pairs",), "predict_pairs")
    first_images, second_images = _check_images(first_images), _check_images(second_images)
    if first_images.shape != second_images.shape:
      raise UserError(f"got {len(first_images)} first and {len(second_images)} second images.")
    count = len(first_images)
    # Image 2i and 2i + 1 make pair i; a batch must split evenly over the devices.
    images = np.stack([first_images, second_images], axis=1).reshape(2 * count, *IMAGE_SHAPE)
    padded = -2 * count % self._mesh.size
    out = self._run(evaluation.predict_two_images,
                    np.pad(images, ((0, padded), (0, 0), (0, 0))),
                    np.arange(2 * count, dtype=np.int32).reshape(count, 2))
    digit_probabilities = _softmax(out["digit_logits"][:2 * count]).reshape(count, 2, -1)
    sum_probabilities = _softmax(out["sum_logits"])
    return [PairPrediction(
        digits=tuple(int(p.argmax()) for p in digit_p),
        digit_probabilities=tuple(tuple(float(x) for x in p) for p in digit_p),
        sum=int(sum_p.argmax()), sum_probability=float(sum_p.max()),
        sum_probabilities=tuple(float(p) for p in sum_p))
            for digit_p, sum_p in zip(digit_probabilities, sum_probabilities)]

  def _run(self, predict, images, *inputs):
    """`evaluation.predict` or `predict_two_images` on `images` (a multiple of the
    device count), compiled once per function and input shapes."""
    key = (predict, images.shape, *(x.shape for x in inputs))
    if key not in self._compiled:
      self._compiled[key] = jax.jit(functools.partial(
          predict, model=self.model, batch_size=len(images),
          batch_sharding=sharding.batch_sharded(self._mesh)))
    return jax.device_get(self._compiled[key](self._params, self._batch_stats, images,
                                              *inputs))

  def predict_files(self, paths, numbers, save_preprocessed=None):
    """`predict` on image files (PNG, JPEG or BMP), preprocessed as MNIST was.

    Args:
      paths: image file paths (or one path).
      numbers: the number 0-9 to add, one for all images or one per image.
      save_preprocessed: a directory (made if missing) to write each image's 28x28
        network input to, as INDEX_NAME.png (replacing a file of that name), to see
        what the network saw; None writes nothing.

    Returns:
      A `Prediction` per path, in order; those of files that cannot be read carry
      their `error` and no digit.
    """
    tasks.check_use(self.config, self.workdir, ("predict",), "predict")
    paths = image_files.path_list(paths)
    numbers = check_numbers(numbers, len(paths))
    saved = image_files.preprocessed_paths(paths, save_preprocessed) if save_preprocessed else None
    digits = image_files.read_digits(paths)
    readable = [i for i, digit in enumerate(digits) if not isinstance(digit, UserError)]
    results = [Prediction(image=path, number=int(number),
                          error=str(digit) if isinstance(digit, UserError) else None)
               for path, number, digit in zip(paths, numbers, digits)]
    if not readable:
      return results
    if saved:
      for i in readable:
        image_files.save_png(digits[i], saved[i])
    predictions = self.predict(np.stack([digits[i] for i in readable]), numbers[readable])
    for i, prediction in zip(readable, predictions):
      results[i] = dataclasses.replace(prediction, image=paths[i],
                                       preprocessed_file=saved[i] if saved else None)
    return results


def predict_files(workdir, paths, numbers, save_preprocessed=None):
  """Loads the model trained in `workdir` and predicts on the image files at `paths`:
  `Predictor.predict_files`, whose arguments and result it shares."""
  paths = image_files.path_list(paths)
  check_numbers(numbers, len(paths))  # Before the model loads, so a typo fails fast.
  return Predictor(workdir, ("predict",), "predict").predict_files(
      paths, numbers, save_preprocessed)


def _check_images(images):
  """`images` as uint8 [N, 28, 28], N >= 1."""
  images = np.asarray(images, np.uint8)
  if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
    raise UserError(f"images must have shape [N, 28, 28], got {list(images.shape)}.")
  if not len(images):
    raise UserError("no image given.")
  return images


def _softmax(logits):
  return np.asarray(jax.nn.softmax(logits))


def check_numbers(numbers, count):
  """`numbers` (one int, or `count` of them) as int32 [count], each checked to be 0-9."""
  values = np.asarray(numbers).reshape(-1)
  if values.size not in (1, count):
    raise UserError(f"got {values.size} numbers for {count} images; "
                    "give one number for all images or one per image.")
  if not np.issubdtype(values.dtype, np.integer):
    raise UserError(f"numbers must be integers from 0 to 9, got {numbers!r}.")
  outside = values[(values < 0) | (values >= NUM_DIGITS)]
  if outside.size:
    raise UserError(f"the number must be from 0 to 9, got {outside[0]}.")
  return np.broadcast_to(values.astype(np.int32), (count,)).copy()
