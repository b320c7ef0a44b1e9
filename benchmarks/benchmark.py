r"""Training speed of a config: compile time, throughput, epoch time, time-to-target.

Time-to-target is the training wall time from the first step until the test sum
accuracy (fixed pairing) first reaches --target, evaluating --evals_per_epoch times per
epoch; compile and evaluation time are measured and reported separately. With --peer it
then trains the PyTorch peer (benchmarks/torch_reference.py, `pip install -e ".[bench]"`)
on the same MNIST arrays in the same process, after adder_jax, never at the same time,
tested as often, with one thread per core, and prints both side by side with the ratios
(time-to-target also with adder_jax's compile time added: the peer has none). With
--repeats N it runs both N times, alternating, and reports the medians: the peer's speed
varies from run to run by 10% or more on a small CPU.

  python -m benchmarks.benchmark --config configs/fast.py --peer \
      --output benchmarks/results/cpu_fast_vs_pytorch.json

writes the results, with the machine, library versions and command, to the JSON file,
and test sum accuracy against training seconds to the PNG of the same name.

`--config.gradient_kernels=generic` times Flax's own layers and their autodiff gradients
instead of the CPU kernels (adder_jax/kernels.py); the config, and so that choice, is
saved with the results.
"""

import json
import math
import os
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

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.DEFINE_float("target", 99.3, "Test sum accuracy (%, fixed pairing) to reach.")
flags.DEFINE_integer("evals_per_epoch", 10, "Test evaluations per epoch (time excluded).")
flags.DEFINE_bool("stop_at_target", False, "Stop training once the target is reached.")
flags.DEFINE_string("output", None, "Where to write the JSON results; the plot goes beside "
                    "it, with the extension .png.")
flags.DEFINE_bool("peer", False, "Also train the PyTorch peer (benchmarks/torch_reference.py).")
flags.DEFINE_float("peer_target", 99.2, "Test sum accuracy the peer's time-to-target uses.")
flags.DEFINE_integer("peer_epochs", 5, "Epochs the peer trains.")
flags.DEFINE_integer("peer_steps", 0, "If > 0, the peer stops each epoch after this many steps "
                     "(a throughput-only comparison).")
flags.DEFINE_integer("peer_threads", 0, "torch.set_num_threads for the peer (0: one per core "
                     "this process may use, as adder_jax's CPU devices).")
flags.DEFINE_integer("repeats", 1, "Runs of each side, alternating (adder_jax, peer, adder_jax, "
                     "...); the results are the medians of the runs, which are kept under 'runs'.")
flags.mark_flags_as_required(["config"])


def benchmark_adder_jax(config, data, target, evals_per_epoch, stop_at_target):
  """Trains `config` from scratch on `data`, timing every chunk; returns the results dict."""
  config = config.copy_and_resolve_references()
  steps_per_epoch = len(data["train"]) // config.batch_size
  with config.unlocked():
    config.steps_per_chunk = max(1, steps_per_epoch // evals_per_epoch)
  trainer = train.Trainer(config, data)
  compile_seconds = trainer.compile()
  state = jax.block_until_ready(trainer.init_state())

  train_seconds = eval_seconds = 0.0
  time_to_target = epochs_to_target = None
  evaluations, epochs = [], []
  steady_images = steady_seconds = 0.0
  for epoch in range(config.num_epochs):
    epoch_seconds = 0.0
    t0 = time.perf_counter()
    plan = jax.block_until_ready(trainer.epoch_plan(epoch))
    epoch_seconds += time.perf_counter() - t0
    chunk_start = 0
    for num_steps in trainer.chunk_lengths():
      t0 = time.perf_counter()
      state, _ = trainer.run_chunk(state, plan, chunk_start, num_steps)
      jax.block_until_ready(state)
      seconds = time.perf_counter() - t0
      chunk_start += num_steps
      epoch_seconds += seconds
      if epoch or chunk_start > num_steps:  # The very first chunk is warm-up.
        steady_images += num_steps * config.batch_size
        steady_seconds += seconds
      t0 = time.perf_counter()
      metrics = trainer.test_metrics(trainer.predictions(state))
      eval_seconds += time.perf_counter() - t0
      elapsed = train_seconds + epoch_seconds
      step = epoch * trainer.steps_per_epoch + chunk_start
      evaluations.append({"step": step, "train_seconds": round(elapsed, 3), **metrics})
      if time_to_target is None and metrics["test_sum_accuracy"] >= target:
        time_to_target, epochs_to_target = elapsed, step / trainer.steps_per_epoch
        print(f"adder_jax reached {target}% test sum accuracy after {elapsed:.1f} s of "
              f"training ({epochs_to_target:.2f} epochs)", flush=True)
    train_seconds += epoch_seconds
    epochs.append({"epoch": epoch + 1, "train_seconds": round(epoch_seconds, 3), **metrics})
    print(f"adder_jax epoch {epoch + 1}: {epoch_seconds:.1f} s, test digit "
          f"{metrics['test_digit_accuracy']:.2f}%, sum {metrics['test_sum_accuracy']:.2f}%",
          flush=True)
    if stop_at_target and time_to_target is not None:
      break
  return {
      "target": target,
      "time_to_target_s": time_to_target,
      "epochs_to_target": epochs_to_target,
      "compile_s": round(compile_seconds, 3),
      "images_per_second": round(steady_images / steady_seconds, 1),
      "epoch_seconds": [e["train_seconds"] for e in epochs],
      "train_seconds": round(train_seconds, 3),
      "eval_seconds": round(eval_seconds, 3),
      "final": evaluations[-1],
      "epochs": epochs,
      "evaluations": evaluations,
  }


def benchmark_peer(data, target, epochs, max_steps, evals_per_epoch):
  """Trains the PyTorch peer on `data`, testing it `evals_per_epoch` times an epoch as
  adder_jax is; returns its results dict."""
  from benchmarks import torch_reference  # pylint: disable=import-outside-toplevel
  history = torch_reference.train_and_evaluate(
      data["train"], data["test"], epochs=epochs, evals_per_epoch=evals_per_epoch,
      max_steps_per_epoch=max_steps,
      log=lambda e: print(f"peer epoch {e['epochs']:.2f}: {e['cumulative_train_seconds']:.1f} s, "
                          f"test digit {e['test_digit_accuracy']:.2f}%, "
                          f"sum {e['test_sum_accuracy']:.2f}%", flush=True))
  return summarise_peer(history, target)


def summarise_peer(history, target):
  """The peer's results dict from its evaluation records."""
  reached = [e for e in history if e["test_sum_accuracy"] >= target]
  # The first interval holds the warm-up, as adder_jax's first chunk does.
  steady = history[1:] or history
  images = sum(e["images_per_second"] * e["train_seconds"] for e in steady)
  return {
      "peer_target": target,
      "peer_time_to_target_s": reached[0]["cumulative_train_seconds"] if reached else None,
      "peer_epochs_to_target": reached[0]["epochs"] if reached else None,
      "peer_images_per_second": round(images / sum(e["train_seconds"] for e in steady), 1),
      "peer_train_seconds": history[-1]["cumulative_train_seconds"],
      "peer_evaluations": history,
  }


def import_torch(threads):
  """torch with `threads` intra-op threads; a UserError if it is not installed."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise UserError(f"--peer needs PyTorch ({e}); install it with pip install -e \".[bench]\".") from e
  torch.set_num_threads(threads)
  return torch


# The measurements that vary from run to run; the rest (targets, accuracies, which are
# the same in every adder_jax run) come from the first run.
TIMINGS = ("time_to_target_s", "epochs_to_target", "compile_s", "images_per_second",
           "train_seconds", "peer_time_to_target_s", "peer_epochs_to_target",
           "peer_images_per_second", "peer_train_seconds")


def median_of_runs(runs):
  """The first run's results with each of TIMINGS replaced by its median over `runs`, and
  every run's TIMINGS under 'runs'. A target not reached (None) counts as the slowest time."""
  results = dict(runs[0])
  for key in TIMINGS:
    if key in results:
      values = sorted((run[key] for run in runs), key=lambda v: math.inf if v is None else v)
      middle = values[(len(values) - 1) // 2:len(values) // 2 + 1]
      results[key] = None if None in middle else round(sum(middle) / len(middle), 3)
  if len(runs) > 1:
    results["runs"] = [{key: run[key] for key in TIMINGS if key in run} for run in runs]
  return results


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


def _ratio(numerator, denominator):
  return round(numerator / denominator, 2) if numerator and denominator else None


def plot(results, path):
  """Test sum accuracy against training seconds, adder_jax's and (if run) the peer's."""
  figure = Figure(figsize=(7, 4.5))
  FigureCanvasAgg(figure)
  axes = figure.subplots()
  evaluations = results["evaluations"]
  axes.plot([e["train_seconds"] for e in evaluations],
            [e["test_sum_accuracy"] for e in evaluations], ".-",
            label=f"adder_jax ({results['config_file']})")
  if "peer_evaluations" in results:
    evaluations = results["peer_evaluations"]
    axes.plot([e["cumulative_train_seconds"] for e in evaluations],
              [e["test_sum_accuracy"] for e in evaluations], ".-",
              label="PyTorch peer (benchmarks/torch_reference.py)")
  axes.axhline(results["target"], color="grey", linestyle=":", linewidth=1,
               label=f"target, {results['target']}%")
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
  axes.legend(loc="upper left", fontsize=9)
  figure.tight_layout()
  figure.savefig(path, dpi=100)


def main(argv):
  del argv
  cli.quiet_library_logs()
  config = FLAGS.config
  with cli.exit_on_user_error():
    train.check_config(config)
    if FLAGS.repeats < 1:
      raise UserError(f"--repeats must be at least 1, not {FLAGS.repeats}.")
    if FLAGS.output:
      check_output(FLAGS.output)
    torch = None
    if FLAGS.peer:
      check_peer_task(config)
      torch = import_torch(FLAGS.peer_threads or runtime.usable_cores())
    runtime.setup([config.batch_size, config.eval_batch_size])
    config_checks.check_batches_split(config, jax.device_count())
    data = mnist.load(config.data)
    runs = []
    for _ in range(FLAGS.repeats):
      run = benchmark_adder_jax(config, data, FLAGS.target, FLAGS.evals_per_epoch,
                                FLAGS.stop_at_target)
      if FLAGS.peer:
        run.update(benchmark_peer(data, FLAGS.peer_target, FLAGS.peer_epochs, FLAGS.peer_steps,
                                  FLAGS.evals_per_epoch))
      runs.append(run)
  results = {"command": recorded_command(sys.argv), "machine": machine.describe(torch),
             "config_file": _config_file(), "config": recorded_config(config),
             **median_of_runs(runs)}
  if results["time_to_target_s"] is not None:
    results["time_to_target_with_compile_s"] = round(
        results["time_to_target_s"] + results["compile_s"], 3)
  if FLAGS.peer:
    results["speedup_time_to_target"] = _ratio(results["peer_time_to_target_s"],
                                               results["time_to_target_s"])
    results["speedup_time_to_target_with_compile"] = _ratio(
        results["peer_time_to_target_s"], results.get("time_to_target_with_compile_s"))
    results["speedup_images_per_second"] = _ratio(results["images_per_second"],
                                                  results["peer_images_per_second"])
  _print_table(results)
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      json.dump(results, f, indent=2)
    plot(results, os.path.splitext(FLAGS.output)[0] + ".png")


def _config_file():
  return os.path.relpath(flags.FLAGS["config"].config_filename)


def _print_table(results):
  def show(value, unit=""):
    return "not reached" if value is None else f"{value}{unit}"

  rows = [("compile (s)", results["compile_s"], None),
          ("training images/s", results["images_per_second"], results.get("peer_images_per_second")),
          ("time to target (s)", show(results["time_to_target_s"] and round(results["time_to_target_s"], 1)),
           show(results.get("peer_time_to_target_s")) if "peer_target" in results else None),
          ("target (test sum acc %)", results["target"], results.get("peer_target")),
          ("final test digit acc %", round(results["final"]["test_digit_accuracy"], 2),
           results["peer_evaluations"][-1]["test_digit_accuracy"] if "peer_evaluations" in results else None),
          ("final test sum acc %", round(results["final"]["test_sum_accuracy"], 2),
           results["peer_evaluations"][-1]["test_sum_accuracy"] if "peer_evaluations" in results else None)]
  print(f"\n{'':26s}{'adder_jax':>14s}{'peer':>14s}")
  for name, ours, peer in rows:
    print(f"{name:26s}{str(ours):>14s}{'' if peer is None else str(peer):>14s}")
  for i, run in enumerate(results.get("runs", [])):
    print(f"run {i + 1}: images/s {run['images_per_second']}"
          + (f" vs the peer's {run['peer_images_per_second']}" if "peer_images_per_second" in run else "")
          + f", time to target {show(run['time_to_target_s'])}"
          + (f" vs {show(run['peer_time_to_target_s'])}" if "peer_time_to_target_s" in run else ""))
  if "runs" in results:
    print(f"(the table's times are the medians of {len(results['runs'])} runs)")
  for key in ("speedup_images_per_second", "speedup_time_to_target",
              "speedup_time_to_target_with_compile"):
    if key in results:
      print(f"{key}: {results[key]}")


if __name__ == "__main__":
  cli.run(main)
