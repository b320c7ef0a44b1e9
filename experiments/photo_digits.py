"""Digits made to look like phone photos of a digit written on paper.

A dark digit covers a small part of a large frame, anywhere in it, on grey paper lit
unevenly (a brightness gradient across the page), with sensor noise, a slight blur
and JPEG compression. The digits are MNIST test digits, or digits rendered in Pillow's
own font.
"""

import io

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFilter
from PIL import ImageFont

FRAME = 400  # Pixels on each side of the photo.


def rendered_digit(digit, size=112):
  """uint8 [size, size]: `digit` drawn white on black in Pillow's default font."""
  canvas = Image.new("L", (size, size), 0)
  font = ImageFont.load_default(size=int(size * 0.8))
  draw = ImageDraw.Draw(canvas)
  left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font)
  draw.text(((size - (right - left)) / 2 - left, (size - (bottom - top)) / 2 - top), str(digit),
            fill=255, font=font)
  return np.asarray(canvas)


def photo_of(ink, rng):
  """JPEG bytes of a photo of `ink` (uint8 [H, W], white digit on black) on paper.

  The digit is 70 to 140 pixels tall, placed anywhere in a FRAME x FRAME photo.
  """
  height = int(rng.integers(70, 141))
  width = max(1, round(ink.shape[1] * height / ink.shape[0]))
  ink = np.asarray(Image.fromarray(ink).resize((width, height), Image.Resampling.BILINEAR),
                   np.float32) / 255.0
  rows, cols = np.mgrid[0:FRAME, 0:FRAME].astype(np.float32) / FRAME
  angle = rng.uniform(0, 2 * np.pi)
  # Brightness falls by 40 to 90 grey levels from one side of the page to the other.
  across = (np.cos(angle) * (cols - 0.5) + np.sin(angle) * (rows - 0.5)) / np.sqrt(0.5)
  gradient = rng.uniform(40, 90) * across / 2
  photo = rng.uniform(150, 200) + gradient
  top = int(rng.integers(0, FRAME - height + 1))
  left = int(rng.integers(0, FRAME - width + 1))
  patch = photo[top:top + height, left:left + width]
  photo[top:top + height, left:left + width] = (
      patch * (1 - ink) + rng.uniform(20, 70) * ink)
  image = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8))
  image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
  noisy = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(3, 8), (FRAME, FRAME))
  out = io.BytesIO()
  Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(
      out, format="JPEG", quality=int(rng.integers(60, 91)))
  return out.getvalue()


def write_photos(directory, digits, labels, seed=0, rendered_per_digit=2):
  """Writes a photo of each of `digits` (uint8 [N, 28, 28] MNIST style, with their
  `labels`) and `rendered_per_digit` photos of each rendered digit 0-9 to `directory`.

  Returns:
    (paths, labels) of the photos written.
  """
  rng = np.random.default_rng(seed)
  inks = list(digits) + [rendered_digit(d) for d in range(10) for _ in range(rendered_per_digit)]
  all_labels = list(labels) + [d for d in range(10) for _ in range(rendered_per_digit)]
  paths = []
  for i, ink in enumerate(inks):
    path = directory / f"photo_{i:04d}_{all_labels[i]}.jpg"
    path.write_bytes(photo_of(np.asarray(ink, np.uint8), rng))
    paths.append(str(path))
  return paths, all_labels
