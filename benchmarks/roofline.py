"""How close a training step runs to the machine's limit: the step's arithmetic per
image and the machine's measured float32 matmul peak."""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from adder_jax import checkpointing
from adder_jax import sharding
from adder_jax import train


def train_flops_per_image(config, data, mesh=None):
  """Floating-point operations of one train step per training image, from XLA's cost
  analysis of the compiled step.

  The step is compiled with Flax's own layers (`gradient_kernels='generic'`): their
  gradients are plain convolutions and matmuls that the cost analysis counts in full,
  so the figure is the network's arithmetic whichever kernels a run trains with (the CPU
  kernels loop over images, and the analysis counts a loop's body once). XLA counts a
  convolution's multiply-adds with its input, not with 'SAME' padding's zeros. The
  compiled program is one device's share of the batch.
  """
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.gradient_kernels = "generic"
  trainer = train.Trainer(config, data, mesh)
  target = checkpointing.restore_target(trainer.abstract_state,
                                        sharding.replicated(trainer.mesh))
  plan = jax.eval_shape(trainer.epoch_plan, 0)
  compiled = trainer.chunk_fn(1).lower(
      target, (trainer.train_images, trainer.train_labels), plan, jnp.int32(0)).compile()
  flops = _cost(compiled)["flops"]
  return flops * trainer.mesh.size / config.batch_size


def _cost(compiled):
  analysis = compiled.cost_analysis()
  return analysis[0] if isinstance(analysis, (list, tuple)) else analysis


def matmul_peak_gflops(mesh=None, size=2048, repeats=10):
  """GFLOP/s of float32 matrix products on every device of `mesh` at once: each device
  multiplies its own [size, size] pair, the best of `repeats` timings."""
  mesh = sharding.create_mesh() if mesh is None else mesh
  devices = mesh.size
  shape = (devices, size, size)
  rng = np.random.default_rng(0)
  a = jax.device_put(rng.standard_normal(shape, np.float32), sharding.batch_sharded(mesh))
  b = jax.device_put(rng.standard_normal(shape, np.float32), sharding.batch_sharded(mesh))
  product = jax.jit(functools.partial(jnp.einsum, "dij,djk->dik"),
                    out_shardings=sharding.batch_sharded(mesh))
  jax.block_until_ready(product(a, b))
  best = np.inf
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(product(a, b))
    best = min(best, time.perf_counter() - t0)
  return devices * 2 * size**3 / best / 1e9
