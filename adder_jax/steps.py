"""Pure functions of the training state: its initialisation, the loss, one train step
and a scanned chunk of steps. Nothing here touches the host.

A batch is a dict of 'inputs' (the model's keyword arguments), 'label' (the digit of
every image) and 'sum' (the target of every example); each task's `gather`
(tasks.py) builds it.
"""

import dataclasses
import functools
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from adder_jax import models


class TrainState(flax.struct.PyTreeNode):
  """Everything a run needs to continue, and the functions that apply the model and
  the optimizer (static, as in flax.training.train_state.TrainState)."""

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
  # The sums of the objective's metrics over the epoch's steps so far (EPOCH_TOTALS),
  # checkpointed with the rest, so that an epoch resumed in its middle reports the
  # same training metrics as an unbroken one.
  epoch_totals: Any
  apply_fn: Callable = flax.struct.field(pytree_node=False)  # The model's `apply`.
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  def model_variables(self):
    """What a trained model is: {'params', 'batch_stats', 'ema'} (models.py)."""
    return {"params": self.params, "batch_stats": self.batch_stats, "ema": self.ema}

  def checkpoint_items(self):
    """The state as a checkpoint's items: 'model', the model's variables, which
    evaluation and prediction restore alone; and 'training', the rest of what resuming
    needs. The step is the checkpoint's label."""
    return {"model": self.model_variables(),
            "training": {"opt_state": self.opt_state, "rng": self.rng,
                         "epoch_totals": self.epoch_totals}}

  def replace_items(self, step, items):
    """This state with the `step` and the `checkpoint_items` `items`."""
    return self.replace(step=step, **items["model"], **items["training"])


# The metrics every objective returns (objectives.py), and the dtype of their sums.
EPOCH_TOTALS = {"loss": jnp.float32, "digit_correct": jnp.int32, "digits": jnp.int32,
                "sum_correct": jnp.int32, "sums": jnp.int32}


def zero_totals():
  return {name: jnp.zeros((), dtype) for name, dtype in EPOCH_TOTALS.items()}


def init_state(model, tx, rng, inputs, ema=False):
  """Initialises parameters and optimizer state; `jax.eval_shape` of it is cheap.

  Args:
    inputs: example model inputs (their shapes matter, not their values), e.g. the
      'inputs' of a batch.
    ema: whether to keep moving averages of the parameters (they start equal to them).
  """
  init_rng, train_rng = jax.random.split(rng)
  variables = models.init_variables(model, init_rng, inputs)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      **variables,
      opt_state=tx.init(variables["params"]),
      rng=jax.random.key_data(train_rng),
      ema=dict(variables) if ema else {},
      epoch_totals=zero_totals(),
      apply_fn=model.apply,
      tx=tx,
  )


def abstract_state(model, tx, inputs, ema=False):
  """The shapes and dtypes of `init_state`'s TrainState, computed without initialising."""
  return jax.eval_shape(functools.partial(init_state, model, tx, inputs=inputs, ema=ema),
                        jax.random.key(0))


@dataclasses.dataclass(frozen=True)
class Recipe:
  """What a run's steps do besides applying the model and the optimizer; static.

  Attributes:
    objective: the task's (model outputs, batch) -> (loss, metrics), objectives.py.
    gather: the task's gather of a batch of its epoch plan, (train images, train
      labels, plan, indices) -> batch.
    batch_sharding: how each batch is laid out over the devices.
    augment: None, or (key, images) -> images that transforms every training image of
      a batch (`augment.from_config`).
    ema_decay: > 0 keeps moving averages of the parameters and BatchNorm statistics:
      average <- ema_decay * average + (1 - ema_decay) * new value, every step.
    chunk_steps: the steps `train_chunk` runs.
  """

  objective: Callable
  gather: Callable
  batch_sharding: Any
  augment: Optional[Callable] = None
  ema_decay: float = 0.0
  chunk_steps: int = 1


def loss_and_metrics(params, state, batch, dropout_rng, objective):
  """The task's `objective` of the model's training-mode outputs on `batch`.

  Returns:
    The loss and (metrics, the updated BatchNorm statistics). The metrics are per
    example, not summed here: a sum over the sharded batch would make the devices meet
    in the middle of every step, while the chunk's sums meet once per chunk.
  """
  variables = {"params": params}
  mutable = []
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
    mutable = ["batch_stats"]
  outputs, updates = state.apply_fn(
      variables, **batch["inputs"], train=True, rngs={"dropout": dropout_rng}, mutable=mutable)
  loss, metrics = objective(outputs, batch)
  return loss, (metrics, updates.get("batch_stats", state.batch_stats))


def step_key(state):
  """The key of the state's step, fold_in(rng, step): the same at any resumed step."""
  return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)


# fold_in(step_key, AUGMENT_STREAM) draws the step's image transforms; the step key
# itself draws its dropout.
AUGMENT_STREAM = 1


def train_step(state, batch, recipe):
  """One optimizer step on one batch; returns the new state and the step's metrics."""
  grad_fn = jax.grad(loss_and_metrics, has_aux=True)
  grads, (metrics, batch_stats) = grad_fn(state.params, state, batch, step_key(state),
                                          recipe.objective)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(
      step=state.step + 1,
      params=optax.apply_updates(state.params, updates),
      batch_stats=batch_stats,
      opt_state=opt_state,
  )
  if recipe.ema_decay:
    new_state = new_state.replace(ema=optax.incremental_update(
        {"params": new_state.params, "batch_stats": new_state.batch_stats}, state.ema,
        step_size=1.0 - recipe.ema_decay))
  return new_state, metrics


def train_chunk(state, train_data, plan, chunk_start, recipe):
  """`recipe.chunk_steps` train steps as one `lax.scan`, over batches chunk_start,
  chunk_start + 1, ... of the epoch.

  Args:
    state: TrainState.
    train_data: (images, labels), the whole training set, resident on the devices.
    plan: this epoch's plan (the task's `epoch_plan`), whose 'batch_indices' has one
      row of indices per batch.
    chunk_start: index of the chunk's first batch in the epoch.
    recipe: static, a `Recipe`.

  Returns:
    The new state, whose `epoch_totals` include the chunk's (and start afresh at
    chunk_start 0), and the chunk's summed metrics ('loss' is a sum of per-step means).
  """
  chunk = jax.lax.dynamic_slice_in_dim(plan["batch_indices"], chunk_start, recipe.chunk_steps)

  def body(state, indices):
    # Split over the devices before the gather, so each device (and so each process)
    # gathers only its own slice of the global batch from the replicated dataset.
    indices = jax.lax.with_sharding_constraint(indices, recipe.batch_sharding)
    batch = recipe.gather(*train_data, plan, indices)
    if recipe.augment is not None:
      key = jax.random.fold_in(step_key(state), AUGMENT_STREAM)
      batch["inputs"]["images"] = recipe.augment(key, batch["inputs"]["images"])
    return train_step(state, batch, recipe)

  state, metrics = jax.lax.scan(body, state, chunk)
  sums = {name: jnp.sum(metrics[name]).astype(dtype) for name, dtype in EPOCH_TOTALS.items()}
  previous = jax.tree.map(lambda total: jnp.where(chunk_start == 0, 0, total),
                          state.epoch_totals)
  return state.replace(epoch_totals=jax.tree.map(jnp.add, previous, sums)), sums
