"""Checks of a config, so a bad value fails at start with one clear line.

`validate` checks every section but two that training alone reads, the optimizer and
the gradient kernels: `train.check_config` adds those, so that using a trained model
imports no training code.
"""

import math

from adder_jax import models, objectives, pairing, tasks
from adder_jax.errors import UserError


def positive(value, name, kind=(int, float)):
  if (isinstance(value, bool) or not isinstance(value, kind) or not value > 0
      or not math.isfinite(value)):
    raise UserError(f"config.{name} must be a positive number, got {value!r}.")


def one_of(value, name, choices):
  if value not in choices:
    raise UserError(f"config.{name} {value!r} is unknown; choose one of {', '.join(choices)}.")


def in_range(value, name, low, high, high_included=True):
  if (isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value
      or not (value <= high if high_included else value < high)):
    bracket = "]" if high_included else ")"
    raise UserError(f"config.{name} must be a number in [{low}, {high}{bracket}, got {value!r}.")


def fraction(value, name):
  """In [0, 1)."""
  in_range(value, name, 0, 1, high_included=False)


def validate(config):
  """Raises UserError for the first bad value. Needs no JAX device."""
  positive(config.num_epochs, "num_epochs", int)
  for name in ("batch_size", "eval_batch_size", "steps_per_chunk"):
    positive(config[name], name, int)
  one_of(config.task, "task", tuple(tasks.TASKS))
  one_of(config.supervision, "supervision", objectives.SUPERVISIONS)
  fraction(config.model.dropout_rate, "model.dropout_rate")
  fraction(config.ema_decay, "ema_decay")
  in_range(config.augment.max_rotation, "augment.max_rotation", 0, 180)
  fraction(config.augment.max_scale, "augment.max_scale")
  in_range(config.augment.max_shift, "augment.max_shift", 0, 14)
  positive(config.model.kernel_size, "model.kernel_size", int)
  for name in ("batch_norm", "zero_init_logits"):
    if not isinstance(config.model[name], bool):
      raise UserError(f"config.model.{name} must be True or False, got "
                      f"{config.model[name]!r}.")
  try:
    models.parse_conv_layers(config.model.conv_layers)
  except ValueError as e:
    raise UserError(f"config.model.conv_layers: {e}.") from e
  one_of(config.model.sum_head, "model.sum_head", models.SUM_HEADS)
  one_of(config.model.sum_head_input, "model.sum_head_input", models.SUM_HEAD_INPUTS)
  one_of(config.model.dtype, "model.dtype", models.DTYPES)
  for name in ("digit_weight", "sum_weight"):
    if config.loss[name] < 0:
      raise UserError(f"config.loss.{name} must be >= 0, got {config.loss[name]!r}.")
  supervised = {"sum_only": "sum_weight", "digit_only": "digit_weight"}.get(config.supervision)
  if supervised and config.loss[supervised] <= 0:
    raise UserError(f"config.supervision={config.supervision!r} trains on config.loss."
                    f"{supervised} alone, which is {config.loss[supervised]!r}; make it positive.")
  size = config.data.validation_size
  if isinstance(size, bool) or not isinstance(size, int) or size < 0:
    raise UserError(f"config.data.validation_size must be a whole number >= 0, got {size!r}.")
  one_of(config.data.pairing, "data.pairing", pairing.PAIRINGS)
  try:
    pairing.allowed_pairs(config.data.holdout_pairs, config.seed)
  except ValueError as e:
    raise UserError(f"config.data.holdout_pairs: {e}.") from e
  tasks.TASKS[config.task].check_config(config)


def check_batches_split(config, num_devices, names=("batch_size", "eval_batch_size")):
  """Raises UserError unless each of the config's batch sizes `names` splits evenly over
  `num_devices` devices."""
  for name in names:
    if config[name] % num_devices:
      raise UserError(f"config.{name}={config[name]} does not divide by the {num_devices} "
                      f"devices; choose a multiple of {num_devices}.")
