"""PNG plots of a run: learning curves, the digit confusion matrix, sum accuracy per
(digit, number) pair, and the worst test mistakes.

Figures are drawn with matplotlib's Agg canvas directly, without pyplot, so that
plotting needs no display and leaves the backend of a notebook that imports this alone.
Each plot has a `*_figure` function that builds and returns its `Figure` (what the tests
read back: plotted data, cell values, titles) and a writer of the same name without the
suffix that saves that figure as a PNG.
"""

import numpy as np
from matplotlib import colors
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_DPI = 120


def _save(figure, path):
  FigureCanvasAgg(figure)
  figure.savefig(path, dpi=_DPI)


def _annotate(axes, image, values, text):
  """Writes text(value) in every cell, white on dark cells and black on light ones."""
  for (row, col), value in np.ndenumerate(values):
    if np.isnan(value):
      continue
    red, green, blue, _ = image.cmap(image.norm(value))
    dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
    axes.text(col, row, text(value), ha="center", va="center", fontsize=8,
              color="white" if dark else "black")


def learning_curves(records, path):
  """Writes `learning_curves_figure(records)` to the PNG file `path`.

  Args:
    records: the per-epoch records of metrics.jsonl (`reporting.read_metrics`).
    path: the PNG file to write.
  """
  _save(learning_curves_figure(records), path)


def learning_curves_figure(records):
  """Loss, digit accuracy and sum accuracy per epoch, train and test.

  Args:
    records: the per-epoch records of metrics.jsonl (`reporting.read_metrics`).

  Returns:
    A `Figure` of three panels (loss, digit accuracy, sum accuracy), one line per
    metric with the epochs as x; a metric a record lacks is NaN.
  """
  epochs = [r["epoch"] for r in records]
  figure = Figure(figsize=(15, 4.5), layout="constrained")
  panels = figure.subplots(1, 3)
  series = [
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
  for axes, (title, ylabel, lines) in zip(panels, series):
    for label, key in lines:
      values = [r.get(key, np.nan) for r in records]
      axes.plot(epochs, values, marker="o", label=label)
    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    if records:
      axes.xaxis.set_major_locator(ticker.MaxNLocator(integer=True, min_n_ticks=1))
      axes.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
      axes.legend(fontsize=8)
    else:
      axes.text(0.5, 0.5, "no epoch has finished yet", ha="center", transform=axes.transAxes)
      axes.set_xticks([])
      axes.set_yticks([])
  if not records:
    figure.suptitle("Learning curves: no epoch has finished yet")
  else:
    last = records[-1]
    figure.suptitle(
        f"Learning curves: after epoch {last['epoch']} (step {last['step']}), test digit "
        f"{last['test_digit_accuracy']:.2f}%, sum {last['test_sum_accuracy']:.2f}%")
  return figure


def confusion_matrix(matrix, path):
  """Writes `confusion_matrix_figure(matrix)` to the PNG file `path`."""
  _save(confusion_matrix_figure(matrix), path)


def confusion_matrix_figure(matrix):
  """The digit confusion matrix (counts; row = true digit, column = predicted).

  Returns:
    A `Figure` whose first axes shows `matrix` as an image (zero cells masked) with
    each nonzero count written in its cell.
  """
  matrix = np.asarray(matrix)
  total = matrix.sum()
  accuracy = 100.0 * np.trace(matrix) / max(total, 1)
  figure = Figure(figsize=(7.5, 6.5), layout="constrained")
  axes = figure.subplots()
  # A log scale, so the few mistakes show beside the ~1000 correct per digit; the
  # zero cells are left white.
  shown = np.ma.masked_equal(matrix, 0)
  image = axes.imshow(shown, cmap="Blues", norm=colors.LogNorm(vmin=1, vmax=max(matrix.max(), 2)))
  _annotate(axes, image, matrix.astype(float), lambda v: f"{int(v)}" if v else "")
  figure.colorbar(image, ax=axes, label="test images (log scale)")
  axes.set_xticks(range(matrix.shape[1]))
  axes.set_yticks(range(matrix.shape[0]))
  axes.set_xlabel("predicted digit")
  axes.set_ylabel("true digit")
  axes.set_title(f"Digit confusion matrix: {total} test images, {accuracy:.2f}% correct\n"
                 f"({total - np.trace(matrix)} mistakes off the diagonal)")
  return figure


def sum_accuracy_heatmap(table, path):
  """Writes `sum_accuracy_heatmap_figure(table)` to the PNG file `path`."""
  _save(sum_accuracy_heatmap_figure(table), path)


def sum_accuracy_heatmap_figure(table):
  """Sum accuracy (%) per true digit (rows) and added number (columns).

  Returns:
    A `Figure` whose first axes shows `table` as an image, each cell's value written
    in it; a digit with no test image (a row of NaN) says so.
  """
  table = np.asarray(table, float)
  figure = Figure(figsize=(7.5, 6.5), layout="constrained")
  axes = figure.subplots()
  low = np.nanmin(table) if not np.all(np.isnan(table)) else 0.0
  image = axes.imshow(table, cmap="viridis", vmin=min(low, 99.0), vmax=100.0)
  _annotate(axes, image, table, lambda v: f"{v:.1f}")
  for digit in np.nonzero(np.isnan(table).all(axis=1))[0]:
    axes.text((table.shape[1] - 1) / 2, digit, "no test image of this digit", ha="center",
              va="center", fontsize=8, color="gray")
  figure.colorbar(image, ax=axes, label="sum accuracy (%)")
  axes.set_xticks(range(table.shape[1]))
  axes.set_yticks(range(table.shape[0]))
  axes.set_xlabel("number added")
  axes.set_ylabel("true digit")
  axes.set_title("Sum accuracy (%) per (digit, number) pair\n"
                 f"every test image with every number; mean {np.nanmean(table):.2f}%")
  return figure


def worst_mistakes(images, mistakes, path, columns=6):
  """Writes `worst_mistakes_figure(images, mistakes, columns)` to the PNG file `path`.

  Args:
    images: uint8 [N, 28, 28], the test images that `mistakes` index.
    mistakes: dicts from `evaluation.worst_mistakes`, worst first.
    path: the PNG file to write.
    columns: the most images in a row of the grid.
  """
  _save(worst_mistakes_figure(images, mistakes, columns), path)


def worst_mistakes_figure(images, mistakes, columns=6):
  """A grid of test images the model got wrong, with true and predicted labels.

  Args:
    images: uint8 [N, 28, 28], the test images that `mistakes` index.
    mistakes: dicts from `evaluation.worst_mistakes`, worst first.
    columns: the most images in a row of the grid.

  Returns:
    A `Figure` of a rows x columns grid of axes, the first len(mistakes) of which
    show a mistake's image, titled with its labels, in the order of `mistakes`.
  """
  columns = min(columns, max(3, len(mistakes)))
  rows = max(1, -(-len(mistakes) // columns))
  # Fixed margins rather than a layout engine, whose layout of this many axes costs
  # more than drawing them: a row is 2.5 inches, its three title lines included; the
  # top 1.25 inches hold the figure's title and the first row's titles.
  height = 2.5 * rows + 0.8
  figure = Figure(figsize=(1.9 * columns, height))
  grid = figure.subplots(rows, columns, squeeze=False, gridspec_kw=dict(
      left=0.02, right=0.98, bottom=0.1 / height, top=1 - 1.25 / height, hspace=0.4,
      wspace=0.1))
  for axes in grid.flat:
    axes.set_axis_off()
  for axes, mistake in zip(grid.flat, mistakes):
    axes.imshow(images[mistake["index"]], cmap="gray", vmin=0, vmax=255)
    digit_wrong = mistake["predicted_digit"] != mistake["digit"]
    sum_wrong = mistake["predicted_sum"] != mistake["sum"]
    axes.set_title(
        f"#{mistake['index']}: {mistake['digit']} + {mistake['number']} = {mistake['sum']}\n"
        f"read {mistake['predicted_digit']} ({100 * mistake['predicted_digit_probability']:.0f}%)"
        f"{' ✗' if digit_wrong else ' ✓'}\n"
        f"sum {mistake['predicted_sum']} ({100 * mistake['predicted_sum_probability']:.0f}%)"
        f"{' ✗' if sum_wrong else ' ✓'}",
        fontsize=9, color="firebrick" if digit_wrong else "darkorange")
  if not mistakes:
    grid[0, 0].text(0, 0.5, "no mistakes on the test set", fontsize=12)
  figure.suptitle("Worst test mistakes, most confident first\n"
                  "#test index: digit + number = sum, then what the model read and summed\n"
                  "with its probabilities (✗ wrong, ✓ right)", fontsize=10)
  return figure
