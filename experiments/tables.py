"""The results files and markdown tables that the experiment scripts share."""

import json
import os

import numpy as np

from benchmarks import machine


def mean_std(values, digits=2):
  """'mean ± sample standard deviation' of `values`; '–' if any is NaN (not measured)."""
  if np.isnan(values).any():
    return "–"
  std = np.std(values, ddof=1) if len(values) > 1 else 0.0
  return f"{np.mean(values):.{digits}f} ± {std:.{digits}f}"


def markdown(header, rows):
  """A markdown table of `header` and `rows` (lists of cell strings), newline-terminated."""
  lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def append_run(results, results_file, row, run):
  """Adds `run` (a dict) to results[row], the runs of one table row, and appends it to
  the open results.jsonl as one line, flushed, so that a stopped script keeps it."""
  results.setdefault(row, []).append(run)
  results_file.write(json.dumps(run) + "\n")
  results_file.flush()


def footnote(seeds):
  """The line under a results table: what its cells are, and the machine they ran on."""
  info = machine.describe()
  return (f"\nTest accuracies (%) after the last epoch and training minutes: mean ± sample "
          f"standard deviation over {seeds} seeds. {info['platform']}: {info['cpu']}, "
          f"{info['cpu_count']} cores; JAX {info['jax']}.\n")


def write_table(output_dir, table):
  """Writes `table` to OUTPUT_DIR/table.md and prints it."""
  with open(os.path.join(output_dir, "table.md"), "w") as f:
    f.write(table)
  print(table)
