"""The cells of the experiment scripts' tables."""

import numpy as np

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
