"""Command line: evaluate the latest checkpoint of a workdir on the MNIST test set.

  python -m adder_jax.evaluate --workdir DIR

writes DIR/evaluation.json (accuracies, sum accuracy per (digit, number) pair, digit
confusion matrix, worst mistakes) and the plots of evaluation_report.py, and prints a
summary. In Python, use `evaluate_workdir`.
"""

import os

from absl import app
from absl import flags

from adder_jax import cli
from adder_jax import evaluation_report
from adder_jax import inference
from adder_jax import input_pipeline
from adder_jax import sharding
from adder_jax import train


def define_flags(flag_values=flags.FLAGS):
  flags.DEFINE_string("workdir", None, "Training workdir whose latest checkpoint to evaluate.",
                      flag_values=flag_values)
  flags.DEFINE_string("data_dir", None, "Where tfds keeps MNIST (default: the data_dir in "
                      "the workdir's config.json).", flag_values=flag_values)
  flags.mark_flag_as_required("workdir", flag_values=flag_values)


def evaluate_workdir(workdir, data_dir=None):
  """Evaluates the latest checkpoint in `workdir`; returns evaluation_report's report."""
  workdir = os.path.abspath(workdir)
  # The checkpoint is read before MNIST, so that a missing or unfitting one fails fast.
  inference.check_has_checkpoint(workdir)
  config = inference.load_config(workdir)
  if data_dir:
    config.data.data_dir = data_dir
  mesh = sharding.create_mesh()
  inference.check_image_plus_number(config, workdir)
  state = inference.restore_latest(workdir, config, mesh)
  data = input_pipeline.load(config.data)
  trainer = train.Trainer(config, data, mesh)
  return evaluation_report.write(workdir, trainer, state, data["test"].images,
                                 trainer.predictions(state))


def main(argv, flag_values=flags.FLAGS):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  cli.quiet_library_logs()
  with cli.exit_on_user_error():
    report = evaluate_workdir(flag_values.workdir, flag_values.data_dir)
  print(evaluation_report.summary(report))


if __name__ == "__main__":
  define_flags()
  app.run(main)
