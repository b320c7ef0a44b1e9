"""Command line: evaluate the latest checkpoint of a workdir on the MNIST test set.

  python -m adder_jax.evaluate --workdir DIR

writes DIR/evaluation.json (accuracies, sum accuracy per (digit, number) pair, digit
confusion matrix, worst mistakes) and the plots of evaluation_report.py, and prints a
summary. It reads the test split alone. In Python, use `evaluate_workdir`.
"""

import os

from absl import flags

from adder_jax import cli
from adder_jax import config_checks
from adder_jax import evaluation
from adder_jax import evaluation_report
from adder_jax import inference
from adder_jax import mnist
from adder_jax import models
from adder_jax import runtime
from adder_jax import sharding
from adder_jax import tasks


def define_flags(flag_values=flags.FLAGS):
  flags.DEFINE_string("workdir", None, "Training workdir whose latest checkpoint to evaluate.",
                      flag_values=flag_values)
  flags.DEFINE_string("data_dir", None, "Where tfds keeps MNIST (default: the data_dir in "
                      "the workdir's config.json).", flag_values=flag_values)
  flags.mark_flag_as_required("workdir", flag_values=flag_values)


def read_config(workdir):
  """The checked config of the run in `workdir`, which has a checkpoint and a task that
  evaluate reads."""
  inference.check_has_checkpoint(workdir)
  config = inference.load_config(workdir)
  tasks.check_use(config, workdir, ("evaluate",), "evaluate")
  return config


def evaluate_workdir(workdir, data_dir=None):
  """Evaluates the latest checkpoint in `workdir`; returns evaluation_report's report."""
  workdir = os.path.abspath(workdir)
  config = read_config(workdir)
  if data_dir:
    config.data.data_dir = data_dir
  mesh = sharding.create_mesh()
  config_checks.check_batches_split(config, mesh.size, names=("eval_batch_size",))
  task = tasks.create_task(config)
  # The checkpoint is read before MNIST, so that an unfitting one fails fast.
  step, variables = inference.restore_variables(workdir, task, mesh)
  test_split = mnist.load(config.data, splits=("test",))["test"]
  predictions = evaluation.TestPredictor(task, task.create_model(), test_split, mesh)(
      *models.evaluation_variables(variables))
  return evaluation_report.write(workdir, step, task, test_split, predictions)


def main(argv, flag_values=flags.FLAGS):
  del argv  # cli.run refuses positional arguments.
  cli.quiet_library_logs()
  with cli.exit_on_user_error():
    workdir = os.path.abspath(flag_values.workdir)
    runtime.setup([read_config(workdir).eval_batch_size])
    report = evaluate_workdir(workdir, flag_values.data_dir)
  print(evaluation_report.summary(report))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
