"""The objectives a task trains with: functions (model outputs, batch) -> (loss, metrics).

The one-digit tasks take the weighted cross-entropies of the digit and the sum
(`cross_entropy_objective`); the multi-digit task takes the exact likelihood of the sum
(`sum_likelihood_objective`). The metrics mark each example's digits and sum right (1)
or wrong (0) and count the batch's digits and sums; `steps.train_chunk` adds them up.
"""

import jax
import jax.numpy as jnp
import optax

from adder_jax import long_addition


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
