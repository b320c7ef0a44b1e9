"""The device mesh and how arrays are laid out on it.

Data parallelism is one `('data',)` mesh axis over all devices: batches are split along
it, parameters and the resident datasets are replicated, and `jax.jit` inserts the
gradient all-reduce. The code is the same for one device or many.
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
  return jax.device_put(tree, replicated(mesh))
