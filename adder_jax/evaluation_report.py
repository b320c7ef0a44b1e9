"""The full evaluation of a trained state, written into its workdir.

WORKDIR/evaluation.json holds the test accuracies, the sum accuracy of every (digit,
number) pair, the digit confusion matrix and the worst mistakes; PNG plots of these and
of the learning curves sit beside it. Training writes them when it ends, and
`python -m adder_jax.evaluate` writes them for the latest checkpoint.
"""

import json
import os

import numpy as np

from adder_jax import evaluation
from adder_jax import pairing
from adder_jax import plots
from adder_jax import reporting

EVALUATION_FILE = "evaluation.json"
PLOT_FILES = {
    "learning_curves": "learning_curves.png",
    "digit_confusion_matrix": "digit_confusion_matrix.png",
    "sum_accuracy_by_digit_and_number": "sum_accuracy_by_digit_and_number.png",
    "worst_mistakes": "worst_mistakes.png",
}
NUM_MISTAKES_SHOWN = 24


def write(workdir, step, task, test_split, predictions):
  """Writes evaluation.json and the plots of a model at `step` on the test set.

  Args:
    workdir: the run's directory (its metrics.jsonl gives the learning curves).
    step: the training step of the evaluated parameters.
    task: the run's task, one whose `uses` include 'evaluate' (tasks.py).
    test_split: the test `mnist.Split`.
    predictions: the task's predictions on `test_split` (`evaluation.TestPredictor`).

  Returns:
    The report written to evaluation.json.
  """
  metrics = task.test_metrics(predictions, test_split)
  labels = test_split.labels
  numbers = pairing.test_numbers(len(labels))
  predictions = {k: v[:len(labels)] for k, v in predictions.items()}  # Drop the padding.
  mistakes = evaluation.worst_mistakes(predictions, labels, numbers, NUM_MISTAKES_SHOWN)
  table = evaluation.sum_accuracy_table(predictions["all_sums"], labels)
  confusion = evaluation.confusion_matrix(labels, predictions["digit_logits"].argmax(-1))
  paths = {name: os.path.join(workdir, file) for name, file in PLOT_FILES.items()}
  report = {
      "step": step,
      "num_test_images": len(labels),
      **metrics,
      # Row: the true digit; column: the number added.
      "sum_accuracy_by_digit_and_number": [
          [None if np.isnan(v) else round(float(v), 3) for v in row] for row in table],
      # Row: the true digit; column: the predicted digit.
      "digit_confusion_matrix": confusion.tolist(),
      "worst_mistakes": mistakes,
      "evaluation_file": os.path.join(workdir, EVALUATION_FILE),
      "plots": paths,
  }
  with open(report["evaluation_file"], "w") as f:
    json.dump(report, f, indent=2)
  plots.learning_curves(reporting.read_metrics(workdir), paths["learning_curves"])
  plots.confusion_matrix(confusion, paths["digit_confusion_matrix"])
  plots.sum_accuracy_heatmap(table, paths["sum_accuracy_by_digit_and_number"])
  plots.worst_mistakes(test_split.images, mistakes, paths["worst_mistakes"])
  return report


def summary(report):
  """A few lines for the terminal."""
  confusion = np.asarray(report["digit_confusion_matrix"])
  pairs = [(value, digit, number)
           for digit, row in enumerate(report["sum_accuracy_by_digit_and_number"])
           for number, value in enumerate(row) if value is not None]
  lines = [
      f"step {report['step']}, {report['num_test_images']} test images:",
      f"  digit accuracy           {report['test_digit_accuracy']:.2f}% "
      f"({confusion.sum() - np.trace(confusion)} mistakes)",
      f"  sum accuracy             {report['test_sum_accuracy']:.2f}% (fixed pairing)",
      f"  sum accuracy, all pairs  {report['test_sum_accuracy_all_pairs']:.2f}%",
      f"  test loss                {report['test_loss']:.4f}",
  ]
  if pairs:
    value, digit, number = min(pairs)
    lines.append(f"  hardest (digit, number)  {digit} + {number}: {value:.1f}% sum accuracy")
  lines.append(f"wrote {report['evaluation_file']} and")
  lines += [f"  {path}" for path in report["plots"].values()]
  return "\n".join(lines)
