"""Checks of a training config, so a bad value fails at start with one clear line."""

import math

from adder_jax import input_pipeline, kernels, models, optimizers, steps, tasks
from adder_jax.errors import UserError


def _positive(value, name, kind=(int, float)):
  if (isinstance(value, bool) or not isinstance(value, kind) or not value > 0
      or not math.isfinite(value)):
    raise UserError(f"config.{name} must be a positive number, got {value!r}.")


def _one_of(value, name, choices):
  if value not in choices:
    raise UserError(f"config.{name} {value!r} is unknown; choose one of {', '.join(choices)}.")


def _in_range(value, name, low, high, high_included=True):
  if (isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value
      or not (value <= high if high_included else value < high)):
    bracket = "]" if high_included else ")"
    raise UserError(f"config.{name} must be a number in [{low}, {high}{bracket}, got {value!r}.")


def _fraction(value, name):
  """In [0, 1)."""
  _in_range(value, name, 0, 1, high_included=False)


def validate(config):
  """Raises UserError for the first bad value. Needs no JAX device."""
  _positive(config.num_epochs, "num_epochs", int)
  for name in ("batch_size", "eval_batch_size", "steps_per_chunk"):
    _positive(config[name], name, int)
  _one_of(config.task, "task", tuple(tasks.TASKS))
  _one_of(config.supervision, "supervision", steps.SUPERVISIONS)
  _one_of(config.gradient_kernels, "gradient_kernels", kernels.GRADIENT_KERNELS)
  _positive(config.optimizer.learning_rate, "optimizer.learning_rate")
  _one_of(config.optimizer.name, "optimizer.name", optimizers.OPTIMIZERS)
  _one_of(config.optimizer.schedule, "optimizer.schedule", optimizers.SCHEDULES)
  _fraction(config.optimizer.warmup_fraction, "optimizer.warmup_fraction")
  _fraction(config.model.dropout_rate, "model.dropout_rate")
  _fraction(config.ema_decay, "ema_decay")
  _in_range(config.augment.max_rotation, "augment.max_rotation", 0, 180)
  _fraction(config.augment.max_scale, "augment.max_scale")
  _in_range(config.augment.max_shift, "augment.max_shift", 0, 14)
  _positive(config.model.get("kernel_size", 3), "model.kernel_size", int)
  try:
    models.parse_conv_layers(config.model.conv_layers)
  except ValueError as e:
    raise UserError(f"config.model.conv_layers: {e}.") from e
  _one_of(config.model.sum_head, "model.sum_head", models.SUM_HEADS)
  _one_of(config.model.sum_head_input, "model.sum_head_input", models.SUM_HEAD_INPUTS)
  _one_of(config.model.dtype, "model.dtype", models.DTYPES)
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
  try:
    holdout = input_pipeline.allowed_pairs(config.data.holdout_pairs, config.seed)
  except ValueError as e:
    raise UserError(f"config.data.holdout_pairs: {e}.") from e
  if holdout is not None and config.task != "image_plus_number":
    raise UserError("config.data.holdout_pairs holds out (digit, number) pairs, so it needs "
                    f"config.task='image_plus_number', not {config.task!r}.")
  if (config.model.sum_head == "exact" and config.task == "image_plus_number"
      and config.loss.label_smoothing > 0):
    raise UserError("config.loss.label_smoothing must be 0 with config.model.sum_head='exact': "
                    "that head gives the sums a number cannot reach probability 0, so smoothed "
                    "targets on them make the loss huge.")
  # A task with settings of its own checks them itself.
  check_task = getattr(tasks.TASKS[config.task], "check_config", None)
  if check_task is not None:
    check_task(config)


def check_batches_split(config, num_devices, names=("batch_size", "eval_batch_size")):
  """Raises UserError unless each of the config's batch sizes `names` splits evenly over
  `num_devices` devices."""
  for name in names:
    if config[name] % num_devices:
      raise UserError(f"config.{name}={config[name]} does not divide by the {num_devices} "
                      f"devices; choose a multiple of {num_devices}.")
