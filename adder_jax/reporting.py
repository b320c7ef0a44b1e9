"""Where metrics go: WORKDIR/metrics.jsonl (one JSON object per epoch), TensorBoard
event files in WORKDIR, and a progress bar on the terminal.

In a multi-process run only process 0 writes them; the others use `NullMetricWriter`
and a disabled progress bar, so no two processes write the same file.
"""

import json
import os

import tensorboardX
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
    self._tensorboard = tensorboardX.SummaryWriter(logdir=workdir)

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
    for name, value in record.items():
      if name not in ("epoch", "step") and isinstance(value, (int, float)):
        self._tensorboard.add_scalar(name, value, record["step"])
    self._tensorboard.flush()

  def close(self):
    self._tensorboard.close()


class NullMetricWriter:
  """Stands in for `MetricWriter` in the processes that do not write metrics."""

  def write(self, record):
    del record

  def close(self):
    pass


def progress_bar(epoch, num_epochs, steps, enabled=True):
  return tqdm.tqdm(total=steps, desc=f"epoch {epoch}/{num_epochs}", unit="step",
                   dynamic_ncols=True, leave=True, disable=not enabled)


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
      f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, {accuracies}"
      f"{record['epoch_seconds']:.1f} s ({record['images_per_second']:.0f} images/s)")
