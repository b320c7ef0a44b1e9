r"""Training speed of a config: compile time, throughput, epoch time, time-to-target.

Time-to-target is the training wall time from the first step until the test sum
accuracy (fixed pairing) first reaches --target, evaluating --evals_per_epoch times per
epoch; compile and evaluation time are measured and reported separately. With --peer it
also runs the PyTorch reference on the same MNIST files in the same invocation (after
adder_jax, never at the same time) and prints both side by side with the ratios. With
--repeats N it runs both N times, alternating, and reports the medians: the peer's speed
varies from run to run by more than 10% on a small CPU.

  python -m benchmarks.benchmark --config configs/fast.py \
      --config.data.manual_dir=~/mnist_raw --peer PATH/TO/torch_reference.py \
      --output benchmark.json

`--config.gradient_kernels=generic` times JAX's own autodiff gradients instead of the
CPU kernels (see adder_jax/kernels.py); the config, and so that choice, is saved with
the results.
"""

import json
import math
import os
import platform
import subprocess
import sys
import time

from absl import flags
import flax
import jax
import jaxlib
from ml_collections import config_flags

from adder_jax import cli
from adder_jax import config_checks
from adder_jax import input_pipeline
from adder_jax import runtime
from adder_jax import train
from adder_jax.errors import UserError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.DEFINE_float("target", 99.3, "Test sum accuracy (%, fixed pairing) to reach.")
flags.DEFINE_integer("evals_per_epoch", 10, "Test evaluations per epoch (time excluded).")
flags.DEFINE_bool("stop_at_target", False, "Stop training once the target is reached.")
flags.DEFINE_string("output", None, "Where to write the JSON results.")
flags.DEFINE_string("peer", None, "Path of the PyTorch reference script to run side by side.")
flags.DEFINE_float("peer_target", 99.2, "Test sum accuracy the peer's time-to-target uses.")
flags.DEFINE_integer("peer_epochs", 5, "Epochs the peer trains.")
flags.DEFINE_integer("peer_steps", 0, "If > 0, the peer stops each epoch after this many steps "
                     "(a throughput-only comparison).")
flags.DEFINE_integer("peer_threads", 2, "torch.set_num_threads for the peer.")
flags.DEFINE_integer("repeats", 1, "Runs of each side, alternating (adder_jax, peer, adder_jax, "
                     "...); the results are the medians of the runs, which are kept under 'runs'.")
flags.mark_flags_as_required(["config"])


def benchmark_adder_jax(config, target, evals_per_epoch, stop_at_target):
  """Trains `config` from scratch, timing every chunk; returns the results dict."""
  config = config.copy_and_resolve_references()
  data = input_pipeline.load(config.data)
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
      metrics = trainer.evaluate(state)
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


def benchmark_peer(peer, mnist_dir, target, epochs, steps, threads):
  """Runs the PyTorch reference; returns its results dict (time-to-target per epoch)."""
  command = [sys.executable, peer, os.path.expanduser(mnist_dir), "--epochs", str(epochs),
             "--threads", str(threads)]
  if steps:
    command += ["--steps", str(steps)]
  print("peer:", " ".join(command), flush=True)
  process = subprocess.run(command, capture_output=True, text=True)
  if process.returncode:
    raise UserError(f"the peer failed: {process.stderr.strip().splitlines()[-1]}")
  history = json.loads(process.stdout.strip().splitlines()[-1])["epochs"]
  reached = [e for e in history if e["sum_acc"] >= target]
  total_images = sum(e["images_per_s"] * e["train_s"] for e in history)
  return {
      "peer_target": target,
      "peer_time_to_target_s": reached[0]["cumulative_train_s"] if reached else None,
      "peer_epochs_to_target": reached[0]["epoch"] if reached else None,
      "peer_images_per_second": round(total_images / sum(e["train_s"] for e in history), 1),
      "peer_epochs": history,
  }


# The measurements that vary from run to run; the rest (targets, accuracies, which are
# the same in every adder_jax run) come from the first run.
TIMINGS = ("time_to_target_s", "epochs_to_target", "compile_s", "images_per_second",
           "train_seconds", "peer_time_to_target_s", "peer_epochs_to_target",
           "peer_images_per_second")


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
  """The config as JSON, without where this machine keeps MNIST (not part of the result)."""
  recorded = json.loads(config.to_json())
  recorded["data"].update(data_dir=None, manual_dir=None)
  return recorded


def _ratio(numerator, denominator):
  return round(numerator / denominator, 2) if numerator and denominator else None


def machine():
  device = jax.devices()[0]
  return {"platform": device.platform, "device_kind": device.device_kind,
          "device_count": jax.device_count(), "cpu_count": os.cpu_count(),
          "processor": platform.processor() or platform.machine(), "jax": jax.__version__,
          "jaxlib": jaxlib.__version__, "flax": flax.__version__, "python": platform.python_version()}


def main(argv):
  del argv
  cli.quiet_library_logs()
  config = FLAGS.config
  with cli.exit_on_user_error():
    config_checks.validate(config)
    runtime.setup([config.batch_size, config.eval_batch_size])
    config_checks.check_batches_split(config, jax.device_count())
    if FLAGS.peer and not config.data.manual_dir:
      raise UserError("--peer needs --config.data.manual_dir=DIR (the IDX files both read).")
    if FLAGS.repeats < 1:
      raise UserError(f"--repeats must be at least 1, not {FLAGS.repeats}.")
    runs = []
    for _ in range(FLAGS.repeats):
      run = benchmark_adder_jax(config, FLAGS.target, FLAGS.evals_per_epoch, FLAGS.stop_at_target)
      if FLAGS.peer:
        run.update(benchmark_peer(FLAGS.peer, config.data.manual_dir, FLAGS.peer_target,
                                  FLAGS.peer_epochs, FLAGS.peer_steps, FLAGS.peer_threads))
      runs.append(run)
    results = {"machine": machine(), "config": recorded_config(config), **median_of_runs(runs)}
    if FLAGS.peer:
      results["speedup_time_to_target"] = _ratio(results["peer_time_to_target_s"],
                                                 results["time_to_target_s"])
      results["speedup_images_per_second"] = _ratio(results["images_per_second"],
                                                    results["peer_images_per_second"])
  _print_table(results)
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      json.dump(results, f, indent=2)


def _print_table(results):
  def show(value, unit=""):
    return "not reached" if value is None else f"{value}{unit}"

  rows = [("compile (s)", results["compile_s"], None),
          ("training images/s", results["images_per_second"], results.get("peer_images_per_second")),
          ("time to target (s)", show(results["time_to_target_s"] and round(results["time_to_target_s"], 1)),
           show(results.get("peer_time_to_target_s")) if "peer_target" in results else None),
          ("target (test sum acc %)", results["target"], results.get("peer_target")),
          ("final test digit acc %", round(results["final"]["test_digit_accuracy"], 2),
           results["peer_epochs"][-1]["digit_acc"] if "peer_epochs" in results else None),
          ("final test sum acc %", round(results["final"]["test_sum_accuracy"], 2),
           results["peer_epochs"][-1]["sum_acc"] if "peer_epochs" in results else None)]
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
  for key in ("speedup_images_per_second", "speedup_time_to_target"):
    if key in results:
      print(f"{key}: {results[key]}")


if __name__ == "__main__":
  cli.run(main)
