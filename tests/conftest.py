"""Shared fixtures: mock MNIST (never the network) and small configs."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from unittest import mock

# One compilation cache on disk for the test session and every process its tests start
# (they inherit the environment): the tests train the same small configs again and
# again, and on a CPU compiling them is most of such a run's time. Set before JAX loads.
_COMPILATION_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _COMPILATION_CACHE = tempfile.mkdtemp(prefix="adder_jax_tests_compilation_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _COMPILATION_CACHE
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

from absl import flags
import filelock
import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking

from adder_jax import mnist

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _getitems(record_keys, generator, serialized=False):
  return [mocking._getitem(None, key, generator, serialized=serialized) for key in record_keys]


@contextlib.contextmanager
def mock_mnist(num_examples):
  """`tfds.testing.mock_data` for MNIST: random images and labels, no files, no network.

  tfds 4.9.10's mock binds `__getitems__` without its `self` argument, so batch reads
  fail; the patch below supplies the same fake examples without it. The mock needs no
  preparation, so the dataset counts as prepared: `mnist.prepare` does nothing.
  """
  with mock.patch.object(mocking, "_getitems", _getitems), tfds.testing.mock_data(
      num_examples=num_examples), mock.patch.object(tfds.core.DatasetBuilder, "is_prepared",
                                                    lambda self: True):
    yield


@contextlib.contextmanager
def ctrl_c_after_chunk(monkeypatch, count):
  """Within it, training gets a SIGINT (Ctrl-C) right after its `count`-th compiled chunk."""
  from adder_jax import train
  chunks_run = []
  run_chunk = train.Trainer.run_chunk

  def run_chunk_then_press_ctrl_c(self, *args):
    result = run_chunk(self, *args)
    chunks_run.append(1)
    if len(chunks_run) == count:
      os.kill(os.getpid(), signal.SIGINT)
    return result

  with monkeypatch.context() as patch:
    patch.setattr(train.Trainer, "run_chunk", run_chunk_then_press_ctrl_c)
    yield


# Mock MNIST size for `trained_workdir`: 6 train steps, 2 chunks, per epoch.
MOCK_EXAMPLES = 200


def small_config(data_dir):
  """The smoke config shrunk for mock data: 2 epochs of a few steps."""
  from configs import smoke
  config = smoke.get_config()
  config.num_epochs = 2
  config.batch_size = 32
  config.eval_batch_size = 40
  config.steps_per_chunk = 3
  config.data.data_dir = str(data_dir)
  return config


@pytest.fixture
def smoke_config(tmp_path):
  """The smoke config shrunk for mock data: 2 epochs of a few steps."""
  return small_config(tmp_path / "tfds")


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory):
  """A workdir where `small_config` finished training on mock MNIST (MOCK_EXAMPLES).

  Shared by the tests of everything that reads a trained run; copy it before changing it.
  """
  from adder_jax import train
  root = tmp_path_factory.mktemp("trained")
  with mock_mnist(MOCK_EXAMPLES):
    train.train_and_evaluate(small_config(root / "tfds"), str(root / "workdir"))
  return str(root / "workdir")


@pytest.fixture(scope="session")
def two_image_workdir(tmp_path_factory):
  """A two-image run trained for one short epoch on mock MNIST."""
  from adder_jax import train
  root = tmp_path_factory.mktemp("two_images")
  config = small_config(root / "tfds")
  config.task = "two_images"
  config.num_epochs = 1
  with mock_mnist(MOCK_EXAMPLES):
    train.train_and_evaluate(config, str(root / "workdir"))
  return str(root / "workdir")


# What adder_jax itself writes to stderr while it trains: its progress bars (and the
# blank lines tqdm leaves when it clears one).
PROGRESS_BAR = re.compile(r"^(epoch \d+/\d+: |examples written: |\s*$)")


def assert_only_progress_bars(stderr):
  """Asserts that `stderr`, each line and each redraw of a line, is adder_jax's own
  progress bars and nothing else (no library's messages or bars)."""
  others = [line for line in re.split(r"[\r\n]", stderr) if not PROGRESS_BAR.match(line)]
  assert others == [], stderr


def environment(name):
  """The value of the environment variable `name`, which the real-data slow tests need."""
  value = os.environ.get(name)
  if not value:
    pytest.fail(f"set {name} to run the slow tests on real MNIST (see "
                "tests/test_real_world_images.py)")
  return value


@pytest.fixture(scope="session")
def real_first_run(tmp_path_factory):
  """A first run of `python -m adder_jax.main --config configs/smoke.py` on real MNIST:
  prepared from the IDX files in ADDER_JAX_MNIST_DIR into a new data_dir, then one short
  epoch (about 2 minutes on 2 cores). Returns (workdir, the finished CompletedProcess).

  Run once per test session: pytest-xdist's workers (pyproject.toml) share it through
  their common temporary folder, the first to ask running it under a file lock.
  """
  mnist_dir = environment("ADDER_JAX_MNIST_DIR")
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # The session's folder, above each worker's own.
  root = root / "real_first_run"
  with filelock.FileLock(f"{root}.lock"):
    if not (root / "run.json").exists():
      shutil.rmtree(root, ignore_errors=True)  # What a worker that died mid-run left.
      root.mkdir()
      try:
        run = subprocess.run(
            [sys.executable, "-m", "adder_jax.main", "--config", "configs/smoke.py",
             f"--workdir={root / 'workdir'}", f"--config.data.data_dir={root / 'tfds'}",
             f"--config.data.manual_dir={mnist_dir}"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200)
        outcome = {"returncode": run.returncode, "stdout": run.stdout, "stderr": run.stderr}
      except subprocess.TimeoutExpired:
        outcome = {"returncode": None, "stdout": "", "stderr": "ran over 1200 s"}
      # Written however it ended, so that no other worker runs it again.
      (root / "run.json").write_text(json.dumps(outcome))
  run = subprocess.CompletedProcess(args=None, **json.loads((root / "run.json").read_text()))
  assert run.returncode == 0, run.stderr
  return root / "workdir", run


@pytest.fixture(scope="session")
def real_mnist_workdir(request):
  """A workdir trained on real MNIST: ADDER_JAX_TRAINED_WORKDIR if set (say, one of the
  default config), else that of `real_first_run`."""
  return (os.environ.get("ADDER_JAX_TRAINED_WORKDIR")
          or str(request.getfixturevalue("real_first_run")[0]))


def copy_of(trained_workdir, tmp_path):
  """A copy of `trained_workdir` in tmp_path/workdir, for a test that changes it."""
  workdir = str(tmp_path / "workdir")
  shutil.copytree(trained_workdir, workdir)
  return workdir


def run_cli(module, args, capsys):
  """Runs the absl entry point of `module` (predict, evaluate) in this process.

  Its flags are defined on a fresh FlagValues, so entry points with the same flag
  names can run one after another.

  Returns:
    (exit status, stdout, stderr).
  """
  flag_values = flags.FlagValues()
  module.define_flags(flag_values)
  argv = flag_values([module.__name__] + [str(arg) for arg in args])
  capsys.readouterr()
  try:
    module.main(argv, flag_values)
    status = 0
  except SystemExit as e:
    status = e.code
  captured = capsys.readouterr()
  return status, captured.out, captured.err


def assert_one_line_error(status, stderr, *words):
  """Checks an entry point failed as a user mistake: status 2, one 'error:' line."""
  assert status == 2, stderr
  assert "Traceback" not in stderr
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), stderr
  for word in words:
    assert word in lines[0]


# Code for `run_on_cpu_devices`: trains the JSON config {config} on {n} mock examples in
# {workdir} and prints the device count and the last record.
TRAIN_ON_DEVICES = """
import json
import jax
import ml_collections
from adder_jax import train
from conftest import mock_mnist
config = ml_collections.ConfigDict(json.loads({config!r}))
with mock_mnist(num_examples={n}):
  record = train.train_and_evaluate(config, {workdir!r})
print(json.dumps({{"devices": jax.device_count(), "record": record}}))
"""


def first_training_batch(task, num_images, plan_key):
  """The first batch of `task`'s epoch plan over `num_images` random images and digits
  (drawn from seed 0), gathered as training gathers it."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (num_images, 28, 28), dtype=np.uint8)
  labels = rng.integers(0, 10, num_images).astype(np.int32)
  plan = task.epoch_plan(plan_key, 0, labels)
  return task.gather(images, labels, plan, plan["batch_indices"][0])


def run_on_cpu_devices(code, devices=8, timeout=600):
  """Runs Python `code` in a new process with `devices` CPU devices, the repository and
  tests/ importable; returns the JSON object its last line of output prints."""
  prelude = f"import sys; sys.path[:0] = [{REPO_ROOT!r}, {os.path.join(REPO_ROOT, 'tests')!r}]\n"
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], env=env,
                       capture_output=True, text=True, timeout=timeout, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def to_int(digits):
  """A digit array [N], most significant first, as a Python integer (exact for any N)."""
  return int("".join(str(int(d)) for d in digits))


def to_digits(number, num_digits):
  """A non-negative Python integer as int32 [num_digits], most significant first."""
  assert 0 <= number < 10 ** num_digits
  return np.array([int(d) for d in str(number).zfill(num_digits)], np.int32)


def pytest_sessionfinish():
  if _COMPILATION_CACHE:
    shutil.rmtree(_COMPILATION_CACHE, ignore_errors=True)
