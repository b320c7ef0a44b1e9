"""Command line: read digits in image files and add a number to each.

  python -m adder_jax.predict --workdir DIR --image seven.png [--image ...] --number 3

prints the predicted digit and sum of every image with their probabilities; `--json`
prints the same as a JSON list. Give `--number` once for all images or once per image.
`--save_preprocessed DIR` writes the 28x28 image the network read from each file, to
tell a bad photo from a bad model.

An image file that cannot be read gets a one-line `error:` on stderr (and, with
`--json`, an entry with its `error`) while the others are predicted; the exit status
is then 1. Bad flags, workdirs or checkpoints stop the command with status 2. In
Python, use `inference.predict_files`.
"""

import dataclasses
import json
import sys

from absl import flags

from adder_jax import cli
from adder_jax import inference
from adder_jax import runtime
from adder_jax.errors import UserError


def define_flags(flag_values=flags.FLAGS):
  flags.DEFINE_string("workdir", None, "Training workdir whose latest checkpoint predicts.",
                      flag_values=flag_values)
  flags.DEFINE_multi_string("image", None, "A PNG, JPEG or BMP image of one digit; repeatable.",
                            flag_values=flag_values)
  flags.DEFINE_multi_string("number", None, "The number 0-9 to add: once for all images, "
                            "or once per image in the same order.", flag_values=flag_values)
  flags.DEFINE_bool("json", False, "Print a JSON list instead of text.", flag_values=flag_values)
  flags.DEFINE_string("save_preprocessed", None, "A directory to write each image's "
                      "28x28 network input to, as INDEX_NAME.png.", flag_values=flag_values)
  flags.mark_flags_as_required(["workdir", "image", "number"], flag_values=flag_values)


def parse_numbers(texts):
  """The --number values as ints; range checks are left to `inference.check_numbers`."""
  numbers = []
  for text in texts:
    try:
      numbers.append(int(text))
    except ValueError:
      raise UserError(f"--number must be an integer from 0 to 9, got {text!r}.") from None
  return numbers


def format_text(prediction):
  text = (f"{prediction.image}: digit {prediction.digit} "
          f"({100 * prediction.digit_probability:.1f}%), plus {prediction.number} "
          f"makes sum {prediction.sum} ({100 * prediction.sum_probability:.1f}%)")
  if prediction.preprocessed_file:
    text += f"; network input {prediction.preprocessed_file}"
  return text


def main(argv, flag_values=flags.FLAGS):
  del argv  # cli.run refuses positional arguments.
  cli.quiet_library_logs()
  with cli.exit_on_user_error():
    runtime.setup()
    numbers = parse_numbers(flag_values.number)
    if flag_values.save_preprocessed == "":
      raise UserError("--save_preprocessed needs a directory.")
    predictions = inference.predict_files(flag_values.workdir, flag_values.image, numbers,
                                          flag_values.save_preprocessed)
  for prediction in predictions:
    if prediction.error:
      print(f"error: {prediction.error}", file=sys.stderr)
    elif not flag_values.json:
      print(format_text(prediction))
  if flag_values.json:
    print(json.dumps([dataclasses.asdict(p) for p in predictions], indent=2))
  if any(prediction.error for prediction in predictions):
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
