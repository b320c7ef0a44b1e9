"""Joining a multi-process run (several hosts, or several processes on one host).

Every process runs the same command; `initialize` connects it to the others with
`jax.distributed.initialize`, after which `jax.devices()` lists the devices of all
processes and the ('data',) mesh of `sharding.py` spans them. Nothing else in the
training code depends on the number of processes: the compiled steps run on the global
mesh, `jax.jit` inserts the cross-process gradient all-reduce, and only the chief
(process 0) writes metrics.
"""

import zlib

import jax
from jax.experimental import multihost_utils
import numpy as np

from adder_jax.errors import UserError


def requested(enabled=False, coordinator_address=None, num_processes=None, process_id=None):
  """Whether these settings (those of `initialize`) ask for a multi-process run."""
  return enabled or any(setting is not None
                        for setting in (coordinator_address, num_processes, process_id))


def initialize(enabled=False, coordinator_address=None, num_processes=None, process_id=None):
  """Calls `jax.distributed.initialize` if asked to; returns whether it did.

  Must run before anything touches a JAX device.

  Args:
    enabled: join a multi-process run even with none of the settings below; JAX then
      reads them from the cluster (SLURM, Open MPI, Kubernetes, Cloud TPU).
    coordinator_address: 'host:port' where process 0 serves the coordinator.
    num_processes: how many processes take part.
    process_id: this process's index, 0 .. num_processes - 1.
    Settings left None are detected from the cluster; passing any implies `enabled`.
  """
  if not requested(enabled, coordinator_address, num_processes, process_id):
    return False
  if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
    raise UserError(f"--process_id={process_id} must be in 0..{num_processes - 1} "
                    f"for --num_processes={num_processes}.")
  # Collectives between the CPU devices of different processes need an implementation;
  # this setting touches only the CPU backend, so it is harmless on GPU and TPU hosts.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  except ValueError as e:
    # JAX raises ValueError for settings it could neither read from flags nor detect.
    raise UserError(
        f"cannot join a multi-process run ({e}); outside SLURM, Open MPI, Kubernetes "
        "and Cloud TPU pass --coordinator_address=HOST:PORT, --num_processes=N and "
        "--process_id=I.") from e
  return True


def is_chief():
  """Whether this process is the one that writes files shared by the whole run."""
  return jax.process_index() == 0


def chief_first(fn):
  """Returns `fn()`, called on process 0 first and on the others once it has succeeded.

  For work that fills a cache the processes may share, such as preparing the dataset,
  which they must not do at the same time. When `fn` fails on process 0, the others
  raise UserError instead of calling it.
  """
  if jax.process_count() == 1:
    return fn()
  error = result = None
  if is_chief():
    try:
      result = fn()
    except Exception as e:  # Re-raised below, once the other processes know.
      error = e
  chief_failed = bool(multihost_utils.broadcast_one_to_all(np.int32(error is not None)))
  if error is not None:
    raise error
  if chief_failed:
    raise UserError("process 0 failed (its log says why), so this process stops too.")
  return result if is_chief() else fn()


def check_same_on_all_processes(arrays, what):
  """Raises UserError unless every process passes equal numpy `arrays`.

  Arrays placed with `sharding.put_replicated` must be the same everywhere; if they
  were not, each process would silently train on its own version.
  """
  if jax.process_count() == 1:
    return
  checksum = 0
  for array in arrays:
    checksum = zlib.crc32(np.ascontiguousarray(array).data, checksum)
  checksums = multihost_utils.process_allgather(np.uint32(checksum))
  if len(set(np.asarray(checksums).tolist())) > 1:
    raise UserError(f"the processes loaded different {what}; give them all the same data "
                    "(config.data.data_dir on a shared filesystem, or the same files on "
                    "every host).")
