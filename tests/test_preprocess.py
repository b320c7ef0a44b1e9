"""Tests of preprocess.py: image files of any kind to MNIST-style digits, and the
clear errors for files that cannot be one."""

import errno
import io
import struct
from unittest import mock
import zlib

import numpy as np
import pytest
from PIL import Image
from PIL import ImageDraw

from adder_jax import preprocess
from adder_jax.errors import UserError


def draw_digit(size=280, ink=255, background=0, mode="L", offset=(0, 0)):
  """A '7'-like stroke drawn in a size x size image: the digit the tests feed in."""
  image = Image.new(mode, (size, size), background)
  draw = ImageDraw.Draw(image)
  s = size / 28
  dx, dy = offset
  width = max(1, round(2.5 * s))
  draw.line([((8 + dx) * s, (6 + dy) * s), ((20 + dx) * s, (6 + dy) * s),
             ((12 + dx) * s, (23 + dy) * s)], fill=ink, width=width, joint="curve")
  return image


def centre_of_mass(digit):
  rows, cols = np.indices(digit.shape)
  mass = digit.astype(float).sum()
  return (rows * digit).sum() / mass, (cols * digit).sum() / mass


def bounding_box(digit):
  rows, cols = np.nonzero(digit)
  return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


@pytest.fixture
def reference():
  """The MNIST-style digit of the plain white-on-black drawing."""
  return preprocess.mnist_style(np.asarray(draw_digit()))


def test_output_is_mnist_style(reference):
  assert reference.shape == (28, 28) and reference.dtype == np.uint8
  assert reference.max() == 255
  assert max(bounding_box(reference)) == 20
  # Centred by mass at pixel 14, to within the rounding of a whole-pixel shift.
  np.testing.assert_allclose(centre_of_mass(reference), (14, 14), atol=0.5)
  # White digit on black: the corners are background.
  assert reference[0, 0] == reference[-1, -1] == 0


@pytest.mark.parametrize("name, make", [
    ("grey.png", lambda: draw_digit()),
    ("black_on_white.png", lambda: draw_digit(ink=0, background=255)),
    ("rgb_black_on_white.jpg", lambda: draw_digit(ink=(20, 20, 20), background=(250, 250, 240),
                                                  mode="RGB")),
    ("rgb_blue_on_yellow.bmp", lambda: draw_digit(ink=(0, 0, 160), background=(255, 230, 80),
                                                  mode="RGB")),
    ("grey_on_grey.png", lambda: draw_digit(ink=60, background=190)),
    ("rgba_black_ink_on_transparent.png",
     lambda: draw_digit(ink=(0, 0, 0, 255), background=(0, 0, 0, 0), mode="RGBA")),
    ("rgba_white_ink_on_transparent.png",
     lambda: draw_digit(ink=(255, 255, 255, 255), background=(255, 255, 255, 0), mode="RGBA")),
    ("palette.png", lambda: draw_digit(ink=0, background=255).convert("P")),
    ("small_28px.png", lambda: draw_digit(size=28)),
    ("large_1000px.jpg", lambda: draw_digit(size=1000, ink=0, background=255)),
    ("off_centre.png", lambda: draw_digit(offset=(-6, 4))),
])
def test_any_format_size_and_polarity_gives_the_same_digit(tmp_path, reference, name, make):
  path = str(tmp_path / name)
  make().save(path)
  digit = preprocess.load_digit(path)
  assert digit.shape == (28, 28) and digit.dtype == np.uint8
  np.testing.assert_allclose(centre_of_mass(digit), (14, 14), atol=0.5)
  # Resampling (a 28-pixel drawing is not even anti-aliased) and JPEG change the
  # strokes a little; another digit differs by far more (see the next test).
  assert np.abs(digit.astype(float) - reference).mean() < 15
  assert np.corrcoef(digit.ravel(), reference.ravel())[0, 1] > 0.8


def test_another_shape_is_far_from_the_reference(tmp_path, reference):
  image = Image.new("L", (280, 280), 0)
  ImageDraw.Draw(image).ellipse([70, 40, 210, 240], outline=255, width=25)  # A '0'.
  zero = preprocess.mnist_style(np.asarray(image))
  assert np.corrcoef(zero.ravel(), reference.ravel())[0, 1] < 0.5


def test_follows_the_exif_orientation(tmp_path, reference):
  # A camera that stored the picture turned a quarter clockwise (its pixels show the
  # digit rotated) and says so in EXIF orientation 6.
  exif = Image.Exif()
  exif[0x0112] = 6
  path = tmp_path / "photo.jpg"
  draw_digit().transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
  digit = preprocess.load_digit(str(path))
  assert np.corrcoef(digit.ravel(), reference.ravel())[0, 1] > 0.9


def test_keeps_the_aspect_ratio(tmp_path):
  image = Image.new("L", (400, 400), 255)
  ImageDraw.Draw(image).rectangle([190, 50, 209, 349], fill=0)  # 20 wide, 300 high.
  path = str(tmp_path / "one.png")
  image.save(path)
  height, width = bounding_box(preprocess.load_digit(path))
  assert height == 20
  assert 1 <= width <= 3  # 20 * 20 / 300 = 1.3 pixels, plus resampling's soft edges.


def test_sixteen_bit_png(tmp_path):
  values = np.asarray(draw_digit(), np.uint16) * 257
  path = str(tmp_path / "deep.png")
  Image.fromarray(values).save(path)
  assert Image.open(path).mode.startswith("I")
  assert preprocess.load_digit(path).max() == 255


# Bad files: every one a UserError whose one-line message names the file.


def check_error(path, *words):
  with pytest.raises(UserError) as raised:
    preprocess.load_digit(str(path))
  message = str(raised.value)
  assert "\n" not in message
  assert str(path) in message
  for word in words:
    assert word in message
  return message


def test_missing_file(tmp_path):
  check_error(tmp_path / "nothing.png", "does not exist")


def test_unreadable_path(tmp_path):
  check_error(tmp_path, "cannot read")  # A directory.


def test_file_without_permission(tmp_path):
  path = tmp_path / "secret.png"
  draw_digit().save(path)
  # chmod cannot stop root (as in CI) from reading, so the refusal comes from a stub.
  denied = PermissionError(errno.EACCES, "Permission denied", str(path))
  with mock.patch.object(preprocess.Image, "open", side_effect=denied):
    check_error(path, "cannot read", "Permission denied")


def test_not_an_image(tmp_path):
  path = tmp_path / "notes.png"
  path.write_text("these are not pixels\n")
  check_error(path, "is not a PNG, JPEG or BMP image")


def test_other_image_format_is_refused(tmp_path):
  path = tmp_path / "digit.gif"
  draw_digit().save(path)
  check_error(path, "is not a PNG, JPEG or BMP image")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_truncated_image(tmp_path, suffix):
  path = tmp_path / f"cut{suffix}"
  draw_digit().convert("RGB").save(path)
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  check_error(path, "truncated or corrupt")


def test_corrupt_png(tmp_path):
  path = tmp_path / "corrupt.png"
  draw_digit().save(path)
  data = bytearray(path.read_bytes())
  start = data.index(b"IDAT") + 8
  data[start:start + 40] = bytes(40)  # Zeroes in the compressed pixels.
  path.write_bytes(bytes(data))
  check_error(path, "truncated or corrupt")


def png_claiming_size(path, width, height):
  """A tiny PNG whose header claims width x height pixels: a decompression bomb."""
  buffer = io.BytesIO()
  Image.new("L", (1, 1)).save(buffer, "PNG")
  data = bytearray(buffer.getvalue())
  start = data.index(b"IHDR")
  data[start + 4:start + 12] = struct.pack(">II", width, height)
  data[start + 17:start + 21] = struct.pack(">I", zlib.crc32(bytes(data[start:start + 17])))
  path.write_bytes(bytes(data))


@pytest.mark.parametrize("width, height", [
    (8000, 8000),  # Over our limit only.
    (10000, 10000),  # Over PIL's warning limit too.
    (60000, 60000),  # Over PIL's error limit too.
])
def test_decompression_bomb(tmp_path, width, height):
  path = tmp_path / "bomb.png"
  png_claiming_size(path, width, height)
  check_error(path, "too large")


def test_size_limit_is_a_parameter(tmp_path):
  path = tmp_path / "digit.png"
  draw_digit(size=100).save(path)
  with pytest.raises(UserError, match="limit"):
    preprocess.load_digit(str(path), max_pixels=99 * 99)


@pytest.mark.parametrize("mode, colour", [("L", 0), ("L", 255), ("RGB", (30, 90, 200)),
                                          ("RGBA", (0, 0, 0, 0))])
def test_flat_colour(tmp_path, mode, colour):
  path = tmp_path / "flat.png"
  Image.new(mode, (64, 48), colour).save(path)
  check_error(path, "one flat colour")


def test_flat_colour_with_jpeg_noise(tmp_path):
  path = tmp_path / "grey.jpg"
  noise = np.random.default_rng(0).integers(-3, 4, (64, 64))
  Image.fromarray((128 + noise).astype(np.uint8)).save(path, quality=50)
  check_error(path, "one flat colour")


@pytest.mark.parametrize("size", [28, 400])
def test_noise_alone_shows_no_digit(tmp_path, size):
  noise = np.random.default_rng(0).normal(150, 10, (size, size))
  path = tmp_path / "noise.jpg"
  Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8)).save(path)
  with pytest.raises(UserError, match="shows no digit"):
    preprocess.load_digit(str(path))


def test_a_page_edge_gives_way_to_the_digit(tmp_path):
  """A dark band along the image's edge (the table beyond the page) outweighs the digit,
  but the digit is what is read."""
  def photo(with_edge):
    page = np.full((400, 400), 180, np.uint8)
    if with_edge:
      page[:, :30] = 40
    image = Image.fromarray(page)
    ImageDraw.Draw(image).line([(200, 120), (240, 260)], fill=40, width=10)
    path = tmp_path / f"edge_{with_edge}.png"
    image.save(path)
    return preprocess.load_digit(str(path))
  np.testing.assert_array_equal(photo(with_edge=True), photo(with_edge=False))
