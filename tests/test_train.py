"""The whole training loop on mock MNIST: outputs, determinism, resume, devices."""

import glob
import json
import os

import numpy as np
import pytest

from adder_jax import checkpointing
from adder_jax import reporting
from adder_jax import train
from conftest import (MOCK_EXAMPLES, TRAIN_ON_DEVICES, copy_of, mock_mnist, run_on_cpu_devices,
                      small_config)

NUM_EXAMPLES = 120
# Timings differ from run to run; everything else must not.
TIMING_KEYS = ("epoch_seconds", "eval_seconds", "images_per_second", "compile_seconds")


def _train(config, workdir):
  with mock_mnist(num_examples=NUM_EXAMPLES):
    return train.train_and_evaluate(config, str(workdir))


def _without_timings(records):
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
  """One uninterrupted 2-epoch run that the other tests compare against."""
  workdir = tmp_path_factory.mktemp("reference")
  config = small_config(workdir / "tfds")
  config.steps_per_chunk = 2
  _train(config, workdir)
  return config, workdir


@pytest.mark.slow
def test_outputs_of_a_run(reference_run):
  config, workdir = reference_run
  records = reporting.read_metrics(str(workdir))
  assert [r["epoch"] for r in records] == [1, 2]
  assert [r["step"] for r in records] == [3, 6]  # 120 // 32 steps per epoch
  for record in records:
    for key in ("train_loss", "test_loss", "test_digit_accuracy", "test_sum_accuracy",
                "test_sum_accuracy_all_pairs", "epoch_seconds", "images_per_second"):
      assert np.isfinite(record[key]), key
    for key in ("test_digit_accuracy", "test_sum_accuracy", "test_sum_accuracy_all_pairs"):
      assert 0.0 <= record[key] <= 100.0
  assert glob.glob(str(workdir / "events.out.tfevents.*"))
  assert checkpointing.Checkpointer(str(workdir)).latest_step() == 6
  with open(workdir / "config.json") as f:
    assert json.load(f)["batch_size"] == config.batch_size


@pytest.mark.slow
def test_same_seed_gives_identical_metrics(reference_run, tmp_path):
  config, workdir = reference_run
  _train(config, tmp_path)
  assert _without_timings(reporting.read_metrics(str(tmp_path))) == _without_timings(
      reporting.read_metrics(str(workdir)))


@pytest.mark.slow
def test_other_seed_gives_other_metrics(reference_run, tmp_path):
  config, workdir = reference_run
  config = config.copy_and_resolve_references()
  config.seed = 1
  _train(config, tmp_path)
  assert (reporting.read_metrics(str(tmp_path))[-1]["train_loss"] !=
          reporting.read_metrics(str(workdir))[-1]["train_loss"])


@pytest.mark.slow
def test_resume_after_a_crash_gives_the_same_final_metrics(reference_run, tmp_path):
  config, workdir = reference_run
  _train(config, tmp_path)
  # Simulate a crash during the last epoch's checkpoint save: the epoch's metrics line
  # was written (and a torn line after it), its checkpoint never finished.
  checkpoints = tmp_path / "checkpoints"
  os.system(f"rm -rf {checkpoints}/6")
  with open(tmp_path / reporting.METRICS_FILE, "a") as f:
    f.write('{"epoch": 3, "st')
  assert checkpointing.Checkpointer(str(tmp_path)).latest_step() == 3
  _train(config, tmp_path)
  assert _without_timings(reporting.read_metrics(str(tmp_path))) == _without_timings(
      reporting.read_metrics(str(workdir)))


@pytest.mark.slow
def test_rerun_of_a_finished_run_changes_nothing(reference_run):
  config, workdir = reference_run
  before = reporting.read_metrics(str(workdir))
  record = _train(config, workdir)
  assert reporting.read_metrics(str(workdir)) == before
  assert record == before[-1]


def test_a_rerun_of_a_finished_run_says_so_and_rewrites_only_the_reports(trained_workdir,
                                                                         tmp_path, capsys):
  workdir = copy_of(trained_workdir, tmp_path)
  events = sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*")))
  with open(os.path.join(workdir, reporting.METRICS_FILE)) as f:
    metrics = f.read()
  os.remove(os.path.join(workdir, "evaluation.json"))
  with mock_mnist(MOCK_EXAMPLES):
    train.train_and_evaluate(small_config(tmp_path / "tfds"), workdir)
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == ("already trained 2/2 epochs: re-evaluating the last checkpoint (step 12) "
                      f"and rewriting the reports in {workdir}")
  assert lines[1:] == [
      f"wrote in {workdir}:", "  evaluation.json  the test evaluation of step 12",
      "  learning_curves.png, digit_confusion_matrix.png, sum_accuracy_by_digit_and_number.png, "
      "worst_mistakes.png"]
  assert os.path.exists(os.path.join(workdir, "evaluation.json"))
  assert sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*"))) == events
  with open(os.path.join(workdir, reporting.METRICS_FILE)) as f:
    assert f.read() == metrics


def test_a_run_stopped_before_its_first_epoch_ends_leaves_no_events_file(tmp_path):
  writer = reporting.MetricWriter(str(tmp_path), resume_step=0)
  writer.close()
  assert not glob.glob(str(tmp_path / "events.out.tfevents.*"))
  writer = reporting.MetricWriter(str(tmp_path), resume_step=0)
  writer.write({"epoch": 1, "step": 3, "train_loss": 1.0})
  writer.close()
  assert len(glob.glob(str(tmp_path / "events.out.tfevents.*"))) == 1


@pytest.mark.slow
def test_generic_gradients_give_the_metrics_of_the_cpu_kernels(reference_run, tmp_path):
  config, workdir = reference_run
  config = config.copy_and_resolve_references()
  config.gradient_kernels = "generic"
  generic = _train(config, tmp_path)
  fast = reporting.read_metrics(str(workdir))[-1]
  assert fast["step"] == generic["step"] == 6
  for key in ("train_loss", "test_loss"):
    np.testing.assert_allclose(generic[key], fast[key], rtol=1e-4)
  for key in ("train_digit_accuracy", "train_sum_accuracy", "test_digit_accuracy",
              "test_sum_accuracy", "test_sum_accuracy_all_pairs"):
    # Float rounding differs between the two: at most one example may flip.
    assert abs(generic[key] - fast[key]) <= 100.0 / NUM_EXAMPLES + 1e-9, key


@pytest.mark.slow
def test_eight_devices_give_the_same_metrics_as_one(reference_run, tmp_path):
  config, workdir = reference_run
  result = run_on_cpu_devices(TRAIN_ON_DEVICES.format(config=config.to_json(), n=NUM_EXAMPLES,
                                                     workdir=str(tmp_path)), timeout=300)
  assert result["devices"] == 8
  one_device = reporting.read_metrics(str(workdir))[-1]
  eight_devices = result["record"]
  for key in ("train_loss", "test_loss"):
    np.testing.assert_allclose(eight_devices[key], one_device[key], rtol=1e-3)
  for key in ("train_digit_accuracy", "test_digit_accuracy", "test_sum_accuracy",
              "test_sum_accuracy_all_pairs"):
    # Summation order differs across devices: at most one test example may flip.
    assert abs(eight_devices[key] - one_device[key]) <= 100.0 / NUM_EXAMPLES + 1e-9, key
