"""The benchmark script: the speedrun rule's figures over seeds, its run on mock MNIST,
and its FLOPs counter against a hand count."""

import json

import numpy as np
import pytest

from adder_jax import mnist
from adder_jax.errors import UserError
from benchmarks import benchmark
from benchmarks import machine
from benchmarks import roofline
from configs import default
from tests.conftest import MOCK_EXAMPLES
from tests.conftest import mock_mnist

ROOFLINE = ("train_flops_per_image", "achieved_gflops", "matmul_peak_gflops", "fraction_of_peak")


def run(seed, finals, curve=()):
  """A run record with the final test accuracies `finals` (digit, sum) and earlier
  evaluations' test sum accuracies `curve`."""
  evaluations = [{"test_sum_accuracy": value} for value in curve]
  final = {"test_digit_accuracy": finals[0], "test_sum_accuracy": finals[1]}
  return {"seed": seed, "train_seconds": 10.0 + seed, "images_per_second": 1000.0 * (seed + 1),
          "compile_s": 5.0, "final": final, "evaluations": evaluations + [final]}


def test_summary_is_over_the_final_accuracies_of_every_seed():
  runs = [run(0, (99.4, 99.3)), run(1, (99.2, 99.1)), run(2, (99.6, 99.5))]
  summary = benchmark.summarise(runs, target=99.3)
  assert summary["seeds"] == [0, 1, 2]
  assert summary["test_sum_accuracy"] == {"mean": 99.3, "std": 0.2, "worst": 99.1}
  assert summary["test_digit_accuracy"] == {"mean": 99.4, "std": 0.2, "worst": 99.2}
  assert summary["median_train_seconds"] == 11.0
  assert summary["median_images_per_second"] == 2000.0
  assert summary["median_compile_s"] == 5.0
  assert summary["reaches_target"]


def test_a_schedule_that_touches_the_target_only_before_its_end_does_not_reach_it():
  runs = [run(seed, (99.3, 99.25), curve=(98.0, 99.45, 99.3)) for seed in range(5)]
  summary = benchmark.summarise(runs, target=99.3)
  assert summary["test_sum_accuracy"]["mean"] == 99.25
  assert not summary["reaches_target"]


def test_one_seed_has_no_spread():
  summary = benchmark.summarise([run(0, (99.0, 98.5))])
  assert summary["test_sum_accuracy"] == {"mean": 98.5, "std": 0.0, "worst": 98.5}
  assert "reaches_target" not in summary


def test_comparison_is_at_the_peers_own_mean_final_accuracy():
  peer = benchmark.summarise([run(0, (99.0, 98.9)), run(1, (99.0, 98.9))])
  peer["median_train_seconds"] = 400.0
  ours = benchmark.summarise([run(0, (99.3, 99.2))])
  assert benchmark.compare(ours, peer) == {"at_test_sum_accuracy": 98.9,
                                           "adder_jax_reaches_it": True, "speedup": 40.0}
  slower = benchmark.summarise([run(0, (98.9, 98.8))])
  assert benchmark.compare(slower, peer)["speedup"] is None


def test_seeds_on_mock_mnist_train_each_seed_on_its_fixed_schedule(smoke_config):
  with mock_mnist(MOCK_EXAMPLES):
    data = mnist.load(smoke_config.data)
  results = benchmark.run_all(smoke_config, data, seeds=2, target=50.0, evals_per_epoch=2)
  runs = results["runs"]
  assert [run["seed"] for run in runs] == [0, 1]
  # 6 steps an epoch, tested every 3 and at the schedule's end: that test is the final.
  assert [e["step"] for e in runs[0]["evaluations"]] == [3, 6, 9, 12]
  assert runs[0]["final"] == runs[0]["evaluations"][-1]
  assert runs[0]["final"] != runs[1]["final"]  # Each seed trains its own network.
  summary = results["adder_jax"]
  assert {k: v for k, v in summary.items() if k not in ROOFLINE} == benchmark.summarise(runs, 50.0)
  assert summary["achieved_gflops"] == pytest.approx(
      summary["train_flops_per_image"] * summary["median_images_per_second"] / 1e9, rel=0.01)
  json.dumps(results)  # The results file takes them as they are.
  figure = benchmark.plot({**results, "config_file": "configs/smoke.py",
                           "machine": machine.describe()}, "/dev/null")
  curves = [line for line in figure.axes[0].get_lines() if len(line.get_xdata()) > 2]
  assert [list(line.get_ydata()) for line in curves] == [
      [e["test_sum_accuracy"] for e in run["evaluations"]] for run in runs]


def test_recorded_command_hides_where_mnist_is_kept():
  argv = ["benchmark.py", "--config", "configs/fast.py", "--config.data.manual_dir=/home/u/mnist",
          "-config.data.data_dir", "/data/tfds", "--peer", "--output", "out.json"]
  assert benchmark.recorded_command(argv) == (
      "python -m benchmarks.benchmark --config configs/fast.py --config.data.manual_dir=DIR "
      "-config.data.data_dir DIR --peer --output out.json")


@pytest.mark.parametrize("path, message", [
    ("results.png", "must name a .json file"),
    ("no/such/folder/results.json", "does not exist"),
])
def test_output_that_cannot_be_written_is_refused(path, message):
  with pytest.raises(UserError, match=message):
    benchmark.check_output(path)


@pytest.mark.parametrize("change", [{"task": "two_images"}, {"data.holdout_pairs": "10"}])
def test_peer_is_compared_only_on_its_own_task(change):
  from configs import fast
  config = fast.get_config()
  for path, value in change.items():
    group, _, field = path.rpartition(".")
    setattr(config[group] if group else config, field, value)
  with pytest.raises(UserError, match="--peer trains the image \\+ number task"):
    benchmark.check_peer_task(config)
  benchmark.check_peer_task(fast.get_config())


def test_flops_counter_agrees_with_a_hand_count():
  # One 5x5 'SAME' convolution of 16 features (bias, ReLU), one dense layer to the 10
  # digit logits, the parameter-free exact sum head.
  config = default.get_config()
  config.model.update(conv_layers="16", kernel_size=5, batch_norm=False, dropout_rate=0.0,
                      dense_features=(), sum_head="exact")
  config.batch_size = 256
  rng = np.random.default_rng(0)
  data = {split: mnist.Split(images=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                             labels=rng.integers(0, 10, n).astype(np.int32))
          for split, n in (("train", 512), ("test", 100))}
  # Multiply-adds of the convolution per output channel: the taps that fall inside the
  # image ('SAME' padding's zeros are not arithmetic), 134 = 28 * 5 - (2 + 1) * 2 along
  # each axis. The convolution runs forwards and for its kernel's gradient (the image
  # needs none); the dense layer forwards and for both gradients. 2 FLOPs a multiply-add.
  conv = 2 * 16 * 134**2
  dense = 2 * 28 * 28 * 16 * 10
  hand_count = 2 * conv + 3 * dense
  assert roofline.train_flops_per_image(config, data) == pytest.approx(hand_count, rel=0.05)


def test_matmul_peak_is_measured():
  assert roofline.matmul_peak_gflops(size=256, repeats=2) > 0.1
