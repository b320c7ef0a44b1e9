"""Where metrics go: WORKDIR/metrics.jsonl (one JSON object per epoch), TensorBoard
event files in WORKDIR, and a progress bar on the terminal.

In a multi-process run only process 0 writes them; the others use `NullMetricWriter`
and a disabled progress bar, so no two processes write the same file.
"""

import json
import os
import sys

import tqdm

METRICS_FILE = "metrics.jsonl"


def read_metrics(workdir):
  """The complete records of WORKDIR/metrics.jsonl; a torn last line (a file appended
  to in place and cut short; the writer below replaces the file whole) is ignored."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = f.read().split("\n")
  # Every complete record ends with a newline, so the last item is '' or a torn line.
  return [json.loads(line) for line in lines[:-1] if line]


class MetricWriter:
  """Adds one record per epoch to metrics.jsonl and the same scalars to TensorBoard.

  On resume, records of steps after the restored checkpoint (written before a crash
  that lost their checkpoint) are dropped, so the file always matches the checkpoints.
  """

  def __init__(self, workdir, resume_step):
    self.path = os.path.join(workdir, METRICS_FILE)
    self._records = [r for r in read_metrics(workdir) if r["step"] <= resume_step]
    self._rewrite(self._records)
    self._workdir = workdir
    self._tensorboard = None  # Opened by the first record: no events file without scalars.

  def _rewrite(self, records):
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in records)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, self.path)

  def write(self, record):
    # The whole file is replaced rather than appended to, so that even a process
    # killed in the middle leaves it ending with a complete line. It holds one short
    # line per epoch.
    self._records.append(record)
    self._rewrite(self._records)
    if self._tensorboard is None:
      self._tensorboard = _summary_writer(self._workdir)
    for name, value in record.items():
      if name not in ("epoch", "step") and isinstance(value, (int, float)):
        self._tensorboard.add_scalar(name, value, record["step"])
    self._tensorboard.flush()

  def close(self):
    if self._tensorboard is not None:
      self._tensorboard.close()


def _summary_writer(logdir):
  """A tensorboardX SummaryWriter, imported at the first record rather than at start-up.

  tensorboardX imports PyTorch whenever it is installed (about 2 seconds on a CPU) only
  to accept torch tensors, which adder_jax never passes; unless PyTorch is loaded
  already, it is hidden from that import (a None entry in sys.modules makes `import
  torch` raise ImportError, which tensorboardX expects).
  """
  if "tensorboardX" not in sys.modules and "torch" not in sys.modules:
    sys.modules["torch"] = None
    try:
      import tensorboardX  # pylint: disable=import-outside-toplevel
    finally:
      del sys.modules["torch"]
  import tensorboardX  # pylint: disable=import-outside-toplevel
  return tensorboardX.SummaryWriter(logdir=logdir)


class NullMetricWriter:
  """Stands in for `MetricWriter` in the processes that do not write metrics."""

  def write(self, record):
    del record

  def close(self):
    pass


def progress_bar(epoch, num_epochs, steps, enabled=True):
  return tqdm.tqdm(total=steps, desc=f"epoch {epoch}/{num_epochs}", unit="step",
                   dynamic_ncols=True, leave=True, disable=not enabled)


def print_start(workdir, step, steps_per_epoch, num_epochs, reports):
  """Says what a rerun of `workdir`, whose latest checkpoint is at `step`, goes on to do;
  `reports`: whether the run's task has an evaluation report (evaluation_report.py)."""
  total = steps_per_epoch * num_epochs
  if step >= total:
    done = f"already trained {step // steps_per_epoch}/{num_epochs} epochs"
    tqdm.tqdm.write(f"{done}: re-evaluating the last checkpoint (step {step}) and rewriting "
                    f"the reports in {workdir}" if reports else f"{done} in {workdir}")
  elif step:
    tqdm.tqdm.write(f"resuming at step {step} of {total} (epoch {step // steps_per_epoch + 1} "
                    f"of {num_epochs}) in {workdir}")


def print_files_written(workdir, step, trained, report):
  """Names what a training run wrote in `workdir`: the checkpoint at `step`, and if it
  `trained`, metrics and TensorBoard events; the evaluation `report` (or None)."""
  lines = [f"wrote in {workdir}:"]
  if trained:
    lines.append(f"  checkpoints/{step}/  the trained model (evaluate, predict and the demo "
                 "read it)")
    lines.append(f"  {METRICS_FILE}, events.out.tfevents.*  the metrics of every epoch")
  if report is not None:
    lines.append(f"  {os.path.basename(report['evaluation_file'])}  the test evaluation of "
                 f"step {report['step']}")
    lines.append("  " + ", ".join(os.path.basename(p) for p in report["plots"].values()))
  if len(lines) > 1:
    tqdm.tqdm.write("\n".join(lines))


def progress_text(mean_loss, images_per_second):
  """The progress bar's text: the loss averaged over the epoch's steps so far, as the
  epoch's summary line gives it for the whole epoch."""
  return f"train loss {mean_loss:.4f} (epoch mean), {images_per_second:.0f} images/s"


# The accuracies the epoch summary shows, where the record has them.
SUMMARY_ACCURACIES = (("validation_digit_accuracy", "validation digit"),
                      ("validation_sum_accuracy", "sum"),
                      ("test_digit_accuracy", "test digit"), ("test_sum_accuracy", "sum"),
                      ("test_sum_accuracy_all_pairs", "sum all pairs"),
                      ("test_sum_accuracy_all_pairs_heldout", "held-out pairs"),
                      ("test_sum_accuracy_all_pairs_seen", "seen pairs"))


def print_summary(record):
  accuracies = "".join(f"{label} {record[key]:.2f}%, " for key, label in SUMMARY_ACCURACIES
                       if key in record)
  tqdm.tqdm.write(
      f"epoch {record['epoch']}: train loss {record['train_loss']:.4f} (epoch mean), {accuracies}"
      f"{record['epoch_seconds']:.1f} s ({record['images_per_second']:.0f} images/s)")
