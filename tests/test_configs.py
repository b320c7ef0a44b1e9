"""Every config of configs/ passes validation, and configs/best.py trains through the
command line on mock MNIST with its own trunk, augmentation and moving averages."""

import importlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from adder_jax import reporting
from adder_jax import train
from conftest import REPO_ROOT

CONFIG_NAMES = sorted(p.stem for p in pathlib.Path(REPO_ROOT, "configs").glob("*.py")
                      if p.stem != "__init__")


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_every_config_is_valid(name):
  train.check_config(importlib.import_module(f"configs.{name}").get_config())


@pytest.mark.slow
def test_best_config_trains_a_few_steps_on_mock_data(tmp_path):
  workdir = tmp_path / "workdir"
  # Its network, augmentation, averages and schedule, over 2 epochs of 4 steps.
  result = subprocess.run(
      [sys.executable, "-m", "tests.mock_main", "--mock_num_examples=128",
       "--config", "configs/best.py", "--workdir", str(workdir), "--config.num_epochs=2",
       "--config.batch_size=32", "--config.eval_batch_size=64", "--config.steps_per_chunk=2",
       f"--config.data.data_dir={tmp_path / 'tfds'}"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr
  records = reporting.read_metrics(str(workdir))
  assert [r["step"] for r in records] == [4, 8]
  for key in ("train_loss", "test_loss", "test_digit_accuracy", "test_sum_accuracy",
              "test_sum_accuracy_all_pairs"):
    assert np.isfinite(records[-1][key]), key
  from configs import best
  with open(os.path.join(workdir, "config.json")) as f:
    saved = json.load(f)
  expected = best.get_config()
  assert saved["model"]["conv_layers"] == expected.model.conv_layers
  assert saved["augment"] == expected.augment.to_dict()
  assert saved["ema_decay"] == expected.ema_decay > 0
  assert os.path.exists(os.path.join(workdir, "learning_curves.png"))
