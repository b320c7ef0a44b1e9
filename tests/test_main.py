"""The command line: config overrides and one-line errors for bad input."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from adder_jax import cli
from adder_jax import interrupts
from conftest import REPO_ROOT


def _main(*args, devices=1):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  return subprocess.run(
      [sys.executable, "-m", "adder_jax.main", "--config", "configs/smoke.py", *args],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("override, message", [
    ("--config.learning_rate=-1",
     "config has no field 'learning_rate'; did you mean 'optimizer.learning_rate'?"),
    ("--config.nmu_epochs=3", "config has no field 'nmu_epochs'; did you mean 'num_epochs'?"),
    ("--config.optimizer.learnin_rate=0.1",
     "config has no field 'optimizer.learnin_rate'; did you mean 'optimizer.learning_rate'?"),
])
@pytest.mark.slow
def test_misspelt_config_field_names_the_closest_fields(tmp_path, override, message):
  result = _main(f"--workdir={tmp_path / 'run'}", override)
  assert result.returncode == 2
  assert result.stderr == f"error: {message}\n"
  assert not os.path.exists(tmp_path / "run")  # Before any work.


@pytest.mark.slow
def test_benchmark_names_the_closest_config_field():
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.benchmark", "--config", "configs/smoke.py",
       "--config.batch_sise=64"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert result.stderr == "error: config has no field 'batch_sise'; did you mean 'batch_size'?\n"


@pytest.mark.slow
def test_a_config_file_that_does_not_load_is_a_one_line_error(tmp_path):
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config():\n  return undefined_name\n")
  for config_file in (str(broken), str(tmp_path / "missing.py")):
    result = _main(f"--workdir={tmp_path / 'run'}", f"--config={config_file}")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: cannot load the config file {config_file} (")
    assert len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_batch_size_not_divisible_by_devices_is_a_one_line_error(tmp_path):
  result = _main(f"--workdir={tmp_path}", "--config.batch_size=36", devices=8)
  assert result.returncode == 2
  assert result.stderr.strip() == (
      "error: config.batch_size=36 does not divide by the 8 devices; choose a multiple of 8.")


# Not slow although it starts a process: the fast tier's one run of adder_jax.main, whose
# flags are absl's global ones and clash with benchmarks.benchmark's in one process.
def test_missing_data_without_network_names_the_manual_dir_option(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  result = _main(f"--workdir={tmp_path / 'run'}", f"--config.data.data_dir={tmp_path / 'tfds'}",
                 f"--config.data.manual_dir={empty}")
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and result.stderr.strip().endswith(errors[0])
  assert "manual_dir" in errors[0] and "Traceback" not in result.stderr


@pytest.mark.slow
def test_library_advice_is_kept_off_the_terminal_unless_asked_for():
  """tfds's 'OpenCV is not installed' warning, logged while MNIST is read, is chatter;
  adder_jax's own warnings and every library's errors stay; --verbosity=0 shows all."""
  script = textwrap.dedent("""
      import io, socket, tempfile
      from absl import logging
      import ml_collections
      import numpy as np
      import PIL.Image
      import tensorflow_datasets as tfds
      from adder_jax import cli, mnist
      from adder_jax.errors import UserError

      def no_network(*args, **kwargs):
        raise OSError("no network")

      def main(argv):
        cli.quiet_library_logs()
        png = io.BytesIO()
        PIL.Image.fromarray(np.zeros((28, 28), np.uint8)).save(png, format="PNG")
        tfds.features.Image(shape=(28, 28, 1)).decode_example_np(png.getvalue())
        logging.error("a library error")
        socket.create_connection = no_network
        try:  # Says that it prepares MNIST, then fails to reach the server.
          mnist.prepare(ml_collections.ConfigDict(
              {"dataset": "mnist", "data_dir": tempfile.mkdtemp(), "manual_dir": None}))
        except UserError:
          pass

      cli.run(main)
  """)
  quiet, verbose = (subprocess.run([sys.executable, "-c", script, *args], cwd=REPO_ROOT,
                                   capture_output=True, text=True, timeout=120)
                    for args in ([], ["--verbosity=0"]))
  assert quiet.returncode == verbose.returncode == 0, quiet.stderr + verbose.stderr
  assert "OpenCV" not in quiet.stderr and "OpenCV" in verbose.stderr
  for result in (quiet, verbose):
    assert "a library error" in result.stderr and "preparing mnist in" in result.stdout


@pytest.mark.slow
def test_bad_flags_are_a_one_line_error():
  cases = []
  for module in ("adder_jax.main", "adder_jax.predict", "adder_jax.evaluate",
                 "benchmarks.benchmark"):
    missing = "--output" if module == "benchmarks.benchmark" else "--workdir"
    before = ["--config=configs/smoke.py"] if module == "benchmarks.benchmark" else []
    cases += [(module, ["--nonsense=1"], "error: Unknown command line flag 'nonsense'"),
              (module, before + [missing], f"error: Missing value for flag {missing}")]
  processes = [subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO_ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for module, args, _ in cases]  # At once: each spends seconds importing JAX.
  for (module, args, message), process in zip(cases, processes):
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2, (module, args, err)
    assert err.splitlines() == [message], (module, args, err)


@pytest.mark.slow
def test_a_positional_argument_is_a_one_line_error(tmp_path):
  result = _main(f"--workdir={tmp_path / 'run'}", "stray")
  assert result.returncode == 2
  assert result.stderr == "error: unexpected arguments: stray (flags start with --).\n"
  assert not os.path.exists(tmp_path / "run")


# Every command line of the repository, and whether it reads a config file.
ENTRY_POINTS = {"adder_jax.main": True, "adder_jax.evaluate": False, "adder_jax.predict": False,
                "adder_jax.demo": False, "benchmarks.benchmark": True,
                "benchmarks.demo_latency": False, "benchmarks.profile_step": True,
                "benchmarks.torch_reference": False, "experiments.compare_configs": False,
                "experiments.multi_digit": False, "experiments.predict_on_image_files": False,
                "experiments.run_grid": False, "experiments.tune_speed": False}


@pytest.mark.slow
def test_help_on_every_entry_point_exits_0_and_shows_the_config_overrides():
  processes = {module: subprocess.Popen([sys.executable, "-m", module, "--help"], cwd=REPO_ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for module in ENTRY_POINTS}  # At once: each spends seconds importing JAX.
  for module, process in processes.items():
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, (module, err)
    assert ("--config.FIELD=VALUE" in out) == ENTRY_POINTS[module], (module, out)
    # The module's own description.
    summary = importlib.util.find_spec(module).loader.get_source(module).split('"""')[1]
    assert summary.splitlines()[0] in out, (module, out)


def test_every_entry_point_imports_beside_the_others():
  """Scripts define their flags only when they run, so a test (or a user's notebook) can
  import any set of them without a duplicate-flag error."""
  modules = [m for m in ENTRY_POINTS if m != "benchmarks.torch_reference"
             or importlib.util.find_spec("torch")]
  result = subprocess.run([sys.executable, "-c", "import importlib, sys\n"
                           "for m in sys.argv[1:]: importlib.import_module(m)", *modules],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr


def test_starting_and_writing_metrics_do_not_load_pytorch(tmp_path):
  """tensorboardX imports PyTorch whenever it is installed (seconds of every start);
  adder_jax's metric writer keeps it out, and still writes TensorBoard events."""
  if not importlib.util.find_spec("torch"):  # Not imported here: it stays loaded.
    pytest.skip("the [bench] extra (PyTorch) is not installed")
  code = textwrap.dedent("""
      import sys
      from adder_jax import main, reporting
      writer = reporting.MetricWriter(sys.argv[1], resume_step=0)
      writer.write({"epoch": 1, "step": 3, "train_loss": 0.5})
      writer.close()
      print(sorted({"torch", "tensorboardX"} & set(sys.modules)))""")
  result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "['tensorboardX']"
  [events] = [name for name in os.listdir(tmp_path) if name.startswith("events.out.tfevents")]
  assert b"train_loss" in (tmp_path / events).read_bytes()


def test_every_entry_point_is_in_the_help_test():
  """Each module with a `__main__` block is listed in ENTRY_POINTS."""
  found = set()
  for package in ("adder_jax", "benchmarks", "experiments"):
    for name in os.listdir(os.path.join(REPO_ROOT, package)):
      if name.endswith(".py"):
        with open(os.path.join(REPO_ROOT, package, name)) as f:
          if 'if __name__ == "__main__":' in f.read():
            found.add(f"{package}.{name[:-3]}")
  assert found == set(ENTRY_POINTS)


@pytest.mark.parametrize("raised, message", [
    (interrupts.TrainingInterrupted("interrupted: saved a checkpoint at step 6 in W"),
     "interrupted: saved a checkpoint at step 6 in W"),
    (KeyboardInterrupt(), "interrupted: stopped at once; the checkpoints saved so far are "
                          "kept, rerun the same command to resume."),
])
def test_ctrl_c_in_a_command_that_trains_is_one_line_and_status_130(raised, message, capsys):
  """Every command that trains (the CLI and the experiment scripts) stops this way."""
  with pytest.raises(SystemExit) as stopped:
    with cli.exit_on_interrupt():
      raise raised
  assert stopped.value.code == 130
  assert capsys.readouterr().err == message + "\n"
