"""Tests of the evaluation tables in evaluation.py, on hand-made predictions."""

import numpy as np

from adder_jax import evaluation


def test_sum_accuracy_table():
  labels = np.array([3, 3, 5])
  all_sums = labels[:, None] + np.arange(10)[None, :]  # All right...
  all_sums[0, 4] = 0  # ...but 3 + 4 for the first 3,
  all_sums[2, 9] = 0  # and 5 + 9.
  table = evaluation.sum_accuracy_table(all_sums, labels)
  assert table.shape == (10, 10)
  assert table[3, 4] == 50.0 and table[5, 9] == 0.0
  assert table[3, 0] == table[5, 0] == 100.0
  assert np.isnan(table[0]).all()  # No image of a 0.


def test_confusion_matrix():
  matrix = evaluation.confusion_matrix(np.array([1, 1, 2, 7]), np.array([1, 7, 2, 1]))
  assert matrix.shape == (10, 10) and matrix.sum() == 4
  assert matrix[1, 1] == matrix[1, 7] == matrix[2, 2] == matrix[7, 1] == 1


def logits_for(classes, num_classes, confidence):
  logits = np.zeros((len(classes), num_classes), np.float32)
  logits[np.arange(len(classes)), classes] = confidence
  return logits


def test_worst_mistakes_ranks_confident_mistakes_first():
  labels = np.array([4, 4, 4, 4])
  numbers = np.array([1, 2, 3, 0])
  predictions = {
      # Right; wrong but unsure; wrong and sure; right digit, wrong sum.
      "digit_logits": logits_for(np.array([4, 9, 9, 4]), 10, np.array([9.0, 1.0, 9.0, 9.0])),
      "sum_logits": logits_for(np.array([5, 11, 12, 7]), 19, np.array([9.0, 1.0, 9.0, 9.0])),
  }
  mistakes = evaluation.worst_mistakes(predictions, labels, numbers, count=10)
  assert [m["index"] for m in mistakes] == [2, 3, 1]
  worst = mistakes[0]
  assert {k: v for k, v in worst.items() if not k.endswith("probability")} == {
      "index": 2, "digit": 4, "number": 3, "sum": 7, "predicted_digit": 9, "predicted_sum": 12}
  assert worst["predicted_digit_probability"] > 0.99
  assert worst["predicted_sum_probability"] > 0.99
  assert evaluation.worst_mistakes(predictions, labels, numbers, count=1)[0]["index"] == 2
