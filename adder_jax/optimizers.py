"""The optax optimizer and learning-rate schedule named by the config."""

import optax

from adder_jax import config_checks

SCHEDULES = ("constant", "warmup_cosine", "onecycle")
OPTIMIZERS = ("adam", "adamw", "sgd", "lamb")


def learning_rate_schedule(optimizer_config, total_steps):
  """Returns an optax schedule over `total_steps` training steps."""
  name = optimizer_config.schedule
  peak = optimizer_config.learning_rate
  warmup_steps = int(optimizer_config.warmup_fraction * total_steps)
  if name == "constant":
    return optax.constant_schedule(peak)
  if name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak, warmup_steps=warmup_steps, decay_steps=total_steps,
        end_value=peak * optimizer_config.final_lr_fraction)
  if name == "onecycle":
    initial_divisor = optimizer_config.onecycle_initial_divisor
    return optax.cosine_onecycle_schedule(
        transition_steps=total_steps, peak_value=peak,
        pct_start=optimizer_config.warmup_fraction, div_factor=initial_divisor,
        final_div_factor=1.0 / (optimizer_config.final_lr_fraction * initial_divisor))
  raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")


def create_optimizer(optimizer_config, total_steps):
  """Returns (optax.GradientTransformation, schedule)."""
  schedule = learning_rate_schedule(optimizer_config, total_steps)
  name = optimizer_config.name
  b1, b2 = optimizer_config.b1, optimizer_config.b2
  if name == "adam":
    tx = optax.adam(schedule, b1=b1, b2=b2)
  elif name == "adamw":
    tx = optax.adamw(schedule, b1=b1, b2=b2, weight_decay=optimizer_config.weight_decay)
  elif name == "lamb":
    tx = optax.lamb(schedule, b1=b1, b2=b2, weight_decay=optimizer_config.weight_decay)
  elif name == "sgd":
    tx = optax.sgd(schedule, momentum=b1, nesterov=True)
  else:
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
  return tx, schedule


def check_config(optimizer_config):
  """Raises UserError for the first bad value of `config.optimizer`."""
  config_checks.positive(optimizer_config.learning_rate, "optimizer.learning_rate")
  config_checks.one_of(optimizer_config.name, "optimizer.name", OPTIMIZERS)
  config_checks.one_of(optimizer_config.schedule, "optimizer.schedule", SCHEDULES)
  config_checks.fraction(optimizer_config.warmup_fraction, "optimizer.warmup_fraction")
