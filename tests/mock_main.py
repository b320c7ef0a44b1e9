"""`python -m adder_jax.main` on mock MNIST, for tests that run the command line.

    python -m tests.mock_main --mock_num_examples=N [--mock_kill_at=EVENT:K] FLAGS...

takes exactly the flags of adder_jax.main (plus the two --mock_ flags) and runs the same
`main`, inside `conftest.mock_mnist`, which a separate process cannot enter otherwise.
With --mock_kill_at the process kills itself with SIGKILL at the K-th EVENT:
  chunk    after a chunk of train steps (in the middle of an epoch);
  save     while a checkpoint is being written (orbax writes it in the background);
  metrics  with metrics.jsonl's new version written beside it, before it replaces it;
or, for EVENT ctrl_c, sends itself SIGINT (as Ctrl-C does) after the K-th chunk.
"""

import os
import signal
from unittest import mock

from absl import flags

from adder_jax import checkpointing
from adder_jax import cli
from adder_jax import main as adder_main
from adder_jax import reporting
from adder_jax import train
from tests import conftest

_MOCK_NUM_EXAMPLES = flags.DEFINE_integer(
    "mock_num_examples", 256, "Examples in each mock MNIST split.", lower_bound=1)
_MOCK_KILL_AT = flags.DEFINE_string(
    "mock_kill_at", None, "EVENT:K, EVENT one of chunk, save, metrics: SIGKILL this process "
    "at the K-th EVENT; ctrl_c: SIGINT it after the K-th chunk.")


def _die():
  os.kill(os.getpid(), signal.SIGKILL)


def _press_ctrl_c():
  os.kill(os.getpid(), signal.SIGINT)


def _kill_after(function, k, kill=_die):
  """`function`, changed to `kill` the process after its k-th call."""
  calls = []

  def wrapped(*args, **kwargs):
    result = function(*args, **kwargs)
    calls.append(1)
    if len(calls) == k:
      kill()
    return result
  return wrapped


def _kill_before_replacing(rewrite, k):
  """MetricWriter._rewrite, changed to kill the process at its k-th call, once the new
  file is written and before it replaces the old one."""
  calls = []

  def wrapped(self, records):
    calls.append(1)
    if len(calls) != k:
      return rewrite(self, records)
    with mock.patch.object(os, "replace", lambda *args: _die()):
      return rewrite(self, records)
  return wrapped


def _fault(spec):
  """A patch that makes the process die at `spec` ('EVENT:K')."""
  event, k = spec.split(":")
  k = int(k)
  if event in ("chunk", "ctrl_c"):
    kill = _die if event == "chunk" else _press_ctrl_c
    return mock.patch.object(train.Trainer, "run_chunk",
                             _kill_after(train.Trainer.run_chunk, k, kill))
  if event == "save":
    return mock.patch.object(checkpointing.Checkpointer, "save",
                             _kill_after(checkpointing.Checkpointer.save, k))
  if event == "metrics":
    return mock.patch.object(reporting.MetricWriter, "_rewrite",
                             _kill_before_replacing(reporting.MetricWriter._rewrite, k))
  raise ValueError(f"unknown --mock_kill_at event {event!r}")


def main(argv):
  with conftest.mock_mnist(_MOCK_NUM_EXAMPLES.value):
    if _MOCK_KILL_AT.value:
      with _fault(_MOCK_KILL_AT.value):
        adder_main.main(argv)
    else:
      adder_main.main(argv)


if __name__ == "__main__":
  adder_main.define_flags()
  cli.run(main)
