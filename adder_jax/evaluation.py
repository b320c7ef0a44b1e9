"""Test-set metrics from the logits of `steps.predict`, computed on the host."""

import jax
import numpy as np

from adder_jax import steps


def _percent(correct):
  # NaN for no examples (a tiny test set may hold no held-out pair).
  return 100.0 * float(np.mean(correct)) if correct.size else float("nan")


def _weighted_loss(digit_logits, labels, sum_logits, sums, loss_config):
  digit_loss = steps.cross_entropy(digit_logits, labels).mean()
  sum_loss = steps.cross_entropy(sum_logits, sums).mean()
  return float(jax.device_get(loss_config.digit_weight * digit_loss +
                              loss_config.sum_weight * sum_loss))


def test_metrics(predictions, labels, numbers, loss_config, allowed=None):
  """Accuracies in percent and the weighted test loss.

  Args:
    predictions: numpy outputs of `steps.predict`, padding already removed.
    labels, numbers: int arrays [N], the digits and their fixed numbers.
    allowed: None, or bool [10, 10] of the (digit, number) pairs shown in training
      (`input_pipeline.allowed_pairs`); then the sum accuracies are also reported on
      the held-out pairs ('_heldout') and on the others ('_seen'), for the fixed
      pairing and for all pairs.
  """
  sums = labels + numbers
  every_number = np.arange(predictions["all_sums"].shape[1])
  sum_correct = predictions["sum_logits"].argmax(-1) == sums
  all_pairs_correct = predictions["all_sums"] == labels[:, None] + every_number[None, :]
  metrics = {
      "test_loss": _weighted_loss(predictions["digit_logits"], labels, predictions["sum_logits"],
                                  sums, loss_config),
      "test_digit_accuracy": _percent(predictions["digit_logits"].argmax(-1) == labels),
      "test_sum_accuracy": _percent(sum_correct),
      "test_sum_accuracy_all_pairs": _percent(all_pairs_correct),
  }
  if allowed is not None:
    seen = allowed[labels, numbers]
    seen_all_pairs = allowed[labels]  # [N, 10]: each image with each number.
    metrics.update({
        "test_sum_accuracy_heldout": _percent(sum_correct[~seen]),
        "test_sum_accuracy_seen": _percent(sum_correct[seen]),
        "test_sum_accuracy_all_pairs_heldout": _percent(all_pairs_correct[~seen_all_pairs]),
        "test_sum_accuracy_all_pairs_seen": _percent(all_pairs_correct[seen_all_pairs]),
    })
  return metrics


def two_image_test_metrics(predictions, labels, pairs, loss_config):
  """Accuracies in percent and the weighted test loss of the two-image task.

  Args:
    predictions: numpy outputs of `steps.predict_two_images`, padding already removed.
    labels: int array [N], the digit of every test image.
    pairs: int array [P, 2], the fixed test pairs (`input_pipeline.test_image_pairs`).

  Returns:
    test_sum_accuracy over the pairs, test_digit_accuracy over the images, test_loss.
  """
  sums = labels[pairs].sum(-1)
  return {
      "test_loss": _weighted_loss(predictions["digit_logits"], labels, predictions["sum_logits"],
                                  sums, loss_config),
      "test_digit_accuracy": _percent(predictions["digit_logits"].argmax(-1) == labels),
      "test_sum_accuracy": _percent(predictions["sum_logits"].argmax(-1) == sums),
  }
