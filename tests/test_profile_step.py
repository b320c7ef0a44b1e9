"""The step profiler: own times of nested events, and a real chunk's profile read back."""

import pytest

from adder_jax import mnist
from adder_jax import train
from benchmarks import profile_step
from tests.conftest import MOCK_EXAMPLES
from tests.conftest import mock_mnist


def test_an_operations_own_time_leaves_out_the_operations_inside_it():
  # One thread: a loop of 100 ns holding two operations, then one more of those.
  loop = [(0, 100, "while"), (10, 30, "dot"), (50, 20, "fusion"), (200, 10, "dot")]
  other_thread = [(5, 50, "dot")]
  assert profile_step.own_times([loop, other_thread]) == {
      "while": (50, 1), "dot": (90, 3), "fusion": (20, 1)}


def test_layer_names_say_forward_or_backward():
  prefix = "jit(train_chunk)/while/body/closed_call/"
  assert profile_step.layer(prefix + "jvp(AdderNet)/digit_net/Conv_1/conv_general_dilated") == (
      "digit_net/Conv_1/conv_general_dilated")
  assert profile_step.layer(prefix + "transpose(jvp(AdderNet))/digit_net/Dense_0/dot_general") == (
      "backward: digit_net/Dense_0/dot_general")
  assert profile_step.layer("") == ""


@pytest.mark.slow
def test_a_chunk_profile_names_its_layers_and_adds_up(smoke_config):
  with mock_mnist(MOCK_EXAMPLES):
    data = mnist.load(smoke_config.data)
  trainer = train.Trainer(smoke_config, data)
  seconds, times, hlo_text = profile_step.profile(trainer, steps=2)
  assert seconds > 0
  summary = profile_step.summarise(times, profile_step.read_hlo(hlo_text), top=50)
  assert sum(summary["categories"].values()) == pytest.approx(1.0, abs=1e-3)
  assert summary["categories"]["convolutions and matmuls"] > 0.05
  layers = {row["layer"] for row in summary["top"]
            if row["category"] == "convolutions and matmuls"}
  # The trunk's three convolutions, forwards and in the gradient.
  for conv in ("Conv_0", "Conv_1", "Conv_2"):
    assert any(f"digit_net/{conv}" in name and not name.startswith("backward")
               for name in layers), (conv, layers)
  assert any(name.startswith("backward: digit_net/Conv_") for name in layers), layers
