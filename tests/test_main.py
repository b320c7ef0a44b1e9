"""The command line: config overrides and one-line errors for bad input."""

import os
import subprocess
import sys

from conftest import REPO_ROOT


def _main(*args, devices=1):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  return subprocess.run(
      [sys.executable, "-m", "adder_jax.main", "--config", "configs/smoke.py", *args],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_misspelt_config_field_is_rejected(tmp_path):
  result = _main(f"--workdir={tmp_path}", "--config.nmu_epochs=3")
  assert result.returncode != 0
  assert "nmu_epochs" in result.stderr
  assert not os.path.exists(tmp_path / "metrics.jsonl")


def test_batch_size_not_divisible_by_devices_is_a_one_line_error(tmp_path):
  result = _main(f"--workdir={tmp_path}", "--config.batch_size=36", devices=8)
  assert result.returncode == 2
  assert result.stderr.strip() == (
      "error: config.batch_size=36 does not divide by the 8 devices; choose a multiple of 8.")


def test_missing_data_without_network_names_the_manual_dir_option(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  result = _main(f"--workdir={tmp_path / 'run'}", f"--config.data.data_dir={tmp_path / 'tfds'}",
                 f"--config.data.manual_dir={empty}")
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and result.stderr.strip().endswith(errors[0])
  assert "manual_dir" in errors[0] and "Traceback" not in result.stderr
