"""A 3x3 convolution whose gradients stay fast inside compiled loops on XLA:CPU.

The training loop runs its steps inside `lax.scan`. There, XLA:CPU lowers the
transposed convolutions that autodiff produces for a convolution's gradients to a slow
generic loop (for the kernel gradient of a 28x28 layer, over 100x slower than the
forward convolution on a 2-core CPU). `conv3x3` writes the gradients
as operations that XLA:CPU runs fast: the input gradient as a forward convolution with
the flipped kernel, and the kernel gradient as a sum over images of one matrix product
each, of the image's 3x3 patches with its output gradient. One image (a few for small
maps) at a time keeps the patches in cache; building them for the whole batch at once
and multiplying once took twice as long. The patches are built channels-first, so the
product contracts their last axis: XLA:CPU runs that layout on its fast matmul, and the
other one on a generic one at half the speed. The forward pass is the plain XLA
convolution, and the results equal autodiff's up to float rounding. `add_bias` adds the
convolution's bias so that its gradient, too, is a sum XLA:CPU runs fast.
"""

import functools
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _conv(x, kernel, padding):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_DIMENSIONS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv3x3(x, kernel, padding, batch_shards=1):
  """Stride-1 3x3 convolution of NHWC `x` with an HWIO `kernel`; padding 'SAME' or 'VALID'.

  `batch_shards`: how many devices the batch axis of `x` is split over (in equal
  contiguous blocks, as `sharding.batch_sharded` splits it). It changes only how the
  kernel gradient is computed: each device loops over its own images.
  """
  del batch_shards
  return _conv(x, kernel, padding)


def _conv3x3_fwd(x, kernel, padding, batch_shards):
  del batch_shards
  return _conv(x, kernel, padding), (x, kernel)


def _conv3x3_bwd(padding, batch_shards, residuals, grad):
  x, kernel = residuals
  # The input gradient is the full correlation of grad with the flipped kernel.
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  grad_x = _conv(grad, flipped, "SAME" if padding == "SAME" else ((2, 2), (2, 2)))
  grad_kernel = _kernel_gradient(x, grad.astype(x.dtype), padding, batch_shards)
  return grad_x.astype(x.dtype), grad_kernel.reshape(kernel.shape).astype(kernel.dtype)


def _kernel_gradient(x, grad, padding, batch_shards):
  """sum over images and pixels of (3x3 patch of `x`) outer (`grad` there): [9 * c, f].

  `x` is the convolution's input [b, h, w, c] ([b, h + 2, w + 2, c] for 'VALID') and
  `grad` the output gradient [b, h, w, f]. The loop takes a tile of images of every
  shard per iteration, and each shard accumulates its own sum, so no device reads another
  device's images; the shards' sums are added once at the end.
  """
  batch, height, width, features = grad.shape
  channels = x.shape[-1]
  shards = batch_shards if batch % batch_shards == 0 else 1
  tile = _tile_size(batch // shards, height * width)
  tiles = batch // shards // tile
  # Channels first: each row of the patch matrix (one channel at one kernel offset) is
  # then contiguous, and the product contracts the patches' last axis.
  x = x.reshape(shards, tiles, tile, *x.shape[1:]).transpose(0, 1, 5, 2, 3, 4)
  if padding == "SAME":
    # Padded after the transpose: XLA:CPU then does both in one pass over `x`.
    x = jnp.pad(x, ((0, 0),) * 4 + ((1, 1), (1, 1)))
  grad = grad.reshape(shards, tiles, tile * height * width, features)

  def add_tile(tile_index, total):
    # Indexing axis 1 keeps the shard axis in front; moving the tile axis to the front for
    # `lax.scan` made XLA copy `x` and `grad` into a transposed layout first.
    images = jax.lax.dynamic_index_in_dim(x, tile_index, 1, keepdims=False)  # [s, c, t, h+2, w+2]
    tile_grad = jax.lax.dynamic_index_in_dim(grad, tile_index, 1, keepdims=False)  # [s, t*h*w, f]
    # Patches [s, 9 * c, t * h * w], rows in the (kh, kw, c) order of the kernel's rows.
    patches = jnp.stack([images[..., i:i + height, j:j + width] for i in range(3) for j in range(3)],
                        axis=1).reshape(shards, 9 * channels, -1)
    return total + jax.lax.dot_general(patches, tile_grad, (((2,), (1,)), ((0,), (0,))),
                                       preferred_element_type=jnp.float32)

  initial = jnp.zeros((shards, 9 * channels, features), jnp.float32)
  return jax.lax.fori_loop(0, tiles, add_tile, initial).sum(axis=0)


def _tile_size(images, pixels):
  """Images per loop iteration: one for large maps, so its patches stay in cache; more for
  small maps, whose one-image products are too small to run fast. Divides `images`.
  (Up to 400 pixels a tile: the fastest of the sizes tried on 14x14, 5x5 and 3x3 maps.)"""
  tile = 1
  while images % (2 * tile) == 0 and 2 * tile * pixels <= 400:
    tile *= 2
  return tile


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


class Conv3x3(nn.Module):
  """`nn.Conv(features, (3, 3), padding=...)` with the fast gradients of `conv3x3`."""

  features: int
  padding: str = "SAME"
  use_bias: bool = True
  dtype: str = "float32"
  batch_shards: int = 1  # See `conv3x3`.
  # Optional pooling applied before the bias is added: pooling commutes with adding a
  # per-channel bias, and adding it to the pooled map touches 4x fewer values.
  pool: Optional[Callable[[jax.Array], jax.Array]] = None

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (3, 3, x.shape[-1], self.features), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    y = conv3x3(x, kernel, self.padding, self.batch_shards)
    if self.pool is not None:
      y = self.pool(y)
    if self.use_bias:
      y = add_bias(y, self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32))
    return y


def add_bias(y, bias):
  """`y + bias` for an NHWC map `y` and a bias [c], added to the rows [b * h, w * c].

  The bias gradient is then a sum of those rows, and a sum over [w, c]: XLA:CPU runs
  these about 6x faster than the one reduction over (b, h, w) that autodiff of
  `y + bias` gives, which it splits into strided partial sums: the reference network
  trains about 4.5% faster for it.
  """
  b, h, w, c = y.shape
  return (y.reshape(b * h, w * c) + jnp.tile(bias.astype(y.dtype), w)).reshape(y.shape)
