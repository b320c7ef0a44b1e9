"""Image files to 28x28 uint8 digits prepared the way MNIST was made.

MNIST digits are white on black, scaled to fit a 20x20 box with their aspect ratio
kept, and placed in a 28x28 field so that their centre of mass is at the centre. A
photo or drawing of a digit (PNG, JPEG or BMP, any size, grey, RGB or RGBA, dark on
light or light on dark) goes through the same steps here, so the network sees what it
was trained on. Every problem with a file is a `UserError` naming the file.
"""

import os
import warnings

import numpy as np
from PIL import Image
from PIL import ImageOps

from adder_jax import input_pipeline
from adder_jax.errors import UserError

FORMATS = ("PNG", "JPEG", "BMP")
# Larger images are refused before their pixels are decoded: a small compressed file
# can claim gigapixels (a decompression bomb). 50 MP covers camera photos.
MAX_PIXELS = 50_000_000
# MNIST's digits fit a 20x20 box inside the 28x28 field.
DIGIT_BOX = 20
# Images whose grey levels span less than this (of 255) show no digit.
MIN_CONTRAST = 16
# Ink fainter than this fraction of the strongest ink is treated as background, so
# that faint smudges and compression noise do not widen the digit's bounding box.
INK_FLOOR_FRACTION = 0.02


def load_digit(path, max_pixels=MAX_PIXELS):
  """Reads an image file and returns it as an MNIST-style uint8 [28, 28] digit.

  Raises:
    UserError: the file is missing, unreadable, not a PNG/JPEG/BMP image, truncated
      or corrupt, larger than `max_pixels`, or of one flat colour.
  """
  return mnist_style(_read_grey(path, max_pixels), name=path)


def mnist_style(grey, name="image"):
  """MNIST preprocessing of a grey image (float or uint8 [H, W], 0-255, any polarity).

  Returns:
    uint8 [28, 28]: the digit white on black, fitted into a 20x20 box with its aspect
    ratio kept, and placed with its centre of mass at the centre of the field.
  """
  grey = np.asarray(grey, np.float32)
  if grey.ndim != 2:
    raise UserError(f"{name}: expected a 2-D grey image, got shape {grey.shape}.")
  low, high = float(grey.min()), float(grey.max())
  if high - low < MIN_CONTRAST:
    raise UserError(f"{name} is one flat colour (grey levels {low:.0f}-{high:.0f}); "
                    "it shows no digit.")
  ink = _ink(grey)
  if not ink.any():
    raise UserError(f"{name} shows no digit: nothing stands out from its background noise.")
  rows, cols = np.nonzero(ink)
  digit = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
  digit = _fit_in_box(digit, DIGIT_BOX)
  return _centre_by_mass(digit, input_pipeline.IMAGE_SHAPE)


def _read_grey(path, max_pixels):
  """Decodes `path` to a float32 grey image, refusing anything but a sound, small
  enough PNG, JPEG or BMP file."""
  if not os.path.exists(path):
    raise UserError(f"image file {path} does not exist.")
  try:
    with warnings.catch_warnings():
      # PIL only warns between its own limit and twice it; refuse those too.
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      with Image.open(path, formats=FORMATS) as image:
        _check_size(path, image.size, max_pixels)
        # verify() checks what decoding does not (such as PNG checksums) but leaves
        # the image unusable, so the file is opened again to decode it.
        image.verify()
      with Image.open(path, formats=FORMATS) as image:
        image.load()
        # A photo's EXIF orientation says which way is up; this also copies the
        # pixels, so they outlive the open file.
        image = ImageOps.exif_transpose(image)
  except UserError:
    raise
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    raise UserError(f"image file {path} is too large to decode safely ({e}).") from e
  except Image.UnidentifiedImageError as e:
    raise UserError(f"{path} is not a {', '.join(FORMATS[:-1])} or {FORMATS[-1]} image.") from e
  except (IsADirectoryError, PermissionError) as e:
    raise UserError(f"cannot read image file {path} ({e.strerror}).") from e
  except (OSError, SyntaxError, ValueError, EOFError) as e:
    # PIL reports damaged data with any of these, depending on the format.
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f"image file {path} is truncated or corrupt ({reason}).") from e
  return _to_grey(image)


def _check_size(path, size, max_pixels):
  width, height = size
  if width * height > max_pixels:
    raise UserError(
        f"image file {path} is too large: {width}x{height} pixels, more than the limit of "
        f"{max_pixels / 1e6:g} megapixels (a decompression bomb?); scale it down first.")


def _to_grey(image):
  """Float32 grey levels 0-255 of a decoded PIL image of any mode."""
  if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
    # 16-bit and float images: PIL's conversion to 'L' clips instead of scaling.
    values = np.asarray(image, np.float32)
    top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
    return values * (255.0 / top)
  if not image.has_transparency_data:
    return np.asarray(image.convert("L"), np.float32)
  rgba = image.convert("RGBA")
  luma = np.asarray(rgba.convert("L"), np.float32)
  alpha = np.asarray(rgba.getchannel("A"), np.float32) / 255.0
  if alpha.sum() == 0:
    return np.zeros_like(luma)
  # Transparent pixels are background. Put them behind the visible pixels in the
  # colour that contrasts with those pixels, so that white ink on a transparent
  # background stays visible as well as black ink.
  visible_luma = float((luma * alpha).sum() / alpha.sum())
  background = 0.0 if visible_luma > 127.5 else 255.0
  return luma * alpha + background * (1.0 - alpha)


def _ink(grey):
  """How much ink each pixel holds: 0 on the background, 255 for the strongest ink.

  The background is the median of the border pixels; whichever side of it the
  rest of the image lies on is ink, so light-on-dark and dark-on-light both work.
  """
  border = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
  background = float(np.median(border))
  ink = grey - background if grey.mean() >= background else background - grey
  ink = np.clip(ink, 0.0, None)
  border_noise = float(np.percentile(np.concatenate(
      [ink[0], ink[-1], ink[1:-1, 0], ink[1:-1, -1]]), 99))
  ink[ink <= max(INK_FLOOR_FRACTION * ink.max(), border_noise)] = 0.0
  return ink * (255.0 / max(float(ink.max()), 1e-6))


def _fit_in_box(digit, box):
  """Resizes `digit` so that its longer side is `box` pixels, keeping its aspect ratio,
  and stretches it so its strongest ink is 255 again (downscaling thin strokes dims them)."""
  height, width = digit.shape
  scale = box / max(height, width)
  size = (max(1, round(width * scale)), max(1, round(height * scale)))
  resized = Image.fromarray(digit.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
  resized = np.asarray(resized)
  resized = np.clip(resized, 0.0, None)  # Lanczos rings below zero next to edges.
  return resized * (255.0 / resized.max())


def _centre_by_mass(digit, shape):
  """Pastes `digit` into a black `shape` field with its centre of mass at the centre."""
  height, width = digit.shape
  rows, cols = np.indices(digit.shape)
  mass = digit.sum()
  centre_row, centre_col = (rows * digit).sum() / mass, (cols * digit).sum() / mass
  # In MNIST the centre of mass sits at pixel index 14 (of 0-27), on average.
  top = int(np.clip(round(shape[0] / 2 - centre_row), 0, shape[0] - height))
  left = int(np.clip(round(shape[1] / 2 - centre_col), 0, shape[1] - width))
  field = np.zeros(shape, np.float32)
  field[top:top + height, left:left + width] = digit
  return np.clip(np.rint(field), 0, 255).astype(np.uint8)
