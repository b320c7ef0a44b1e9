"""The per-backend gradients of kernels.py: the CPU formulations give autodiff's results,
each backend gets its own, and a whole network's loss and gradients are the same on
either path, on 1 device here and on 8 in a subprocess."""

import functools
import importlib

import flax.linen as nn
import jax
from jax import export
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adder_jax import kernels
from adder_jax import sharding
from adder_jax import steps
from adder_jax import tasks
from conftest import first_training_batch, run_on_cpu_devices

_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(x, kernel, padding, conv=jax.lax.conv_general_dilated):
  return conv(x, kernel, (1, 1), padding,
              dimension_numbers=jax.lax.conv_dimension_numbers(x.shape, kernel.shape, _NHWC))


def _conv_vjp(kind, x, kernel, padding, grad, shards=1):
  """Output and gradients of `kernels.conv_general_dilated`, traced under `use(kind)`
  with an abstract mesh of `shards` devices in context."""

  def f(x, kernel, grad):
    with jax.sharding.use_abstract_mesh(jax.sharding.AbstractMesh((shards,), (sharding.DATA_AXIS,))), \
         kernels.use(kind):
      y, vjp = jax.vjp(functools.partial(_conv, padding=padding,
                                         conv=kernels.conv_general_dilated), x, kernel)
      return y, vjp(grad)

  return jax.jit(f)(x, kernel, grad)


# The kernel gradient loops over tiles of images: for these shapes one tile of all the
# images, tiles of 4 small images, and one large image at a time; and a 5x3 kernel.
@pytest.mark.parametrize("shape, window", [((4, 9, 7, 3), (3, 3)), ((16, 9, 7, 3), (3, 3)),
                                           ((4, 23, 22, 2), (3, 3)), ((4, 9, 8, 3), (5, 3))])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
# Each device of the mesh loops over its block of the batch; 3 devices do not divide
# the batch of 4, which is then one loop over all its images.
@pytest.mark.parametrize("shards", [1, 2, 3])
def test_cpu_convolution_gradients_equal_autodiff(shape, window, padding, shards):
  x = jax.random.normal(jax.random.key(0), shape)
  kernel = jax.random.normal(jax.random.key(1), (*window, shape[-1], 5))
  y, reference_vjp = jax.vjp(functools.partial(_conv, padding=padding), x, kernel)
  grad = jax.random.normal(jax.random.key(2), y.shape)
  y_cpu, grads = _conv_vjp("cpu", x, kernel, padding, grad, shards)
  np.testing.assert_allclose(y_cpu, y, rtol=1e-6)
  for cpu, reference in zip(grads, reference_vjp(grad)):
    np.testing.assert_allclose(cpu, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 4, 6, 3), (2, 5, 7, 3)])
@pytest.mark.parametrize("kind", kernels.GRADIENT_KERNELS)
def test_max_pool_and_its_gradient_equal_autodiff(shape, kind):
  x = jax.random.normal(jax.random.key(0), shape)
  pool = functools.partial(jax.lax.reduce_window, init_value=-jnp.inf,
                           computation=jax.lax.max, window_dimensions=(1, 2, 2, 1),
                           window_strides=(1, 2, 2, 1), padding="VALID")
  y, reference_vjp = jax.vjp(pool, x)
  grad = jax.random.normal(jax.random.key(1), y.shape)

  def f(x, grad):
    with kernels.use(kind):
      y, vjp = jax.vjp(lambda x: kernels.max_pool(x, (2, 2), strides=(2, 2)), x)
      return y, vjp(grad)[0]

  y_kernel, grad_x = jax.jit(f)(x, grad)
  np.testing.assert_array_equal(y_kernel, y)
  np.testing.assert_array_equal(grad_x, reference_vjp(grad)[0])


@pytest.mark.parametrize("shape", [(3, 5, 4, 6), (7, 6)])
@pytest.mark.parametrize("kind", kernels.GRADIENT_KERNELS)
def test_bias_and_its_gradient_equal_autodiff(shape, kind):
  x = jax.random.normal(jax.random.key(0), shape)
  bias = jax.random.normal(jax.random.key(1), shape[-1:])
  y, reference_vjp = jax.vjp(lambda x, b: x + b, x, bias)
  grad = jax.random.normal(jax.random.key(2), shape)

  def f(x, bias, grad):
    with kernels.use(kind):
      y, vjp = jax.vjp(kernels.add_bias, x, bias)
      return y, vjp(grad)

  y_kernel, grads = jax.jit(f)(x, bias, grad)
  np.testing.assert_array_equal(y_kernel, y)
  for kernel_grad, reference in zip(grads, reference_vjp(grad)):
    np.testing.assert_allclose(kernel_grad, reference, rtol=1e-5, atol=1e-5)


def test_other_convolutions_and_pools_are_passed_to_lax_and_flax():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
  strided = kernels.conv_general_dilated(
      x, kernel, (2, 2), "SAME", dimension_numbers=jax.lax.conv_dimension_numbers(
          x.shape, kernel.shape, _NHWC))
  np.testing.assert_array_equal(strided, jax.lax.conv_general_dilated(
      x, kernel, (2, 2), "SAME", dimension_numbers=_NHWC))
  np.testing.assert_array_equal(kernels.max_pool(x, (3, 3), strides=(1, 1)),
                                nn.max_pool(x, (3, 3), strides=(1, 1)))


def _lowered_gradient(kind, platform):
  """The StableHLO text of a convolution's and a max pool's gradient, for `platform`."""
  x = jnp.zeros((4, 8, 8, 3))
  kernel = jnp.zeros((3, 3, 3, 5))

  def loss(x, kernel):
    with kernels.use(kind):
      y = _conv(x, kernel, "SAME", conv=kernels.conv_general_dilated)
      return jnp.sum(kernels.max_pool(y, (2, 2), strides=(2, 2)))

  return export.export(jax.jit(jax.grad(loss, (0, 1))), platforms=[platform])(
      x, kernel).mlir_module()


@pytest.mark.parametrize("kind, platform, cpu_kernels", [
    ("auto", "cpu", True), ("auto", "cuda", False), ("auto", "tpu", False),
    ("generic", "cpu", False), ("cpu", "cuda", True)])
def test_each_backend_gets_its_gradients_when_lowered(kind, platform, cpu_kernels):
  """The CPU kernel gradient is a loop over images; autodiff's, one convolution per
  gradient and a select-and-scatter for the pool."""
  text = _lowered_gradient(kind, platform)
  assert ("stablehlo.while" in text) == cpu_kernels
  assert ("select_and_scatter" in text) == (not cpu_kernels)
  assert text.count("stablehlo.convolution") == (2 if cpu_kernels else 3)


def test_unknown_kind_is_refused():
  with pytest.raises(ValueError, match="unknown gradient kernels 'fast'"):
    with kernels.use("fast"):
      pass


# Configs whose networks the comparison below covers: every trunk spec and kernel size
# the configs use.
CONFIGS = ("default", "fast", "smoke", "reference_cnn", "two_images", "multi_digit",
           "multi_digit_lenet")


def loss_and_gradients(config_name, kind):
  """The training loss and gradients of the config's network on a fixed batch of 16
  examples of its task, split over all devices, with the gradient kernels `kind`."""
  config = importlib.import_module(f"configs.{config_name}").get_config()
  config.batch_size = 16
  task = tasks.create_task(config)
  model = task.create_model()
  batch = first_training_batch(task, 256, jax.random.key(2))
  state = steps.init_state(model, optax.adam(1e-3), jax.random.key(0), batch["inputs"])
  mesh = sharding.create_mesh()
  batch = jax.device_put(batch, sharding.batch_sharded(mesh))

  def loss_fn(params, batch):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), kernels.use(kind):
      grad_fn = jax.grad(steps.loss_and_metrics, has_aux=True)
      grads, (metrics, _) = grad_fn(params, state, batch, jax.random.key(1), model,
                                    task.objective)
      return metrics["loss"], grads

  return jax.device_get(jax.jit(loss_fn)(state.params, batch))


def largest_difference(config_name):
  """The largest difference between the CPU-kernel and the autodiff loss, and between
  their gradients, relative to each gradient's largest value."""
  cpu_loss, cpu_grads = loss_and_gradients(config_name, "cpu")
  loss, grads = loss_and_gradients(config_name, "generic")
  grad_error = max(jax.tree.leaves(jax.tree.map(
      lambda a, b: float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-12)), cpu_grads, grads)))
  return abs(float(cpu_loss) - float(loss)) / abs(float(loss)), grad_error


@pytest.mark.parametrize("config_name", CONFIGS)
def test_cpu_kernels_give_autodiff_loss_and_gradients(config_name):
  loss_error, grad_error = largest_difference(config_name)
  assert loss_error < 1e-6
  assert grad_error < 1e-5


_ON_EIGHT_DEVICES = """
import json
import jax
from test_kernels import CONFIGS, largest_difference
print(json.dumps({"devices": jax.device_count(),
                  "errors": {name: largest_difference(name) for name in CONFIGS}}))
"""


def test_cpu_kernels_give_autodiff_loss_and_gradients_on_eight_devices():
  result = run_on_cpu_devices(_ON_EIGHT_DEVICES)
  assert result["devices"] == 8
  for name, (loss_error, grad_error) in result["errors"].items():
    assert loss_error < 1e-6, name
    assert grad_error < 1e-5, name
