"""Multi-digit MNIST addition at several N, over seeds and networks, beside the published
figures: a markdown table and a plot of sum accuracy against N.

    python -m experiments.multi_digit --digits=1,2,4,15 --seeds=3 \
      --configs=multi_digit,multi_digit_lenet --data_dir=/tmp/tfds --output_dir=/tmp/md

Each config (a module of configs/ with task 'multi_digit') trains at each N with seeds
0, 1, ... in OUTPUT_DIR/CONFIG/N_DIGITS/seed_S (an interrupted run resumes), with batches
of 120 images (60 / N examples; see `batch_size`). The table (OUTPUT_DIR/table.md and
stdout) gives the mean ± sample standard deviation over the seeds of the last epoch's
test sum accuracy (the most probable digits added, and the exact most probable sum), of
the digit accuracy on the 10,000 MNIST test images, of p^(2N) for that digit accuracy p
(the chance that all 2N digits are right), and of the training minutes; OUTPUT_DIR/
sum_accuracy_by_digits.png plots the sum accuracy (digits added) and p^(2N) against N,
with the published figures. Every run's final record goes to
OUTPUT_DIR/results.jsonl. The flags --configs, --seeds, --data_dir, --manual_dir and
--output_dir are those of experiments/compare_configs.py.
"""

import os

from absl import flags
from absl import logging
import matplotlib
import numpy as np

from adder_jax import cli
from adder_jax import runtime
from adder_jax import train
from adder_jax.errors import UserError
from experiments import compare_configs
from experiments import tables

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

_DIGITS = flags.DEFINE_list("digits", ["1", "2", "4", "15"], "Digits per number, N.")
flags.register_validator(
    "digits", lambda values: all(v.isdigit() and int(v) > 0 for v in values),
    message="--digits must list whole numbers above 0, e.g. 1,2,4,15")
flags.FLAGS.set_default("configs", ["multi_digit", "multi_digit_lenet"])

# Images per batch at every N: 60,000 / 2N examples split into batches of 60 / N.
IMAGES_PER_BATCH = 120

# Published test sum accuracies of the standard protocol (mean of runs, ± standard
# deviation where given), by N: (system, accuracy, std or None).
PUBLISHED = {
    1: (("DeepStochLog", 97.9, 0.1), ("A-NeSI", 97.66, None)),
    2: (("DeepStochLog", 96.4, None),),
    4: (("DeepSoftLog", 93.5, 0.6), ("DeepStochLog", 92.7, None)),
    15: (("PLIA", 79.00, 0.73), ("DeepSoftLog", 77.1, None), ("A-NeSI", 76.84, 2.82)),
}


def batch_size(num_digits):
  """Examples (pairs of numbers) per batch: IMAGES_PER_BATCH images, or the nearest
  whole number of examples below."""
  return max(1, IMAGES_PER_BATCH // (2 * num_digits))


def all_digits_right(digit_accuracy, num_digits):
  """p^(2N) in percent for a digit accuracy p in percent."""
  return 100.0 * (digit_accuracy / 100.0) ** (2 * num_digits)


def load_config(name, num_digits, seed):
  config = compare_configs.load_config(name, seed)
  if config.task != "multi_digit":
    raise UserError(f"--configs: configs/{name}.py trains task {config.task!r}, not "
                    "'multi_digit'.")
  config.data.num_digits = num_digits
  config.batch_size = batch_size(num_digits)
  return config


def _published_cell(num_digits):
  systems = PUBLISHED.get(num_digits, ())
  return "; ".join(f"{system} {value:.2f}" + (f" ± {std:.2f}" if std else "")
                   for system, value, std in systems) or "–"


def markdown_table(results):
  """One row per (config, N)."""
  header = ["network", "N", "epochs", "sum: digits added", "sum: most probable",
            "digit", "p^(2N)", "training minutes", "published"]
  rows = []
  for (name, num_digits), runs in results.items():
    records = [run["record"] for run in runs]
    digit = [r["test_digit_accuracy"] for r in records]
    rows.append([
        f"`{name}`", str(num_digits), str(records[0]["epoch"]),
        tables.mean_std([r["test_sum_accuracy"] for r in records]),
        tables.mean_std([r["test_sum_accuracy_most_probable"] for r in records]),
        tables.mean_std(digit),
        tables.mean_std([all_digits_right(d, num_digits) for d in digit]),
        tables.mean_std([run["training_minutes"] for run in runs], digits=1),
        _published_cell(num_digits)])
  return tables.markdown(header, rows)


def plot(results, path):
  """Sum accuracy against N per config (mean and std over seeds), the p^(2N) curve of
  each config's mean digit accuracy, and the published figures."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  names = list(dict.fromkeys(name for name, _ in results))
  for color, name in zip(("C0", "C1", "C2", "C4"), names):
    digits = sorted(n for config, n in results if config == name)
    sums = [[run["record"]["test_sum_accuracy"] for run in results[name, n]] for n in digits]
    spread = [np.std(s, ddof=1) if len(s) > 1 else 0.0 for s in sums]
    ax.errorbar(digits, [np.mean(s) for s in sums], yerr=spread,
                marker="o", capsize=3, color=color, label=f"{name}: sum accuracy")
    p = np.mean([run["record"]["test_digit_accuracy"]
                 for n in digits for run in results[name, n]])
    curve = np.linspace(1, max(digits), 100)
    ax.plot(curve, all_digits_right(p, curve), "--", color=color,
            label=f"{name}: p^(2N), p = {p:.2f}% (mean digit accuracy)")
  for n, systems in sorted(PUBLISHED.items()):
    best = max(systems, key=lambda s: s[1])
    ax.plot([n], [best[1]], "kx")
    ax.annotate(best[0], (n, best[1]), textcoords="offset points", xytext=(4, -10), fontsize=8)
  ax.plot([], [], "kx", label="best published figure")
  ax.set_xlabel("digits per number, N")
  ax.set_ylabel("test sum accuracy (%)")
  ax.set_title("Multi-digit MNIST addition, learned from the sum alone")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="lower left")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv):
  del argv  # cli.run refuses positional arguments.
  logging.set_verbosity(logging.WARNING)
  # pylint: disable=protected-access
  output_dir = os.path.abspath(compare_configs._OUTPUT_DIR.value)
  seeds = compare_configs._SEEDS.value
  results = {}
  with cli.exit_on_user_error():
    digits = [int(n) for n in _DIGITS.value]
    runs = [(name, n, seed, load_config(name, n, seed))
            for name in compare_configs._CONFIGS.value
            for n in digits for seed in range(seeds)]
    runtime.setup([c.batch_size for *_, c in runs] + [c.eval_batch_size for *_, c in runs])
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "results.jsonl"), "w") as results_file:
      for name, n, seed, config in runs:
        workdir = os.path.join(output_dir, name, str(n), f"seed_{seed}")
        record = train.train_and_evaluate(config, workdir)
        run = {"config": name, "num_digits": n, "seed": seed,
               "training_minutes": compare_configs.training_minutes(workdir), "record": record}
        tables.append_run(results, results_file, (name, n), run)
        print(f"{name} N={n} seed {seed}: {run['training_minutes']:.1f} min, digit "
              f"{record['test_digit_accuracy']:.2f}%, sum {record['test_sum_accuracy']:.2f}% "
              f"(most probable {record['test_sum_accuracy_most_probable']:.2f}%)", flush=True)
  plot(results, os.path.join(output_dir, "sum_accuracy_by_digits.png"))
  tables.write_table(output_dir, markdown_table(results) + tables.footnote(seeds))


if __name__ == "__main__":
  cli.run(main)
