"""The CPU gradient kernels of kernels.py: their gradients equal autodiff's, they are
chosen per platform, what they do not cover is refused, and a whole network's loss and
gradients are the same with them or with Flax's own layers, on 1 device here and on 8
in a subprocess."""

import functools
import importlib
import pathlib
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adder_jax import kernels
from adder_jax import models
from adder_jax import sharding
from adder_jax import steps
from adder_jax import tasks
from adder_jax.errors import UserError
from conftest import REPO_ROOT, first_training_batch, run_on_cpu_devices

_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(x, kernel, padding, conv=jax.lax.conv_general_dilated, strides=(1, 1)):
  return conv(x, kernel, strides, padding,
              dimension_numbers=jax.lax.conv_dimension_numbers(x.shape, kernel.shape, _NHWC))


# The kernel gradient loops over tiles of images: for these shapes one tile of all the
# images, tiles of 4 small images, and one large image at a time; a 5x3 kernel; and a
# one-channel map, whose forward convolution is a product of patches. Each shape
# compiles anew, so only the first two are in the fast tier and the others are slow.
@pytest.mark.parametrize("shape, window", [
    ((4, 9, 7, 3), (3, 3)),
    ((4, 9, 8, 1), (5, 3)),
    pytest.param((16, 9, 7, 3), (3, 3), marks=pytest.mark.slow),
    pytest.param((4, 23, 22, 2), (3, 3), marks=pytest.mark.slow),
    pytest.param((4, 9, 8, 3), (5, 3), marks=pytest.mark.slow)])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
# Each device loops over its block of the batch; 3 devices do not divide the batch of
# 4, which is then one loop over all its images.
@pytest.mark.parametrize("shards", [1, 2, 3])
def test_cpu_convolution_gradients_equal_autodiff(shape, window, padding, shards):
  x = jax.random.normal(jax.random.key(0), shape)
  kernel = jax.random.normal(jax.random.key(1), (*window, shape[-1], 5))
  y, reference_vjp = jax.vjp(functools.partial(_conv, padding=padding), x, kernel)
  grad = jax.random.normal(jax.random.key(2), y.shape)
  conv = functools.partial(kernels.conv_general_dilated, batch_shards=shards)

  def f(x, kernel, grad):
    y, vjp = jax.vjp(functools.partial(_conv, padding=padding, conv=conv), x, kernel)
    return y, vjp(grad)

  y_cpu, grads = jax.jit(f)(x, kernel, grad)
  np.testing.assert_allclose(y_cpu, y, rtol=1e-6, atol=1e-6)
  for cpu, reference in zip(grads, reference_vjp(grad)):
    np.testing.assert_allclose(cpu, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 4, 6, 3), (2, 5, 7, 3)])
def test_max_pool_and_its_gradient_equal_autodiff(shape):
  x = jax.random.normal(jax.random.key(0), shape)
  y, reference_vjp = jax.vjp(lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)), x)
  grad = jax.random.normal(jax.random.key(1), y.shape)

  def f(x, grad):
    y, vjp = jax.vjp(lambda x: kernels.max_pool(x, (2, 2), strides=(2, 2)), x)
    return y, vjp(grad)[0]

  y_kernel, grad_x = jax.jit(f)(x, grad)
  np.testing.assert_array_equal(y_kernel, y)
  np.testing.assert_array_equal(grad_x, reference_vjp(grad)[0])


@pytest.mark.parametrize("shape", [(3, 5, 4, 6), (7, 6)])
def test_bias_and_its_gradient_equal_autodiff(shape):
  x = jax.random.normal(jax.random.key(0), shape)
  bias = jax.random.normal(jax.random.key(1), shape[-1:])
  y, reference_vjp = jax.vjp(lambda x, b: x + b, x, bias)
  grad = jax.random.normal(jax.random.key(2), shape)

  def f(x, bias, grad):
    y, vjp = jax.vjp(kernels.add_bias, x, bias)
    return y, vjp(grad)

  y_kernel, grads = jax.jit(f)(x, bias, grad)
  np.testing.assert_array_equal(y_kernel, y)
  for kernel_grad, reference in zip(grads, reference_vjp(grad)):
    np.testing.assert_allclose(kernel_grad, reference, rtol=1e-5, atol=1e-5)


def test_the_bias_layer_has_the_parameters_of_the_plain_one():
  x = jnp.ones((2, 3, 3, 4))
  plain = models.Bias().init(jax.random.key(0), x)
  cpu = kernels.Bias().init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, plain) == jax.tree.map(jnp.shape, cpu)


@pytest.mark.parametrize("kind, platform, cpu_layers", [
    ("auto", "cpu", True), ("auto", "gpu", False), ("auto", "tpu", False),
    ("generic", "cpu", False), ("cpu", "gpu", True)])
def test_each_platform_gets_its_layers(kind, platform, cpu_layers):
  layers = kernels.layers(kind, platform, batch_shards=2)
  assert bool(layers) == cpu_layers
  if cpu_layers:
    assert set(layers) == {"conv", "max_pool", "bias"}


def _lowered_gradient(layers):
  """The StableHLO text of the gradient of a convolution, max pool and bias built of
  `layers` (Flax's own where absent)."""
  conv = layers.get("conv", nn.Conv)(5, (3, 3), use_bias=False)
  bias = layers.get("bias", models.Bias)()
  max_pool = layers.get("max_pool", nn.max_pool)
  x = jnp.zeros((4, 8, 8, 3))
  variables = {"conv": conv.init(jax.random.key(0), x),
               "bias": bias.init(jax.random.key(0), jnp.zeros((4, 4, 4, 5)))}

  def loss(variables, x):
    y = max_pool(conv.apply(variables["conv"], x), (2, 2), strides=(2, 2))
    return jnp.sum(bias.apply(variables["bias"], y))

  return jax.jit(jax.grad(loss)).lower(variables, x).as_text()


def test_the_cpu_layers_replace_autodiffs_gradients():
  """The CPU kernel gradient is a loop over images; autodiff's, one convolution per
  gradient and a select-and-scatter for the pool."""
  cpu = _lowered_gradient(kernels.layers("cpu", "cpu"))
  generic = _lowered_gradient({})
  assert "stablehlo.while" in cpu and "select_and_scatter" not in cpu
  assert "stablehlo.while" not in generic and "select_and_scatter" in generic


def test_unknown_kind_is_refused():
  with pytest.raises(ValueError, match="unknown gradient kernels 'fast'"):
    kernels.layers("fast", "cpu")


@pytest.mark.parametrize("conv_args, words", [
    ({"strides": (2, 2)}, "strides (2, 2)"),
    ({"kernel_dilation": (2, 2)}, "a dilated convolution"),
    ({"feature_group_count": 2}, "a grouped convolution"),
    ({"padding": ((1, 1), (1, 1))}, "padding"),
])
def test_a_convolution_the_kernels_do_not_cover_is_refused_in_one_line(conv_args, words):
  conv = kernels.layers("cpu", "cpu")["conv"](4, (3, 3), **conv_args)
  x = jnp.zeros((2, 8, 8, 4))
  with pytest.raises(UserError) as error:
    conv.init(jax.random.key(0), x)
  message = str(error.value)
  assert "\n" not in message and words in message
  assert "config.gradient_kernels='generic'" in message
  # Flax's own layer trains it.
  nn.Conv(4, (3, 3), **conv_args).init(jax.random.key(0), x)


def test_a_pool_the_kernels_do_not_cover_is_refused_in_one_line():
  with pytest.raises(UserError, match="only 2x2, stride 2") as error:
    kernels.max_pool(jnp.zeros((2, 6, 6, 3)), (3, 3), strides=(1, 1))
  assert "\n" not in str(error.value)


# One config per distinct trunk of configs/ (layer spec, kernel size, batch norm or
# not), which is all the kernels see: smoke, two_images and multi_digit reuse default's
# trunk, and fast and fast_99_5 its layers at half the width.
CONFIGS = ("default", "best", "reference_cnn", "multi_digit_lenet")


def trunk(config_name):
  """What of a config's network the kernels see: its layer spec with the widths left
  out, its kernel size, and whether it normalises."""
  model = importlib.import_module(f"configs.{config_name}").get_config().model
  return re.sub(r"\d+", "C", model.conv_layers), model.kernel_size, model.batch_norm


def test_the_comparison_covers_the_trunk_of_every_config():
  names = [p.stem for p in pathlib.Path(REPO_ROOT, "configs").glob("*.py")
           if p.stem != "__init__"]
  assert {trunk(name) for name in names} == {trunk(name) for name in CONFIGS}


def loss_and_gradients(config_name, kind):
  """The training loss and gradients of the config's network on a fixed batch of 16
  examples of its task, split over all devices, with the gradient kernels `kind`."""
  config = importlib.import_module(f"configs.{config_name}").get_config()
  config.batch_size = 16
  task = tasks.create_task(config)
  mesh = sharding.create_mesh()
  model = task.create_model(kernels.layers(kind, "cpu", batch_shards=mesh.size))
  batch = first_training_batch(task, 256, jax.random.key(2))
  state = steps.init_state(model, optax.adam(1e-3), jax.random.key(0), batch["inputs"])
  batch = jax.device_put(batch, sharding.batch_sharded(mesh))

  def loss_fn(params, batch):
    grad_fn = jax.grad(steps.loss_and_metrics, has_aux=True)
    grads, (metrics, _) = grad_fn(params, state, batch, jax.random.key(1), task.objective)
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
@pytest.mark.slow
def test_cpu_kernels_give_autodiff_loss_and_gradients(config_name):
  loss_error, grad_error = largest_difference(config_name)
  assert loss_error < 1e-6
  assert grad_error < 1e-5


# Split over 8 devices, the kernel gradient sums 8 shards: checked on both kernel sizes
# and paddings (3x3 'SAME' in the default trunk, 5x5 'VALID' in LeNet's); the other
# networks differ in depth and width, checked on one device above.
_ON_EIGHT_DEVICES = """
import json
import jax
from test_kernels import largest_difference
print(json.dumps({"devices": jax.device_count(), "errors": {
    name: largest_difference(name) for name in ("default", "multi_digit_lenet")}}))
"""


@pytest.mark.slow
def test_cpu_kernels_give_autodiff_loss_and_gradients_on_eight_devices():
  result = run_on_cpu_devices(_ON_EIGHT_DEVICES)
  assert result["devices"] == 8
  for name, (loss_error, grad_error) in result["errors"].items():
    assert loss_error < 1e-6, name
    assert grad_error < 1e-5, name
