"""A trained model read back from its workdir, to predict outside training.

`Predictor(workdir)` loads WORKDIR/config.json and the latest checkpoint; its
`predict` reads the digit in 28x28 images and adds numbers to it, and `predict_files`
does the same for image files, preprocessed as MNIST was (see preprocess.py). In a
notebook:

  from adder_jax import inference
  predictions = inference.predict_files("/tmp/workdir", ["seven.png"], numbers=3)
  predictions[0].digit, predictions[0].sum
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
from adder_jax import optimizers
from adder_jax import preprocess
from adder_jax import sharding
from adder_jax import steps
from adder_jax import tasks
from adder_jax.constants import IMAGE_SHAPE, NUM_DIGITS
from adder_jax.errors import UserError

CONFIG_FILE = "config.json"


@dataclasses.dataclass(frozen=True)
class Prediction:
  """What the model reads in one image, and the sum it makes with `number`."""

  image: Optional[str]  # The file it was read from, if any.
  number: int
  digit: int
  digit_probability: float
  sum: int
  sum_probability: float
  digit_probabilities: Tuple[float, ...]  # Over the digits 0-9.
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
  try:
    config_checks.validate(config)
  except (AttributeError, KeyError, TypeError) as e:
    raise UserError(f"{path} is not a training config written by adder_jax ({e}).") from e
  return config


def check_image_plus_number(config, workdir):
  """Raises a UserError unless `config` trains on one image plus a number."""
  if config.task != "image_plus_number":
    raise UserError(f"{workdir} was trained on the {config.task!r} task; predict and "
                    "evaluate read image + number runs.")


def check_has_checkpoint(workdir):
  """Raises a UserError unless `workdir` holds at least one checkpoint."""
  if not os.path.isdir(workdir):
    raise UserError(f"workdir {workdir} does not exist.")
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory) or not any(name.isdigit() for name in os.listdir(directory)):
    raise UserError(f"workdir {workdir} has no checkpoint; train a model there first "
                    f"(python -m adder_jax.main --config CONFIG --workdir {workdir}).")


def restore_latest(workdir, task, mesh):
  """The TrainState of the newest checkpoint in `workdir` that restores (damaged ones
  are skipped with a warning, see checkpointing.py), replicated over `mesh`.

  Args:
    workdir: a training workdir with at least one checkpoint.
    task: the `tasks` task of the workdir's config.
    mesh: the devices to place the state on.

  Raises:
    UserError: the checkpoint does not fit the task's config, or none restores.
  """
  # The optimizer only shapes the restored state: its state's structure does not
  # depend on the schedule's length, so any step count will do.
  tx, _ = optimizers.create_optimizer(task.config.optimizer, total_steps=1)
  abstract_state = steps.abstract_state(task.create_model(), tx, task.example_inputs())
  checkpointer = checkpointing.Checkpointer(workdir)
  try:
    return checkpointer.restore(abstract_state, sharding.replicated(mesh))
  finally:
    checkpointer.close()


class Predictor:
  """The model and variables of the latest checkpoint in a workdir."""

  def __init__(self, workdir):
    workdir = os.path.abspath(workdir)
    check_has_checkpoint(workdir)
    self.config = load_config(workdir)
    check_image_plus_number(self.config, workdir)
    task = tasks.create_task(self.config)
    self.model = task.create_model()
    self._mesh = sharding.create_mesh()
    state = restore_latest(workdir, task, self._mesh)
    self.step = int(jax.device_get(state.step))
    self._params, self._batch_stats = state.params, state.batch_stats
    self._compiled = {}

  def predict(self, images, numbers):
    """Reads the digit in each image and adds its number.

    Args:
      images: uint8 [N, 28, 28], MNIST style (white digit on black, centred).
      numbers: an int 0-9 for every image, or a sequence of N of them.

    Returns:
      A list of N `Prediction`s.
    """
    images = np.asarray(images, np.uint8)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
      raise UserError(f"images must have shape [N, 28, 28], got {list(images.shape)}.")
    count = len(images)
    if not count:
      raise UserError("no image given.")
    numbers = check_numbers(numbers, count)
    # A batch must split evenly over the devices.
    padded = -count % self._mesh.size
    batch = count + padded
    if batch not in self._compiled:
      self._compiled[batch] = jax.jit(functools.partial(
          evaluation.predict, model=self.model, batch_size=batch,
          batch_sharding=sharding.batch_sharded(self._mesh)))
    out = jax.device_get(self._compiled[batch](
        self._params, self._batch_stats, np.pad(images, ((0, padded), (0, 0), (0, 0))),
        np.pad(numbers, (0, padded))))
    digit_probabilities = np.asarray(jax.nn.softmax(out["digit_logits"][:count]))
    sum_probabilities = np.asarray(jax.nn.softmax(out["sum_logits"][:count]))
    predictions = []
    for number, digit_p, sum_p in zip(numbers, digit_probabilities, sum_probabilities):
      predictions.append(Prediction(
          image=None, number=int(number),
          digit=int(digit_p.argmax()), digit_probability=float(digit_p.max()),
          sum=int(sum_p.argmax()), sum_probability=float(sum_p.max()),
          digit_probabilities=tuple(float(p) for p in digit_p),
          sum_probabilities=tuple(float(p) for p in sum_p)))
    return predictions

  def predict_files(self, paths, numbers):
    """`predict` on image files (PNG, JPEG or BMP), preprocessed as MNIST was."""
    paths = list(paths)
    check_numbers(numbers, len(paths))
    return _with_paths(self.predict(load_digits(paths), numbers), paths)


def predict_files(workdir, paths, numbers):
  """Loads the model trained in `workdir` and predicts on the image files at `paths`.

  Args:
    workdir: a training workdir (config.json and checkpoints).
    paths: image file paths.
    numbers: the number 0-9 to add, one for all images or one per image.

  Returns:
    A list of `Prediction`s, one per path.
  """
  paths = list(paths)
  check_numbers(numbers, len(paths))
  # The files are read before the model, so a bad file fails fast.
  images = load_digits(paths)
  return _with_paths(Predictor(workdir).predict(images, numbers), paths)


def load_digits(paths):
  """uint8 [N, 28, 28]: the image files at `paths`, preprocessed as MNIST was."""
  if not paths:
    raise UserError("no image given.")
  return np.stack([preprocess.load_digit(path) for path in paths])


def _with_paths(predictions, paths):
  return [dataclasses.replace(p, image=path) for p, path in zip(predictions, paths)]


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
