"""Convolution, max-pool and bias layers with gradients that XLA:CPU runs fast.

The network (models.DigitNet) is built of Flax's `nn.Conv`, `nn.max_pool` and a plain
bias unless its caller passes others. `layers(kind, platform, batch_shards)` gives the
ones of this module, for training on a CPU: their forward passes are the usual XLA
operations (a one-channel convolution apart), their gradients formulations that XLA:CPU
runs fast. `kind` is `config.gradient_kernels`, one of GRADIENT_KERNELS: 'auto' (this
module's layers on CPU devices, Flax's own on any other: GPUs get cuDNN's gradients,
untouched), 'generic' (Flax's own everywhere) or 'cpu' (this module's everywhere, to
compare them on an accelerator). The results are the same either way up to float
rounding (tests/test_kernels.py).

Why CPU needs its own: the training loop runs its steps inside `lax.scan`, where
XLA:CPU lowers autodiff's transposed convolutions to a slow generic loop (the kernel
gradient of a 28x28 layer over 100x slower than the forward convolution on a 2-core
CPU), a max pool's gradient (select-and-scatter) to another slow loop, and splits a
bias gradient's sum over (batch, height, width) into strided partial sums. Here:
- a convolution of a one-channel map (the image) is one matrix product of its patches
  with the kernel: XLA:CPU runs it as a generic convolution loop, the slowest
  operation of a small network's step;
- the input gradient of a convolution is a forward convolution with the flipped kernel;
- its kernel gradient is a sum over images of one matrix product each, of the image's
  patches with its output gradient. One image (a few for small maps) at a time keeps
  the patches in cache (building them for the whole batch and multiplying once took
  twice as long). The patches are built channels-first, so the product contracts their
  last axis: XLA:CPU runs that layout on its fast matmul and the other on a generic one
  at half the speed. With the batch split over `batch_shards` devices, each device
  loops over its own block of it;
- a 2x2 max pool's gradient goes to the maxima of each window in one fused pass;
- a bias gradient is a sum of the rows [b * h, w * c] and then of [w, c], about 6x
  faster on a 28x28 map.

The layers cover what the network's trunk grammar builds: stride-1, undilated,
ungrouped NHWC convolutions with 'SAME' or 'VALID' padding, and 2x2 max pools of
stride 2. Anything else is refused with a one-line error naming
`config.gradient_kernels='generic'`, rather than silently leaving the fast path.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from adder_jax.errors import UserError

GRADIENT_KERNELS = ("auto", "generic", "cpu")


def layers(kind, platform, batch_shards=1):
  """`models.DigitNet`'s `conv`, `max_pool` and `bias` fields for the gradient kernels
  `kind` on devices of `platform` ('cpu', 'gpu', 'tpu'); {} keeps Flax's own.

  Args:
    batch_shards: how many devices the training batch is split over.
  """
  if kind not in GRADIENT_KERNELS:
    raise ValueError(f"unknown gradient kernels {kind!r}; choose one of {GRADIENT_KERNELS}")
  if kind == "generic" or (kind == "auto" and platform != "cpu"):
    return {}
  return {"conv": functools.partial(nn.Conv, conv_general_dilated=functools.partial(
              conv_general_dilated, batch_shards=batch_shards)),
          "max_pool": max_pool,
          "bias": Bias}


def _refuse(layer):
  raise UserError(f"the CPU gradient kernels do not cover {layer}; set "
                  "config.gradient_kernels='generic' to train it with JAX's own gradients.")


# Convolutions.

_NHWC = ("NHWC", "HWIO", "NHWC")


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None, *, batch_shards=1, **kwargs):
  """`jax.lax.conv_general_dilated` for `nn.Conv(conv_general_dilated=...)`, with this
  module's gradients, for a batch split over `batch_shards` devices.

  Raises:
    UserError: a convolution other than stride-1, undilated, ungrouped, NHWC, 'SAME' or
      'VALID'.
  """
  dilations = [d for d in (lhs_dilation, rhs_dilation) if d is not None]
  if not all(s == 1 for s in window_strides):
    _refuse(f"a convolution with strides {tuple(window_strides)}")
  if not all(d == 1 for ds in dilations for d in ds):
    _refuse("a dilated convolution")
  if feature_group_count != 1:
    _refuse("a grouped convolution")
  if not (isinstance(padding, str) and padding in ("SAME", "VALID")):
    _refuse(f"a convolution with padding {padding!r}")
  if (kwargs or precision is not None or rhs.ndim != 4
      or (jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
          != jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC))):
    _refuse("a convolution other than a plain 2D NHWC one")
  shards = batch_shards if lhs.shape[0] % batch_shards == 0 else 1
  return _conv(lhs, rhs, padding, shards)


def _lax_conv(x, kernel, padding):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, kernel, padding, shards):
  del shards  # Used by the gradient.
  if x.shape[-1] == 1:
    return _single_channel_conv(x, kernel, padding)
  return _lax_conv(x, kernel, padding)


def _single_channel_conv(x, kernel, padding):
  """The convolution of a one-channel `x` [b, h, w, 1]: its kh * kw shifted copies side by
  side, [b, h, w, kh * kw], times the kernel as a [kh * kw, f] matrix."""
  kh, kw = kernel.shape[:2]
  if padding == "SAME":
    x = jnp.pad(x, ((0, 0), *_same_padding(kh, kw), (0, 0)))
  height, width = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  patches = jnp.concatenate([x[:, i:i + height, j:j + width]
                             for i in range(kh) for j in range(kw)], axis=-1)
  return jnp.dot(patches, kernel.reshape(kh * kw, -1))


def _same_padding(kh, kw):
  """(low, high) padding of the height and width axes that 'SAME' gives a kh x kw kernel."""
  return ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)


def _conv_fwd(x, kernel, padding, shards):
  return _conv(x, kernel, padding, shards), (x, kernel)


def _conv_bwd(padding, shards, residuals, grad):
  x, kernel = residuals
  return _conv_grads(x, kernel, grad, padding, shards)


_conv.defvjp(_conv_fwd, _conv_bwd)


def _conv_grads(x, kernel, grad, padding, shards):
  kh, kw = kernel.shape[:2]
  # The input gradient is the full correlation of grad with the flipped kernel.
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  full = "SAME" if padding == "SAME" else ((kh - 1, kh - 1), (kw - 1, kw - 1))
  grad_x = _lax_conv(grad, flipped, full)
  grad_kernel = _kernel_gradient(x, grad.astype(x.dtype), (kh, kw), padding, shards)
  return grad_x.astype(x.dtype), grad_kernel.reshape(kernel.shape).astype(kernel.dtype)


def _kernel_gradient(x, grad, window, padding, shards):
  """sum over images and pixels of (patch of `x`) outer (`grad` there): [kh * kw * c, f].

  `x` is the convolution's input [b, h, w, c] ([b, h + kh - 1, w + kw - 1, c] for
  'VALID') and `grad` the output gradient [b, h, w, f]. The loop takes a tile of images
  of every shard per iteration, and each shard accumulates its own sum, so no device
  reads another device's images; the shards' sums are added once at the end.
  """
  batch, height, width, features = grad.shape
  channels = x.shape[-1]
  kh, kw = window
  tile = _tile_size(batch // shards, height * width)
  tiles = batch // shards // tile
  # Channels first: each row of the patch matrix (one channel at one kernel offset) is
  # then contiguous, and the product contracts the patches' last axis.
  x = x.reshape(shards, tiles, tile, *x.shape[1:]).transpose(0, 1, 5, 2, 3, 4)
  if padding == "SAME":
    # Padded after the transpose: XLA:CPU then does both in one pass over `x`.
    x = jnp.pad(x, ((0, 0),) * 4 + _same_padding(kh, kw))
  grad = grad.reshape(shards, tiles, tile * height * width, features)

  def add_tile(tile_index, total):
    # Indexing axis 1 keeps the shard axis in front; moving the tile axis to the front
    # for `lax.scan` made XLA copy `x` and `grad` into a transposed layout first.
    images = jax.lax.dynamic_index_in_dim(x, tile_index, 1, keepdims=False)  # [s, c, t, H, W]
    tile_grad = jax.lax.dynamic_index_in_dim(grad, tile_index, 1, keepdims=False)  # [s, t*h*w, f]
    # Patches [s, kh * kw * c, t * h * w], rows in the (kh, kw, c) order of the kernel's.
    patches = jnp.stack([images[..., i:i + height, j:j + width]
                         for i in range(kh) for j in range(kw)],
                        axis=1).reshape(shards, kh * kw * channels, -1)
    return total + jax.lax.dot_general(patches, tile_grad, (((2,), (1,)), ((0,), (0,))),
                                       preferred_element_type=jnp.float32)

  initial = jnp.zeros((shards, kh * kw * channels, features), jnp.float32)
  return jax.lax.fori_loop(0, tiles, add_tile, initial).sum(axis=0)


def _tile_size(images, pixels):
  """Images per loop iteration: one for large maps, so its patches stay in cache; more for
  small maps, whose one-image products are too small to run fast. Divides `images`.
  (Up to 400 pixels a tile: the fastest of the sizes tried on 14x14, 5x5 and 3x3 maps.)"""
  tile = 1
  while images % (2 * tile) == 0 and 2 * tile * pixels <= 400:
    tile *= 2
  return tile


# Max pooling.


def max_pool(inputs, window_shape, strides=None, padding="VALID"):
  """`nn.max_pool` of a 2x2 window with stride 2 ('VALID') over an NHWC map, with this
  module's gradient.

  Raises:
    UserError: any other pool.
  """
  if (tuple(window_shape) != (2, 2) or tuple(strides or ()) != (2, 2) or padding != "VALID"
      or inputs.ndim != 4):
    _refuse(f"a max pool of window {tuple(window_shape)}, strides {strides}, padding "
            f"{padding!r} on a {inputs.ndim}-d input (only 2x2, stride 2, 'VALID', NHWC)")
  return _max_pool_2x2(inputs)


def _pooling_windows(x):
  """[b, h, w, c] -> [b, h // 2, 2, w // 2, 2, c]: the 2x2 windows (an odd last row or
  column is dropped, as 'VALID' pooling drops it)."""
  b, h, w, c = x.shape
  return x[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c)


@jax.custom_vjp
def _max_pool_2x2(x):
  return _pooling_windows(x).max(axis=(2, 4))


def _max_pool_fwd(x):
  pooled = _max_pool_2x2(x)
  return pooled, (x, pooled)


def _max_pool_bwd(residuals, grad):
  x, pooled = residuals
  return (_max_pool_grad(x, pooled, grad),)


_max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


def _max_pool_grad(x, pooled, grad):
  # The gradient goes to the maxima of each window, in one fused elementwise pass;
  # autodiff of `max` would also count the maxima and split it among ties, a second
  # pass over the full-size input for ties that float inputs almost never have. It is
  # computed in the input's shape: computed in the windows' shape, XLA:CPU wrote it
  # once per consumer (the convolution's two gradients), each a reshaped copy.
  return jnp.where(x == _unpool(pooled, x.shape), _unpool(grad, x.shape), 0).astype(x.dtype)


def _unpool(pooled, shape):
  """[b, h // 2, w // 2, c] -> [b, h, w, c]: each value over its 2x2 window, and NaN on
  an odd last row or column, which no window covers."""
  b, h, w, c = shape
  windows = jnp.broadcast_to(pooled[:, :, None, :, None], (b, h // 2, 2, w // 2, 2, c))
  return jnp.pad(windows.reshape(b, h // 2 * 2, w // 2 * 2, c),
                 ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=jnp.nan)


# Biases.


class Bias(nn.Module):
  """`models.Bias` (a learned bias per channel, the last axis, zero at initialisation;
  the same parameter) with this module's gradient."""

  @nn.compact
  def __call__(self, x):
    bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],), jnp.float32)
    return add_bias(x, bias.astype(x.dtype))


def add_bias(x, bias):
  """`x + bias` for a bias per channel (the last axis of `x`), with this module's
  gradient."""
  if x.ndim < 2:
    return x + bias
  return _add_bias(x, bias)


@jax.custom_vjp
def _add_bias(x, bias):
  return x + bias


def _add_bias_fwd(x, bias):
  return _add_bias(x, bias), None


def _add_bias_bwd(residuals, grad):
  del residuals
  return grad, _bias_grad(grad)


_add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


def _bias_grad(grad):
  # The sum over all but the last axis, as a sum of the rows [leading axes, last two
  # axes] and then of [second-last axis, channels]: XLA:CPU splits the one reduction
  # into strided partial sums (a reduce-window), about 6x slower on 28x28 maps.
  rows = grad.reshape(-1, grad.shape[-2] * grad.shape[-1]).sum(axis=0)
  return rows.reshape(grad.shape[-2], grad.shape[-1]).sum(axis=0)
