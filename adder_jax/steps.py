"""Pure functions of the training state: its initialisation, the loss, one train step
and a scanned chunk of steps. Nothing here touches the host.

A batch is a dict of 'inputs' (the model's keyword arguments), 'label' (the digit of
every image) and 'sum' (the target of every example); each task's `gather`
(tasks.py) builds it.
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from adder_jax import long_addition


class TrainState(flax.struct.PyTreeNode):
  """Everything a run needs to continue: a plain pytree, saved whole in checkpoints."""

  step: jax.Array  # int32 scalar: optimizer steps taken.
  params: Any
  batch_stats: Any  # BatchNorm running statistics ({} without BatchNorm).
  opt_state: Any
  # Raw uint32 key data of the run's training key. Step `s` draws from
  # fold_in(rng, s), so no key needs to be carried from step to step.
  rng: jax.Array
  # The exponential moving averages of params and batch_stats, {'params': ...,
  # 'batch_stats': ...}, when the run keeps them (config.ema_decay > 0); {} otherwise.
  ema: Any


def init_state(model, tx, rng, inputs, ema=False):
  """Initialises parameters and optimizer state; `jax.eval_shape` of it is cheap.

  Args:
    inputs: example model inputs (their shapes matter, not their values), e.g. the
      'inputs' of a batch.
    ema: whether to keep moving averages of the parameters (they start equal to them).
  """
  init_rng, train_rng = jax.random.split(rng)
  variables = model.init({"params": init_rng, "dropout": init_rng}, **inputs, train=False)
  params = variables["params"]
  batch_stats = variables.get("batch_stats", {})
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=batch_stats,
      opt_state=tx.init(params),
      rng=jax.random.key_data(train_rng),
      ema={"params": params, "batch_stats": batch_stats} if ema else {},
  )


def abstract_state(model, tx, inputs, ema=False):
  """The shapes and dtypes of `init_state`'s TrainState, computed without initialising."""
  return jax.eval_shape(functools.partial(init_state, model, tx, inputs=inputs, ema=ema),
                        jax.random.key(0))


def eval_variables(state):
  """(params, batch_stats) to evaluate and predict with: the moving averages if the state
  keeps them, else the trained values."""
  if state.ema:
    return state.ema["params"], state.ema["batch_stats"]
  return state.params, state.batch_stats


def cross_entropy(logits, labels, label_smoothing=0.0):
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


SUPERVISIONS = ("both", "sum_only", "digit_only")


def supervised_loss_config(loss_config, supervision):
  """`loss_config` with the weight of the unsupervised target set to 0.

  'sum_only' trains on the sum alone and 'digit_only' on the digit alone; the other
  target's accuracy is still measured.
  """
  loss_config = loss_config.copy_and_resolve_references()
  if supervision == "sum_only":
    loss_config.digit_weight = 0.0
  elif supervision == "digit_only":
    loss_config.sum_weight = 0.0
  elif supervision != "both":
    raise ValueError(f"unknown supervision {supervision!r}; choose one of {SUPERVISIONS}")
  return loss_config


def loss_and_metrics(params, state, batch, dropout_rng, model, objective):
  """The task's objective of the model's training-mode outputs on `batch`.

  Args:
    objective: static, a function (model outputs, batch) -> (loss, metrics), such as
      `cross_entropy_objective(loss_config)` or `sum_likelihood_objective`.

  Returns:
    The loss and (metrics, the updated BatchNorm statistics). The metrics mark each
    example's digits and sum right (1) or wrong (0), and count the batch's digits and
    sums; `train_chunk` adds them up. Per example, not summed here: a sum over the
    sharded batch would make the devices meet in the middle of every step, while the
    chunk's sums meet once per chunk.
  """
  variables = {"params": params}
  mutable = []
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
    mutable = ["batch_stats"]
  outputs, updates = model.apply(
      variables, **batch["inputs"], train=True, rngs={"dropout": dropout_rng}, mutable=mutable)
  loss, metrics = objective(outputs, batch)
  return loss, (metrics, updates.get("batch_stats", state.batch_stats))


def cross_entropy_objective(loss_config):
  """The objective of the one-digit tasks: the weighted sum of the digit and sum
  cross-entropies of (digit logits, sum logits), averaged over the batch."""

  def objective(outputs, batch):
    digit_logits, sum_logits = outputs
    digit_loss = cross_entropy(digit_logits, batch["label"], loss_config.label_smoothing).mean()
    sum_loss = cross_entropy(sum_logits, batch["sum"], loss_config.label_smoothing).mean()
    loss = loss_config.digit_weight * digit_loss + loss_config.sum_weight * sum_loss
    return loss, {
        "loss": loss,
        "digit_correct": (jnp.argmax(digit_logits, -1) == batch["label"]).astype(jnp.int32),
        "sum_correct": (jnp.argmax(sum_logits, -1) == batch["sum"]).astype(jnp.int32),
        "digits": jnp.int32(batch["label"].size),
        "sums": jnp.int32(batch["sum"].size),
    }

  return objective


def sum_likelihood_objective(outputs, batch):
  """The objective of the multi-digit task: the negative log-likelihood of the sum
  (`long_addition.sum_log_likelihood`), averaged over the batch. The digit labels only
  score the digits; they take no part in the loss.

  Args:
    outputs: digit logits [B, 2, N, 10] of the two numbers of each example.
    batch: 'label' int [B, 2, N] the digits, 'sum' int [B, N + 1] the sum's digits.
  """
  log_p = jax.nn.log_softmax(outputs)
  loss = -long_addition.sum_log_likelihood(log_p[:, 0], log_p[:, 1], batch["sum"]).mean()
  predicted = jnp.argmax(outputs, -1).astype(batch["sum"].dtype)
  predicted_sum = long_addition.add(predicted[:, 0], predicted[:, 1])
  return loss, {
      "loss": loss,
      "digit_correct": (predicted == batch["label"]).astype(jnp.int32),
      "sum_correct": jnp.all(predicted_sum == batch["sum"], -1).astype(jnp.int32),
      "digits": jnp.int32(batch["label"].size),
      "sums": jnp.int32(batch["sum"].shape[0]),
  }


def step_key(state):
  """The key of the state's step, fold_in(rng, step): the same at any resumed step."""
  return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)


# fold_in(step_key, AUGMENT_STREAM) draws the step's image transforms; the step key
# itself draws its dropout.
AUGMENT_STREAM = 1


def train_step(state, batch, model, tx, objective, ema_decay=0.0):
  """One optimizer step on one batch; returns the new state and the step's metrics.

  With `ema_decay` > 0 the state's moving averages become ema_decay * average +
  (1 - ema_decay) * the new value, for the parameters and the BatchNorm statistics.
  """
  dropout_rng = step_key(state)
  grad_fn = jax.grad(loss_and_metrics, has_aux=True)
  grads, (metrics, batch_stats) = grad_fn(state.params, state, batch, dropout_rng, model, objective)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(
      step=state.step + 1,
      params=optax.apply_updates(state.params, updates),
      batch_stats=batch_stats,
      opt_state=opt_state,
  )
  if ema_decay:
    new_state = new_state.replace(ema=optax.incremental_update(
        {"params": new_state.params, "batch_stats": new_state.batch_stats}, state.ema,
        step_size=1.0 - ema_decay))
  return new_state, metrics


def train_chunk(state, train_images, train_labels, plan, chunk_start, *,
                num_steps, model, tx, objective, batch_sharding, gather, augment=None,
                ema_decay=0.0):
  """`num_steps` train steps as one `lax.scan`, over batches chunk_start, chunk_start + 1, ...

  Args:
    state: TrainState.
    train_images, train_labels: the whole training set, resident on the devices.
    plan: this epoch's plan (the task's `epoch_plan`), whose 'batch_indices' has one
      row of indices per batch.
    chunk_start: index of the chunk's first batch in the epoch.
    num_steps: static chunk length.
    model, tx, objective: static (see `loss_and_metrics`).
    batch_sharding: how each batch is laid out over the devices.
    gather: static, the task's `gather` of a batch of the plan.
    augment: static, None or a function (key, images) -> images that transforms every
      training image of a batch (`augment.from_config`).
    ema_decay: static, see `train_step`.

  Returns:
    The new state and the chunk's summed metrics ('loss' is a sum of per-step means).
  """
  chunk = jax.lax.dynamic_slice_in_dim(plan["batch_indices"], chunk_start, num_steps)

  def body(state, indices):
    # Split over the devices before the gather, so each device (and so each process)
    # gathers only its own slice of the global batch from the replicated dataset.
    indices = jax.lax.with_sharding_constraint(indices, batch_sharding)
    batch = gather(train_images, train_labels, plan, indices)
    if augment is not None:
      key = jax.random.fold_in(step_key(state), AUGMENT_STREAM)
      batch["inputs"]["images"] = augment(key, batch["inputs"]["images"])
    return train_step(state, batch, model, tx, objective, ema_decay)

  state, metrics = jax.lax.scan(body, state, chunk)
  return state, jax.tree.map(jnp.sum, metrics)
