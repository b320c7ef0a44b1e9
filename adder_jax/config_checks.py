"""Checks of a training config, so a bad value fails at start with one clear line."""

import math

from adder_jax import input_pipeline, models, optimizers, steps, tasks
from adder_jax.errors import UserError


def _positive(value, name, kind=(int, float)):
  if (isinstance(value, bool) or not isinstance(value, kind) or not value > 0
      or not math.isfinite(value)):
    raise UserError(f"config.{name} must be a positive number, got {value!r}.")


def _one_of(value, name, choices):
  if value not in choices:
    raise UserError(f"config.{name} {value!r} is unknown; choose one of {', '.join(choices)}.")


def validate(config, num_devices):
  """Raises UserError for the first bad value; batches must split evenly over devices."""
  _positive(config.num_epochs, "num_epochs", int)
  for name in ("batch_size", "eval_batch_size"):
    _positive(config[name], name, int)
    if config[name] % num_devices:
      raise UserError(f"config.{name}={config[name]} does not divide by the {num_devices} "
                      f"devices; choose a multiple of {num_devices}.")
  _positive(config.steps_per_chunk, "steps_per_chunk", int)
  _positive(config.optimizer.learning_rate, "optimizer.learning_rate")
  if config.optimizer.name not in optimizers.OPTIMIZERS:
    raise UserError(f"config.optimizer.name {config.optimizer.name!r} is unknown; "
                    f"choose one of {', '.join(optimizers.OPTIMIZERS)}.")
  if config.optimizer.schedule not in optimizers.SCHEDULES:
    raise UserError(f"config.optimizer.schedule {config.optimizer.schedule!r} is unknown; "
                    f"choose one of {', '.join(optimizers.SCHEDULES)}.")
  if not 0.0 <= config.optimizer.warmup_fraction < 1.0:
    raise UserError("config.optimizer.warmup_fraction must be in [0, 1), "
                    f"got {config.optimizer.warmup_fraction!r}.")
  if not 0.0 <= config.model.dropout_rate < 1.0:
    raise UserError(f"config.model.dropout_rate must be in [0, 1), got {config.model.dropout_rate!r}.")
  try:
    models.parse_conv_layers(config.model.conv_layers)
  except ValueError as e:
    raise UserError(f"config.model.conv_layers: {e}.") from e
  if config.model.sum_head_input not in ("probabilities", "logits"):
    raise UserError("config.model.sum_head_input must be 'probabilities' or 'logits', "
                    f"got {config.model.sum_head_input!r}.")
  if config.model.dtype not in ("float32", "bfloat16"):
    raise UserError(f"config.model.dtype must be 'float32' or 'bfloat16', got {config.model.dtype!r}.")
  for name in ("digit_weight", "sum_weight"):
    if config.loss[name] < 0:
      raise UserError(f"config.loss.{name} must be >= 0, got {config.loss[name]!r}.")
  _one_of(config.task, "task", tuple(tasks.TASKS))
  _one_of(config.supervision, "supervision", steps.SUPERVISIONS)
  _one_of(config.model.sum_head, "model.sum_head", models.SUM_HEADS)
  supervised = {"sum_only": "sum_weight", "digit_only": "digit_weight"}.get(config.supervision)
  if supervised and config.loss[supervised] <= 0:
    raise UserError(f"config.supervision={config.supervision!r} trains on config.loss."
                    f"{supervised} alone, which is {config.loss[supervised]!r}; make it positive.")
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
