"""Markdown table cells shared by the experiment scripts."""

import numpy as np


def mean_std(values, digits=2):
  """'mean ± sample standard deviation' of `values`; '–' if any is NaN (not measured)."""
  if np.isnan(values).any():
    return "–"
  std = np.std(values, ddof=1) if len(values) > 1 else 0.0
  return f"{np.mean(values):.{digits}f} ± {std:.{digits}f}"
