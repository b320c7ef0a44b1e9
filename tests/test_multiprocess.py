"""Multi-process training: 2 processes of 2 CPU devices each, talking over 127.0.0.1.

Each process runs the command line of README's multi-host section (`adder_jax.main`
with --coordinator_address, --num_processes and --process_id), through
`tests.mock_main`, which only swaps MNIST for mock data. The runs are compared with
one process of 4 devices, and a resumed run with an unbroken one.
"""

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from adder_jax import distributed
from adder_jax import reporting
from adder_jax.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOCK_NUM_EXAMPLES = 256
# Every launch ends in well under a minute; this bounds a hung one (CI must not hang).
LAUNCH_TIMEOUT_S = 180
# How long the other processes may take to end after one has failed.
FAILURE_GRACE_S = 30
# Metrics that depend on the arithmetic, not on timing.
LOSSES = ("train_loss", "test_loss")
ACCURACIES = ("train_digit_accuracy", "train_sum_accuracy", "test_digit_accuracy",
              "test_sum_accuracy", "test_sum_accuracy_all_pairs")


def _config_flags(data_dir):
  """The smoke config, shrunk to 2 epochs of 8 steps on the mock data.

  The learning rate is lowered from the smoke config's because at that rate training
  on random mock data is chaotic: the different order in which 4 devices' gradients
  are summed in one process and over gloo already moves the losses by 1e-3 within 16
  steps (so does 2 devices against 4 in one process). Here such rounding stays below
  1e-5, while a wrong batch or pairing changes the losses from the first step on.
  """
  return ["--config", "configs/smoke.py", "--config.num_epochs=2", "--config.batch_size=32",
          "--config.eval_batch_size=40", "--config.steps_per_chunk=3",
          "--config.optimizer.learning_rate=1e-4", f"--config.data.data_dir={data_dir}"]


def _launch_flags(coordinator_address, num_processes, process_id):
  """The flags that README's plain multi-host example gives each process."""
  return [f"--coordinator_address={coordinator_address}", f"--num_processes={num_processes}",
          f"--process_id={process_id}"]


def _free_port():
  with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(workdir, num_processes, devices_per_process, data_dir, num_examples=None):
  """Runs the mock-data command line in `num_processes` processes.

  Args:
    num_examples: mock examples per split for each process (default MOCK_NUM_EXAMPLES).

  Returns:
    Each process's exit status (None if it was still running after LAUNCH_TIMEOUT_S or
    FAILURE_GRACE_S after another had failed; it is killed then) and output.
  """
  num_examples = num_examples or [MOCK_NUM_EXAMPLES] * num_processes
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices_per_process),
             # JAX's coordinator listens on every interface unless told otherwise.
             JAX_COORDINATOR_BIND_ADDRESS=f"127.0.0.1:{port}")
  logs, processes = [], []
  try:
    for process_id in range(num_processes):
      command = [sys.executable, "-m", "tests.mock_main",
                 f"--mock_num_examples={num_examples[process_id]}", "--workdir", str(workdir)]
      command += _config_flags(data_dir)
      if num_processes > 1:
        command += _launch_flags(f"127.0.0.1:{port}", num_processes, process_id)
      logs.append(open(f"{workdir}.process{process_id}.log", "w+"))
      processes.append(subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=logs[-1],
                                        stderr=subprocess.STDOUT))
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    while any(p.poll() is None for p in processes):
      if any(p.returncode for p in processes):
        # One failed process can leave the others waiting for it; give them a grace
        # period to fail (or finish) on their own, since a loaded machine is slow.
        deadline = min(deadline, time.monotonic() + FAILURE_GRACE_S)
      if time.monotonic() > deadline:
        break
      time.sleep(0.2)
    returncodes = [p.poll() for p in processes]
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
        p.wait()
    outputs = []
    for log in logs:
      log.seek(0)
      outputs.append(log.read())
      log.close()
  return returncodes, outputs


def _train(workdir, num_processes, devices_per_process, data_dir):
  """Like `_launch`, but fails unless every process succeeds; returns the metrics."""
  returncodes, outputs = _launch(workdir, num_processes, devices_per_process, data_dir)
  for i, returncode in enumerate(returncodes):
    if returncode != 0:
      pytest.fail(f"process {i} of {num_processes} ended with {returncode} (None: killed, "
                  f"see {workdir}.process*.log):\n{outputs[i][-3000:]}")
  return reporting.read_metrics(workdir)


def _assert_same_metrics(records, expected):
  assert [r["step"] for r in records] == [r["step"] for r in expected]
  for record, reference in zip(records, expected):
    for name in LOSSES:
      assert record[name] == pytest.approx(reference[name], rel=1e-4), (record["epoch"], name)
    for name in ACCURACIES:
      # Half a point: one of the 256 mock examples may flip on a near tie.
      assert abs(record[name] - reference[name]) <= 0.5, (record["epoch"], name)
    assert record["learning_rate"] == pytest.approx(reference["learning_rate"], rel=1e-6)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, data_dir):
  """(workdir, metrics) of an unbroken 2-process run, shared by the tests below."""
  workdir = tmp_path_factory.mktemp("runs") / "two_processes"
  return workdir, _train(workdir, num_processes=2, devices_per_process=2, data_dir=data_dir)


@pytest.mark.slow
def test_two_processes_match_one_process_of_four_devices(two_process_run, data_dir, tmp_path):
  workdir, records = two_process_run
  expected = _train(tmp_path / "one_process", num_processes=1, devices_per_process=4,
                    data_dir=data_dir)
  assert [r["epoch"] for r in records] == [1, 2]
  _assert_same_metrics(records, expected)
  # Only process 0 writes the run's files.
  assert len(glob.glob(str(workdir / "events.out.tfevents.*"))) == 1
  assert os.path.exists(workdir / "config.json")
  assert sorted(os.listdir(workdir / "checkpoints")) == ["16", "8"]


@pytest.mark.slow
def test_two_processes_resume(two_process_run, data_dir, tmp_path):
  # A run stopped after epoch 1's checkpoint: epoch 2's checkpoint is lost, its
  # metrics record is not (the resumed run must drop and redo it).
  unbroken_workdir, unbroken = two_process_run
  workdir = tmp_path / "resumed"
  shutil.copytree(unbroken_workdir, workdir)
  shutil.rmtree(workdir / "checkpoints" / "16")
  records = _train(workdir, num_processes=2, devices_per_process=2, data_dir=data_dir)
  assert records[0] == unbroken[0]  # Epoch 1 was restored, not trained again.
  _assert_same_metrics(records, unbroken)
  assert len(glob.glob(str(workdir / "events.out.tfevents.*"))) == 2  # One per launch.


@pytest.mark.slow
def test_processes_with_different_data_stop_with_a_user_error(data_dir, tmp_path):
  returncodes, outputs = _launch(tmp_path / "different_data", num_processes=2,
                                 devices_per_process=2, data_dir=data_dir,
                                 num_examples=[MOCK_NUM_EXAMPLES, MOCK_NUM_EXAMPLES // 2])
  assert returncodes == [2, 2], [output[-2000:] for output in outputs]
  for output in outputs:
    assert "error: the processes loaded different MNIST data" in output


def test_initialize_is_a_no_op_unless_asked():
  assert not distributed.initialize()


def test_process_id_out_of_range_is_a_user_error():
  with pytest.raises(UserError, match="process_id"):
    distributed.initialize(num_processes=2, process_id=2)


@pytest.mark.slow
def test_distributed_outside_a_cluster_is_a_user_error(tmp_path):
  cluster_variables = ("SLURM_", "OMPI_", "KUBERNETES_", "JAX_COORDINATOR", "TPU_")
  env = {k: v for k, v in os.environ.items() if not k.startswith(cluster_variables)}
  result = subprocess.run(
      [sys.executable, "-m", "adder_jax.main", "--config", "configs/smoke.py", "--workdir",
       str(tmp_path), "--distributed"],
      cwd=REPO_ROOT, env=dict(env, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
      timeout=LAUNCH_TIMEOUT_S)
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1].startswith("error: cannot join a multi-process run")
