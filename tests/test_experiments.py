"""The cells of the experiment scripts' tables."""

import numpy as np
import pytest

from experiments import tables


def test_mean_std_is_the_mean_and_the_sample_standard_deviation():
  assert tables.mean_std([99.5, 99.7, 99.6]) == "99.60 ± 0.10"
  assert tables.mean_std([10.0, 10.2], digits=1) == "10.1 ± 0.1"
  assert tables.mean_std([98.0]) == "98.00 ± 0.00"


def test_a_metric_a_run_lacks_is_a_dash():
  assert tables.mean_std([99.5, np.nan]) == "–"


def test_markdown_table():
  assert tables.markdown(["a", "b"], [["1", "2"], ["3", "4"]]) == (
      "| a | b |\n| --- | --- |\n| 1 | 2 |\n| 3 | 4 |\n")


def _multi_digit_results():
  """Results of experiments/multi_digit.py's shape: two configs, N = 1 and 15, 2 seeds."""
  results = {}
  for name, digit in (("multi_digit", 99.5), ("multi_digit_lenet", 99.0)):
    for n in (1, 15):
      results[name, n] = [{"training_minutes": 1.0 + seed, "record": {
          "epoch": 8, "test_digit_accuracy": digit + 0.1 * seed,
          "test_sum_accuracy": 90.0 + seed, "test_sum_accuracy_most_probable": 90.5 + seed}}
                          for seed in (0, 1)]
  return results


def test_multi_digit_table_and_plot(tmp_path):
  from experiments import multi_digit
  assert [multi_digit.batch_size(n) for n in (1, 2, 4, 15)] == [60, 30, 15, 4]
  assert multi_digit.all_digits_right(99.5, 15) == pytest.approx(100 * 0.995 ** 30)
  table = multi_digit.markdown_table(_multi_digit_results()).splitlines()
  assert len(table) == 2 + 4
  row = table[-1].split(" | ")
  assert row[:6] == ["| `multi_digit_lenet`", "15", "8", "90.50 ± 0.71", "91.00 ± 0.71",
                     "99.05 ± 0.07"]
  assert row[6] == tables.mean_std([100 * 0.990 ** 30, 100 * 0.991 ** 30])
  assert "PLIA 79.00 ± 0.73" in row[-1]
  path = tmp_path / "plot.png"
  multi_digit.plot(_multi_digit_results(), str(path))
  assert path.stat().st_size > 10_000
