"""The network's shapes, its layer spec, the layers it is built of, and the sum heads."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adder_jax import models
from configs import default
from configs import multi_digit_lenet
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


@pytest.mark.slow
def test_lenet_network_has_the_literature_parameter_count_and_number_pair_shapes():
  model = models.create_model(multi_digit_lenet.get_config().model, models.NumberPairNet)
  images = jnp.zeros((3, 2, 4, 28, 28), jnp.uint8)
  variables = model.init(jax.random.key(0), images)
  # conv 5x5 1->6, conv 5x5 6->16, dense 256->120->84->10.
  assert _count(variables["params"]) == 44_426
  assert model.apply(variables, images).shape == (3, 2, 4, 10)


@pytest.mark.parametrize("zero_init_logits", [False, True])
def test_zero_initialised_logits_start_every_image_at_uniform_digits(zero_init_logits):
  config = default.get_config().model
  config.zero_init_logits = zero_init_logits
  model = models.create_model(config)
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 28, 28)), jnp.uint8)
  variables = model.init(jax.random.key(0), images, jnp.zeros((4,), jnp.int32))
  digit_logits, _ = model.apply(variables, images, jnp.zeros((4,), jnp.int32))
  uniform = np.allclose(jax.nn.softmax(digit_logits), 0.1, atol=1e-7)
  assert uniform == zero_init_logits


def test_sum_head_sees_the_number():
  model = models.create_model(default.get_config().model)
  images = jnp.zeros((2, 28, 28), jnp.uint8)
  variables = model.init(jax.random.key(0), images, jnp.array([0, 0]))
  _, sum_logits = model.apply(variables, images, jnp.array([0, 7]))
  assert not np.allclose(sum_logits[0], sum_logits[1])


def test_the_layers_passed_to_the_digit_network_build_its_trunk():
  """The conv, max pool and bias fields are what the trunk calls: here ones that count
  their calls, for the trunk '8M 16 M' without BatchNorm."""
  calls = []

  def counting_max_pool(*args, **kwargs):
    calls.append("max_pool")
    return nn.max_pool(*args, **kwargs)

  # Named as the layer it replaces: Flax names parameters after the module's class.
  class Bias(models.Bias):  # pylint: disable=redefined-outer-name

    def __call__(self, x):
      calls.append("bias")
      return super().__call__(x)

  images = jnp.zeros((2, 28, 28), jnp.uint8)
  net = _digit_net("8M 16 M").clone(max_pool=counting_max_pool, bias=Bias)
  variables = net.init(jax.random.key(0), images, train=False)
  assert sorted(calls) == ["bias", "bias", "max_pool", "max_pool"]
  # The same parameters as with Flax's own layers.
  assert (jax.tree.map(jnp.shape, variables) == jax.tree.map(
      jnp.shape, _digit_net("8M 16 M").init(jax.random.key(0), images, train=False)))


def test_parse_conv_layers():
  assert models.parse_conv_layers("32 64v M A 16M 8vA") == [
      models.Conv(32, "SAME"), models.Conv(64, "VALID"), models.Pool("max"), models.Pool("avg"),
      models.Conv(16, "SAME", "max"), models.Conv(8, "VALID", "avg")]
  for bad in ("32 X", "0", "M32", "32MM", "32Mv", "v"):
    with pytest.raises(ValueError, match="bad token"):
      models.parse_conv_layers(bad)


def _digit_net(conv_layers, batch_norm=False):
  return models.DigitNet(conv_layers=conv_layers, kernel_size=3, dense_features=(),
                         batch_norm=batch_norm, dropout_rate=0.0, dtype="float32",
                         zero_init_logits=False)


def test_layers_run_in_the_order_of_the_spec():
  """'8M' pools a block's convolution before its BatchNorm and ReLU, '8 M' after them:
  different functions, with the same parameters."""
  images = jax.random.randint(jax.random.key(0), (4, 28, 28), 0, 256).astype(jnp.uint8)
  pooled_first, pooled_last = _digit_net("8M", batch_norm=True), _digit_net("8 M", batch_norm=True)
  variables = pooled_first.init(jax.random.key(1), images, train=False)
  assert (jax.tree.map(jnp.shape, variables) ==
          jax.tree.map(jnp.shape, pooled_last.init(jax.random.key(1), images, train=False)))
  first = pooled_first.apply(variables, images, train=True, mutable=["batch_stats"])[0]
  last = pooled_last.apply(variables, images, train=True, mutable=["batch_stats"])[0]
  assert not np.allclose(first, last, atol=1e-3)


@pytest.mark.slow
def test_max_pooling_inside_a_block_without_batch_norm_is_conv_bias_relu_pool():
  """Without BatchNorm, '16M' (conv, max pool, bias, ReLU) is the usual conv, bias, ReLU,
  max pool: max pooling commutes with adding a per-channel bias and with ReLU."""
  images = jax.random.randint(jax.random.key(0), (4, 28, 28), 0, 256).astype(jnp.uint8)
  model = _digit_net("8 16M")
  variables = model.init(jax.random.key(1), images, train=False)
  params = variables["params"]
  # Random biases, so that the bias matters.
  params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.key(2), p.shape), params)

  def textbook(images):
    x = (images.astype(jnp.float32)[..., None] / 255.0 - models.MNIST_MEAN) / models.MNIST_STD
    for i in range(2):
      x = jax.lax.conv_general_dilated(x, params[f"Conv_{i}"]["kernel"], (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
      x = jax.nn.relu(x + params[f"Bias_{i}"]["bias"])
    x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return x.reshape(4, -1) @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"]

  np.testing.assert_allclose(model.apply({"params": params}, images, train=False),
                             textbook(images), rtol=1e-5, atol=1e-5)


def _model(sum_head, two_images=False):
  config = default.get_config()
  config.model.sum_head = sum_head
  return models.create_model(config.model,
                             models.TwoImageAdderNet if two_images else models.AdderNet)


def test_exact_head_is_the_convolution_of_the_two_digit_distributions():
  logits = 4.0 * jax.random.normal(jax.random.key(0), (2, 5, 10))
  log_p = jax.nn.log_softmax(logits)
  log_sums = models.exact_sum_log_probs(log_p[0], log_p[1])
  assert log_sums.shape == (5, 19)
  p = np.exp(np.asarray(log_p, np.float64))
  for i in range(5):
    brute = [sum(p[0, i, a] * p[1, i, s - a] for a in range(10) if 0 <= s - a <= 9)
             for s in range(19)]
    np.testing.assert_allclose(np.exp(log_sums[i]), brute, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(np.exp(log_sums).sum(-1), 1.0, rtol=1e-6)


def test_exact_head_with_a_number_shifts_the_digit_distribution():
  model = _model("exact")
  digit_logits = 3.0 * jax.random.normal(jax.random.key(0), (10, 10))
  numbers = jnp.arange(10)
  sum_logits = model.apply({}, digit_logits, numbers, method=model.sum_logits)
  sum_probs = np.asarray(jax.nn.softmax(sum_logits))
  digit_probs = np.asarray(jax.nn.softmax(digit_logits))
  for n in range(10):
    np.testing.assert_allclose(sum_probs[n, n:n + 10], digit_probs[n], rtol=1e-5, atol=1e-7)
    assert sum_probs[n, :n].sum() == 0 and sum_probs[n, n + 10:].sum() == 0
  np.testing.assert_allclose(sum_probs.sum(-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("two_images", [False, True])
@pytest.mark.slow
def test_exact_head_has_no_parameters_and_finite_gradients(two_images):
  model = _model("exact", two_images)
  # Confident logits: near one-hot digit distributions must not give NaN or inf.
  digit_logits = 60.0 * jax.random.normal(jax.random.key(0), (4, 10))
  second = (jnp.array([0, 3, 9, 5]) if not two_images
            else 60.0 * jax.random.normal(jax.random.key(1), (4, 10)))
  sums = jnp.array([0, 7, 18, 9])

  def loss(digit_logits, second):
    sum_logits = model.apply({}, digit_logits, second, method=model.sum_logits)
    return -jax.nn.log_softmax(sum_logits)[jnp.arange(4), sums].mean()

  grads = jax.grad(loss, argnums=(0, 1) if two_images else 0)(digit_logits, second)
  for grad in jax.tree.leaves(grads):
    assert np.all(np.isfinite(grad))
  images = jnp.zeros((2, 2, 28, 28) if two_images else (2, 28, 28), jnp.uint8)
  inputs = (images,) if two_images else (images, jnp.zeros((2,), jnp.int32))
  params = model.init(jax.random.key(0), *inputs)["params"]
  assert set(params) == {"digit_net"}


@pytest.mark.parametrize("sum_head", models.SUM_HEADS)
def test_two_image_model_reads_both_images_with_one_digit_network(sum_head):
  model = _model(sum_head, two_images=True)
  images = jax.random.randint(jax.random.key(0), (3, 2, 28, 28), 0, 256).astype(jnp.uint8)
  variables = model.init(jax.random.key(1), images)
  digit_logits, sum_logits = model.apply(variables, images)
  assert digit_logits.shape == (3, 2, 10) and sum_logits.shape == (3, 19)
  for i in range(2):
    alone = model.apply(variables, images[:, i], method=model.digit_logits)
    np.testing.assert_allclose(digit_logits[:, i], alone, rtol=1e-5, atol=1e-5)
  swapped = model.apply(variables, images[:, ::-1])[1]
  if sum_head == "exact":  # Addition commutes.
    np.testing.assert_allclose(swapped, sum_logits, rtol=1e-5, atol=1e-5)
