"""A 3x3 convolution whose gradients stay fast inside compiled loops on XLA:CPU.

The training loop runs its steps inside `lax.scan`. There, XLA:CPU lowers the
transposed convolutions that autodiff produces for a convolution's gradients to a slow
generic loop (for the kernel gradient of a 28x28 layer, over 100x slower than the
forward convolution on a 2-core CPU). `conv3x3` writes the gradients
as operations that XLA:CPU runs fast: the input gradient as a forward convolution with
the flipped kernel, and the kernel gradient as a sum over images of one matrix product
each, of the image's 3x3 patches with its output gradient. One image at a time keeps the
patches in cache; building them for the whole batch at once and multiplying once took
twice as long. The forward pass is the plain XLA convolution, and the results equal
autodiff's up to float rounding.
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
  if padding == "SAME":
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  grad_kernel = _kernel_gradient(x, grad.astype(x.dtype), batch_shards)
  return grad_x.astype(x.dtype), grad_kernel.reshape(kernel.shape).astype(kernel.dtype)


def _kernel_gradient(x, grad, batch_shards):
  """sum over images and pixels of (3x3 patch of `x`) outer (`grad` there): [9 * c, f].

  `x` is the padded input [b, h + 2, w + 2, c] and `grad` the output gradient
  [b, h, w, f]. The loop takes one image of every shard per iteration, and each shard
  accumulates its own sum, so no device reads another device's images; the shards' sums
  are added once at the end.
  """
  batch, height, width, features = grad.shape
  shards = batch_shards if batch % batch_shards == 0 else 1
  # [images per shard, shards, ...]: iteration i reads image i of every shard.
  def per_shard(a):
    return a.reshape(shards, batch // shards, *a.shape[1:]).swapaxes(0, 1)

  def add_image(total, image_and_grad):
    image, image_grad = image_and_grad  # [shards, h + 2, w + 2, c], [shards, h, w, f]
    # Patches [shards, h * w, 9 * c] in the (kh, kw, c) order of the kernel's rows.
    patches = jnp.stack([image[:, i:i + height, j:j + width] for i in range(3) for j in range(3)],
                        axis=-2).reshape(shards, height * width, -1)
    return total + jax.lax.dot_general(
        patches, image_grad.reshape(shards, height * width, features),
        (((1,), (1,)), ((0,), (0,))), preferred_element_type=jnp.float32), None

  initial = jnp.zeros((shards, 9 * x.shape[-1], features), jnp.float32)
  totals, _ = jax.lax.scan(add_image, initial, (per_shard(x), per_shard(grad)))
  return totals.sum(axis=0)


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
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(self.dtype)
    return y
