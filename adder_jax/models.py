"""The networks: a conv trunk reads the digit, a sum head adds the second operand to it.

`AdderNet` maps (uint8 image, integer number) to (digit logits [10], sum logits [19]);
`TwoImageAdderNet` maps a pair of images to (digit logits [2, 10], sum logits [19]),
reading both with the same digit network. The sum head sees only the digit logits and
the second operand, so whatever it knows about an image passes through its digit
representation. It is either learned ('mlp': dense layers on the concatenated operands)
or exact ('exact': the distribution of the sum of two independent digits, no
parameters), whose log-probabilities serve as the sum logits.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from adder_jax import input_pipeline
from adder_jax import layers

# Statistics of the MNIST training images, for input standardisation.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


def parse_conv_layers(spec):
  """Parses a trunk spec such as '32 64 M 64v'.

  Tokens: 'N' a 3x3 convolution with N features and 'SAME' padding, 'Nv' the same with
  'VALID' padding, 'M' 2x2 max pooling, 'A' 2x2 average pooling.

  Returns:
    A list of ('conv', features, padding) and ('pool', 'max' | 'avg') tuples.
  """
  layers = []
  for token in spec.split():
    if token in ("M", "A"):
      layers.append(("pool", "max" if token == "M" else "avg"))
    elif token.rstrip("v").isdigit() and int(token.rstrip("v")) > 0:
      layers.append(("conv", int(token.rstrip("v")), "VALID" if token.endswith("v") else "SAME"))
    else:
      raise ValueError(f"bad token {token!r} in conv layer spec {spec!r}")
  return layers


def _pooling_windows(x):
  """[b, h, w, c] -> [b, h // 2, 2, w // 2, 2, c]: the 2x2 windows (an odd last row or
  column is dropped, as 'VALID' pooling drops it)."""
  b, h, w, c = x.shape
  return x[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c)


@jax.custom_vjp
def max_pool_2x2(x):
  # A reshape and reduce instead of reduce_window, whose gradient (select-and-scatter)
  # is slow on XLA:CPU.
  return _pooling_windows(x).max(axis=(2, 4))


def _max_pool_fwd(x):
  pooled = max_pool_2x2(x)
  return pooled, (x, pooled)


def _max_pool_bwd(residuals, grad):
  # The gradient goes to the maxima of each window, in one fused elementwise pass;
  # autodiff of `max` would also count the maxima and split it among ties, a second
  # pass over the full-size input for ties that float inputs almost never have. It is
  # computed in the input's shape: computed in the windows' shape, XLA:CPU wrote it
  # once per consumer (the convolution's two gradients), each a reshaped copy.
  x, pooled = residuals
  return (jnp.where(x == _unpool(pooled, x.shape), _unpool(grad, x.shape), 0).astype(x.dtype),)


def _unpool(pooled, shape):
  """[b, h // 2, w // 2, c] -> [b, h, w, c]: each value over its 2x2 window, and NaN on
  an odd last row or column, which no window covers."""
  b, h, w, c = shape
  windows = jnp.broadcast_to(pooled[:, :, None, :, None], (b, h // 2, 2, w // 2, 2, c))
  return jnp.pad(windows.reshape(b, h // 2 * 2, w // 2 * 2, c),
                 ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=jnp.nan)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


def avg_pool_2x2(x):
  return _pooling_windows(x).mean(axis=(2, 4))


class DigitNet(nn.Module):
  """Conv trunk and dense layers from a uint8 image to the 10 digit logits."""

  conv_layers: str
  dense_features: Sequence[int] = ()
  batch_norm: bool = False
  dropout_rate: float = 0.0
  dtype: str = "float32"
  batch_shards: int = 1  # Devices the batch is split over; see `layers.conv3x3`.

  @nn.compact
  def __call__(self, images, train):
    x = images.astype(self.dtype)[..., None] / 255.0
    x = (x - MNIST_MEAN) / MNIST_STD
    spec = parse_conv_layers(self.conv_layers)
    pools = {"max": max_pool_2x2, "avg": avg_pool_2x2}
    for i, layer in enumerate(spec):
      if layer[0] == "conv":
        # A pool right after a convolution runs inside it, before its bias, and before
        # normalisation and ReLU, which commute with it: these memory-bound passes
        # dominate on CPU, and on the pooled map they touch 4x fewer values.
        next_pool = spec[i + 1][1] if spec[i + 1:i + 2] and spec[i + 1][0] == "pool" else None
        x = layers.Conv3x3(layer[1], layer[2], use_bias=not self.batch_norm, dtype=self.dtype,
                           batch_shards=self.batch_shards, pool=pools.get(next_pool))(x)
      elif i > 0 and spec[i - 1][0] == "conv":
        continue  # Pooled inside the convolution before it.
      else:
        x = pools[layer[1]](x)
        continue  # Its input was already normalised and activated.
      x = self._normalize_and_activate(x, train)
    x = x.reshape(x.shape[0], -1)
    for features in self.dense_features:
      x = nn.Dense(features, use_bias=not self.batch_norm, dtype=self.dtype)(x)
      x = self._normalize_and_activate(x, train)
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    logits = nn.Dense(input_pipeline.NUM_DIGITS, dtype=self.dtype)(x)
    return logits.astype(jnp.float32)

  def _normalize_and_activate(self, x, train):
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
    return nn.relu(x)


class SumHead(nn.Module):
  """Dense layers on [first operand, second operand] features to the 19 sum logits."""

  hidden_features: Sequence[int] = (128,)

  @nn.compact
  def __call__(self, first, second):
    x = jnp.concatenate([first, second], axis=-1)
    for features in self.hidden_features:
      x = nn.relu(nn.Dense(features)(x))
    return nn.Dense(input_pipeline.NUM_SUMS)(x)


SUM_HEADS = ("mlp", "exact")

# Stands for log(0) where -inf would make 0 * log(0) a NaN in the cross-entropy; exp of
# it is exactly 0 in float32, and it is far below any log-probability a network reaches.
LOG_ZERO = -1e4

# _SUM_POSSIBLE[a, s]: a first digit a can make the sum s (with a second digit s - a);
# the ones padded as `exact_sum_log_probs` pads the second digit's distribution.
_SUM_POSSIBLE = np.stack([np.pad(np.ones(input_pipeline.NUM_DIGITS, bool),
                                 (a, input_pipeline.NUM_DIGITS - 1 - a))
                          for a in range(input_pipeline.NUM_DIGITS)])


def exact_sum_log_probs(log_p_first, log_p_second):
  """log p(a + b = s) for independent digits a and b, from their log-probabilities.

  log p(s) = logsumexp over a of log p(a) + log p(b = s - a), in log space so that
  confident (near one-hot) distributions lose no precision.

  Args:
    log_p_first, log_p_second: float [..., 10] log-probabilities of the two digits.

  Returns:
    float [..., 19]: log-probabilities of the 19 sums, which sum to 1 after exp.
  """
  digits = input_pipeline.NUM_DIGITS
  batch_widths = [(0, 0)] * (log_p_second.ndim - 1)
  # shifted[..., a, s] = log p(b = s - a) where possible. Shifts by padding, not a
  # gather: a gather's gradient is a scatter, slow on XLA:CPU inside the train loop.
  shifted = jnp.stack([jnp.pad(log_p_second, batch_widths + [(a, digits - 1 - a)])
                       for a in range(digits)], axis=-2)
  return jax.nn.logsumexp(log_p_first[..., :, None] + shifted, axis=-2, where=_SUM_POSSIBLE)


def number_log_probs(numbers):
  """The known numbers as (one-hot) distributions over 0-9, in log space."""
  return jnp.where(nn.one_hot(numbers, input_pipeline.NUM_DIGITS) > 0, 0.0, LOG_ZERO)


class _AdderBase(nn.Module):
  """The digit network and the sum head shared by both networks."""

  conv_layers: str
  dense_features: Sequence[int] = ()
  sum_hidden_features: Sequence[int] = (128,)
  sum_head_type: str = "mlp"
  sum_head_input: str = "probabilities"
  batch_norm: bool = False
  dropout_rate: float = 0.0
  dtype: str = "float32"
  batch_shards: int = 1

  def setup(self):
    self.digit_net = DigitNet(
        conv_layers=self.conv_layers,
        dense_features=self.dense_features,
        batch_norm=self.batch_norm,
        dropout_rate=self.dropout_rate,
        dtype=self.dtype,
        batch_shards=self.batch_shards,
    )
    if self.sum_head_type == "mlp":
      self.sum_head = SumHead(hidden_features=self.sum_hidden_features)

  def digit_logits(self, images):
    return self.digit_net(images, train=False)

  def mlp_digit_input(self, digit_logits):
    """What the mlp head reads of a digit: its logits, or their softmax. Probabilities
    keep the same scale all through training, so the head learns to add in fewer steps."""
    return jax.nn.softmax(digit_logits) if self.sum_head_input == "probabilities" else digit_logits


class AdderNet(_AdderBase):
  """(images uint8 [B, 28, 28], numbers int [B]) -> (digit logits [B, 10], sum logits [B, 19])."""

  def __call__(self, images, numbers, train=False):
    digit_logits = self.digit_net(images, train)
    return digit_logits, self.sum_logits(digit_logits, numbers)

  def sum_logits(self, digit_logits, numbers):
    if self.sum_head_type == "exact":
      return exact_sum_log_probs(jax.nn.log_softmax(digit_logits), number_log_probs(numbers))
    return self.sum_head(self.mlp_digit_input(digit_logits),
                         nn.one_hot(numbers, input_pipeline.NUM_DIGITS))


class TwoImageAdderNet(_AdderBase):
  """images uint8 [B, 2, 28, 28] -> (digit logits [B, 2, 10], sum logits [B, 19])."""

  def __call__(self, images, train=False):
    # One pass of the digit network over both images (and BatchNorm statistics of both).
    pairs = images.shape[0]
    digit_logits = self.digit_net(images.reshape(2 * pairs, *images.shape[2:]), train)
    digit_logits = digit_logits.reshape(pairs, 2, -1)
    return digit_logits, self.sum_logits(digit_logits[:, 0], digit_logits[:, 1])

  def sum_logits(self, first_digit_logits, second_digit_logits):
    if self.sum_head_type == "exact":
      return exact_sum_log_probs(jax.nn.log_softmax(first_digit_logits),
                                 jax.nn.log_softmax(second_digit_logits))
    return self.sum_head(self.mlp_digit_input(first_digit_logits),
                         self.mlp_digit_input(second_digit_logits))


def create_model(model_config, two_images=False, batch_shards=1):
  """The network of `model_config`: `TwoImageAdderNet` if `two_images`, else `AdderNet`.

  `batch_shards`: the number of devices training splits each batch over (it changes
  only how gradients are computed, never the parameters or the outputs).
  """
  model_class = TwoImageAdderNet if two_images else AdderNet
  return model_class(
      conv_layers=model_config.conv_layers,
      dense_features=tuple(model_config.dense_features),
      sum_hidden_features=tuple(model_config.sum_hidden_features),
      sum_head_type=model_config.sum_head,
      sum_head_input=model_config.sum_head_input,
      batch_norm=model_config.batch_norm,
      dropout_rate=model_config.dropout_rate,
      dtype=model_config.dtype,
      batch_shards=batch_shards,
  )
