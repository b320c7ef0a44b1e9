"""Image files in, and the network's inputs out, for `python -m adder_jax.predict` and
`inference.Predictor.predict_files`: file lists, reading each file as MNIST was
preprocessed (one unreadable file does not stop the others), and where to save each
preprocessed 28x28 input."""

import os

from PIL import Image

from adder_jax import preprocess
from adder_jax.errors import UserError, first_line


def path_list(paths):
  """`paths` (one path, or a sequence of them) as a non-empty list of str."""
  if isinstance(paths, (str, os.PathLike)):
    paths = [paths]
  paths = [os.fspath(path) for path in paths]
  if not paths:
    raise UserError("no image given.")
  return paths


def read_digits(paths):
  """Per path, its image file preprocessed as MNIST was (uint8 [28, 28]), or the
  `UserError` that says why it cannot be read."""
  digits = []
  for path in paths:
    try:
      digits.append(preprocess.load_digit(path))
    except UserError as e:
      digits.append(e)
  return digits


def preprocessed_paths(paths, directory):
  """Where to save the preprocessed 28x28 network input of each image in `paths`:
  DIRECTORY/INDEX_NAME.png, the index keeping apart images of the same name. Makes
  `directory`.

  Raises:
    UserError: one of those files is an input image, or `directory` cannot be made.
  """
  width = len(str(len(paths) - 1))
  outputs = [os.path.join(directory, f"{i:0{width}d}_{_stem(path)}.png")
             for i, path in enumerate(paths)]
  for output in outputs:
    if os.path.exists(output) and any(_same_file(output, path) for path in paths):
      raise UserError(f"saving the preprocessed images in {directory} would overwrite "
                      f"the input image {output}; choose another directory.")
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot make the directory {directory} for the preprocessed "
                    f"images ({e.strerror}).") from e
  return outputs


def _same_file(a, b):
  try:
    return os.path.samefile(a, b)
  except OSError:
    return False


def save_png(digit, path):
  try:
    Image.fromarray(digit).save(path)
  except OSError as e:
    raise UserError(f"cannot write the preprocessed image {path} ({first_line(e)}).") from e


def _stem(path):
  return os.path.splitext(os.path.basename(os.path.normpath(path)))[0] or "image"
