"""The network: a conv trunk reads the digit, a sum head adds the number to it.

`AdderNet` maps (uint8 image, integer number) to (digit logits [10], sum logits [19]).
The sum head sees only the digit logits and the one-hot number, so whatever it knows
about the image passes through the digit representation.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

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


def max_pool_2x2(x):
  # A reshape and reduce: its gradient is cheaper on XLA:CPU than reduce_window's.
  b, h, w, c = x.shape
  return x[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def avg_pool_2x2(x):
  b, h, w, c = x.shape
  return x[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class DigitNet(nn.Module):
  """Conv trunk and dense layers from a uint8 image to the 10 digit logits."""

  conv_layers: str
  dense_features: Sequence[int] = ()
  batch_norm: bool = False
  dropout_rate: float = 0.0
  dtype: str = "float32"

  @nn.compact
  def __call__(self, images, train):
    x = images.astype(self.dtype)[..., None] / 255.0
    x = (x - MNIST_MEAN) / MNIST_STD
    spec = parse_conv_layers(self.conv_layers)
    for i, layer in enumerate(spec):
      if layer[0] == "conv":
        x = layers.Conv3x3(layer[1], layer[2], use_bias=not self.batch_norm, dtype=self.dtype)(x)
        if spec[i + 1:i + 2] and spec[i + 1][0] == "pool":
          # Pool first: ReLU commutes with pooling, and normalising and activating
          # 4x fewer values is cheaper (these memory-bound passes dominate on CPU).
          continue
      else:
        x = max_pool_2x2(x) if layer[1] == "max" else avg_pool_2x2(x)
        if i == 0 or spec[i - 1][0] != "conv":
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
  """Dense layers on [digit representation, one-hot number] to the 19 sum logits.

  The digit representation is the digit logits, or their softmax: probabilities keep
  the same scale all through training, so the head learns to add in fewer steps.
  """

  hidden_features: Sequence[int] = (128,)
  digit_input: str = "probabilities"  # or "logits"

  @nn.compact
  def __call__(self, digit_logits, numbers):
    digits = jax.nn.softmax(digit_logits) if self.digit_input == "probabilities" else digit_logits
    x = jnp.concatenate([digits, nn.one_hot(numbers, input_pipeline.NUM_DIGITS)], axis=-1)
    for features in self.hidden_features:
      x = nn.relu(nn.Dense(features)(x))
    return nn.Dense(input_pipeline.NUM_SUMS)(x)


class AdderNet(nn.Module):
  """(images uint8 [B, 28, 28], numbers int [B]) -> (digit logits [B, 10], sum logits [B, 19])."""

  conv_layers: str
  dense_features: Sequence[int] = ()
  sum_hidden_features: Sequence[int] = (128,)
  sum_head_input: str = "probabilities"
  batch_norm: bool = False
  dropout_rate: float = 0.0
  dtype: str = "float32"

  def setup(self):
    self.digit_net = DigitNet(
        conv_layers=self.conv_layers,
        dense_features=self.dense_features,
        batch_norm=self.batch_norm,
        dropout_rate=self.dropout_rate,
        dtype=self.dtype,
    )
    self.sum_head = SumHead(hidden_features=self.sum_hidden_features,
                            digit_input=self.sum_head_input)

  def __call__(self, images, numbers, train=False):
    digit_logits = self.digit_net(images, train)
    return digit_logits, self.sum_head(digit_logits, numbers)

  def digit_logits(self, images):
    return self.digit_net(images, train=False)

  def sum_logits(self, digit_logits, numbers):
    return self.sum_head(digit_logits, numbers)


def create_model(model_config):
  return AdderNet(
      conv_layers=model_config.conv_layers,
      dense_features=tuple(model_config.dense_features),
      sum_hidden_features=tuple(model_config.sum_hidden_features),
      sum_head_input=model_config.sum_head_input,
      batch_norm=model_config.batch_norm,
      dropout_rate=model_config.dropout_rate,
      dtype=model_config.dtype,
  )
