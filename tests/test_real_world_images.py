"""What a model trained on real MNIST does (slow tests): the first run that trains it,
and the digits it reads in image files.

They need the four MNIST IDX files, in the folder named by the environment variable
ADDER_JAX_MNIST_DIR. They train the smoke config on them (a first run: MNIST is prepared
in a new data_dir), unless ADDER_JAX_TRAINED_WORKDIR names a workdir already trained on
real MNIST for the image tests to read.
"""

import gzip
import os

import numpy as np
from PIL import Image
import pytest

from adder_jax import demo
from adder_jax import inference
from adder_jax import reporting
from benchmarks import demo_latency
from conftest import assert_only_progress_bars, environment
from experiments import photo_digits

pytestmark = pytest.mark.slow

COUNT = 300  # MNIST test digits per set.


def test_a_first_run_on_real_mnist_shows_only_its_own_lines(real_first_run):
  workdir, run = real_first_run
  lines = run.stdout.splitlines()
  mnist_dir = environment("ADDER_JAX_MNIST_DIR")
  assert lines[0] == (f"preparing mnist in {workdir.parent / 'tfds' / 'mnist' / '3.0.1'} "
                      f"(once), from {mnist_dir}")
  assert lines[1].startswith("epoch 1: train loss ")
  assert lines[2] == f"wrote in {workdir}:"
  assert len(lines) == 7, run.stdout
  assert_only_progress_bars(run.stderr)
  assert "examples written: 70000 examples" in run.stderr  # Preparing takes over 3 s.
  (record,) = reporting.read_metrics(str(workdir))
  assert record["test_digit_accuracy"] >= 90.0, record


@pytest.fixture(scope="module")
def predictor(real_mnist_workdir):
  return inference.Predictor(real_mnist_workdir)


@pytest.fixture(scope="module")
def mnist_test_digits():
  """A fixed sample of COUNT MNIST test images and their labels, read from the IDX files."""
  directory = environment("ADDER_JAX_MNIST_DIR")
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
