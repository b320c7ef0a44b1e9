"""The device mesh and how arrays are laid out on it.

Data parallelism is one `('data',)` mesh axis over all devices: batches are split along
it, parameters and the resident datasets are replicated, and `jax.jit` inserts the
gradient all-reduce. The code is the same for one device or many, in one process or
many (the mesh then spans the devices of every process; see distributed.py).
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


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
