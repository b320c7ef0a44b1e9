"""Tests of `python -m adder_jax.evaluate` and of the report and plots training writes."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from adder_jax import evaluate
from adder_jax import evaluation_report
from adder_jax import mnist
from adder_jax import reporting
from adder_jax import train
from conftest import MOCK_EXAMPLES, assert_one_line_error, mock_mnist, run_cli


def check_report(workdir, report):
  assert report["num_test_images"] == MOCK_EXAMPLES
  table = np.array(report["sum_accuracy_by_digit_and_number"], dtype=float)
  confusion = np.array(report["digit_confusion_matrix"])
  assert table.shape == (10, 10) and confusion.shape == (10, 10)
  assert confusion.sum() == MOCK_EXAMPLES
  assert 100.0 * np.trace(confusion) / MOCK_EXAMPLES == pytest.approx(
      report["test_digit_accuracy"])
  # Every image is paired with every number once, so the table averages (weighted by
  # each digit's count) to the all-pairs accuracy, up to the table's rounding.
  counts = confusion.sum(axis=1)
  assert (np.nansum(table * counts[:, None]) / counts.sum() / 10 ==
          pytest.approx(report["test_sum_accuracy_all_pairs"], abs=0.01))
  assert len(report["worst_mistakes"]) <= evaluation_report.NUM_MISTAKES_SHOWN
  for name, file in evaluation_report.PLOT_FILES.items():
    assert report["plots"][name] == os.path.join(workdir, file)
    with Image.open(report["plots"][name]) as image:
      assert image.format == "PNG"


def test_training_writes_the_report_and_plots(trained_workdir):
  with open(os.path.join(trained_workdir, evaluation_report.EVALUATION_FILE)) as f:
    report = json.load(f)
  check_report(trained_workdir, report)
  last = reporting.read_metrics(trained_workdir)[-1]
  assert report["step"] == last["step"]
  for key in ("test_digit_accuracy", "test_sum_accuracy", "test_sum_accuracy_all_pairs"):
    assert report[key] == pytest.approx(last[key])


def test_evaluate_latest_checkpoint(trained_workdir, tmp_path, capsys):
  workdir = str(tmp_path / "workdir")
  shutil.copytree(trained_workdir, workdir)
  for file in [evaluation_report.EVALUATION_FILE, *evaluation_report.PLOT_FILES.values()]:
    os.remove(os.path.join(workdir, file))
  with mock_mnist(MOCK_EXAMPLES):
    status, out, err = run_cli(evaluate, ["--workdir", workdir], capsys)
  assert status == 0, err
  with open(os.path.join(workdir, evaluation_report.EVALUATION_FILE)) as f:
    report = json.load(f)
  check_report(workdir, report)
  # The same numbers as training measured at its end.
  last = reporting.read_metrics(workdir)[-1]
  assert report["step"] == last["step"] == 12
  assert report["test_digit_accuracy"] == pytest.approx(last["test_digit_accuracy"])
  assert report["test_sum_accuracy"] == pytest.approx(last["test_sum_accuracy"])
  assert f"digit accuracy           {report['test_digit_accuracy']:.2f}%" in out
  assert "sum accuracy, all pairs" in out and "hardest (digit, number)" in out


@pytest.fixture
def no_training_data(monkeypatch):
  """Fails the test if anything reads the training split or builds a Trainer."""
  read_split = mnist._read_split

  def read_test_split_only(builder, split):
    assert split != "train", "the training split was read"
    return read_split(builder, split)

  monkeypatch.setattr(mnist, "_read_split", read_test_split_only)
  monkeypatch.setattr(train.Trainer, "__init__", lambda *args: pytest.fail("a Trainer was built"))


def test_evaluate_reads_the_test_split_alone(trained_workdir, tmp_path, no_training_data):
  workdir = str(tmp_path / "workdir")
  shutil.copytree(trained_workdir, workdir)
  with mock_mnist(MOCK_EXAMPLES):
    report = evaluate.evaluate_workdir(workdir)
  assert report["step"] == 12
  assert report["test_digit_accuracy"] == pytest.approx(
      reporting.read_metrics(workdir)[-1]["test_digit_accuracy"])


def test_evaluate_without_checkpoint(tmp_path, capsys):
  status, _, err = run_cli(evaluate, ["--workdir", tmp_path], capsys)
  assert_one_line_error(status, err, "has no checkpoint")


def test_evaluate_checkpoint_from_another_model_config(trained_workdir, tmp_path, capsys):
  workdir = tmp_path / "workdir"
  shutil.copytree(trained_workdir, workdir)
  with open(workdir / "config.json") as f:
    config = json.load(f)
  config["model"]["sum_hidden_features"] = [64]
  with open(workdir / "config.json", "w") as f:
    json.dump(config, f)
  with mock_mnist(MOCK_EXAMPLES):
    status, _, err = run_cli(evaluate, ["--workdir", workdir], capsys)
  assert_one_line_error(status, err, "does not fit this model config")
