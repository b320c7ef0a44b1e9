"""Shared fixtures: mock MNIST (never the network) and small configs."""

import contextlib
import os
import sys
from unittest import mock

import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _getitems(record_keys, generator, serialized=False):
  return [mocking._getitem(None, key, generator, serialized=serialized) for key in record_keys]


@contextlib.contextmanager
def mock_mnist(num_examples):
  """`tfds.testing.mock_data` for MNIST: random images and labels, no files, no network.

  tfds 4.9.10's mock binds `__getitems__` without its `self` argument, so batch reads
  fail; the patch below supplies the same fake examples without it.
  """
  with mock.patch.object(mocking, "_getitems", _getitems), tfds.testing.mock_data(
      num_examples=num_examples):
    yield


@pytest.fixture
def smoke_config(tmp_path):
  """The smoke config shrunk for mock data: 2 epochs of a few steps."""
  from configs import smoke
  config = smoke.get_config()
  config.num_epochs = 2
  config.batch_size = 32
  config.eval_batch_size = 40
  config.steps_per_chunk = 3
  config.data.data_dir = str(tmp_path / "tfds")
  return config
