"""What the package's command lines share: flag parsing that explains a misspelt config
field, quiet library logs and one-line errors."""

import contextlib
import difflib
import logging as std_logging
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
import ml_collections

from adder_jax import checkpointing
from adder_jax import interrupts
from adder_jax.errors import UserError, first_line, last_line

# --config.optimizer.learning_rate=0.01, --config.optimizer.learning_rate 0.01 or, for a
# boolean, --noconfig.field: the field's path is group 2.
_OVERRIDE = re.compile(r"^--?(no)?config\.([^=]+)")
_CONFIG_FILE = re.compile(r"^--?config(?:=(.*))?$")


def run(main):
  """`app.run(main)`, where bad command-line flags are a one-line error (exit status 2)
  before any work: an unknown or invalid flag, a missing required one, a positional
  argument, a `--config.FIELD` that the config lacks, a config file that does not load."""
  # Once per process, before any restore: after a restore that failed on a damaged
  # checkpoint, orbax's abandoned reads would otherwise print tracebacks, up to exit.
  checkpointing.quiet_abandoned_reads()
  app.run(main, flags_parser=_parse_flags)


# absl's help flags; absl itself exits 1 after printing help.
_HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "-helpshort")
_FULL_HELP_FLAGS = ("--helpfull", "-helpfull")

CONFIG_OVERRIDES_HELP = """\
config overrides:
  --config.FIELD=VALUE sets a field of the config file for this run, nested fields
  with dots: --config.num_epochs=2 --config.optimizer.learning_rate=3e-3. Every field
  is listed, with what it does, in configs/default.py; a misspelt one is named."""


def _parse_flags(argv):
  if any(arg in _HELP_FLAGS + _FULL_HELP_FLAGS for arg in argv[1:]):
    _print_help(full=any(arg in _FULL_HELP_FLAGS for arg in argv[1:]))
  try:
    remaining = flags.FLAGS(argv)
    if "config" in flags.FLAGS and flags.FLAGS["config"].value is not None:
      flags.FLAGS.config.keys()  # A config file that failed to load raises on first use.
  except Exception as e:  # Misspelt fields come out of ml_collections as chained tracebacks.
    message = _config_flag_problem(argv)
    if message is None:
      if not isinstance(e, flags.Error):
        raise
      message = first_line(e)
    _exit_with_error(message)
  if len(remaining) > 1:
    _exit_with_error(f"unexpected arguments: {' '.join(remaining[1:])} (flags start with --).")
  return remaining


def _print_help(full):
  """Prints the entry point's docstring, its flags (every module's if `full`) and, for
  one that takes --config, how to override config fields; exits 0."""
  doc = (sys.modules["__main__"].__doc__ or "").strip()
  flag_help = str(flags.FLAGS) if full else flags.FLAGS.main_module_help()
  parts = [doc, "flags:\n" + flag_help.strip()]
  if "config" in flags.FLAGS:
    parts.append(CONFIG_OVERRIDES_HELP)
  if not full:
    parts.append("--helpfull lists the flags of every library as well.")
  print("\n\n".join(p for p in parts if p))
  sys.exit(0)


def _exit_with_error(message):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _config_flag_problem(argv):
  """What is wrong with the --config flags in `argv`, in one line; None if nothing is."""
  if "config" not in flags.FLAGS:
    return None
  path = _config_file_argument(argv)
  if path is None:
    return None
  try:
    # A file that fails to load gives a config that raises when first read.
    fields = field_paths(flags.FLAGS["config"].parser.parse(path))
  except Exception as e:  # pylint: disable=broad-except
    return f"cannot load the config file {path} ({last_line(e)})."
  for arg in argv[1:]:
    match = _OVERRIDE.match(arg)
    if match and match.group(2) not in fields:
      return unknown_field_message(match.group(2), fields)
  return None


def _config_file_argument(argv):
  """The last --config value in `argv` (absl's rule for a repeated flag), or None."""
  path = None
  for i, arg in enumerate(argv):
    match = _CONFIG_FILE.match(arg)
    if match:
      path = match.group(1) if match.group(1) is not None else (
          argv[i + 1] if i + 1 < len(argv) else None)
  return path


def field_paths(config, prefix=""):
  """Every field of a ConfigDict, nested groups included: {'seed', 'optimizer',
  'optimizer.learning_rate', ...}."""
  paths = set()
  for name, value in config.items():
    paths.add(prefix + name)
    if isinstance(value, ml_collections.ConfigDict):
      paths |= field_paths(value, f"{prefix}{name}.")
  return paths


def unknown_field_message(name, fields):
  """'config has no field NAME; did you mean ...?', suggesting the fields of `fields` whose
  own name is NAME's last part, then those whose own name is spelt alike or begins with
  it (siblings first)."""
  parent, _, last = name.rpartition(".")

  def similarity(field):
    own = field.rpartition(".")[2]
    prefix = len(last) >= 4 and own.startswith(last)  # 'dropout' for 'dropout_rate'.
    return max(difflib.SequenceMatcher(None, last, own).ratio(), 0.8 * prefix)

  alike = sorted((f for f in fields if similarity(f) >= 0.75),
                 key=lambda f: (f.rpartition(".")[2] != last, f.rpartition(".")[0] != parent,
                                -similarity(f), f))
  if not alike:
    return f"config has no field {name!r}; the config file lists every field."
  return (f"config has no field {name!r}; did you mean "
          + " or ".join(repr(f) for f in alike[:3]) + "?")


def quiet_library_logs():
  """Keeps library chatter off the terminal, unless --verbosity was given.

  Libraries log every checkpoint file at INFO and advice at WARNING (tfds: "OpenCV is
  not installed..."), which would bury the command's own output. So by default only
  adder_jax's own warnings and every library's errors are shown; `--verbosity=0` (or any
  --verbosity) shows everything at that level again. Python warnings are not affected.
  """
  if flags.FLAGS["verbosity"].present:
    return
  logging.set_verbosity(logging.WARNING)
  logging.get_absl_handler().addFilter(_own_messages_and_errors)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _own_messages_and_errors(record):
  return record.levelno >= std_logging.ERROR or record.pathname.startswith(_PACKAGE_DIR)


# The shell's convention for a process stopped by SIGINT (128 + 2).
_EXIT_INTERRUPTED = 130


@contextlib.contextmanager
def exit_on_interrupt():
  """Ctrl-C in a command that trains: where it stopped on stderr, one line, and exit
  status 130; the command resumes when run again."""
  try:
    yield
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


@contextlib.contextmanager
def exit_on_user_error():
  """Turns a UserError into `error: <message>` on stderr and exit status 2."""
  try:
    yield
  except UserError as e:
    logging.flush()
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
