"""Trains configs over several seeds and writes a markdown table of their test results.

    python -m experiments.compare_configs --configs=default,best --seeds=3 \
      --data_dir=/tmp/tfds --output_dir=/tmp/compare

Each config (a module of configs/) trains with seeds 0, 1, ... in OUTPUT_DIR/CONFIG/seed_S,
so an interrupted comparison resumes where it stopped. The table (mean ± sample standard
deviation over the seeds of the last epoch's test accuracies, and of the training time:
the epochs' seconds from metrics.jsonl, without compilation and evaluation; then the digit
and sum accuracies of each seed) goes to OUTPUT_DIR/table.md and stdout, every run's
final record to OUTPUT_DIR/results.jsonl.
"""

import importlib
import os

from absl import flags
from absl import logging
import numpy as np

from adder_jax import cli
from adder_jax import runtime
from adder_jax.errors import UserError
from experiments import tables

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_list("configs", ["default", "best"],
                    "Modules of configs/ to compare, e.g. default,best.")
  tables.define_run_flags(3, "Seeds per config (0, 1, ...).")
  tables.define_set_flag()
  flags.adopt_module_key_flags(tables)

# Table columns: (metric key, header).
COLUMNS = (("test_digit_accuracy", "digit"), ("test_sum_accuracy", "sum (fixed pairing)"),
           ("test_sum_accuracy_all_pairs", "sum, all pairs"))


def load_config(name, seed, data_dir=None, manual_dir=None, overrides=None):
  try:
    module = importlib.import_module(f"configs.{name}")
  except ModuleNotFoundError as e:
    raise UserError(f"--configs: there is no configs/{name}.py.") from e
  config = module.get_config()
  config.seed = seed
  tables.apply_overrides(config, overrides)
  return tables.with_data(config, data_dir, manual_dir)


# Metrics also given seed by seed: a seed that fails (say, a relabelled digit map) shows.
EACH_SEED = (("test_digit_accuracy", "digit"), ("test_sum_accuracy", "sum"))


def markdown_table(results):
  """One row per config: its epochs, mean ± std of each accuracy ('–' where its task
  lacks it) and of the minutes, and the EACH_SEED accuracies of every seed in order."""
  header = (["config", "epochs"] + [title for _, title in COLUMNS] + ["training minutes"]
            + [f"{title}, each seed" for _, title in EACH_SEED])
  rows = []
  for name, runs in results.items():
    row = [f"`{name}`", str(runs[0]["record"]["epoch"])]
    row += [tables.mean_std([run["record"].get(key, np.nan) for run in runs])
            for key, _ in COLUMNS]
    row.append(tables.mean_std([run["training_minutes"] for run in runs], digits=1))
    row += [", ".join(f"{run['record'][key]:.2f}" for run in runs) for key, _ in EACH_SEED]
    rows.append(row)
  return tables.markdown(header, rows)


def main(argv):
  del argv  # cli.run refuses positional arguments.
  logging.set_verbosity(logging.WARNING)
  output_dir = os.path.abspath(FLAGS.output_dir)
  results = {}
  with cli.exit_on_interrupt(), cli.exit_on_user_error():
    overrides = tables.parse_overrides(FLAGS.set)
    configs = {name: [load_config(name, seed, FLAGS.data_dir, FLAGS.manual_dir, overrides)
                      for seed in range(FLAGS.seeds)] for name in FLAGS.configs}
    runtime.setup([c.batch_size for runs in configs.values() for c in runs] +
                  [c.eval_batch_size for runs in configs.values() for c in runs])
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "results.jsonl"), "w") as results_file:
      for name, runs in configs.items():
        for seed, config in enumerate(runs):
          workdir = os.path.join(output_dir, name, f"seed_{seed}")
          record = tables.train_or_read(config, workdir)
          run = {"config": name, "seed": seed, "training_minutes": tables.training_minutes(workdir),
                 "record": record}
          tables.append_run(results, results_file, name, run)
          print(f"{name} seed {seed}: {run['training_minutes']:.1f} min, "
                + ", ".join(f"{title} {record[key]:.2f}%" for key, title in COLUMNS
                            if key in record), flush=True)
  tables.write_table(output_dir, markdown_table(results) + tables.footnote(FLAGS.seeds))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
