"""How many CPU devices a run splits its batches over, and the flag for deterministic sums."""

import os
from unittest import mock

import jax
import pytest

from adder_jax import sharding


@pytest.mark.parametrize("cores, batch_sizes, expected", [
    (2, [128, 1000], 2), (6, [128, 1000], 4), (12, [100, 1000], 10), (3, [7], 1)])
def test_one_cpu_device_per_core_that_divides_the_batches(cores, batch_sizes, expected):
  env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
  with mock.patch.dict(os.environ, env, clear=True), \
       mock.patch.object(os, "sched_getaffinity", return_value=set(range(cores)), create=True), \
       mock.patch.object(jax.config, "update") as update:
    sharding.use_cpu_cores(batch_sizes)
  update.assert_called_once_with("jax_num_cpu_devices", expected)


@pytest.mark.parametrize("env", [{"JAX_NUM_CPU_DEVICES": "1"},
                                 {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}])
def test_a_device_count_set_by_the_user_stays(env):
  with mock.patch.dict(os.environ, env), mock.patch.object(jax.config, "update") as update:
    sharding.use_cpu_cores([128])
  update.assert_not_called()


def test_cpu_sums_are_kept_out_of_the_nondeterministic_library():
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
  with mock.patch.dict(os.environ, env, clear=True):
    sharding.keep_cpu_sums_deterministic()
    flags = os.environ["XLA_FLAGS"].split()
  assert flags[0] == "--xla_force_host_platform_device_count=8"
  assert sharding.DETERMINISTIC_CPU_SUMS_FLAG in flags
