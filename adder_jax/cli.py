"""What the package's command lines share: quiet library logs and one-line errors."""

import contextlib
import sys

from absl import flags
from absl import logging

from adder_jax.errors import UserError


def quiet_library_logs():
  """Shows warnings only, unless --verbosity was given: libraries log every checkpoint
  file at INFO, which would bury the command's own output."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


@contextlib.contextmanager
def exit_on_user_error():
  """Turns a UserError into `error: <message>` on stderr and exit status 2."""
  try:
    yield
  except UserError as e:
    logging.flush()
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
