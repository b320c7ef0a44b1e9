"""What the experiment scripts share: their common flags, config overrides, results files
and markdown tables."""

import ast
import json
import os

from absl import flags
import numpy as np

from adder_jax import reporting
from adder_jax import train
from adder_jax.errors import UserError
from benchmarks import machine


def define_run_flags(seeds, seeds_help):
  """The flags every experiment script has: where MNIST is, where the runs go, and how
  many seeds. Scripts define their flags only when they run as the program, so that any of
  them can be imported together."""
  flags.DEFINE_string("data_dir", None, "tfds data_dir holding (or to hold) MNIST.")
  flags.DEFINE_string("manual_dir", None,
                      "Folder with the four MNIST IDX .gz files, to prepare offline.")
  flags.DEFINE_string("output_dir", None, "Where the runs and the table go.")
  flags.DEFINE_integer("seeds", seeds, seeds_help, lower_bound=1)
  flags.mark_flags_as_required(["output_dir"])


def define_set_flag():
  flags.DEFINE_multi_string("set", [], "FIELD=VALUE: a config override for every run, e.g. "
                            "optimizer.learning_rate=1e-2 (a Python literal, else a string).")


def parse_overrides(settings):
  """{field: value} of the --set FIELD=VALUE settings."""
  overrides = {}
  for setting in settings:
    field, equals, text = setting.partition("=")
    if not equals or not field:
      raise UserError(f"--set {setting!r}: write FIELD=VALUE, e.g. num_epochs=10.")
    try:
      overrides[field] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      overrides[field] = text
  return overrides


def apply_overrides(config, overrides):
  """`config` with the {field: value} of parse_overrides set; UserError if one does not fit."""
  try:
    config.update_from_flattened_dict(overrides or {})
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    raise UserError(f"--set: {e}") from e
  return config


def with_data(config, data_dir, manual_dir):
  """`config` reading MNIST from `data_dir` (tfds), prepared from `manual_dir` if given
  (the values of --data_dir and --manual_dir)."""
  config.data.data_dir = data_dir
  config.data.manual_dir = manual_dir
  return config


def train_or_read(config, workdir):
  """The last epoch's metrics record of `config` run in `workdir`: read from its
  metrics.jsonl if that run finished there, else trained (resuming if it can).

  A results folder can thus keep each run's config.json and metrics.jsonl alone (its
  checkpoints are not committed) and still make its table: a finished run is not
  trained again. Its config, less where MNIST is read from, must be `config`: a finished
  run of another config is a UserError naming the fields that differ, never overwritten."""
  records = reporting.read_metrics(workdir)
  kept = _kept_config(workdir)
  if kept is None or not records or records[-1]["epoch"] != kept["num_epochs"]:
    return train.train_and_evaluate(config, workdir)
  differ = _differences(kept, json.loads(config.to_json()))
  if differ:
    raise UserError(f"{workdir} holds a finished run of another config (it differs in "
                    f"{', '.join(differ)}); choose another --output_dir.")
  return records[-1]


def training_minutes(workdir):
  """The epochs' training time of the run in `workdir`, from its metrics.jsonl (without
  compilation and evaluation). An epoch resumed after a stop counts only its time since
  the restart (docs/training.md), so this is the training time of unbroken runs only."""
  return sum(record["epoch_seconds"] for record in reporting.read_metrics(workdir)) / 60


def _kept_config(workdir):
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _differences(kept, wanted, prefix=""):
  """The dotted names of the fields where two config dicts differ, less where MNIST is
  read from."""
  differ = []
  for key in sorted(set(kept) | set(wanted)):
    name = prefix + key
    if name in ("data.data_dir", "data.manual_dir"):
      continue
    a, b = kept.get(key), wanted.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      differ += _differences(a, b, name + ".")
    elif a != b:
      differ.append(name)
  return differ


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
