"""Test-set metrics from the logits of `steps.predict`, computed on the host."""

import jax
import numpy as np

from adder_jax import steps


def test_metrics(predictions, labels, numbers, loss_config):
  """Accuracies in percent and the weighted test loss.

  Args:
    predictions: numpy outputs of `steps.predict`, padding already removed.
    labels, numbers: int arrays [N], the digits and their fixed numbers.
  """
  sums = labels + numbers
  digit_loss = steps.cross_entropy(predictions["digit_logits"], labels).mean()
  sum_loss = steps.cross_entropy(predictions["sum_logits"], sums).mean()
  loss = loss_config.digit_weight * digit_loss + loss_config.sum_weight * sum_loss
  every_number = np.arange(predictions["all_sums"].shape[1])
  return {
      "test_loss": float(jax.device_get(loss)),
      "test_digit_accuracy": 100.0 * float(np.mean(predictions["digit_logits"].argmax(-1) == labels)),
      "test_sum_accuracy": 100.0 * float(np.mean(predictions["sum_logits"].argmax(-1) == sums)),
      "test_sum_accuracy_all_pairs": 100.0 * float(
          np.mean(predictions["all_sums"] == labels[:, None] + every_number[None, :])),
  }
