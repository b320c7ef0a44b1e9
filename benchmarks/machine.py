"""What a measurement ran on: devices, CPU, library versions."""

import os
import platform
import shlex
import subprocess

import flax
import jax
import jaxlib
import optax

from adder_jax import runtime


def cpu_model():
  """The CPU's name (from /proc/cpuinfo on Linux, sysctl on macOS), else its architecture."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  try:
    return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                          text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return platform.processor() or platform.machine()


def describe(torch=None):
  """What the results were measured on: devices, CPU, library versions."""
  device = jax.devices()[0]
  info = {"platform": device.platform, "device_kind": device.device_kind,
          "device_count": jax.device_count(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
          "usable_cores": runtime.usable_cores(),
          "os": platform.platform(), "python": platform.python_version(),
          "jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
          "optax": optax.__version__}
  if torch is not None:
    info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
  return info


def recorded_command(module, argv, path_flags):
  """`python -m MODULE ARGS` as it ran, the values of `path_flags` (where data or a run
  is kept: not part of the result) replaced by DIR, in both `--flag=value` and
  `--flag value` forms."""
  args = []
  for arg in argv[1:]:
    name, equals, _ = arg.partition("=")
    args.append(f"{name}=DIR" if equals and name.lstrip("-") in path_flags else arg)
  for i in range(len(args) - 1):
    if args[i].lstrip("-") in path_flags:
      args[i + 1] = "DIR"
  return f"python -m {module} " + shlex.join(args)
