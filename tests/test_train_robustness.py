"""Tests that training fails clearly and loses nothing: bad config values, a diverging
loss, an incompatible checkpoint, Ctrl-C, and a metrics file that is never torn."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from adder_jax import checkpointing
from adder_jax import interrupts
from adder_jax import reporting
from adder_jax import train
from adder_jax import workdir_lock
from adder_jax.errors import UserError
from conftest import (MOCK_EXAMPLES, REPO_ROOT, copy_of, ctrl_c_after_chunk, mock_mnist,
                      small_config)


@pytest.mark.parametrize("field, value", [
    ("batch_size", 0),
    ("batch_size", -32),
    ("eval_batch_size", 0),
    ("num_epochs", 0),
    ("num_epochs", -1),
    ("optimizer.learning_rate", 0.0),
    ("optimizer.learning_rate", -1e-3),
    ("optimizer.learning_rate", math.nan),
    ("optimizer.learning_rate", math.inf),
    ("optimizer.name", "adamm"),
    ("optimizer.schedule", "cosine_restarts"),
])
def test_invalid_config_values(smoke_config, tmp_path, field, value):
  section, _, name = field.rpartition(".")
  (smoke_config[section] if section else smoke_config)[name] = value
  workdir = tmp_path / "workdir"
  with pytest.raises(UserError) as raised:
    train.train_and_evaluate(smoke_config, str(workdir))
  message = str(raised.value)
  assert f"config.{field}" in message and "\n" not in message
  assert not workdir.exists()  # Checked before anything is written.


def run_main(args, **kwargs):
  return subprocess.run([sys.executable, "-m", "adder_jax.main", *args], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=120, **kwargs)


@pytest.mark.slow
def test_command_line_reports_a_bad_config_in_one_line(tmp_path):
  result = run_main(["--config", "configs/smoke.py", "--workdir", str(tmp_path / "w"),
                     "--config.optimizer.learning_rate=-0.1"])
  assert result.returncode == 2
  assert result.stderr == ("error: config.optimizer.learning_rate must be a positive number, "
                           "got -0.1.\n")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(trained_workdir, tmp_path):
  workdir = copy_of(trained_workdir, tmp_path)  # 2 epochs trained, checkpoint at step 12.
  config = small_config(tmp_path / "tfds")
  config.num_epochs = 3
  config.optimizer.learning_rate = 1e12
  with mock_mnist(MOCK_EXAMPLES), pytest.raises(UserError) as raised:
    train.train_and_evaluate(config, workdir)
  message = str(raised.value)
  assert "training diverged" in message and "checkpoint (step 12) is kept" in message
  assert "\n" not in message
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["12", "6"]
  assert [r["epoch"] for r in reporting.read_metrics(workdir)] == [1, 2]


def test_resuming_with_another_model_config(trained_workdir, tmp_path):
  workdir = copy_of(trained_workdir, tmp_path)
  config = small_config(tmp_path / "tfds")
  config.num_epochs = 3
  config.model.dense_features = (128,)
  with mock_mnist(MOCK_EXAMPLES), pytest.raises(UserError, match="does not fit this model"):
    train.train_and_evaluate(config, workdir)
  with workdir_lock.WorkdirLock(workdir):  # The failed run released the workdir's lock.
    pass


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_rerunning_resumes(trained_workdir, tmp_path,
                                                          monkeypatch):
  """Ctrl-C in the middle of epoch 2, then a rerun ends where an unbroken run did."""
  config = small_config(tmp_path / "tfds")
  workdir = str(tmp_path / "workdir")
  handler = signal.getsignal(signal.SIGINT)
  with mock_mnist(MOCK_EXAMPLES):
    # After the first of epoch 2's two chunks.
    with ctrl_c_after_chunk(monkeypatch, 3):
      with pytest.raises(interrupts.TrainingInterrupted, match="checkpoint at step 9"):
        train.train_and_evaluate(config, workdir)
    assert signal.getsignal(signal.SIGINT) is handler  # Restored.
    checkpointer = checkpointing.Checkpointer(workdir)
    assert checkpointer.latest_step() == 9
    checkpointer.close()
    with open(os.path.join(workdir, reporting.METRICS_FILE)) as f:
      assert f.read().endswith("}\n")
    assert len(reporting.read_metrics(workdir)) == 1

    record = train.train_and_evaluate(config, workdir)
  assert record["step"] == 12
  unbroken = reporting.read_metrics(trained_workdir)
  resumed = reporting.read_metrics(workdir)
  assert [r["step"] for r in resumed] == [r["step"] for r in unbroken] == [6, 12]
  timings = ("epoch_seconds", "eval_seconds", "images_per_second", "compile_seconds")
  assert [{k: v for k, v in r.items() if k not in timings} for r in resumed] == [
      {k: v for k, v in r.items() if k not in timings} for r in unbroken]


@pytest.mark.slow
def test_ctrl_c_from_the_terminal(tmp_path):
  workdir = tmp_path / "workdir"
  process = subprocess.Popen(
      [sys.executable, "-m", "tests.mock_main", f"--mock_num_examples={MOCK_EXAMPLES}",
       "--config", "configs/smoke.py", "--workdir", str(workdir),
       "--config.num_epochs=1000", "--config.batch_size=32", "--config.eval_batch_size=40",
       "--config.steps_per_chunk=3", f"--config.data.data_dir={tmp_path / 'tfds'}"],
      cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.monotonic() + 180  # Generous: CI machines can be busy.
    while not reporting.read_metrics(str(workdir)):  # Wait for the first epoch to end.
      assert process.poll() is None and time.monotonic() < deadline, process.communicate()
      time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
  finally:
    process.kill()
  assert process.returncode == 130, stderr
  assert "Traceback" not in stderr
  last_line = stderr.strip().splitlines()[-1]
  assert last_line.startswith("interrupted: saved a checkpoint at step "), stderr
  step = int(last_line.split("step ")[1].split()[0])
  checkpointer = checkpointing.Checkpointer(str(workdir))
  assert checkpointer.latest_step() == step
  checkpointer.close()
  records = reporting.read_metrics(str(workdir))
  assert records and records[-1]["step"] <= step
  with open(workdir / reporting.METRICS_FILE) as f:
    assert f.read().endswith("}\n")


def test_metrics_file_never_ends_with_a_partial_line(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  path = os.path.join(workdir, reporting.METRICS_FILE)
  writer = reporting.MetricWriter(workdir, resume_step=0)
  writer.write({"epoch": 1, "step": 6, "loss": 1.0})

  def killed_while_replacing(*args):
    raise KeyboardInterrupt  # As if the process died before the new file was in place.

  monkeypatch.setattr(os, "replace", killed_while_replacing)
  with pytest.raises(KeyboardInterrupt):
    writer.write({"epoch": 2, "step": 12, "loss": 0.5})
  monkeypatch.undo()
  writer.close()
  with open(path) as f:
    assert f.read() == json.dumps({"epoch": 1, "step": 6, "loss": 1.0}) + "\n"


def test_resume_drops_a_torn_line_written_by_an_older_version(tmp_path):
  workdir = str(tmp_path)
  path = os.path.join(workdir, reporting.METRICS_FILE)
  with open(path, "w") as f:
    f.write(json.dumps({"epoch": 1, "step": 6}) + "\n" + '{"epoch": 2, "st')
  writer = reporting.MetricWriter(workdir, resume_step=6)
  writer.close()
  with open(path) as f:
    assert f.read() == json.dumps({"epoch": 1, "step": 6}) + "\n"
