"""Faults a workdir meets: a second run on it, a run killed at any moment, damaged
checkpoints. Runs of the command line are real processes (tests/mock_main.py)."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from adder_jax import checkpointing
from adder_jax import evaluate
from adder_jax import reporting
from adder_jax import train
from adder_jax import workdir_lock
from conftest import MOCK_EXAMPLES, REPO_ROOT, assert_one_line_error, copy_of, mock_mnist
from conftest import assert_only_progress_bars, run_cli, small_config


def mock_main(tmp_path, *args, kill_at=None, background=False):
  """Runs `python -m tests.mock_main` with `small_config`'s settings in
  tmp_path/workdir; returns the finished CompletedProcess, or the Popen if `background`."""
  command = [sys.executable, "-m", "tests.mock_main", f"--mock_num_examples={MOCK_EXAMPLES}",
             "--config", "configs/smoke.py", f"--workdir={tmp_path / 'workdir'}",
             "--config.batch_size=32", "--config.eval_batch_size=40",
             "--config.steps_per_chunk=3", f"--config.data.data_dir={tmp_path / 'tfds'}",
             *args] + ([f"--mock_kill_at={kill_at}"] if kill_at else [])
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  if background:
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
  return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                        timeout=300)


def read_lock(workdir):
  with open(os.path.join(workdir, workdir_lock.LOCK_FILE)) as f:
    return f.read()


@pytest.mark.slow
def test_a_busy_workdir_is_refused_and_a_dead_runs_lock_taken_over(tmp_path):
  workdir = tmp_path / "workdir"
  first = mock_main(tmp_path, "--config.num_epochs=1000", background=True)
  try:
    deadline = time.monotonic() + 180
    while not (workdir / workdir_lock.LOCK_FILE).exists() or not read_lock(workdir):
      assert first.poll() is None and time.monotonic() < deadline, first.communicate()
      time.sleep(0.1)
    holder = json.loads(read_lock(workdir))
    assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()

    second = mock_main(tmp_path, "--config.num_epochs=1")
    assert_one_line_error(second.returncode, second.stderr, "in use by process "
                          f"{first.pid} on host {socket.gethostname()}")
    assert first.poll() is None  # The first run goes on.
  finally:
    first.send_signal(signal.SIGKILL)
    first.communicate()

  third = mock_main(tmp_path, "--config.num_epochs=1")
  assert third.returncode == 0, third.stderr
  assert (f"note: taking over the lock of {workdir}, left by process {first.pid} on host "
          f"{socket.gethostname()}") in third.stderr
  assert read_lock(workdir) == ""  # Released at the end.


def test_evaluate_reads_a_workdir_that_a_run_holds(trained_workdir, tmp_path, capsys):
  workdir = copy_of(trained_workdir, tmp_path)
  with workdir_lock.WorkdirLock(workdir), mock_mnist(MOCK_EXAMPLES):
    status, out, err = run_cli(evaluate, ["--workdir", workdir], capsys)
  assert status == 0, err
  assert out.startswith("step 12, 200 test images:")


# Ways a checkpoint's files get damaged: metadata overwritten with junk (the files orbax
# reads first), array data cut short, an array data file lost.
DAMAGES = ("metadata_overwritten", "data_truncated", "data_file_lost")


def damage(workdir, step, how="metadata_overwritten"):
  """Damages the files of the checkpoint at `step` in one of the DAMAGES ways."""
  directory = os.path.join(workdir, "checkpoints", str(step), "model")
  data = glob.glob(os.path.join(directory, "ocdbt.process_0", "d", "*"))
  if how == "metadata_overwritten":
    for name in ("_sharding", "_METADATA"):
      with open(os.path.join(directory, name), "w") as f:
        f.write("\x00junk")
  elif how == "data_truncated":
    for path in data:
      os.truncate(path, os.path.getsize(path) // 2)
  else:
    os.remove(max(data, key=os.path.getsize))


# `python -m adder_jax.evaluate` on mock MNIST, in a process of its own: a damaged
# checkpoint's failed reads end after the restore, so only a whole process shows that
# nothing more is printed.
_EVALUATE_ON_MOCK_DATA = textwrap.dedent("""
    import sys
    sys.path[:0] = [{repo!r}, {tests!r}]
    from conftest import mock_mnist
    from adder_jax import cli
    from adder_jax import evaluate
    evaluate.define_flags()
    with mock_mnist({examples}):
      cli.run(evaluate.main)
""").format(repo=REPO_ROOT, tests=os.path.join(REPO_ROOT, "tests"), examples=MOCK_EXAMPLES)


def evaluate_in_a_process(workdir):
  return subprocess.run([sys.executable, "-c", _EVALUATE_ON_MOCK_DATA, "--workdir", workdir],
                        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.slow
def test_evaluate_skips_a_damaged_checkpoint(trained_workdir, tmp_path, how):
  workdir = copy_of(trained_workdir, tmp_path)  # Checkpoints at steps 6 and 12.
  damage(workdir, 12, how)
  result = evaluate_in_a_process(workdir)
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith("step 6, 200 test images:")
  assert result.stderr.startswith(
      f"warning: skipped the checkpoint at step 12 in {workdir}/checkpoints: it is damaged ("
  ), result.stderr
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["12", "6"]  # Left there.


@pytest.mark.slow
def test_every_checkpoint_damaged_is_a_one_line_error(trained_workdir, tmp_path):
  workdir = copy_of(trained_workdir, tmp_path)
  damage(workdir, 6, "data_truncated")
  damage(workdir, 12)
  result = evaluate_in_a_process(workdir)
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 3, result.stderr
  assert [line.split(" in ")[0] for line in lines[:2]] == [
      "warning: skipped the checkpoint at step 12", "warning: skipped the checkpoint at step 6"]
  assert lines[2] == (f"error: no checkpoint in {workdir}/checkpoints restores (all of steps "
                      "12, 6 are damaged); move them away to train from scratch.")


@pytest.mark.slow
def test_resume_skips_a_damaged_checkpoint_and_ends_like_an_unbroken_run(trained_workdir,
                                                                         tmp_path):
  workdir = copy_of(trained_workdir, tmp_path)
  damage(workdir, 12)
  with mock_mnist(MOCK_EXAMPLES):
    record = train.train_and_evaluate(small_config(tmp_path / "tfds"), workdir)
  assert record["step"] == 12
  unbroken, resumed = reporting.read_metrics(trained_workdir), reporting.read_metrics(workdir)
  assert [r["step"] for r in resumed] == [6, 12]
  assert resumed[-1]["test_loss"] == unbroken[-1]["test_loss"]
  # Kept for inspection, out of the way of the new checkpoint at step 12.
  assert os.listdir(os.path.join(workdir, checkpointing.DAMAGED_DIR)) == ["12"]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["12", "6"]


@pytest.fixture(scope="module")
def unbroken_run(tmp_path_factory):
  """A first run of the command line on mock MNIST: 3 epochs of 2 chunks, a
  checkpoint per epoch."""
  root = tmp_path_factory.mktemp("unbroken")
  run = mock_main(root, "--config.num_epochs=3")
  assert run.returncode == 0, run.stderr
  return root / "workdir", run


@pytest.mark.slow
def test_a_first_run_shows_only_its_own_lines(unbroken_run):
  """On mock MNIST, which needs no preparation (the first run on real files:
  test_real_world_images.py)."""
  workdir, run = unbroken_run
  lines = run.stdout.splitlines()
  assert [line.split(":")[0] for line in lines[:3]] == ["epoch 1", "epoch 2", "epoch 3"]
  assert "train loss" in lines[0] and "(epoch mean)" in lines[0]
  assert lines[3:] == [
      f"wrote in {workdir}:",
      "  checkpoints/18/  the trained model (evaluate, predict and the demo read it)",
      "  metrics.jsonl, events.out.tfevents.*  the metrics of every epoch",
      "  evaluation.json  the test evaluation of step 18",
      "  learning_curves.png, digit_confusion_matrix.png, sum_accuracy_by_digit_and_number.png, "
      "worst_mistakes.png"]
  assert_only_progress_bars(run.stderr)


@pytest.mark.slow
def test_runs_killed_at_any_moment_end_like_an_unbroken_run(unbroken_run, tmp_path):
  """SIGKILL after a chunk, while a checkpoint is written and while metrics are written,
  and Ctrl-C in the middle of an epoch; each time the same command is rerun. Every row
  of metrics.jsonl, training metrics included, is the unbroken run's but for timings."""
  killed = tmp_path / "killed"
  # Ctrl-C after the third chunk (step 9) saves that step; each later run restarts from
  # it and is killed before it saves step 12 (each run's first call counts as 1;
  # metrics.jsonl is rewritten once when a run starts); the last run resumes at step 9.
  for kill_at in ("ctrl_c:3", "chunk:1", "save:1", "metrics:2"):
    run = mock_main(killed, "--config.num_epochs=3", kill_at=kill_at)
    assert "Traceback" not in run.stderr, run.stderr
    if kill_at.startswith("ctrl_c"):
      assert run.returncode == 130, run.stderr
      assert run.stderr.strip().splitlines()[-1].startswith(
          "interrupted: saved a checkpoint at step 9 ")
      continue
    assert run.returncode == -signal.SIGKILL, (kill_at, run.stderr)
    if kill_at.startswith("save"):  # Killed while orbax was still writing the checkpoint.
      assert any(name.endswith("orbax-checkpoint-tmp")
                 for name in os.listdir(killed / "workdir" / "checkpoints"))
    if kill_at == "chunk:1":
      assert run.stdout.startswith(
          f"resuming at step 9 of 18 (epoch 2 of 3) in {killed / 'workdir'}\n")
  final = mock_main(killed, "--config.num_epochs=3")
  assert final.returncode == 0, final.stderr
  assert "Traceback" not in final.stderr

  expected = reporting.read_metrics(str(unbroken_run[0]))
  with open(killed / "workdir" / reporting.METRICS_FILE) as f:
    records = [json.loads(line) for line in f.read().splitlines()]  # Every line is whole JSON.
  timings = ("epoch_seconds", "eval_seconds", "images_per_second", "compile_seconds")
  assert [{k: v for k, v in r.items() if k not in timings} for r in records] == [
      {k: v for k, v in r.items() if k not in timings} for r in expected]
  assert [r["step"] for r in records] == [6, 12, 18]
