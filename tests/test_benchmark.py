"""The benchmark script's summary of repeated runs."""

import pytest

from adder_jax.errors import UserError
from benchmarks import benchmark


def test_median_of_runs_takes_each_timing_median_and_keeps_every_run():
  runs = [{"images_per_second": 900.0, "time_to_target_s": 30.0, "peer_images_per_second": 800.0,
           "final": {"test_sum_accuracy": 99.3}},
          {"images_per_second": 1000.0, "time_to_target_s": None, "peer_images_per_second": 700.0,
           "final": {"test_sum_accuracy": 99.3}},
          {"images_per_second": 950.0, "time_to_target_s": 20.0, "peer_images_per_second": 850.0,
           "final": {"test_sum_accuracy": 99.3}}]
  results = benchmark.median_of_runs(runs)
  assert results["images_per_second"] == 950.0
  assert results["peer_images_per_second"] == 800.0
  assert results["time_to_target_s"] == 30.0  # The run that never reached it is the slowest.
  assert results["final"] == {"test_sum_accuracy": 99.3}
  assert [run["images_per_second"] for run in results["runs"]] == [900.0, 1000.0, 950.0]


def test_median_of_two_runs_is_their_mean_and_none_when_one_missed_the_target():
  runs = [{"images_per_second": 900.0, "time_to_target_s": 25.0},
          {"images_per_second": 1000.0, "time_to_target_s": None}]
  results = benchmark.median_of_runs(runs)
  assert results["images_per_second"] == 950.0
  assert results["time_to_target_s"] is None


def test_one_run_is_its_own_result():
  run = {"images_per_second": 900.0, "time_to_target_s": 12.5}
  assert benchmark.median_of_runs([run]) == run


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
