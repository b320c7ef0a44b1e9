"""Command line: python -m adder_jax.main --config configs/default.py --workdir DIR.

On a cluster every process runs the same command with --distributed (settings read from
SLURM, Open MPI, Kubernetes or Cloud TPU), or with --coordinator_address,
--num_processes and --process_id.
"""

import sys

from absl import flags
from absl import logging
from ml_collections import config_flags

from adder_jax import cli
from adder_jax import interrupts
from adder_jax import runtime
from adder_jax import train

# The shell's convention for a process stopped by SIGINT (128 + 2).
_EXIT_INTERRUPTED = 130

FLAGS = flags.FLAGS


def define_flags():
  """The command line's flags, defined only when this module runs as the program, so that
  the scripts can be imported together."""
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and TensorBoard events.")
  config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
  flags.mark_flags_as_required(["config", "workdir"])
  flags.DEFINE_bool("distributed", False, "Join a multi-process run with jax.distributed, "
                    "detecting the coordinator, process count and process id from SLURM, Open MPI, "
                    "Kubernetes or Cloud TPU.")
  flags.DEFINE_string("coordinator_address", None,
                      "HOST:PORT where process 0 serves the coordinator (implies --distributed).")
  flags.DEFINE_integer("num_processes", None, "Processes in the run (implies --distributed).",
                       lower_bound=1)
  flags.DEFINE_integer("process_id", None,
                       "This process's index, 0 .. num_processes - 1 (implies --distributed).",
                       lower_bound=0)


def main(argv):
  del argv  # cli.run refuses positional arguments.
  cli.quiet_library_logs()
  try:
    with cli.exit_on_user_error():
      config = FLAGS.config
      train.check_config(config)
      runtime.setup([config.batch_size, config.eval_batch_size], distributed_settings={
          "enabled": FLAGS.distributed, "coordinator_address": FLAGS.coordinator_address,
          "num_processes": FLAGS.num_processes, "process_id": FLAGS.process_id})
      train.train_and_evaluate(config, FLAGS.workdir)
  except interrupts.TrainingInterrupted as e:
    logging.flush()
    print(e, file=sys.stderr)
    sys.exit(_EXIT_INTERRUPTED)
  except KeyboardInterrupt:
    # Outside the training loop, or a second Ctrl-C: nothing more is saved.
    logging.flush()
    print("interrupted: stopped at once; the checkpoints saved so far are kept, rerun the "
          "same command to resume.", file=sys.stderr)
    sys.exit(_EXIT_INTERRUPTED)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
