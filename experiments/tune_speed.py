r"""Chooses the speed configs' settings on a validation split, never on the test set.

    python -m experiments.tune_speed --data_dir=/tmp/tfds --output_dir=/tmp/tune_speed

Every candidate of CANDIDATES is configs/default.py with its overrides, trained with
--validation_size training images set aside (config.data.validation_size: the same
images for every run) for --seeds seeds, in OUTPUT_DIR/CANDIDATE/seed_S, so an
interrupted search resumes where it stopped. The table (mean ± sample standard deviation
and the worst seed of the last epoch's validation accuracies) goes to OUTPUT_DIR/table.md
and stdout, every run's final record to OUTPUT_DIR/results.jsonl. `--only=NAME,NAME`
trains a subset. A candidate's cost is its epochs times its network's time per epoch,
which benchmarks/benchmark.py measures on an otherwise idle machine; the training
seconds in results.jsonl are only as good as the machine was idle.
"""

import os

from absl import flags
from absl import logging

from adder_jax import cli
from adder_jax import runtime
from adder_jax.errors import UserError
from configs import default
from experiments import tables

FLAGS = flags.FLAGS


def define_flags():
  tables.define_run_flags(2, "Seeds per candidate (0, 1, ...).")
  flags.DEFINE_integer("validation_size", 10_000, "Training images set aside for validation.",
                       lower_bound=1)
  flags.DEFINE_list("only", [], "Train only these candidates (default: all).")
  flags.adopt_module_key_flags(tables)

_LEAN = {"model.dropout_rate": 0.0}
_LEAN_LS = {"model.dropout_rate": 0.0, "loss.label_smoothing": 0.1}
_LEAN_LS2 = {"model.dropout_rate": 0.0, "loss.label_smoothing": 0.2}
_HALF_WIDTH = {"model.conv_layers": "16M 32M 64M", "model.dense_features": (128,)}
_THREE_QUARTER_WIDTH = {"model.conv_layers": "24M 48M 96M"}
# configs/fast.py's settings, to vary one at a time.
_FAST = {"num_epochs": 2, "optimizer.learning_rate": 1e-2, **_LEAN_LS2, **_HALF_WIDTH}

# (name, overrides of configs/default.py). Short schedules first: the 99.3% search, then
# the 99.5% one.
CANDIDATES = (
    ("e1", {"num_epochs": 1}),
    ("e1_lr6", {"num_epochs": 1, "optimizer.learning_rate": 6e-3}),
    ("e1_lr6_lean", {"num_epochs": 1, "optimizer.learning_rate": 6e-3, **_LEAN}),
    ("e1_lr6_lean_ls", {"num_epochs": 1, "optimizer.learning_rate": 6e-3,
                        "loss.label_smoothing": 0.1, **_LEAN}),
    ("e1_b256_lr8_lean", {"num_epochs": 1, "batch_size": 256, "optimizer.learning_rate": 8e-3,
                          **_LEAN}),
    ("e1_lr6_lean_ema", {"num_epochs": 1, "optimizer.learning_rate": 6e-3, "ema_decay": 0.99,
                         **_LEAN}),
    ("e2", {"num_epochs": 2}),
    ("e2_half_lr6_lean", {"num_epochs": 2, "optimizer.learning_rate": 6e-3, **_HALF_WIDTH,
                          **_LEAN}),
    ("e1_lr6_lean_ls2", {"num_epochs": 1, "optimizer.learning_rate": 6e-3, **_LEAN_LS2}),
    ("e1_lr10_lean_ls", {"num_epochs": 1, "optimizer.learning_rate": 1e-2, **_LEAN_LS}),
    ("e1_w24_lr6_lean_ls", {"num_epochs": 1, "optimizer.learning_rate": 6e-3, **_LEAN_LS,
                            **_THREE_QUARTER_WIDTH}),
    ("e2_lr6_lean_ls", {"num_epochs": 2, "optimizer.learning_rate": 6e-3, **_LEAN_LS}),
    ("e2_w24_lr6_lean_ls", {"num_epochs": 2, "optimizer.learning_rate": 6e-3, **_LEAN_LS,
                            **_THREE_QUARTER_WIDTH}),
    ("e2_half_lr6_lean_ls", {"num_epochs": 2, "optimizer.learning_rate": 6e-3, **_LEAN_LS,
                             **_HALF_WIDTH}),
    ("e1_lr10_lean_ls2", {"num_epochs": 1, "optimizer.learning_rate": 1e-2, **_LEAN_LS2}),
    ("e2_lr10_lean_ls2", {"num_epochs": 2, "optimizer.learning_rate": 1e-2, **_LEAN_LS2}),
    ("e2_w24_lr10_lean_ls2", {"num_epochs": 2, "optimizer.learning_rate": 1e-2, **_LEAN_LS2,
                              **_THREE_QUARTER_WIDTH}),
    ("e3_lr6_lean_ls", {"num_epochs": 3, "optimizer.learning_rate": 6e-3, **_LEAN_LS}),
    ("e2_half_lr10_lean_ls2", {"num_epochs": 2, "optimizer.learning_rate": 1e-2, **_LEAN_LS2,
                               **_HALF_WIDTH}),
    ("e1_half_lr10_lean_ls2", {"num_epochs": 1, "optimizer.learning_rate": 1e-2, **_LEAN_LS2,
                               **_HALF_WIDTH}),
    ("e3_half_lr10_lean_ls2", {"num_epochs": 3, "optimizer.learning_rate": 1e-2, **_LEAN_LS2,
                               **_HALF_WIDTH}),
    ("e4_half_lr10_lean_ls2", {"num_epochs": 4, "optimizer.learning_rate": 1e-2, **_LEAN_LS2,
                               **_HALF_WIDTH}),
    ("e3_half_lr6_lean_ls", {"num_epochs": 3, "optimizer.learning_rate": 6e-3, **_LEAN_LS,
                             **_HALF_WIDTH}),
    ("e3_w24_lr6_lean_ls", {"num_epochs": 3, "optimizer.learning_rate": 6e-3, **_LEAN_LS,
                            **_THREE_QUARTER_WIDTH}),
    ("e4", {"num_epochs": 4}),
    ("e5", {"num_epochs": 5}),
    ("e5_ls", {"num_epochs": 5, "loss.label_smoothing": 0.1}),
    ("e4_aug", {"num_epochs": 4, "augment.max_rotation": 10.0, "augment.max_scale": 0.1,
                "augment.max_shift": 2.0}),
    # The half-width network's depth and where its pools go, on the fast settings.
    ("e2_half_deep_lr10_lean_ls2", {**_FAST, "model.conv_layers": "16M 32 32M 64 64M"}),
    ("e1_half_deep_lr10_lean_ls2", {"num_epochs": 1, "optimizer.learning_rate": 1e-2,
                                    **_LEAN_LS2, **_HALF_WIDTH,
                                    "model.conv_layers": "16M 32 32M 64 64M"}),
    ("e2_half_shallow_lr10_lean_ls2", {**_FAST, "model.conv_layers": "16M 32M"}),
    ("e2_half_late_pool_lr10_lean_ls2", {**_FAST, "model.conv_layers": "16 32M 64M"}),
    # The schedule's shape, on the fast settings.
    ("e2_half_lr10_lean_ls2_warm1", {**_FAST, "optimizer.warmup_fraction": 0.1}),
    ("e2_half_lr10_lean_ls2_warm3", {**_FAST, "optimizer.warmup_fraction": 0.3}),
    ("e2_half_lr10_lean_ls2_cosine", {**_FAST, "optimizer.schedule": "warmup_cosine"}),
)


def make_config(overrides, seed):
  config = default.get_config()
  config.seed = seed
  tables.with_data(config, FLAGS.data_dir, FLAGS.manual_dir)
  config.data.validation_size = FLAGS.validation_size
  config.update_from_flattened_dict(overrides)
  return config


def chosen_candidates():
  names = [name for name, _ in CANDIDATES]
  unknown = sorted(set(FLAGS.only) - set(names))
  if unknown:
    raise UserError(f"--only: no candidate {', '.join(unknown)}; the candidates are "
                    f"{', '.join(names)}.")
  return [(name, overrides) for name, overrides in CANDIDATES
          if not FLAGS.only or name in FLAGS.only]


def markdown_table(results):
  """One row per candidate: its overrides and validation accuracies."""
  header = ["candidate", "overrides of configs/default.py", "validation sum", "worst seed",
            "validation digit"]
  rows = []
  for name, runs in results.items():
    sums = [run["record"]["validation_sum_accuracy"] for run in runs]
    overrides = ", ".join(f"{key}={value}" for key, value in runs[0]["overrides"].items())
    rows.append([name, overrides, tables.mean_std(sums), f"{min(sums):.2f}",
                 tables.mean_std([run["record"]["validation_digit_accuracy"] for run in runs])])
  return tables.markdown(header, rows)


def main(argv):
  del argv  # cli.run refuses positional arguments.
  logging.set_verbosity(logging.WARNING)
  output_dir = os.path.abspath(FLAGS.output_dir)
  results = {}
  with cli.exit_on_interrupt(), cli.exit_on_user_error():
    candidates = chosen_candidates()
    configs = [make_config(overrides, 0) for _, overrides in candidates]
    runtime.setup([c.batch_size for c in configs] + [c.eval_batch_size for c in configs])
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "results.jsonl"), "w") as results_file:
      for name, overrides in candidates:
        for seed in range(FLAGS.seeds):
          workdir = os.path.join(output_dir, name, f"seed_{seed}")
          record = tables.train_or_read(make_config(overrides, seed), workdir)
          seconds = 60 * tables.training_minutes(workdir)
          run = {"candidate": name, "seed": seed, "overrides": overrides,
                 "training_seconds": round(seconds, 1), "record": record}
          tables.append_run(results, results_file, name, run)
          print(f"{name} seed {seed}: validation sum {record['validation_sum_accuracy']:.2f}%, "
                f"{seconds:.1f} s", flush=True)
  tables.write_table(output_dir, markdown_table(results) + (
      f"\nValidation accuracies (%) after the last epoch ({FLAGS.validation_size:,} training "
      f"images set aside): mean ± sample standard deviation over {FLAGS.seeds} seeds, and "
      f"the worst seed's sum accuracy.\n"))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
