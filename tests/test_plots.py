"""Tests that every plot of plots.py is written as a PNG, also from odd inputs (one
epoch, no epoch, no mistakes, digits missing from the test set)."""

import numpy as np
import pytest
from PIL import Image

from adder_jax import plots


def check_png(path, min_width=500):
  with Image.open(path) as image:
    assert image.format == "PNG"
    assert image.width >= min_width and image.height >= 300
    # Not blank: a plot has many grey levels.
    assert len(np.unique(np.asarray(image.convert("L")))) > 20


def record(epoch):
  return {"epoch": epoch, "step": 10 * epoch, "train_loss": 1.0 / epoch, "test_loss": 0.8 / epoch,
          "train_digit_accuracy": 90.0 + epoch, "test_digit_accuracy": 91.0 + epoch,
          "train_sum_accuracy": 80.0 + epoch, "test_sum_accuracy": 85.0 + epoch,
          "test_sum_accuracy_all_pairs": 84.0 + epoch}


@pytest.mark.parametrize("epochs", [0, 1, 5])
def test_learning_curves(tmp_path, epochs):
  path = tmp_path / "curves.png"
  plots.learning_curves([record(e) for e in range(1, epochs + 1)], path)
  check_png(path, min_width=1000)


def test_confusion_matrix(tmp_path):
  matrix = np.diag(np.full(10, 980))
  matrix[4, 9] = 7
  path = tmp_path / "confusion.png"
  plots.confusion_matrix(matrix, path)
  check_png(path)


@pytest.mark.parametrize("missing_digit", [False, True])
def test_sum_accuracy_heatmap(tmp_path, missing_digit):
  table = 100.0 - np.random.default_rng(0).uniform(0, 3, (10, 10))
  if missing_digit:
    table[3] = np.nan
  path = tmp_path / "heatmap.png"
  plots.sum_accuracy_heatmap(table, path)
  check_png(path)


@pytest.mark.parametrize("count", [0, 1, 24])
def test_worst_mistakes(tmp_path, count):
  images = np.random.default_rng(0).integers(0, 256, (30, 28, 28)).astype(np.uint8)
  mistakes = [{"index": i, "digit": 4, "number": 3, "sum": 7, "predicted_digit": 9,
               "predicted_digit_probability": 0.9, "predicted_sum": 12,
               "predicted_sum_probability": 0.8} for i in range(count)]
  path = tmp_path / "mistakes.png"
  plots.worst_mistakes(images, mistakes, path)
  check_png(path, min_width=600)
