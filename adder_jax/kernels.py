"""Convolution, max-pool and bias gradients chosen per backend when the program is lowered.

The network (models.py) is plain Flax; it takes three drop-ins from here: the
`conv_general_dilated` argument of `nn.Conv`, `max_pool` for `nn.max_pool`, and
`add_bias` for `x + bias`. Their forward passes are the usual XLA operations. Their
gradients are JAX's own autodiff on GPU and TPU (cuDNN's convolution gradients on a
GPU), and, on CPU, formulations that XLA:CPU runs fast, picked by
`jax.lax.platform_dependent` when the program is lowered for its backend.

Why CPU needs its own: the training loop runs its steps inside `lax.scan`, where
XLA:CPU lowers autodiff's transposed convolutions to a slow generic loop (the kernel
gradient of a 28x28 layer over 100x slower than the forward convolution on a 2-core
CPU), a max pool's gradient (select-and-scatter) to another slow loop, and splits a
bias gradient's sum over (batch, height, width) into strided partial sums. Here, on CPU:
- the input gradient of a convolution is a forward convolution with the flipped kernel;
- its kernel gradient is a sum over images of one matrix product each, of the image's
  patches with its output gradient. One image (a few for small maps) at a time keeps
  the patches in cache (building them for the whole batch and multiplying once took
  twice as long). The patches are built channels-first, so the product contracts their
  last axis: XLA:CPU runs that layout on its fast matmul and the other on a generic one
  at half the speed. When a mesh is in context (`jax.sharding.use_abstract_mesh`, or
  `jax.set_mesh`), each device of its 'data' axis loops over its own block of the batch;
- a 2x2 max pool's gradient goes to the maxima of each window in one fused pass;
- a bias gradient is a sum of the rows [b * h, w * c] and then of [w, c], about 6x
  faster on a 28x28 map.
The results equal autodiff's up to float rounding (tests/test_kernels.py).

`use(kind)` chooses for the code traced inside it, one of GRADIENT_KERNELS:
'auto' (per backend, as above), 'generic' (autodiff everywhere) or 'cpu' (the CPU
formulations everywhere, to compare them on an accelerator); `config.gradient_kernels`
sets it for a training run.
"""

import contextlib
import contextvars
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from adder_jax import sharding

GRADIENT_KERNELS = ("auto", "generic", "cpu")

_KIND = contextvars.ContextVar("gradient_kernels", default="auto")


@contextlib.contextmanager
def use(kind):
  """Gradients of the convolutions and pools traced inside: one of GRADIENT_KERNELS."""
  if kind not in GRADIENT_KERNELS:
    raise ValueError(f"unknown gradient kernels {kind!r}; choose one of {GRADIENT_KERNELS}")
  token = _KIND.set(kind)
  try:
    yield
  finally:
    _KIND.reset(token)


def _per_backend(kind, cpu, generic):
  """`cpu` or `generic` (functions of the same arguments), as `kind` says."""
  if kind == "auto":
    return lambda *args: jax.lax.platform_dependent(*args, cpu=cpu, default=generic)
  return cpu if kind == "cpu" else generic


# Convolutions.

_NHWC = ("NHWC", "HWIO", "NHWC")


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None, **kwargs):
  """`jax.lax.conv_general_dilated`, for `nn.Conv(conv_general_dilated=...)`.

  Stride-1, undilated, ungrouped NHWC convolutions with 'SAME' or 'VALID' padding get
  the per-backend gradients of this module; anything else is passed to lax unchanged.
  """
  dilations = [d for d in (lhs_dilation, rhs_dilation) if d is not None]
  plain = (rhs.ndim == 4 and isinstance(padding, str) and padding in ("SAME", "VALID")
           and not kwargs and feature_group_count == 1 and precision is None
           and all(s == 1 for s in window_strides) and all(d == 1 for ds in dilations for d in ds)
           and (jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
                == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)))
  kind = _KIND.get()
  if not plain or kind == "generic":
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        precision=precision, **kwargs)
  # The choices are static arguments, read while tracing the forward pass: JAX caches
  # the traced gradient by its arguments, so a choice read inside it could be stale.
  return _conv(lhs, rhs, padding, kind, _batch_shards(lhs.shape[0]))


def _lax_conv(x, kernel, padding):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, kernel, padding, kind, shards):
  del kind, shards  # Used by the gradient.
  return _lax_conv(x, kernel, padding)


def _conv_fwd(x, kernel, padding, kind, shards):
  return _conv(x, kernel, padding, kind, shards), (x, kernel)


def _conv_bwd(padding, kind, shards, residuals, grad):
  x, kernel = residuals
  return _per_backend(kind, functools.partial(_cpu_conv_grads, padding=padding, shards=shards),
                      functools.partial(_autodiff_conv_grads, padding=padding))(x, kernel, grad)


_conv.defvjp(_conv_fwd, _conv_bwd)


def _autodiff_conv_grads(x, kernel, grad, padding):
  return jax.vjp(functools.partial(_lax_conv, padding=padding), x, kernel)[1](grad)


def _cpu_conv_grads(x, kernel, grad, padding, shards):
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
    x = jnp.pad(x, ((0, 0),) * 4 + (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)))
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


def _batch_shards(batch):
  """How many equal blocks of the batch the devices of the mesh in context hold (1
  without a mesh, or when the batch does not split evenly over its 'data' axis)."""
  mesh = jax.sharding.get_abstract_mesh()
  shards = 1 if mesh.empty else dict(mesh.shape).get(sharding.DATA_AXIS, 1)
  return shards if batch % shards == 0 else 1


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
  """`nn.max_pool`; a 2x2, stride-2 'VALID' pool of an NHWC map gets the per-backend
  gradient of this module."""
  kind = _KIND.get()
  if (tuple(window_shape) == (2, 2) and tuple(strides or ()) == (2, 2) and padding == "VALID"
      and inputs.ndim == 4 and kind != "generic"):
    return _max_pool_2x2(inputs, kind)
  return nn.max_pool(inputs, window_shape, strides, padding)


def _pooling_windows(x):
  """[b, h, w, c] -> [b, h // 2, 2, w // 2, 2, c]: the 2x2 windows (an odd last row or
  column is dropped, as 'VALID' pooling drops it)."""
  b, h, w, c = x.shape
  return x[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool_2x2(x, kind):
  del kind  # Used by the gradient.
  return _pooling_windows(x).max(axis=(2, 4))


def _max_pool_fwd(x, kind):
  pooled = _max_pool_2x2(x, kind)
  return pooled, (x, pooled)


def _max_pool_bwd(kind, residuals, grad):
  x, pooled = residuals
  return (_per_backend(kind, _cpu_max_pool_grad, _autodiff_max_pool_grad)(x, pooled, grad),)


_max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


def _autodiff_max_pool_grad(x, pooled, grad):
  del pooled
  return jax.vjp(lambda x: nn.max_pool(x, (2, 2), (2, 2)), x)[1](grad)[0]


def _cpu_max_pool_grad(x, pooled, grad):
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


def add_bias(x, bias):
  """`x + bias` for a bias per channel (the last axis of `x`), with the per-backend
  gradient of this module."""
  if x.ndim < 2 or _KIND.get() == "generic":
    return x + bias
  return _add_bias(x, bias, _KIND.get())


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _add_bias(x, bias, kind):
  del kind  # Used by the gradient.
  return x + bias


def _add_bias_fwd(x, bias, kind):
  return _add_bias(x, bias, kind), None


def _add_bias_bwd(kind, residuals, grad):
  del residuals
  return grad, _per_backend(kind, _cpu_bias_grad, _autodiff_bias_grad)(grad)


_add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


def _autodiff_bias_grad(grad):
  return grad.sum(axis=tuple(range(grad.ndim - 1)))


def _cpu_bias_grad(grad):
  # The sum over all but the last axis, as a sum of the rows [leading axes, last two
  # axes] and then of [second-last axis, channels]: XLA:CPU splits the one reduction
  # into strided partial sums (a reduce-window), about 6x slower on 28x28 maps.
  rows = grad.reshape(-1, grad.shape[-2] * grad.shape[-1]).sum(axis=0)
  return rows.reshape(grad.shape[-2], grad.shape[-1]).sum(axis=0)
