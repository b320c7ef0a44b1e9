"""Setting up a process for JAX: every entry point calls `setup` first, before anything
touches a JAX device (training, evaluate, predict, the benchmark and the grid)."""

import os

import jax

from adder_jax import distributed


def setup(batch_sizes=(), distributed_settings=None):
  """Prepares this process's JAX backends; must run before they start.

  - XLA:CPU's sums are kept deterministic (`keep_cpu_sums_deterministic`).
  - A multi-process run (`distributed_settings`, the keyword arguments of
    `distributed.initialize`, ask for one) is joined; each process keeps the CPU
    devices it was given.
  - Otherwise XLA:CPU gets one device per core that divides every batch size
    (`use_cpu_cores`).

  None of this changes anything on a GPU or TPU.
  """
  keep_cpu_sums_deterministic()
  settings = distributed_settings or {}
  if distributed.requested(**settings):
    distributed.initialize(**settings)
  else:
    use_cpu_cores(batch_sizes)


def use_cpu_cores(batch_sizes):
  """Gives XLA:CPU one device per core (or fewer), so that a step runs on every core.

  Inside the compiled training loop XLA:CPU runs most operations of a step on one thread
  each, leaving cores idle; with one CPU device per core, each core runs its device's
  share of the batch. The count is the largest, up to the number of cores, that divides
  every batch size. No effect on the accelerators a GPU or TPU machine trains on. Acts
  only before JAX starts its backends; a count already set through JAX_NUM_CPU_DEVICES
  or XLA_FLAGS stays (JAX_NUM_CPU_DEVICES=1 trains on one device). The count sets the
  order of float sums, so metrics differ in their last digits between counts; for one
  count they are the same from run to run.
  """
  if ("JAX_NUM_CPU_DEVICES" in os.environ
      or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")):
    return
  count = max(n for n in range(1, usable_cores() + 1) if all(b % n == 0 for b in batch_sizes))
  try:
    jax.config.update("jax_num_cpu_devices", count)
  except RuntimeError:
    pass  # JAX has started already (a notebook, a test): its devices stay as they are.


def usable_cores():
  """The cores this process may run on (its CPU affinity, where the OS has one)."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return cores or 1


# XLA:CPU hands large sums (bias gradients, BatchNorm statistics) to its YNN library,
# which, with one device per core, adds them up in an order that changes from run to
# run: the same config and seed give different metrics after 200 steps. XLA's own
# reductions are deterministic, at about 3% of the reference network's training speed.
DETERMINISTIC_CPU_SUMS_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-reduce"


def keep_cpu_sums_deterministic():
  """Keeps XLA:CPU's sums out of YNN (see above), whatever the device count or process
  count. Must run before JAX starts its backends.

  jaxlib 0.10 has this experimental flag; XLA aborts on a flag it does not know, so other
  versions are left as they are.
  """
  import jaxlib  # pylint: disable=g-import-not-at-top
  flags = os.environ.get("XLA_FLAGS", "")
  if jaxlib.__version__.startswith("0.10.") and "ynn_fusion_type" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_CPU_SUMS_FLAG}".strip()
