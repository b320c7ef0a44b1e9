"""The networks: a conv trunk reads the digit, a sum head adds the second operand to it.

`AdderNet` maps (uint8 image, integer number) to (digit logits [10], sum logits [19]);
`TwoImageAdderNet` maps a pair of images to (digit logits [2, 10], sum logits [19]),
reading both with the same digit network; `NumberPairNet` maps two numbers of N digit
images each to their digit logits [2, N, 10], whose sum's likelihood is
`long_addition.sum_log_likelihood`. The sum head sees only the digit logits and
the second operand, so whatever it knows about an image passes through its digit
representation. It is either learned ('mlp': dense layers on the concatenated operands)
or exact ('exact': the distribution of the sum of two independent digits, no
parameters), whose log-probabilities serve as the sum logits.
"""

import functools
import re
from typing import Any, Callable, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from adder_jax.constants import NUM_DIGITS, NUM_SUMS

# Statistics of the MNIST training images, for input standardisation.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


# Tokens of `config.model.conv_layers`: the pools, and the suffix of a 'VALID' conv.
POOLS = {"M": "max", "A": "avg"}
VALID_SUFFIX = "v"


class Conv(NamedTuple):
  """A convolution block (of `DigitNet.kernel_size`): conv, `pool` ('max', 'avg' or None),
  bias or BatchNorm, ReLU."""
  features: int
  padding: str
  pool: Optional[str] = None


class Pool(NamedTuple):
  """A 2x2 pool ('max' or 'avg') of the activations."""
  kind: str


_CONV_TOKEN = re.compile(rf"([1-9][0-9]*)({VALID_SUFFIX}?)([{''.join(POOLS)}]?)")


def parse_conv_layers(spec):
  """Parses a trunk spec such as '32 64M 64 M 128v', in the order the layers run.

  Tokens: 'N' a block of a convolution with N features (of `DigitNet.kernel_size`) and
  'SAME' padding, then BatchNorm (or, in a model without it, a learned bias) and ReLU;
  'Nv' the same with 'VALID' padding; 'M' and 'A' a 2x2 max or average pool of the
  activations before it.
  A pool letter right after a convolution ('64M', '64vA') pools the convolution's output
  inside its block, before the bias or BatchNorm and the ReLU.

  Returns:
    A list of `Conv` and `Pool`.
  """
  layers = []
  for token in spec.split():
    match = _CONV_TOKEN.fullmatch(token)
    if token in POOLS:
      layers.append(Pool(POOLS[token]))
    elif match:
      features, valid, pool = match.groups()
      layers.append(Conv(int(features), "VALID" if valid else "SAME", POOLS.get(pool)))
    else:
      raise ValueError(f"bad token {token!r} in conv layer spec {spec!r}")
  return layers


class Bias(nn.Module):
  """Adds a learned bias per channel (the last axis), zero at initialisation."""

  @nn.compact
  def __call__(self, x):
    bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],), jnp.float32)
    return x + bias.astype(x.dtype)


ModuleDef = Any


class DigitNet(nn.Module):
  """Conv trunk and dense layers from a uint8 image to the 10 digit logits.

  The fields mirror `config.model` (documented in configs/default.py), which
  `create_model` reads. `conv`, `max_pool` and `bias` are the layers the trunk is built
  of, Flax's own by default; a caller may pass drop-in replacements with the same
  arguments and parameters (training on a CPU passes layers with faster gradients).
  Flax names a layer's parameters after its class ('Conv_0', 'Bias_1'), so a
  replacement keeps the class name of the layer it replaces.
  """

  conv_layers: str
  kernel_size: int
  dense_features: Sequence[int]
  batch_norm: bool
  dropout_rate: float
  dtype: str
  zero_init_logits: bool
  conv: ModuleDef = nn.Conv
  max_pool: Callable = nn.max_pool
  bias: ModuleDef = Bias

  @nn.compact
  def __call__(self, images, train):
    x = images.astype(self.dtype)[..., None] / 255.0
    x = (x - MNIST_MEAN) / MNIST_STD
    for layer in parse_conv_layers(self.conv_layers):
      if isinstance(layer, Pool):
        x = self._pool(x, layer.kind)
        continue
      x = self.conv(layer.features, (self.kernel_size,) * 2, padding=layer.padding,
                    use_bias=False, dtype=self.dtype)(x)
      if layer.pool:
        x = self._pool(x, layer.pool)
      x = self._normalize_and_activate(x, train)
    x = x.reshape(x.shape[0], -1)
    for features in self.dense_features:
      x = nn.Dense(features, use_bias=False, dtype=self.dtype)(x)
      x = self._normalize_and_activate(x, train)
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    # lecun_normal is nn.Dense's own default.
    kernel_init = (nn.initializers.zeros if self.zero_init_logits
                   else nn.initializers.lecun_normal())
    logits = nn.Dense(NUM_DIGITS, dtype=self.dtype, kernel_init=kernel_init)(x)
    return logits.astype(jnp.float32)

  def _pool(self, x, kind):
    """2x2 pooling with stride 2 of an NHWC map."""
    if kind == "max":
      return self.max_pool(x, (2, 2), strides=(2, 2))
    return nn.avg_pool(x, (2, 2), strides=(2, 2))

  def _normalize_and_activate(self, x, train):
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
    else:
      x = self.bias()(x)
    return nn.relu(x)


class SumHead(nn.Module):
  """Dense layers on [first operand, second operand] features to the 19 sum logits."""

  hidden_features: Sequence[int]

  @nn.compact
  def __call__(self, first, second):
    x = jnp.concatenate([first, second], axis=-1)
    for features in self.hidden_features:
      x = nn.relu(nn.Dense(features)(x))
    return nn.Dense(NUM_SUMS)(x)


SUM_HEADS = ("mlp", "exact")
# What the mlp head reads of a digit (see `_AdderBase.mlp_digit_input`).
SUM_HEAD_INPUTS = ("probabilities", "logits")
# Compute dtypes of the digit network; its parameters stay float32.
DTYPES = ("float32", "bfloat16")

# Stands for log(0) where -inf would make 0 * log(0) a NaN in the cross-entropy; exp of
# it is exactly 0 in float32, and it is far below any log-probability a network reaches.
LOG_ZERO = -1e4

# _SUM_POSSIBLE[a, s]: a first digit a can make the sum s (with a second digit s - a);
# the ones padded as `exact_sum_log_probs` pads the second digit's distribution.
_SUM_POSSIBLE = np.stack([np.pad(np.ones(NUM_DIGITS, bool),
                                 (a, NUM_DIGITS - 1 - a))
                          for a in range(NUM_DIGITS)])


def exact_sum_log_probs(log_p_first, log_p_second):
  """log p(a + b = s) for independent digits a and b, from their log-probabilities.

  log p(s) = logsumexp over a of log p(a) + log p(b = s - a), in log space so that
  confident (near one-hot) distributions lose no precision.

  Args:
    log_p_first, log_p_second: float [..., 10] log-probabilities of the two digits.

  Returns:
    float [..., 19]: log-probabilities of the 19 sums, which sum to 1 after exp.
  """
  digits = NUM_DIGITS
  batch_widths = [(0, 0)] * (log_p_second.ndim - 1)
  # shifted[..., a, s] = log p(b = s - a) where possible. Shifts by padding, not a
  # gather: a gather's gradient is a scatter, slow on XLA:CPU inside the train loop.
  shifted = jnp.stack([jnp.pad(log_p_second, batch_widths + [(a, digits - 1 - a)])
                       for a in range(digits)], axis=-2)
  return jax.nn.logsumexp(log_p_first[..., :, None] + shifted, axis=-2, where=_SUM_POSSIBLE)


def number_log_probs(numbers):
  """The known numbers as (one-hot) distributions over 0-9, in log space."""
  return jnp.where(nn.one_hot(numbers, NUM_DIGITS) > 0, 0.0, LOG_ZERO)


class _AdderBase(nn.Module):
  """The digit network and the sum head shared by the networks."""

  digit_net: DigitNet
  sum_head_type: str
  sum_hidden_features: Sequence[int]
  sum_head_input: str

  def setup(self):
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
                         nn.one_hot(numbers, NUM_DIGITS))


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


class NumberPairNet(_AdderBase):
  """images uint8 [B, 2, N, 28, 28], two N-digit numbers written one digit per image
  (most significant first) -> digit logits [B, 2, N, 10].

  It has no sum head: the training objective (`objectives.sum_likelihood_objective`) takes
  the exact likelihood of the sum, `long_addition.sum_log_likelihood` of the digits'
  log-softmax, in time linear in N.
  """

  def __call__(self, images, train=False):
    # One pass of the digit network over all 2N images of every example.
    digit_logits = self.digit_net(images.reshape(-1, *images.shape[-2:]), train)
    return digit_logits.reshape(*images.shape[:-2], -1)


def create_model(model_config, model_class=AdderNet, layers=None):
  """The network `model_class` (`AdderNet`, `TwoImageAdderNet` or `NumberPairNet`) of
  `model_config`, its digit network built of `layers` (DigitNet's `conv`, `max_pool`
  and `bias` fields; Flax's own where absent)."""
  digit_net = DigitNet(
      conv_layers=model_config.conv_layers,
      kernel_size=model_config.kernel_size,
      dense_features=tuple(model_config.dense_features),
      batch_norm=model_config.batch_norm,
      dropout_rate=model_config.dropout_rate,
      dtype=model_config.dtype,
      zero_init_logits=model_config.zero_init_logits,
      **(layers or {}),
  )
  return model_class(
      digit_net=digit_net,
      sum_head_type=model_config.sum_head,
      sum_hidden_features=tuple(model_config.sum_hidden_features),
      sum_head_input=model_config.sum_head_input,
  )


def init_variables(model, key, inputs):
  """The network's initial variables, {'params', 'batch_stats'} ({} without BatchNorm).

  Args:
    inputs: example model inputs (their shapes matter, not their values).
  """
  variables = model.init({"params": key, "dropout": key}, **inputs, train=False)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def abstract_variables(model, inputs, ema):
  """The shapes and dtypes of what a checkpoint keeps of the network: {'params',
  'batch_stats', 'ema'}, 'ema' the same two again if the run keeps moving averages
  (`config.ema_decay` > 0), else {}."""
  variables = jax.eval_shape(functools.partial(init_variables, model, inputs=inputs),
                             jax.random.key(0))
  return {**variables, "ema": dict(variables) if ema else {}}


def evaluation_variables(variables):
  """(params, batch_stats) to evaluate and predict with, from {'params', 'batch_stats',
  'ema'}: the moving averages if the run keeps them, else the trained values."""
  chosen = variables["ema"] or variables
  return chosen["params"], chosen["batch_stats"]
