"""The PyTorch peer (benchmarks/torch_reference.py) and the benchmark's side-by-side run,
on a few hundred synthetic digits. Needs `pip install -e ".[bench]"`."""

import json

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="the PyTorch peer needs torch: pip install -e \".[bench]\"")

from adder_jax import mnist  # pylint: disable=wrong-import-position
from adder_jax import pairing  # pylint: disable=wrong-import-position
from benchmarks import benchmark  # pylint: disable=wrong-import-position
from benchmarks import torch_reference  # pylint: disable=wrong-import-position


def synthetic_split(count, seed):
  """Digits a small network learns in a few steps: digit d is a bright bar at row 2d + 4."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, count).astype(np.int32)
  images = rng.integers(0, 40, (count, 28, 28)).astype(np.uint8)
  for image, label in zip(images, labels):
    image[2 * label + 4: 2 * label + 6, 4:24] = 255
  return mnist.Split(images=images, labels=labels)


def test_reference_net_is_the_classic_network():
  model = torch_reference.ReferenceNet()
  assert sum(p.numel() for p in model.parameters()) == 220_125
  digit_logits, sum_logits = model(torch.zeros(4, 1, 28, 28), torch.zeros(4, 10))
  assert digit_logits.shape == (4, 10) and sum_logits.shape == (4, 19)


def test_training_numbers_are_fresh_and_test_numbers_fixed():
  split = synthetic_split(8, seed=0)
  torch.manual_seed(0)
  training = torch_reference.ImagePlusNumber(split.images, split.labels)
  numbers = {int(training[3][1].argmax()) for _ in range(50)}
  assert len(numbers) > 5  # A fresh number each time the image is read.
  image, one_hot, digit, total = training[3]
  assert int(total) == int(digit) + int(one_hot.argmax())
  fixed = pairing.test_numbers(8)
  testing = torch_reference.ImagePlusNumber(split.images, split.labels, fixed)
  assert [int(testing[i][1].argmax()) for i in range(8)] == fixed.tolist()
  assert [int(testing[i][3]) for i in range(8)] == (split.labels + fixed).tolist()


@pytest.mark.slow
def test_peer_learns_and_reports_every_epoch():
  records = []
  history = torch_reference.train_and_evaluate(
      synthetic_split(512, seed=1), synthetic_split(200, seed=2), epochs=3, batch_size=32,
      log=records.append)
  assert records == history
  assert [e["epoch"] for e in history] == [1, 2, 3]
  assert history[-1]["cumulative_train_seconds"] == pytest.approx(
      sum(e["train_seconds"] for e in history), abs=0.01)
  assert history[-1]["test_digit_accuracy"] >= 90.0
  losses = [e["train_loss"] for e in history]
  assert losses == sorted(losses, reverse=True) and losses[-1] < 0.75 * losses[0]


@pytest.mark.slow
def test_peer_is_deterministic_for_a_seed():
  runs = [torch_reference.train_and_evaluate(
      synthetic_split(128, seed=1), synthetic_split(50, seed=2), epochs=1, batch_size=32,
      log=lambda record: None) for _ in range(2)]
  assert [(e["test_digit_accuracy"], e["test_sum_accuracy"]) for e in runs[0]] == [
      (e["test_digit_accuracy"], e["test_sum_accuracy"]) for e in runs[1]]


@pytest.mark.slow
def test_benchmark_runs_the_peer_as_often_tested_as_adder_jax():
  data = {"train": synthetic_split(512, seed=1), "test": synthetic_split(100, seed=2)}
  # 2 steps of 256 an epoch, 2 evaluations an epoch.
  peer = benchmark.train_peer_seed(data, seed=1, epochs=2, evals_per_epoch=2)
  evaluations = peer["evaluations"]
  assert [e["step"] for e in evaluations] == [1, 2, 3, 4]
  assert [e["epochs"] for e in evaluations] == [0.5, 1.0, 1.5, 2.0]
  assert peer["seed"] == 1 and peer["final"] == evaluations[-1]
  assert peer["train_seconds"] == evaluations[-1]["train_seconds"]
  json.dumps(peer)  # The results file takes it as it is.


def test_peer_record():
  history = [{"epoch": 1, "step": 1, "epochs": 0.5, "train_seconds": 10.0,
              "cumulative_train_seconds": 10.0, "images_per_second": 50.0,
              "test_digit_accuracy": 91.0, "test_sum_accuracy": 90.0},
             {"epoch": 1, "step": 2, "epochs": 1.0, "train_seconds": 4.0,
              "cumulative_train_seconds": 14.0, "images_per_second": 100.0,
              "test_digit_accuracy": 99.3, "test_sum_accuracy": 99.25},
             {"epoch": 2, "step": 3, "epochs": 1.5, "train_seconds": 6.0,
              "cumulative_train_seconds": 20.0, "images_per_second": 200.0,
              "test_digit_accuracy": 99.2, "test_sum_accuracy": 99.1}]
  record = benchmark.peer_record(0, history)
  # The final is the last evaluation, not the best one.
  assert record["final"]["test_sum_accuracy"] == 99.1
  assert [e["train_seconds"] for e in record["evaluations"]] == [10.0, 14.0, 20.0]
  # The first interval (warm-up) is left out of the images/s: (400 + 1200) / 10 s.
  assert record["images_per_second"] == 160.0
  assert record["train_seconds"] == 20.0
