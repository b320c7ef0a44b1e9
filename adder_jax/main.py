"""Command line: python -m adder_jax.main --config configs/default.py --workdir DIR.

On a cluster every process runs the same command with --distributed (settings read from
SLURM, Open MPI, Kubernetes or Cloud TPU), or with --coordinator_address,
--num_processes and --process_id.
"""

from absl import flags
from ml_collections import config_flags

from adder_jax import cli
from adder_jax import runtime
from adder_jax import train

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
  with cli.exit_on_interrupt(), cli.exit_on_user_error():
    config = FLAGS.config
    train.check_config(config)
    runtime.setup([config.batch_size, config.eval_batch_size], distributed_settings={
        "enabled": FLAGS.distributed, "coordinator_address": FLAGS.coordinator_address,
        "num_processes": FLAGS.num_processes, "process_id": FLAGS.process_id})
    train.train_and_evaluate(config, FLAGS.workdir)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
