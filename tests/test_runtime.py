"""The process setup of every entry point: how many CPU devices a run splits its batches
over, the flag for deterministic sums, and joining a multi-process run."""

import os
from unittest import mock

import jax
import pytest

from adder_jax import distributed
from adder_jax import runtime


@pytest.mark.parametrize("cores, batch_sizes, expected", [
    (2, [128, 1000], 2), (6, [128, 1000], 4), (12, [100, 1000], 10), (3, [7], 1)])
def test_one_cpu_device_per_core_that_divides_the_batches(cores, batch_sizes, expected):
  env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
  with mock.patch.dict(os.environ, env, clear=True), \
       mock.patch.object(os, "sched_getaffinity", return_value=set(range(cores)), create=True), \
       mock.patch.object(jax.config, "update") as update:
    runtime.use_cpu_cores(batch_sizes)
  update.assert_called_once_with("jax_num_cpu_devices", expected)


@pytest.mark.parametrize("env", [{"JAX_NUM_CPU_DEVICES": "1"},
                                 {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}])
def test_a_device_count_set_by_the_user_stays(env):
  with mock.patch.dict(os.environ, env), mock.patch.object(jax.config, "update") as update:
    runtime.use_cpu_cores([128])
  update.assert_not_called()


def test_cpu_sums_are_kept_out_of_the_nondeterministic_library():
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
  with mock.patch.dict(os.environ, env, clear=True):
    runtime.keep_cpu_sums_deterministic()
    flags = os.environ["XLA_FLAGS"].split()
  assert flags[0] == "--xla_force_host_platform_device_count=8"
  assert runtime.DETERMINISTIC_CPU_SUMS_FLAG in flags


def test_a_device_count_cannot_change_once_jax_has_started():
  jax.devices()
  env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
  with mock.patch.dict(os.environ, env, clear=True):
    runtime.use_cpu_cores([128])  # A notebook or a test: JAX's devices stay as they are.
  assert jax.device_count() >= 1


@pytest.mark.parametrize("settings, joins", [
    (None, False), ({"enabled": True}, True), ({"num_processes": 2, "process_id": 0}, True),
    ({"enabled": False, "coordinator_address": None}, False)])
def test_setup_joins_a_multi_process_run_or_uses_the_cores(settings, joins):
  with mock.patch.object(distributed, "initialize") as initialize, \
       mock.patch.object(runtime, "use_cpu_cores") as use_cpu_cores, \
       mock.patch.object(runtime, "keep_cpu_sums_deterministic") as keep_sums:
    runtime.setup([128, 1000], settings)
  keep_sums.assert_called_once_with()
  if joins:
    initialize.assert_called_once_with(**settings)
    use_cpu_cores.assert_not_called()
  else:
    initialize.assert_not_called()
    use_cpu_cores.assert_called_once_with([128, 1000])
