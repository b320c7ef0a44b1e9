"""How well `python -m adder_jax.predict` reads real MNIST digits saved as image files.

  python -m experiments.predict_on_image_files --workdir /tmp/wd --mnist_dir DIR

Saves a fixed random sample of MNIST test images as 28x28 PNG files, the same images
inverted (black on white) and resized to 280x280 as JPEG files, and photo-like JPEGs of
them (see photo_digits.py), runs the
predict command line on each set with a random number 0-9 per image, and prints the
digit accuracy, the sum accuracy and how often both are right. The test images come
from the raw IDX files, independently of the tfds pipeline that training reads.
"""

import gzip
import json
import os
import pathlib
import subprocess
import sys
import tempfile

from absl import flags
import numpy as np
from PIL import Image

from adder_jax import cli
from experiments import photo_digits

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("workdir", None, "Training workdir whose model predicts.", required=True)
  flags.DEFINE_string("mnist_dir", None,
                      "Folder with t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz.",
                      required=True)
  flags.DEFINE_integer("count", 200, "How many test images to save and predict.")
  flags.DEFINE_integer("seed", 0, "Seeds the choice of images and their numbers.")
  flags.DEFINE_string("out_dir", None, "Where to save the image files (default: a temporary folder).")


def read_idx(path, header_bytes):
  with gzip.open(path) as f:
    return np.frombuffer(f.read(), np.uint8, offset=header_bytes)


def save_sets(images, labels, out_dir):
  """Writes the three sets of files; returns {set name: [paths]}."""
  photos, _ = photo_digits.write_photos(pathlib.Path(out_dir), images, labels,
                                        rendered_per_digit=0)
  sets = {"png_28x28": [], "inverted_jpeg_280x280": [], "photo_like_jpeg_400x400": photos}
  for i, image in enumerate(images):
    path = os.path.join(out_dir, f"{i:03d}.png")
    Image.fromarray(image).save(path)
    sets["png_28x28"].append(path)
    path = os.path.join(out_dir, f"{i:03d}_inverted.jpg")
    Image.fromarray(255 - image).resize((280, 280), Image.Resampling.BICUBIC).save(path)
    sets["inverted_jpeg_280x280"].append(path)
  return sets


def predict(workdir, paths, numbers):
  args = [sys.executable, "-m", "adder_jax.predict", "--workdir", workdir, "--json"]
  for path, number in zip(paths, numbers):
    args += ["--image", path, "--number", str(number)]
  result = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
  try:  # Exit status 1 with a JSON list: some files could not be read.
    return json.loads(result.stdout)
  except ValueError:
    sys.exit(f"predict failed ({result.returncode}):\n{result.stderr}")


def main(argv):
  del argv
  images = read_idx(os.path.join(FLAGS.mnist_dir, "t10k-images-idx3-ubyte.gz"), 16)
  images = images.reshape(-1, 28, 28)
  labels = read_idx(os.path.join(FLAGS.mnist_dir, "t10k-labels-idx1-ubyte.gz"), 8)
  rng = np.random.default_rng(FLAGS.seed)
  chosen = rng.choice(len(images), FLAGS.count, replace=False)
  numbers = rng.integers(0, 10, FLAGS.count)
  out_dir = FLAGS.out_dir or tempfile.mkdtemp(prefix="predict_on_image_files_")
  os.makedirs(out_dir, exist_ok=True)
  sets = save_sets(images[chosen], labels[chosen], out_dir)
  print(f"{FLAGS.count} MNIST test images (seed {FLAGS.seed}) saved in {out_dir}")
  for name, paths in sets.items():
    predictions = predict(FLAGS.workdir, paths, numbers)
    # An unreadable file (no digit, -1) counts as read wrong.
    digits = np.array([-1 if p["error"] else p["digit"] for p in predictions])
    sums = np.array([-1 if p["error"] else p["sum"] for p in predictions])
    digit_right = digits == labels[chosen]
    sum_right = sums == labels[chosen] + numbers
    wrong = [os.path.basename(path) for path, right in zip(paths, digit_right) if not right]
    print(f"{name:24s} digit {100 * digit_right.mean():5.1f}%  sum {100 * sum_right.mean():5.1f}%"
          f"  both {100 * (digit_right & sum_right).mean():5.1f}%"
          f"  (wrong digits: {', '.join(wrong) or 'none'})")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
