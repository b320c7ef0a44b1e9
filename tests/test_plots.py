"""Tests that each plot of plots.py shows the numbers it was given: the lines of the
learning curves, the cells of the confusion matrix and of the sum-accuracy heatmap, the
images and labels of the worst mistakes, and the titles that sum them up; also from odd
inputs (no epoch, a metric missing, no mistakes, a digit missing from the test set).
The figures are read back from the `Figure` objects, and each writer is checked once to
save its figure as a PNG."""

import numpy as np
from numpy import testing
import pytest
from PIL import Image

from adder_jax import plots


def record(epoch):
  return {"epoch": epoch, "step": 10 * epoch, "train_loss": 1.0 / epoch, "test_loss": 0.8 / epoch,
          "train_digit_accuracy": 90.0 + epoch, "test_digit_accuracy": 91.0 + epoch,
          "train_sum_accuracy": 80.0 + epoch, "test_sum_accuracy": 85.0 + epoch,
          "test_sum_accuracy_all_pairs": 84.0 + epoch}


# The panels of the learning curves: (title, y label, [(line label, metric key)]).
PANELS = [
    ("Loss (digit + sum cross-entropy)", "loss", [
        ("train (mean over the epoch)", "train_loss"),
        ("test (end of epoch)", "test_loss")]),
    ("Digit accuracy (%)", "accuracy (%)", [
        ("train (mean over the epoch)", "train_digit_accuracy"),
        ("test (end of epoch)", "test_digit_accuracy")]),
    ("Sum accuracy (%)", "accuracy (%)", [
        ("train (mean over the epoch)", "train_sum_accuracy"),
        ("test, fixed pairing (end of epoch)", "test_sum_accuracy"),
        ("test, all 10 numbers per image", "test_sum_accuracy_all_pairs")]),
]


def cell_texts(axes):
  """{(row, column): text} of the texts written in the cells of an image's axes."""
  texts = {}
  for text in axes.texts:
    col, row = text.get_position()
    texts[(row, col)] = text
  return texts


@pytest.mark.parametrize("epochs", [1, 5])
def test_learning_curves_plot_each_metric_against_the_epochs(epochs):
  records = [record(e) for e in range(1, epochs + 1)]
  figure = plots.learning_curves_figure(records)
  assert len(figure.axes) == len(PANELS)
  for axes, (title, ylabel, lines) in zip(figure.axes, PANELS):
    assert axes.get_title() == title
    assert axes.get_xlabel() == "epoch" and axes.get_ylabel() == ylabel
    assert [line.get_label() for line in axes.get_lines()] == [label for label, _ in lines]
    assert [t.get_text() for t in axes.get_legend().get_texts()] == [label for label, _ in lines]
    for line, (_, key) in zip(axes.get_lines(), lines):
      testing.assert_array_equal(line.get_xdata(), list(range(1, epochs + 1)))
      testing.assert_array_equal(line.get_ydata(), [r[key] for r in records])
    # Half an epoch of margin each side, so the first and last points are not on the frame.
    assert axes.get_xlim() == (0.5, epochs + 0.5)
  assert figure.get_suptitle() == (
      f"Learning curves: after epoch {epochs} (step {10 * epochs}), test digit "
      f"{91.0 + epochs:.2f}%, sum {85.0 + epochs:.2f}%")


def test_learning_curves_leave_a_gap_where_a_record_lacks_a_metric():
  # Runs of older versions did not record the all-pairs sum accuracy.
  records = [record(e) for e in range(1, 4)]
  del records[1]["test_sum_accuracy_all_pairs"]
  line = plots.learning_curves_figure(records).axes[2].get_lines()[2]
  testing.assert_array_equal(line.get_ydata(), [85.0, np.nan, 87.0])


def test_learning_curves_before_the_first_epoch_say_so():
  figure = plots.learning_curves_figure([])
  assert figure.get_suptitle() == "Learning curves: no epoch has finished yet"
  for axes in figure.axes:
    assert all(len(line.get_xdata()) == 0 for line in axes.get_lines())
    assert [t.get_text() for t in axes.texts] == ["no epoch has finished yet"]
    assert axes.get_legend() is None


def test_confusion_matrix_shows_the_counts():
  matrix = np.diag(np.full(10, 980))
  matrix[4, 4] = 973
  matrix[4, 9] = 7
  figure = plots.confusion_matrix_figure(matrix)
  axes = figure.axes[0]
  shown = axes.images[0].get_array()
  # Every count is in its cell; the zero cells are masked (left white).
  testing.assert_array_equal(shown.filled(0), matrix)
  testing.assert_array_equal(np.ma.getmaskarray(shown), matrix == 0)
  texts = cell_texts(axes)
  # The zero cells get an empty text.
  assert {cell: t.get_text() for cell, t in texts.items() if t.get_text()} == {
      (row, col): str(matrix[row, col]) for row, col in zip(*np.nonzero(matrix))}
  # Readable on either end of the colour scale: white on the dark diagonal, black on a
  # light cell of few mistakes.
  assert texts[(4, 4)].get_color() == "white" and texts[(4, 9)].get_color() == "black"
  assert axes.get_xlabel() == "predicted digit" and axes.get_ylabel() == "true digit"
  assert axes.get_title() == ("Digit confusion matrix: 9800 test images, 99.93% correct\n"
                              "(7 mistakes off the diagonal)")
  assert figure.axes[1].get_ylabel() == "test images (log scale)"


@pytest.mark.parametrize("missing_digit", [False, True])
def test_sum_accuracy_heatmap_shows_the_table(missing_digit):
  table = 100.0 - np.random.default_rng(0).uniform(0, 3, (10, 10))
  if missing_digit:
    table[3] = np.nan
  figure = plots.sum_accuracy_heatmap_figure(table)
  axes = figure.axes[0]
  shown = axes.images[0].get_array()
  testing.assert_array_equal(np.ma.filled(shown.astype(float), np.nan), table)
  # The colour scale ends at 100% and reaches down to the worst cell.
  assert axes.images[0].get_clim() == (np.nanmin(table), 100.0)
  texts = cell_texts(axes)
  expected = {(row, col): f"{table[row, col]:.1f}"
              for row, col in zip(*np.nonzero(~np.isnan(table)))}
  if missing_digit:
    expected[(3, 4.5)] = "no test image of this digit"
  assert {cell: t.get_text() for cell, t in texts.items()} == expected
  assert axes.get_xlabel() == "number added" and axes.get_ylabel() == "true digit"
  assert axes.get_title() == ("Sum accuracy (%) per (digit, number) pair\n"
                              "every test image with every number; "
                              f"mean {np.nanmean(table):.2f}%")


def mistake(index, digit_right):
  """A test image read as 9 (or rightly as 4) whose sum 4 + 3 was given as 12 (or 8)."""
  return {"index": index, "digit": 4, "number": 3, "sum": 7,
          "predicted_digit": 4 if digit_right else 9, "predicted_digit_probability": 0.9,
          "predicted_sum": 8 if digit_right else 12, "predicted_sum_probability": 0.8}


@pytest.mark.parametrize("count, rows, columns", [(0, 1, 3), (1, 1, 3), (7, 2, 6), (24, 4, 6)])
def test_worst_mistakes_show_each_image_with_its_labels_in_order(count, rows, columns):
  images = np.random.default_rng(0).integers(0, 256, (30, 28, 28)).astype(np.uint8)
  # Worst first is not index order: the grid must follow the list.
  mistakes = [mistake(29 - i, digit_right=i % 2 == 1) for i in range(count)]
  figure = plots.worst_mistakes_figure(images, mistakes)
  grid = figure.axes
  assert len(grid) == rows * columns
  assert grid[0].get_subplotspec().get_gridspec().get_geometry() == (rows, columns)
  for axes, shown in zip(grid, mistakes):
    testing.assert_array_equal(axes.images[0].get_array(), images[shown["index"]])
    if shown["predicted_digit"] == 4:
      title = f"#{shown['index']}: 4 + 3 = 7\nread 4 (90%) ✓\nsum 8 (80%) ✗"
      colour = "darkorange"
    else:
      title = f"#{shown['index']}: 4 + 3 = 7\nread 9 (90%) ✗\nsum 12 (80%) ✗"
      colour = "firebrick"
    assert axes.get_title() == title
    assert axes.title.get_color() == colour
  # The rest of the grid is empty.
  for axes in grid[count:]:
    assert not axes.images and not axes.get_title()
  assert [t.get_text() for t in grid[0].texts] == (
      [] if mistakes else ["no mistakes on the test set"])
  assert figure.get_suptitle().startswith("Worst test mistakes, most confident first\n")


@pytest.mark.parametrize("write, args", [
    (plots.learning_curves, ([record(1), record(2)],)),
    (plots.confusion_matrix, (np.diag(np.full(10, 980)),)),
    (plots.sum_accuracy_heatmap, (np.full((10, 10), 99.5),)),
    (plots.worst_mistakes, (np.zeros((2, 28, 28), np.uint8), [mistake(1, False)])),
])
def test_each_plot_is_written_as_a_png(tmp_path, write, args):
  path = tmp_path / "plot.png"
  write(*args, path)
  with Image.open(path) as image:
    assert image.format == "PNG"
    assert image.width >= 300 and image.height >= 300
    # Not blank: a plot has many grey levels.
    assert len(np.unique(np.asarray(image.convert("L")))) > 20
