"""Image files to 28x28 uint8 digits prepared the way MNIST was made.

MNIST digits are white on black, scaled to fit a 20x20 box with their aspect ratio
kept, and placed in a 28x28 field so that their centre of mass is at the centre. A
scan, photo or drawing of a digit (PNG, JPEG or BMP, any size, grey, RGB or RGBA, dark
on light or light on dark) is first reduced to its ink the way a person would see it:

1. the page's uneven lighting is estimated (a smooth surface fitted to the page) and
   removed;
2. ink is whichever side of the page the image's long tail lies on (dark ink on paper,
   or a light digit on black);
3. ink is told from paper by a threshold chosen from the image (Otsu's), never below
   the image's own noise level;
4. the digit is the heaviest connected ink region, with the regions near it that are not
   specks; regions on the image's edge (a page edge) give way to one inside it.

Then the digit goes through MNIST's steps, so the network sees what it was trained on.
Every problem with a file is a `UserError` naming the file.
"""

import os
import warnings

import numpy as np
from PIL import Image
from PIL import ImageOps
from skimage import filters
from skimage import measure
from skimage import morphology

from adder_jax import constants
from adder_jax.errors import UserError, first_line

FORMATS = ("PNG", "JPEG", "BMP")
# Larger images are refused before their pixels are decoded: a small compressed file
# can claim gigapixels (a decompression bomb). 50 MP covers camera photos.
MAX_PIXELS = 50_000_000
# MNIST's digits fit a 20x20 box inside the 28x28 field.
DIGIT_BOX = 20
# Images whose grey levels span less than this (of 255) show no digit.
MIN_CONTRAST = 16
# Ink must stand out from the page by this many times the image's noise (the robust
# standard deviation of the page around its fitted lighting).
NOISE_SIGMAS = 5.0
# Ink regions lighter than this fraction of the digit's heaviest region are specks.
SPECK_FRACTION = 0.1
# Regions further from the digit than this fraction of its size belong to something else.
NEARBY_FRACTION = 0.5
# Ink is scaled so that this percentile of the digit's ink is full white, as MNIST's
# strokes are in their middle.
STROKE_PERCENTILE = 90


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
  ink, mask = _ink(grey)
  digit_mask = _digit_regions(mask, ink)
  if digit_mask is None:
    raise UserError(f"{name} shows no digit: nothing stands out from its background noise.")
  rows, cols = np.nonzero(digit_mask)
  # The strokes' soft edges, just outside the thresholded ink, are part of the digit.
  keep = morphology.dilation(digit_mask, morphology.disk(_edge_width(grey.shape)))
  digit = np.where(keep, ink, 0.0)[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
  strokes = np.percentile(ink[digit_mask], STROKE_PERCENTILE)
  digit = np.clip(digit * (255.0 / max(float(strokes), 1e-6)), 0.0, 255.0)
  digit = _fit_in_box(digit, DIGIT_BOX)
  return _centre_by_mass(digit, constants.IMAGE_SHAPE)


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
    raise UserError(f"image file {path} is truncated or corrupt ({first_line(e)}).") from e
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
  """How much ink each pixel holds (0 on the page, up to 255), and which pixels are ink.

  Returns:
    (ink float32 [H, W], mask bool [H, W]).
  """
  residual = grey - _lighting(grey)
  # The ink side is the one with the longer tail: the digit covers less than the page.
  dark_ink = -np.percentile(residual, 0.5) > np.percentile(residual, 99.5)
  ink = np.clip(-residual if dark_ink else residual, 0.0, None)
  smooth = _smooth(-residual if dark_ink else residual)
  # The noise is measured after smoothing, which lowers it (JPEG's blocky noise less so).
  threshold = max(filters.threshold_otsu(np.clip(smooth, 0.0, None)),
                  NOISE_SIGMAS * _robust_std(smooth))
  return ink, smooth > threshold


def _lighting(grey, iterations=4):
  """The page's brightness without the digit: a quadratic surface fitted to the pixels
  whose grey levels the image's border has (the page, mostly), then refitted a few
  times without the pixels far from it (ink)."""
  height, width = grey.shape
  step = max(1, max(height, width) // 64)  # About 64x64 samples are plenty for a surface.
  rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
  rows, cols = rows / max(height - 1, 1), cols / max(width - 1, 1)

  def terms(r, c):
    return np.stack([np.ones_like(r), r, c, r * r, r * c, c * c], axis=-1)

  samples = terms(rows[::step, ::step], cols[::step, ::step]).reshape(-1, 6)
  values = grey[::step, ::step].reshape(-1)
  border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
  low, high = np.percentile(border, [10, 90])
  margin = (high - low) / 2 + MIN_CONTRAST / 2
  page = (values >= low - margin) & (values <= high + margin)
  if page.sum() < samples.shape[1]:
    page[:] = True
  for _ in range(iterations):
    coefficients = np.linalg.lstsq(samples[page], values[page], rcond=None)[0]
    residual = values - samples @ coefficients
    page = np.abs(residual) <= 2.5 * _robust_std(residual[page]) + 1e-3
  return terms(rows, cols) @ coefficients


def _robust_std(values):
  """The standard deviation of the bulk of `values` (from the median absolute deviation),
  which the minority of ink pixels does not inflate."""
  return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def _blur_sigma(shape):
  """Smoothing before thresholding, in pixels: none for MNIST-sized images, about one
  pixel for a 400x400 photo, more for larger ones."""
  return max(shape) / 400.0 if max(shape) >= 100 else 0.0


def _smooth(image):
  sigma = _blur_sigma(image.shape)
  return filters.gaussian(image, sigma=sigma, preserve_range=True) if sigma else image


def _edge_width(shape):
  return max(1, round(max(shape) / 200))


def _digit_regions(mask, ink):
  """The mask of the digit's ink regions in `mask`, or None if there is no ink."""
  labels = measure.label(mask, connectivity=2)
  regions = measure.regionprops(labels, intensity_image=ink)
  if not regions:
    return None
  mass = {r.label: r.area * r.intensity_mean for r in regions}
  height, width = mask.shape

  def on_edge(region):
    top, left, bottom, right = region.bbox
    return top == 0 or left == 0 or bottom == height or right == width

  heaviest = max(regions, key=lambda r: mass[r.label])
  inside = [r for r in regions if not on_edge(r)]
  if inside:
    heaviest_inside = max(inside, key=lambda r: mass[r.label])
    if on_edge(heaviest) and mass[heaviest_inside.label] >= SPECK_FRACTION * mass[heaviest.label]:
      heaviest = heaviest_inside  # The heavier region is a page edge or a shadow.
  top, left, bottom, right = heaviest.bbox
  reach = NEARBY_FRACTION * max(bottom - top, right - left)
  keep = [r.label for r in regions
          if mass[r.label] >= SPECK_FRACTION * mass[heaviest.label]
          # A page edge joins the digit only if the digit itself reaches the edge.
          and (not on_edge(r) or on_edge(heaviest))
          and r.bbox[0] < bottom + reach and r.bbox[2] > top - reach
          and r.bbox[1] < right + reach and r.bbox[3] > left - reach]
  return np.isin(labels, keep)


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
