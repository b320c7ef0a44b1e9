"""MNIST from tensorflow-datasets into numpy: `load(config.data)` gives {split: Split}.

The data is prepared once as ArrayRecord files (from the network, or offline from the
four IDX files in `manual_dir`) and read back with `tfds` data sources, which need no
TensorFlow. Preparing checks first that the download server answers, so that a
computer with no network gets one line instead of minutes of tfds's retries.
"""

import contextlib
import dataclasses
import io
import os
import socket
import sys
import tempfile
import urllib.parse
import urllib.request

from absl import logging
import numpy as np
import tensorflow_datasets as tfds
import tqdm

from adder_jax.constants import IMAGE_SHAPE
from adder_jax.errors import UserError, first_line

# The files tfds's MNIST builder reads from a manual dir.
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

# The validation images are drawn from this seed whatever `config.seed` is, so runs
# with the same `data.validation_size` are compared on the same images.
VALIDATION_SEED = 1


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of MNIST: uint8 images (n, 28, 28) and int32 digit labels (n,)."""

  images: np.ndarray
  labels: np.ndarray

  def __len__(self):
    return len(self.labels)


def _builder(data_config):
  data_dir = os.path.expanduser(data_config.data_dir) if data_config.data_dir else None
  return tfds.builder(data_config.dataset, data_dir=data_dir, file_format="array_record")


def prepare(data_config):
  """Makes sure the dataset is prepared in `data_config.data_dir` and returns its builder.

  Preparing needs TensorFlow's file I/O; it is imported (by tfds) only on this path.
  """
  builder = _builder(data_config)
  if builder.is_prepared():
    return builder
  manual_dir = data_config.manual_dir
  if manual_dir:
    manual_dir = os.path.expanduser(manual_dir)
    if not os.path.isdir(manual_dir):
      raise UserError(f"data.manual_dir {manual_dir!r} is not a directory.")
    missing = [f for f in MNIST_FILES if not os.path.exists(os.path.join(manual_dir, f))]
    if missing:
      # Without this check tfds falls back to downloading, retrying for minutes.
      raise UserError(f"data.manual_dir {manual_dir!r} lacks {', '.join(missing)}.")
  source = (f"from {manual_dir}" if manual_dir else
            "by downloading it; with no network, pass --config.data.manual_dir=DIR")
  print(f"preparing {data_config.dataset} in {builder.data_dir} (once), {source}", flush=True)
  try:
    if not manual_dir:
      # tfds retries a failed download for minutes; an unreachable server fails here.
      _check_reachable(getattr(builder, "URL", None))
    with _quiet_preparation(builder):
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  except Exception as e:  # tfds raises many unrelated types for a failed download.
    where = f"from {manual_dir}" if manual_dir else "by downloading it"
    raise UserError(
        f"could not prepare {data_config.dataset} in {builder.data_dir} {where} "
        f"({first_line(e)}); without a network, pass --config.data.manual_dir=DIR, a folder "
        "with the four MNIST IDX .gz files.") from e
  return builder


# Seconds of preparation before its progress bar appears.
PROGRESS_DELAY_S = 3.0


@contextlib.contextmanager
def _quiet_preparation(builder):
  """Within it, tfds and TensorFlow write nothing to the terminal, and a progress bar
  of the examples written appears if the preparation takes over PROGRESS_DELAY_S.

  tfds prints to stdout and draws its own progress bars; TensorFlow, which it imports
  to prepare the data, writes its startup lines from C++ straight to file descriptor 2.
  With absl's verbosity at INFO or more (`--verbosity=0`) all of it is shown instead.
  """
  if logging.level_info():
    yield
    return
  sys.stderr.flush()
  terminal = os.fdopen(os.dup(2), "w")
  saved_stderr = os.dup(2)
  generate = getattr(builder, "_generate_examples", None)  # Each builder's example source.
  with tempfile.TemporaryFile() as hidden, terminal, contextlib.redirect_stdout(io.StringIO()), \
      tqdm.tqdm(desc="examples written", unit=" examples", file=terminal, delay=PROGRESS_DELAY_S,
                dynamic_ncols=True) as bar:
    def counted(*args, **kwargs):
      for example in generate(*args, **kwargs):
        bar.update(1)
        yield example

    if generate is not None:
      builder._generate_examples = counted  # pylint: disable=protected-access
    tfds.display_progress_bar(False)
    os.dup2(hidden.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved_stderr, 2)
      os.close(saved_stderr)
      tfds.display_progress_bar(True)
      if generate is not None:
        del builder._generate_examples  # pylint: disable=protected-access


# Seconds to wait for the download server to answer a connection.
CONNECT_TIMEOUT_S = 5.0


def _check_reachable(url):
  """Raises OSError unless a TCP connection to `url`'s server opens within
  CONNECT_TIMEOUT_S. Skipped behind a proxy, which tfds's downloads go through."""
  if not url:
    return
  parts = urllib.parse.urlsplit(url)
  if not parts.hostname or urllib.request.getproxies().get(parts.scheme):
    return
  port = parts.port or (443 if parts.scheme == "https" else 80)
  try:
    socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
  except OSError as e:
    raise OSError(f"cannot reach {parts.hostname}: {e.strerror or e}") from e


SPLITS = ("train", "test")


def load(data_config, splits=SPLITS):
  """Returns {split: Split} read into numpy, for each of `splits`.

  With a positive `data_config.validation_size` and 'train' among `splits`, that many
  training images move to a 'validation' split (see `split_validation`).
  """
  builder = prepare(data_config)
  data = {name: _read_split(builder, name) for name in splits}
  validation_size = data_config.validation_size
  if "train" in data and validation_size:
    data["train"], data["validation"] = split_validation(data["train"], validation_size)
  return data


def split_validation(train, size):
  """(train, validation): `size` images drawn from `train` by VALIDATION_SEED, and the
  rest, each in the order of `train`."""
  if not 0 < size < len(train):
    raise UserError(f"config.data.validation_size={size} must be below the "
                    f"{len(train)} training images.")
  order = np.random.default_rng(VALIDATION_SEED).permutation(len(train))
  held, kept = np.sort(order[:size]), np.sort(order[size:])
  return (Split(train.images[kept], train.labels[kept]),
          Split(train.images[held], train.labels[held]))


def _read_split(builder, split):
  source = builder.as_data_source(split=split)
  examples = source.__getitems__(range(len(source)))
  images = np.stack([ex["image"] for ex in examples]).reshape(-1, *IMAGE_SHAPE)
  labels = np.asarray([ex["label"] for ex in examples], np.int32)
  return Split(images=images.astype(np.uint8), labels=labels)
