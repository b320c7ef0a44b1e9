"""Reading digits in image files with a model trained on real MNIST (slow tests).

They need the four MNIST IDX files and a workdir trained on them, named by the
environment variables ADDER_JAX_MNIST_DIR and ADDER_JAX_TRAINED_WORKDIR; `.ci/run`
trains the smoke config and runs them with `python -m pytest -m slow`.
"""

import gzip
import os

import numpy as np
from PIL import Image
import pytest

from adder_jax import demo
from adder_jax import inference
from benchmarks import demo_latency
from experiments import photo_digits

pytestmark = pytest.mark.slow

COUNT = 300  # MNIST test digits per set.


def _environment(name):
  value = os.environ.get(name)
  if not value:
    pytest.fail(f"set {name} to run the slow tests (see this file's docstring)")
  return value


@pytest.fixture(scope="module")
def predictor():
  return inference.Predictor(_environment("ADDER_JAX_TRAINED_WORKDIR"))


@pytest.fixture(scope="module")
def mnist_test_digits():
  """A fixed sample of COUNT MNIST test images and their labels, read from the IDX files."""
  directory = _environment("ADDER_JAX_MNIST_DIR")
  with gzip.open(os.path.join(directory, "t10k-images-idx3-ubyte.gz")) as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
  with gzip.open(os.path.join(directory, "t10k-labels-idx1-ubyte.gz")) as f:
    labels = np.frombuffer(f.read(), np.uint8, offset=8)
  chosen = np.random.default_rng(1).choice(len(images), COUNT, replace=False)
  return images[chosen], labels[chosen]


def accuracy(predictor, paths, labels):
  # A file that cannot be read (digit None) counts as read wrong.
  digits = np.array([-1 if p.error else p.digit for p in predictor.predict_files(paths, 0)])
  return 100.0 * float(np.mean(digits == np.asarray(labels)))


def test_photos_of_digits_on_paper_are_read(predictor, mnist_test_digits, tmp_path):
  paths, labels = photo_digits.write_photos(tmp_path, *mnist_test_digits)
  assert accuracy(predictor, paths, labels) >= 95.0


@pytest.mark.parametrize("name", ["png_28x28", "inverted_jpeg_280x280"])
def test_clean_image_files_are_read(predictor, mnist_test_digits, tmp_path, name):
  images, labels = mnist_test_digits
  paths = []
  for i, image in enumerate(images):
    if name == "png_28x28":
      path, picture = tmp_path / f"{i}.png", Image.fromarray(image)
    else:
      path = tmp_path / f"{i}.jpg"
      picture = Image.fromarray(255 - image).resize((280, 280), Image.Resampling.BICUBIC)
    picture.save(path)
    paths.append(str(path))
  assert accuracy(predictor, paths, labels) >= 97.0


def test_digits_drawn_on_the_demo_pad_are_read(predictor, mnist_test_digits):
  """MNIST test digits redrawn as the demo's pad delivers a hand drawing (thin strokes
  retraced with its brush), read through the demo's own steps."""
  images, labels = mnist_test_digits
  page_demo = demo.Demo(predictor)
  digits = []
  for image in images:
    answer = page_demo.answer([demo.read_drawing(demo_latency.drawn_like(image))], 0)
    digits.append(demo_latency.digit_read(answer))
  assert 100.0 * float(np.mean(np.asarray(digits) == labels)) >= 95.0
