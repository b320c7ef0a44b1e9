"""The device mesh and how arrays are laid out on it.

Data parallelism is one `('data',)` mesh axis over all devices: batches are split along
it, parameters and the resident datasets are replicated, and `jax.jit` inserts the
gradient all-reduce. The code is the same for one device or many, in one process or
many (the mesh then spans the devices of every process; see distributed.py).
"""

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def use_cpu_cores(batch_sizes):
  """Gives XLA:CPU one device per core (or fewer), so that a step runs on every core.

  Inside the compiled training loop XLA:CPU runs most operations of a step on one thread
  each, leaving cores idle; with one CPU device per core, each core runs its device's
  share of the batch. The count is the largest, up to the number of cores, that divides
  every batch size. No effect on the accelerators a GPU or TPU machine trains on. Must
  run before JAX starts its backends; a count already set through JAX_NUM_CPU_DEVICES
  or XLA_FLAGS stays.
  """
  if ("JAX_NUM_CPU_DEVICES" in os.environ
      or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")):
    return
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  count = max(n for n in range(1, (cores or 1) + 1) if all(b % n == 0 for b in batch_sizes))
  jax.config.update("jax_num_cpu_devices", count)


# XLA:CPU hands large sums (bias gradients, BatchNorm statistics) to its YNN library,
# which, with one device per core, added them up in an order that changed from run to
# run: the same config and seed gave different metrics after 200 steps. XLA's own
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


def create_mesh(devices=None):
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh):
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh):
  """Leading (batch) axis split over the devices."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def put_replicated(tree, mesh):
  """Places host (numpy) arrays whole on every device of `mesh`.

  Each process passes its own full copy, which must be the same in every process, and
  fills its own devices; `jax.device_put` cannot, as it would need to write to the
  devices of other processes.
  """
  sharding = replicated(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x), np.shape(x)),
      tree)
