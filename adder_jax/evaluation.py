"""Test-set metrics from the outputs of `steps.predict`, computed on the host: the
accuracies and loss logged every epoch, and the tables and mistakes of a full evaluation."""

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


def sum_accuracy_table(all_sums, labels):
  """Sum accuracy in percent for every (digit, number) pair, from all pairs.

  Args:
    all_sums: int [N, 10], the predicted sum of each image with each number 0-9.
    labels: int [N], the true digits.

  Returns:
    float [10, 10]: row d, column n is the accuracy of d + n over the images of d
    (NaN for a digit with no images).
  """
  num_digits = all_sums.shape[1]
  correct = all_sums == labels[:, None] + np.arange(num_digits)[None, :]
  table = np.full((num_digits, num_digits), np.nan)
  for digit in range(num_digits):
    if np.any(labels == digit):
      table[digit] = 100.0 * correct[labels == digit].mean(axis=0)
  return table


def confusion_matrix(labels, predicted, num_classes=10):
  """int [num_classes, num_classes]: row = true class, column = predicted class."""
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (labels, predicted), 1)
  return matrix


def worst_mistakes(predictions, labels, numbers, count):
  """The test examples with a wrong digit or sum, most confidently wrong first.

  Returns:
    A list of up to `count` dicts: the example's index, digit, number and sum, and the
    predicted digit and sum with the probability the model gave each.
  """
  digit_p = np.asarray(jax.nn.softmax(predictions["digit_logits"]))
  sum_p = np.asarray(jax.nn.softmax(predictions["sum_logits"]))
  sums = labels + numbers
  predicted_digits, predicted_sums = digit_p.argmax(-1), sum_p.argmax(-1)
  wrong = np.nonzero((predicted_digits != labels) | (predicted_sums != sums))[0]
  # The loss of an example ranks how confidently wrong it is.
  rows = np.arange(len(labels))
  loss = -np.log(digit_p[rows, labels] + 1e-12) - np.log(sum_p[rows, sums] + 1e-12)
  worst = wrong[np.argsort(-loss[wrong], kind="stable")][:count]
  return [{
      "index": int(i),
      "digit": int(labels[i]),
      "number": int(numbers[i]),
      "sum": int(sums[i]),
      "predicted_digit": int(predicted_digits[i]),
      "predicted_digit_probability": float(digit_p[i, predicted_digits[i]]),
      "predicted_sum": int(predicted_sums[i]),
      "predicted_sum_probability": float(sum_p[i, predicted_sums[i]]),
  } for i in worst]
