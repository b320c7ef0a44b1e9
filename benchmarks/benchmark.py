r"""Speed of a config by the speedrun rule: a fixed schedule, its final accuracy over seeds.

    python -m benchmarks.benchmark --config configs/fast.py --seeds 5 \
        --output benchmarks/results/cpu_fast.json

trains the config from scratch with seeds 0 .. K-1, each on its fixed schedule (the
config's epochs and learning-rate schedule, never stopped early), and reports the final
test digit and sum accuracy (fixed pairing) of each seed, their mean ± sample standard
deviation and the worst seed, and the schedule's training time: the median over seeds,
without compilation (reported apart) and without the test evaluations. The schedule
reaches a target (--target, test sum accuracy) when the mean of the final accuracies
does; an accuracy touched by the curve before the end counts for nothing. Time to a
target is the training time of the shortest schedule that reaches it.

Every seed is also tested --evals_per_epoch times an epoch (time excluded): the curves
go to FILE.png beside the --output FILE.json, which holds every seed's evaluations, the
machine, the library versions and the command.

The same run measures how close the step runs to the machine's limit (roofline.py): the
training FLOPs per image from XLA's cost analysis of the compiled step, the achieved
GFLOP/s at the median images/s, and the machine's float32 matmul peak, timed in the run.

With --peer it also trains the PyTorch peer (benchmarks/torch_reference.py, `pip install
-e ".[bench]"`) on the same MNIST arrays in the same process, with seeds 0 ..
--peer_seeds - 1, its runs alternating with adder_jax's and never at the same time, by
the same rule; the comparison is at the peer's own mean final test sum accuracy: the
ratio of the training times, if adder_jax's schedule reaches it.

`--config.gradient_kernels=generic` times Flax's own layers and their autodiff gradients
instead of the CPU kernels (adder_jax/kernels.py); the config, and so that choice, is
saved with the results.
"""

import json
import os
import statistics
import sys
import time

from absl import flags
import jax
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from ml_collections import config_flags

from adder_jax import cli
from adder_jax import config_checks
from adder_jax import mnist
from adder_jax import runtime
from adder_jax import train
from adder_jax.errors import UserError
from benchmarks import machine
from benchmarks import roofline

FLAGS = flags.FLAGS


def define_flags():
  config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
  flags.DEFINE_integer("seeds", 5, "Seeds to train (0, 1, ...); the results are over all of them.",
                       lower_bound=1)
  flags.DEFINE_float("target", 99.3, "Test sum accuracy (%, fixed pairing) the schedule's mean "
                     "final accuracy must reach.")
  flags.DEFINE_integer("evals_per_epoch", 10, "Test evaluations per epoch, for the curves "
                       "(time excluded).", lower_bound=1)
  flags.DEFINE_string("output", None, "Where to write the JSON results; the plot goes beside "
                      "it, with the extension .png.")
  flags.DEFINE_bool("peer", False, "Also train the PyTorch peer (benchmarks/torch_reference.py).")
  flags.DEFINE_integer("peer_seeds", 3, "Seeds the peer trains.", lower_bound=1)
  flags.DEFINE_integer("peer_epochs", 5, "Epochs the peer trains.", lower_bound=1)
  flags.DEFINE_integer("peer_threads", 0, "torch.set_num_threads for the peer (0: one per core "
                       "this process may use, as adder_jax's CPU devices).", lower_bound=0)
  flags.mark_flags_as_required(["config"])


def train_seed(config, data, seed, evals_per_epoch):
  """Trains `config` with `seed` from scratch on `data`, timing every chunk and testing
  after each; returns the run's record (its `final` is the last evaluation's)."""
  config = config.copy_and_resolve_references()
  steps_per_epoch = len(data["train"]) // config.batch_size
  with config.unlocked():
    config.seed = seed
    config.steps_per_chunk = max(1, steps_per_epoch // evals_per_epoch)
  trainer = train.Trainer(config, data)
  compile_seconds = trainer.compile()
  state = jax.block_until_ready(trainer.init_state())

  train_seconds = steady_images = steady_seconds = 0.0
  evaluations = []
  for epoch in range(config.num_epochs):
    t0 = time.perf_counter()
    plan = jax.block_until_ready(trainer.epoch_plan(epoch))
    train_seconds += time.perf_counter() - t0
    chunk_start = 0
    for num_steps in trainer.chunk_lengths():
      t0 = time.perf_counter()
      state, _ = trainer.run_chunk(state, plan, chunk_start, num_steps)
      jax.block_until_ready(state)
      seconds = time.perf_counter() - t0
      train_seconds += seconds
      if epoch or chunk_start:  # The very first chunk is warm-up.
        steady_images += num_steps * config.batch_size
        steady_seconds += seconds
      chunk_start += num_steps
      step = epoch * trainer.steps_per_epoch + chunk_start
      evaluations.append({"step": step, "epochs": round(step / trainer.steps_per_epoch, 3),
                          "train_seconds": round(train_seconds, 3),
                          **trainer.test_metrics(trainer.predictions(state))})
  final = evaluations[-1]
  print(f"adder_jax seed {seed}: test digit {final['test_digit_accuracy']:.2f}%, sum "
        f"{final['test_sum_accuracy']:.2f}% after {_epochs(config.num_epochs)}, "
        f"{train_seconds:.1f} s", flush=True)
  return {"seed": seed, "compile_s": round(compile_seconds, 3),
          "train_seconds": round(train_seconds, 3),
          "images_per_second": round(steady_images / steady_seconds, 1) if steady_seconds else None,
          "final": final, "evaluations": evaluations}


def train_peer_seed(data, seed, epochs, evals_per_epoch):
  """Trains the PyTorch peer with `seed` on `data`, testing it `evals_per_epoch` times an
  epoch as adder_jax is; returns its record in the shape of `train_seed`'s."""
  from benchmarks import torch_reference  # pylint: disable=import-outside-toplevel
  history = torch_reference.train_and_evaluate(
      data["train"], data["test"], epochs=epochs, evals_per_epoch=evals_per_epoch, seed=seed,
      log=lambda record: None)
  return peer_record(seed, history)


def peer_record(seed, history):
  """The peer's run record from its evaluation records (torch_reference's)."""
  # The first interval holds the warm-up, as adder_jax's first chunk does.
  steady = history[1:] or history
  images = sum(e["images_per_second"] * e["train_seconds"] for e in steady)
  evaluations = [{"step": e["step"], "epochs": e["epochs"],
                  "train_seconds": e["cumulative_train_seconds"],
                  "test_digit_accuracy": e["test_digit_accuracy"],
                  "test_sum_accuracy": e["test_sum_accuracy"]} for e in history]
  final = evaluations[-1]
  print(f"peer seed {seed}: test digit {final['test_digit_accuracy']:.2f}%, sum "
        f"{final['test_sum_accuracy']:.2f}% after {_epochs(history[-1]['epoch'])}, "
        f"{final['train_seconds']:.1f} s", flush=True)
  return {"seed": seed, "train_seconds": final["train_seconds"],
          "images_per_second": round(images / sum(e["train_seconds"] for e in steady), 1),
          "final": final, "evaluations": evaluations}


def _epochs(count):
  return f"{count} epoch" + ("" if count == 1 else "s")


def _spread(values):
  return {"mean": round(statistics.mean(values), 3),
          "std": round(statistics.stdev(values), 3) if len(values) > 1 else 0.0,
          "worst": round(min(values), 3)}


def summarise(runs, target=None):
  """The rule's figures over seeds: final accuracies (mean, sample std, worst seed), the
  median training time, images/s and compile time, and whether the schedule reaches
  `target` (its mean final test sum accuracy at or above it)."""
  summary = {"seeds": [run["seed"] for run in runs]}
  for key in ("test_digit_accuracy", "test_sum_accuracy"):
    summary[key] = _spread([run["final"][key] for run in runs])
  for key in ("train_seconds", "images_per_second", "compile_s"):
    values = [run[key] for run in runs if run.get(key) is not None]
    if values:
      summary[f"median_{key}"] = round(statistics.median(values), 3)
  if target is not None:
    summary["target"] = target
    summary["reaches_target"] = summary["test_sum_accuracy"]["mean"] >= target
  return summary


def compare(ours, peer):
  """adder_jax against the peer at the peer's own mean final test sum accuracy: the ratio
  of the median training times if adder_jax's mean final reaches that accuracy, else None."""
  accuracy = peer["test_sum_accuracy"]["mean"]
  reached = ours["test_sum_accuracy"]["mean"] >= accuracy
  return {"at_test_sum_accuracy": accuracy, "adder_jax_reaches_it": reached,
          "speedup": round(peer["median_train_seconds"] / ours["median_train_seconds"], 2)
                     if reached else None}


def measure_roofline(config, data, images_per_second):
  """The step's FLOPs per image, its GFLOP/s at `images_per_second` and the matmul peak."""
  flops = roofline.train_flops_per_image(config, data)
  peak = roofline.matmul_peak_gflops()
  achieved = flops * images_per_second / 1e9
  return {"train_flops_per_image": round(flops), "achieved_gflops": round(achieved, 1),
          "matmul_peak_gflops": round(peak, 1), "fraction_of_peak": round(achieved / peak, 3)}


def recorded_config(config):
  """The config as JSON, without where MNIST is kept (not part of the result)."""
  recorded = json.loads(config.to_json())
  recorded["data"].update(data_dir=None, manual_dir=None)
  return recorded


# Flags whose values say where MNIST is kept: recorded as DIR.
_PATH_FLAGS = ("config.data.data_dir", "config.data.manual_dir")


def recorded_command(argv):
  """The command line that ran, its MNIST paths replaced by DIR."""
  return machine.recorded_command("benchmarks.benchmark", argv, _PATH_FLAGS)


def check_output(path):
  """Raises a UserError, before any training, if the results cannot go to `path`."""
  if not path.endswith(".json"):
    raise UserError(f"--output must name a .json file (the plot goes beside it), got {path!r}.")
  directory = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(directory):
    raise UserError(f"--output {path}: the directory {directory} does not exist.")


def check_peer_task(config):
  """Raises a UserError unless `config` trains the task the peer trains."""
  if config.task != "image_plus_number" or config.data.holdout_pairs:
    raise UserError("--peer trains the image + number task on every pair; it cannot be "
                    f"compared with task={config.task!r}, "
                    f"holdout_pairs={config.data.holdout_pairs!r}.")


def plot(results, path):
  """Test sum accuracy against training seconds of every seed, adder_jax's and (if run)
  the peer's, with the target."""
  figure = Figure(figsize=(7, 4.5))
  FigureCanvasAgg(figure)
  axes = figure.subplots()
  sides = [("runs", f"adder_jax ({results['config_file']})", "tab:blue"),
           ("peer_runs", "PyTorch peer (benchmarks/torch_reference.py)", "tab:orange")]
  for key, label, color in sides:
    for i, run in enumerate(results.get(key, [])):
      evaluations = run["evaluations"]
      axes.plot([e["train_seconds"] for e in evaluations],
                [e["test_sum_accuracy"] for e in evaluations], ".-", color=color, alpha=0.6,
                markersize=3, linewidth=1, label=f"{label}, {len(results[key])} seeds"
                if i == 0 else None)
  target = results["adder_jax"]["target"]
  axes.axhline(target, color="grey", linestyle=":", linewidth=1, label=f"target, {target}%")
  axes.set_ylim(97.0, 100.0)
  axes.set_xlim(left=0)
  axes.set_xlabel("training seconds (evaluation excluded)")
  axes.set_ylabel("test sum accuracy (%, fixed pairing)")
  info = results["machine"]
  hardware = (f"{info['cpu']}, {info['usable_cores']} cores" if info["platform"] == "cpu"
              else info["device_kind"])
  software = f"JAX {info['jax']}" + (f", PyTorch {info['torch']}" if "torch" in info else "")
  axes.set_title(f"{hardware}; {software}", fontsize=10)
  axes.grid(alpha=0.3)
  axes.legend(loc="lower right", fontsize=9)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  return figure


def run_all(config, data, seeds, target, evals_per_epoch, torch=None, peer_seeds=0,
            peer_epochs=5):
  """Trains adder_jax's `seeds` and (with `torch`) the peer's `peer_seeds`, alternating
  (adder_jax seed 0, peer seed 0, adder_jax seed 1, ...); the results dict, without the
  command and machine."""
  runs, peer_runs = [], []
  for seed in range(max(seeds, peer_seeds if torch else 0)):
    if seed < seeds:
      runs.append(train_seed(config, data, seed, evals_per_epoch))
    if torch is not None and seed < peer_seeds:
      peer_runs.append(train_peer_seed(data, seed, peer_epochs, evals_per_epoch))
  results = {"adder_jax": summarise(runs, target)}
  results["adder_jax"].update(
      measure_roofline(config, data, results["adder_jax"]["median_images_per_second"]))
  if peer_runs:
    results["peer"] = {**summarise(peer_runs), "epochs": peer_epochs}
    results["comparison"] = compare(results["adder_jax"], results["peer"])
  results["runs"] = runs
  if peer_runs:
    results["peer_runs"] = peer_runs
  return results


def main(argv):
  del argv
  cli.quiet_library_logs()
  config = FLAGS.config
  with cli.exit_on_user_error():
    train.check_config(config)
    if FLAGS.output:
      check_output(FLAGS.output)
    torch = None
    if FLAGS.peer:
      check_peer_task(config)
      torch = import_torch(FLAGS.peer_threads or runtime.usable_cores())
    runtime.setup([config.batch_size, config.eval_batch_size])
    config_checks.check_batches_split(config, jax.device_count())
    data = mnist.load(config.data)
    results = {"command": recorded_command(sys.argv), "machine": machine.describe(torch),
               "config_file": _config_file(), "config": recorded_config(config),
               **run_all(config, data, FLAGS.seeds, FLAGS.target, FLAGS.evals_per_epoch,
                         torch, FLAGS.peer_seeds, FLAGS.peer_epochs)}
  print(summary_text(results))
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      json.dump(results, f, indent=2)
    plot(results, os.path.splitext(FLAGS.output)[0] + ".png")


def import_torch(threads):
  """torch with `threads` intra-op threads; a UserError if it is not installed."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise UserError(f"--peer needs PyTorch ({e}); install it with pip install -e \".[bench]\".") from e
  torch.set_num_threads(threads)
  return torch


def _config_file():
  return os.path.relpath(flags.FLAGS["config"].config_filename)


def _accuracy_line(name, summary):
  digit, total = summary["test_digit_accuracy"], summary["test_sum_accuracy"]
  return (f"{name}: final test sum {total['mean']:.2f} ± {total['std']:.2f}% (worst seed "
          f"{total['worst']:.2f}%), digit {digit['mean']:.2f} ± {digit['std']:.2f}% (worst "
          f"{digit['worst']:.2f}%) over {len(summary['seeds'])} seeds; training "
          f"{summary['median_train_seconds']:.1f} s (median), "
          f"{summary['median_images_per_second']:,.0f} images/s")


def summary_text(results):
  """What the run found, in a few lines."""
  ours = results["adder_jax"]
  lines = [_accuracy_line(f"adder_jax ({results['config_file']})", ours)
           + f", compile {ours['median_compile_s']:.1f} s",
           f"  the schedule {'reaches' if ours['reaches_target'] else 'does not reach'} "
           f"{ours['target']}% (mean final test sum accuracy)",
           f"  {ours['train_flops_per_image'] / 1e6:.1f} MFLOP per training image, "
           f"{ours['achieved_gflops']:.0f} GFLOP/s: {100 * ours['fraction_of_peak']:.0f}% of "
           f"the {ours['matmul_peak_gflops']:.0f} GFLOP/s float32 matmul peak"]
  if "peer" in results:
    lines.append(_accuracy_line("PyTorch peer", results["peer"]))
    comparison = results["comparison"]
    lines.append(f"  at the peer's {comparison['at_test_sum_accuracy']:.2f}%: " + (
        f"adder_jax {comparison['speedup']}x faster" if comparison["adder_jax_reaches_it"]
        else "adder_jax's schedule does not reach it"))
  return "\n".join(lines)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
