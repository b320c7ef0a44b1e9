"""Random affine transforms of the training images, inside the compiled train step.

Each training image gets its own rotation, scale and shift, drawn from the step's key,
and is resampled bilinearly (`jax.scipy.ndimage.map_coordinates`) with black outside the
frame: no host work, no TensorFlow, the same images for the same seed and step. Off
unless a config's `augment` group asks for it; the test images are never transformed.
"""

import functools

import jax
import jax.numpy as jnp


def enabled(augment_config):
  """Whether `augment_config` (a config's `augment` group) transforms anything."""
  return any(augment_config[name] for name in ("max_rotation", "max_scale", "max_shift"))


def from_config(augment_config):
  """The `random_affine` of `augment_config`, or None if it transforms nothing."""
  if not enabled(augment_config):
    return None
  return functools.partial(random_affine, max_rotation=augment_config.max_rotation,
                           max_scale=augment_config.max_scale,
                           max_shift=augment_config.max_shift)


def random_affine(key, images, *, max_rotation, max_scale, max_shift):
  """Every image of `images` [..., H, W] rotated, scaled and shifted at random.

  Args:
    key: a JAX random key.
    images: images of any dtype, with any leading dimensions (a batch, or a batch of
      pairs); pixel values as the model reads them (0-255).
    max_rotation: the largest rotation, in degrees either way.
    max_scale: the largest relative change of size (0.1: 90% to 110%).
    max_shift: the largest shift along each axis, in pixels (not rounded).

  Returns:
    float32 images of the same shape, each with its own transform, drawn uniformly.
  """
  shape = images.shape
  flat = images.reshape(-1, *shape[-2:]).astype(jnp.float32)
  count = flat.shape[0]
  rotation_key, scale_key, shift_key = jax.random.split(key, 3)
  angles = jnp.deg2rad(jax.random.uniform(rotation_key, (count,), minval=-max_rotation,
                                          maxval=max_rotation))
  scales = jax.random.uniform(scale_key, (count,), minval=1 - max_scale, maxval=1 + max_scale)
  shifts = jax.random.uniform(shift_key, (count, 2), minval=-max_shift, maxval=max_shift)
  return jax.vmap(affine)(flat, angles, scales, shifts).reshape(shape)


def affine(image, angle, scale, shift):
  """`image` [H, W] rotated by `angle` (radians, counter-clockwise as displayed) and
  scaled by `scale` about its centre, then moved by `shift` (rows, columns) pixels.

  Each output pixel reads the input at the inverse transform of its position, bilinearly
  interpolated, 0 outside the image. With angle 0, scale 1 and an integer shift every
  read lands on a pixel, so the result is exactly the shifted input.
  """
  height, width = image.shape
  centre = jnp.array([(height - 1) / 2, (width - 1) / 2], jnp.float32)
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                            jnp.arange(width, dtype=jnp.float32), indexing="ij")
  # Output position relative to the centre, before the shift.
  r = rows - centre[0] - shift[0]
  c = cols - centre[1] - shift[1]
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  # The inverse turn, in (row, column) coordinates, whose rows grow downwards: the
  # output pixel right of the centre turned a quarter counter-clockwise, above it, reads
  # the input pixel right of the centre.
  source_rows = (cos * r + sin * c) / scale + centre[0]
  source_cols = (-sin * r + cos * c) / scale + centre[1]
  return jax.scipy.ndimage.map_coordinates(image, [source_rows, source_cols], order=1,
                                           mode="constant", cval=0.0)
