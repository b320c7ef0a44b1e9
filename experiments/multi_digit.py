"""Multi-digit MNIST addition over networks, pairings, N and seeds, beside the best
published figures: a markdown table and a plot of sum accuracy against N.

    python -m experiments.multi_digit --seeds=5 --data_dir=/tmp/tfds --output_dir=/tmp/md \
      --runs=multi_digit_lenet/fixed/1,2,4,15,100 \
      --runs=multi_digit/fixed/4,15,100 --runs=multi_digit/fresh/4,15,100

Each --runs CONFIG/PAIRING/N,N,... (CONFIG a module of configs/ with task 'multi_digit',
PAIRING one of adder_jax.pairing.PAIRINGS) trains at each N with seeds 0, 1, ... in
OUTPUT_DIR/CONFIG/PAIRING/N/seed_S (a finished run is read from its metrics.jsonl, an
interrupted one resumes), with batches of up to 120 images (see `batch_size`). Every
--set FIELD=VALUE overrides that config field in every run; --validation_size sets
images of the training set aside, and the table then reports validation accuracies:
choose settings that way, never on the test set.

The table (OUTPUT_DIR/table.md and stdout) has one row per (CONFIG, PAIRING, N): the
mean ± sample standard deviation over the seeds of the last epoch's sum accuracy (the
most probable digits added) with the worst seed, the exact most probable sum, the digit
accuracy on all the split's images, p^(2N) for that digit accuracy p (the chance that all
2N digits are right), the training minutes, the best published figure at that N and
where the row stands against it (test accuracies of fixed-pairing rows only: the
published figures are of that protocol); under it, every published figure with its
source.
OUTPUT_DIR/sum_accuracy_by_digits.png plots the sum accuracy against N with every
published figure; OUTPUT_DIR/results.jsonl holds every run's final record.
"""

import os

from absl import flags
from absl import logging
import matplotlib
import numpy as np

from adder_jax import cli
from adder_jax import pairing
from adder_jax import runtime
from adder_jax.errors import UserError
from experiments import compare_configs
from experiments import tables

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS

# The rows of the literature's comparison: the LeNet-style network at every published N
# under the literature's protocol, and the repository's network under both pairings.
DEFAULT_RUNS = ("multi_digit_lenet/fixed/1,2,4,15,100", "multi_digit/fixed/4,15,100",
                "multi_digit/fresh/4,15,100")


def define_flags():
  tables.define_run_flags(5, "Seeds per row (0, 1, ...).")
  flags.DEFINE_multi_string("runs", list(DEFAULT_RUNS),
                            "CONFIG/PAIRING/N,N,...: a config of configs/ with task "
                            "'multi_digit', a pairing (fixed, fresh) and the digits per number.")
  tables.define_set_flag()
  flags.DEFINE_integer("validation_size", 0, "Training images set aside; > 0 reports "
                       "validation accuracies instead of test ones.", lower_bound=0)
  flags.adopt_module_key_flags(tables)

# Images per batch at every N (at most): 60 / N examples, rounded down to an even number.
IMAGES_PER_BATCH = 120

# Where the published figures come from ("not checked": not read in the source itself).
# NeSyDM's Table 1 gives PLIA's figures as recomputed from PLIA's runs; DeepStochLog's
# are those tabulated in A-NeSI's repository (data-analysis/results_other_methods.csv).
SOURCES = {
    "nesydm": "NeSyDM (van Krieken et al., NeurIPS 2025), Table 1",
    "anesi": ("A-NeSI (van Krieken et al., NeurIPS 2023), its better variant, from the "
              "authors' runs (data-analysis/runs.csv of HEmile/a-nesi)"),
    "deepstochlog": "DeepStochLog (Winters et al., AAAI 2022), via A-NeSI's repository",
    "deepsoftlog": "DeepSoftLog (Maene and De Raedt, NeurIPS 2023); not checked",
    "ctsketch": "CTSketch (NeurIPS 2025, arXiv 2503.24123); not checked",
}

# Published test sum accuracies under the literature's protocol, by N: (system, mean of
# its runs, sample std or None, key of SOURCES).
PUBLISHED = {
    1: (("DeepSoftLog", 98.4, None, "deepsoftlog"), ("CTSketch", 98.3, None, "ctsketch"),
        ("DeepStochLog", 97.9, 0.1, "deepstochlog"), ("A-NeSI", 97.66, 0.21, "anesi")),
    2: (("CTSketch", 96.7, None, "ctsketch"), ("DeepSoftLog", 96.6, None, "deepsoftlog"),
        ("DeepStochLog", 96.4, 0.1, "deepstochlog"), ("A-NeSI", 96.04, 0.46, "anesi")),
    4: (("DeepSoftLog", 93.5, 0.6, "nesydm"), ("DeepStochLog", 92.7, 0.6, "deepstochlog"),
        ("A-NeSI", 92.56, 0.79, "nesydm"), ("CTSketch", 92.5, None, "ctsketch"),
        ("NeSyDM", 92.49, 0.98, "nesydm"), ("PLIA", 91.84, 0.73, "nesydm")),
    15: (("PLIA", 79.00, 0.73, "nesydm"), ("NeSyDM", 77.29, 1.40, "nesydm"),
         ("DeepSoftLog", 77.1, 1.6, "nesydm"), ("A-NeSI", 76.84, 2.82, "nesydm"),
         ("CTSketch", 74.8, None, "ctsketch")),
    100: (("DeepSoftLog", 25.6, None, "deepsoftlog"), ("CTSketch", 23.5, None, "ctsketch")),
}


def published_table():
  """Every published figure of PUBLISHED with its source, one row per (N, system)."""
  rows = [[str(n), system, f"{mean:.2f}" + (f" ± {std:.2f}" if std else ""), SOURCES[key]]
          for n, systems in sorted(PUBLISHED.items()) for system, mean, std, key in systems]
  return tables.markdown(["N", "system", "test sum accuracy", "source"], rows)


def parse_runs(specs):
  """[(config, pairing, N)] of the --runs specs, in their order; UserError if malformed."""
  runs = []
  for spec in specs:
    parts = spec.split("/")
    if (len(parts) != 3 or parts[1] not in pairing.PAIRINGS
        or not all(n.isdigit() and int(n) > 0 for n in parts[2].split(","))):
      raise UserError(f"--runs {spec!r}: write CONFIG/PAIRING/N,N,... with PAIRING one of "
                      f"{', '.join(pairing.PAIRINGS)}, e.g. multi_digit/fixed/4,15.")
    runs += [(parts[0], parts[1], int(n)) for n in parts[2].split(",")]
  return runs


def batch_size(num_digits):
  """Examples (pairs of numbers) per batch: the largest even number within
  IMAGES_PER_BATCH images, and at least 2. Even at every N, so that one process training
  several N splits every batch over two CPU devices (runtime.use_cpu_cores gives it as
  many devices as divide every batch size; an odd one would leave it a single core)."""
  return max(2, 2 * (IMAGES_PER_BATCH // (4 * num_digits)))


def all_digits_right(digit_accuracy, num_digits):
  """p^(2N) in percent for a digit accuracy p in percent."""
  return 100.0 * (digit_accuracy / 100.0) ** (2 * num_digits)


def make_config(name, pairing_name, num_digits, seed, overrides=None, validation_size=0,
                data_dirs=(None, None)):
  config = compare_configs.load_config(name, seed, *data_dirs)
  if config.task != "multi_digit":
    raise UserError(f"--runs: configs/{name}.py trains task {config.task!r}, not "
                    "'multi_digit'.")
  config.data.num_digits = num_digits
  config.data.pairing = pairing_name
  config.data.validation_size = validation_size
  config.batch_size = batch_size(num_digits)
  # The overrides win over the row's settings.
  return tables.apply_overrides(config, overrides)


def standing(accuracies, best):
  """Where a row's sum accuracies stand against the best published mean: 'above' only if
  their mean minus one sample standard deviation is above it, 'below' if their mean plus
  one is below it, else 'within'."""
  mean = np.mean(accuracies)
  std = np.std(accuracies, ddof=1) if len(accuracies) > 1 else 0.0
  return "above" if mean - std > best else "below" if mean + std < best else "within"


def _best_published(num_digits):
  systems = PUBLISHED.get(num_digits)
  return max(systems, key=lambda s: s[1]) if systems else None


def markdown_table(results, split="test"):
  """One row per (config, pairing, N), accuracies of `split` ('test' or 'validation')."""
  header = ["network", "pairing", "N", "epochs", "sum: digits added", "worst seed",
            "sum: most probable", "digit", "p^(2N)", "training minutes", "best published",
            "against it"]
  rows = []
  for (name, pairing_name, num_digits), runs in results.items():
    records = [run["record"] for run in runs]
    sums = [r[f"{split}_sum_accuracy"] for r in records]
    digit = [r[f"{split}_digit_accuracy"] for r in records]
    # Published figures are test accuracies under the fixed pairing: a validation row is
    # not set against them, and a fresh-pairing row only shows them.
    best = _best_published(num_digits) if split == "test" else None
    rows.append([
        f"`{name}`", pairing_name, str(num_digits), str(records[0]["epoch"]),
        tables.mean_std(sums), f"{min(sums):.2f}",
        tables.mean_std([r[f"{split}_sum_accuracy_most_probable"] for r in records]),
        tables.mean_std(digit),
        tables.mean_std([all_digits_right(d, num_digits) for d in digit]),
        tables.mean_std([run["training_minutes"] for run in runs], digits=1),
        (f"{best[1]:.2f}" + (f" ± {best[2]:.2f}" if best[2] else "") + f" {best[0]}")
        if best else "–",
        standing(sums, best[1]) if best and pairing_name == "fixed"
        else "not their protocol" if best else "–"])
  return tables.markdown(header, rows)


def plot(results, path, split="test"):
  """Sum accuracy against N per (config, pairing) (mean and std over seeds), the p^(2N)
  curve of each one's mean digit accuracy, and every published figure."""
  fig, ax = plt.subplots(figsize=(7.5, 4.8))
  lines = list(dict.fromkeys((name, pairing_name) for name, pairing_name, _ in results))
  for color, (name, pairing_name) in zip(("C0", "C1", "C2", "C4", "C5", "C6"), lines):
    digits = sorted(n for c, p, n in results if (c, p) == (name, pairing_name))
    sums = [[run["record"][f"{split}_sum_accuracy"] for run in results[name, pairing_name, n]]
            for n in digits]
    spread = [np.std(s, ddof=1) if len(s) > 1 else 0.0 for s in sums]
    ax.errorbar(digits, [np.mean(s) for s in sums], yerr=spread, marker="o", capsize=3,
                color=color, label=f"{name}, {pairing_name}: sum accuracy")
    p = np.mean([run["record"][f"{split}_digit_accuracy"]
                 for n in digits for run in results[name, pairing_name, n]])
    curve = np.geomspace(1, max(digits), 100)
    ax.plot(curve, all_digits_right(p, curve), "--", color=color, alpha=0.6,
            label=f"p^(2N), p = {p:.2f}%")
  markers = {}
  # Published figures are test accuracies: a validation plot does not show them.
  for n, systems in sorted(PUBLISHED.items()) if split == "test" else ():
    for system, value, *_ in systems:
      marker = markers.setdefault(system, "xo+sdv^<>"[len(markers)])
      ax.plot([n], [value], marker, color="k", fillstyle="none", markersize=5,
              label=system if n == min(k for k, s in PUBLISHED.items()
                                       if system in (x[0] for x in s)) else None)
  ax.set_xscale("log")
  ax.set_xlabel("digits per number, N")
  ax.set_ylabel(f"{split} sum accuracy (%)")
  ax.set_title("Multi-digit MNIST addition, learned from the sum alone")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="lower left", ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def run_all(runs, seeds, output_dir, overrides=None, validation_size=0,
            data_dirs=(None, None)):
  """Trains every (config, pairing, N) of `runs` with seeds 0 .. seeds-1 (finished runs
  are read, see tables.train_or_read) on the MNIST of `data_dirs` (data_dir,
  manual_dir), writing results.jsonl, the table and the plot in `output_dir`; returns
  the results, {(config, pairing, N): [run, ...]}."""
  split = "validation" if validation_size else "test"
  jobs = [(name, p, n, seed,
           make_config(name, p, n, seed, overrides, validation_size, data_dirs))
          for name, p, n in runs for seed in range(seeds)]
  runtime.setup([c.batch_size for *_, c in jobs] + [c.eval_batch_size for *_, c in jobs])
  os.makedirs(output_dir, exist_ok=True)
  results = {}
  with open(os.path.join(output_dir, "results.jsonl"), "w") as results_file:
    for name, pairing_name, n, seed, config in jobs:
      workdir = os.path.join(output_dir, name, pairing_name, str(n), f"seed_{seed}")
      record = tables.train_or_read(config, workdir)
      run = {"config": name, "pairing": pairing_name, "num_digits": n, "seed": seed,
             "training_minutes": tables.training_minutes(workdir), "record": record}
      tables.append_run(results, results_file, (name, pairing_name, n), run)
      print(f"{name} {pairing_name} N={n} seed {seed}: {run['training_minutes']:.1f} min, "
            f"{split} digit {record[f'{split}_digit_accuracy']:.2f}%, sum "
            f"{record[f'{split}_sum_accuracy']:.2f}%", flush=True)
  plot(results, os.path.join(output_dir, "sum_accuracy_by_digits.png"), split)
  tables.write_table(output_dir, markdown_table(results, split) + tables.footnote(seeds)
                     .replace("Test accuracies", f"{split.capitalize()} accuracies")
                     + ("\nPublished figures:\n\n" + published_table() if split == "test" else ""))
  return results


def main(argv):
  del argv  # cli.run refuses positional arguments.
  logging.set_verbosity(logging.WARNING)
  with cli.exit_on_interrupt(), cli.exit_on_user_error():
    run_all(parse_runs(FLAGS.runs), FLAGS.seeds, os.path.abspath(FLAGS.output_dir),
            tables.parse_overrides(FLAGS.set), FLAGS.validation_size,
            (FLAGS.data_dir, FLAGS.manual_dir))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
