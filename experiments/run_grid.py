"""Does the network learn to add? Runs a grid of research options and writes a markdown table.

    python -m experiments.run_grid --data_dir=/tmp/tfds --output_dir=/tmp/grid

Cells: every combination of sum head ('mlp', 'exact'), held-out (digit, number) pairs
(none, 10 drawn from the seed) and supervision ('both', 'sum_only', 'digit_only') on the
image + number task, less held-out pairs with 'digit_only' (which never reads the
numbers, so it trains the same network as without them); and the two-image
MNIST-addition benchmark (sum-only supervision) with each head. Each cell runs --seeds
seeds.

Every run starts from configs/default.py with the cell's overrides (and --conv_layers,
if given, to fit a time budget) and trains in OUTPUT_DIR/CELL/seed_S, so an interrupted
grid resumes where it stopped. The table (mean ± sample standard deviation over the
seeds of the last epoch's test metrics) goes to OUTPUT_DIR/table.md and stdout, every
run's final record to OUTPUT_DIR/results.jsonl.
"""

import itertools
import os

from absl import flags
from absl import logging
import numpy as np

from adder_jax import cli
from adder_jax import models
from adder_jax import objectives
from adder_jax import runtime
from configs import default
from experiments import tables

FLAGS = flags.FLAGS


def define_flags():
  tables.define_run_flags(3, "Seeds per cell (0, 1, ...).")
  flags.DEFINE_integer("epochs", 2, "Epochs of each image + number run.", lower_bound=1)
  flags.DEFINE_integer("two_image_epochs", 4, "Epochs of each two-image run.", lower_bound=1)
  flags.DEFINE_integer("two_image_batch_size", 100,
                       "Pairs per two-image batch (100 divides the 30,000 pairs).", lower_bound=1)
  flags.DEFINE_string("conv_layers", None, "Overrides config.model.conv_layers in every run "
                      "(default: keep configs/default.py's), e.g. a smaller trunk to fit a CPU "
                      "time budget.")
  flags.DEFINE_string("holdout_pairs", "10", "data.holdout_pairs of the held-out cells.")
  flags.adopt_module_key_flags(tables)

# Table columns: (metric key, header). A run without the metric shows a dash.
COLUMNS = (
    ("test_digit_accuracy", "digit"),
    ("test_sum_accuracy", "sum (fixed pairing)"),
    ("test_sum_accuracy_all_pairs", "sum, all pairs"),
    ("test_sum_accuracy_all_pairs_heldout", "sum, held-out pairs"),
    ("test_sum_accuracy_all_pairs_seen", "sum, seen pairs"),
)


def grid_cells():
  """(name, overrides) of every cell; overrides are dotted config paths."""
  cells = []
  for sum_head, holdout, supervision in itertools.product(
      models.SUM_HEADS, ("", FLAGS.holdout_pairs), objectives.SUPERVISIONS):
    if holdout and supervision == "digit_only":
      # Digit-only training never reads the numbers, so holding pairs out changes nothing.
      continue
    name = f"number-{sum_head}-holdout{holdout or 'none'}-{supervision}"
    cells.append((name, {"model.sum_head": sum_head, "data.holdout_pairs": holdout,
                         "supervision": supervision, "num_epochs": FLAGS.epochs}))
  for sum_head in models.SUM_HEADS:
    cells.append((f"two_images-{sum_head}-sum_only", {
        "task": "two_images", "model.sum_head": sum_head, "supervision": "sum_only",
        "num_epochs": FLAGS.two_image_epochs, "batch_size": FLAGS.two_image_batch_size}))
  return cells


def make_config(overrides, seed):
  config = default.get_config()
  config.seed = seed
  tables.with_data(config, FLAGS.data_dir, FLAGS.manual_dir)
  if FLAGS.conv_layers:
    config.model.conv_layers = FLAGS.conv_layers
  config.update_from_flattened_dict(overrides)
  return config


def markdown_table(results):
  """One row per cell: its settings and mean ± std of each metric over the seeds."""
  header = ["task", "sum head", "held-out pairs", "supervision", "epochs"]
  header += [title for _, title in COLUMNS]
  rows = []
  for name, runs in results.items():
    config = runs[0]["config"]
    row = [config["task"], config["model"]["sum_head"], config["data"]["holdout_pairs"] or "none",
           config["supervision"], str(config["num_epochs"])]
    row += [tables.mean_std([run["record"].get(key, np.nan) for run in runs]) for key, _ in COLUMNS]
    rows.append(row)
  return tables.markdown(header, rows)


def main(argv):
  del argv  # cli.run refuses positional arguments.
  logging.set_verbosity(logging.WARNING)
  configs = [make_config(overrides, 0) for _, overrides in grid_cells()]
  runtime.setup([c.batch_size for c in configs] + [c.eval_batch_size for c in configs])
  output_dir = os.path.abspath(FLAGS.output_dir)
  os.makedirs(output_dir, exist_ok=True)
  results = {}
  results_path = os.path.join(output_dir, "results.jsonl")
  with cli.exit_on_interrupt(), cli.exit_on_user_error(), open(results_path, "w") as results_file:
    for name, overrides in grid_cells():
      for seed in range(FLAGS.seeds):
        config = make_config(overrides, seed)
        workdir = os.path.join(output_dir, name, f"seed_{seed}")
        record = tables.train_or_read(config, workdir)
        run = {"cell": name, "seed": seed, "training_minutes": tables.training_minutes(workdir),
               "config": config.to_dict(), "record": record}
        tables.append_run(results, results_file, name, run)
        print(f"{name} seed {seed}: {run['training_minutes']:.1f} min", flush=True)
  minutes = sum(run["training_minutes"] for runs in results.values() for run in runs)
  tables.write_table(output_dir, markdown_table(results) + (
      f"\nTest accuracies (%) after the last epoch: mean ± sample standard deviation "
      f"over {FLAGS.seeds} seeds. Training time of the whole grid {minutes:.1f} min (the "
      f"epochs, without compilation and evaluation).\n"))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
