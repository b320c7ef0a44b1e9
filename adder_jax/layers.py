"""A 3x3 convolution whose gradients stay fast inside compiled loops on XLA:CPU.

The training loop runs its steps inside `lax.scan`. There, XLA:CPU lowers the
transposed convolutions that autodiff produces for a convolution's gradients to a slow
generic loop: 20-60x slower than the same convolutions outside a loop (see
`benchmarks/conv_gradients.py`). `conv3x3` writes the gradients as ordinary operations
that XLA:CPU runs fast everywhere: the input gradient as a forward convolution with
the flipped kernel, the kernel gradient as one matrix product of the input's 3x3 patches with
the output gradient. The forward pass is the plain XLA convolution, and the
results equal autodiff's up to float rounding.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _conv(x, kernel, padding):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_DIMENSIONS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv3x3(x, kernel, padding):
  """Stride-1 3x3 convolution of NHWC `x` with an HWIO `kernel`; padding 'SAME' or 'VALID'."""
  return _conv(x, kernel, padding)


def _conv3x3_fwd(x, kernel, padding):
  return _conv(x, kernel, padding), (x, kernel)


def _conv3x3_bwd(padding, residuals, grad):
  x, kernel = residuals
  # The input gradient is the full correlation of grad with the flipped kernel.
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  grad_x = _conv(grad, flipped, "SAME" if padding == "SAME" else ((2, 2), (2, 2)))
  if padding == "SAME":
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  batch, height, width, features = grad.shape
  # Patches [b*h*w, 9*c] in the (kh, kw, c) order of the kernel's rows, then one matrix
  # product that contracts over all pixels of the batch.
  patches = jnp.stack([x[:, i:i + height, j:j + width] for i in range(3) for j in range(3)],
                      axis=-2).reshape(batch * height * width, -1)
  grad_kernel = jax.lax.dot_general(
      patches, grad.reshape(-1, features).astype(x.dtype), (((0,), (0,)), ((), ())),
      preferred_element_type=jnp.float32)
  return grad_x.astype(x.dtype), grad_kernel.reshape(kernel.shape).astype(kernel.dtype)


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


class Conv3x3(nn.Module):
  """`nn.Conv(features, (3, 3), padding=...)` with the fast gradients of `conv3x3`."""

  features: int
  padding: str = "SAME"
  use_bias: bool = True
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (3, 3, x.shape[-1], self.features), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    y = conv3x3(x, kernel, self.padding)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(self.dtype)
    return y
