"""The network's shapes, its layer spec, and the custom convolution gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adder_jax import layers
from adder_jax import models
from configs import default
from configs import reference_cnn


def _count(params):
  return sum(x.size for x in jax.tree.leaves(params))


@pytest.mark.parametrize("get_config", [default.get_config, reference_cnn.get_config])
def test_output_shapes(get_config):
  model = models.create_model(get_config().model)
  images = jnp.zeros((3, 28, 28), jnp.uint8)
  numbers = jnp.array([0, 5, 9])
  variables = model.init(jax.random.key(0), images, numbers)
  digit_logits, sum_logits = model.apply(variables, images, numbers)
  assert digit_logits.shape == (3, 10) and digit_logits.dtype == jnp.float32
  assert sum_logits.shape == (3, 19) and sum_logits.dtype == jnp.float32


def test_reference_network_has_the_classic_parameter_count():
  model = models.create_model(reference_cnn.get_config().model)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28), jnp.uint8), jnp.zeros((1,), jnp.int32))
  assert _count(variables["params"]) == 220_125


def test_sum_head_sees_the_number():
  model = models.create_model(default.get_config().model)
  images = jnp.zeros((2, 28, 28), jnp.uint8)
  variables = model.init(jax.random.key(0), images, jnp.array([0, 0]))
  _, sum_logits = model.apply(variables, images, jnp.array([0, 7]))
  assert not np.allclose(sum_logits[0], sum_logits[1])


def test_parse_conv_layers():
  assert models.parse_conv_layers("32 64v M A") == [
      ("conv", 32, "SAME"), ("conv", 64, "VALID"), ("pool", "max"), ("pool", "avg")]
  with pytest.raises(ValueError, match="bad token"):
    models.parse_conv_layers("32 X")
  with pytest.raises(ValueError, match="bad token"):
    models.parse_conv_layers("0")


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv3x3_matches_xla_convolution_and_its_gradients(padding):
  x = jax.random.normal(jax.random.key(0), (4, 9, 7, 3))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 3, 5))

  def reference(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  y, reference_vjp = jax.vjp(reference, x, kernel)
  y_fast, fast_vjp = jax.vjp(lambda x, k: layers.conv3x3(x, k, padding), x, kernel)
  np.testing.assert_allclose(y_fast, y, rtol=1e-6)
  grad = jax.random.normal(jax.random.key(2), y.shape)
  for fast, ref in zip(fast_vjp(grad), reference_vjp(grad)):
    np.testing.assert_allclose(fast, ref, rtol=1e-4, atol=1e-4)
