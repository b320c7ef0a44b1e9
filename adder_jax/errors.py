"""The one exception type for mistakes a user can fix (bad flags, data, files).

Entry points catch it, print its message on one line to stderr and exit with status 2;
anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
  """A problem with the user's input, explained in one line."""


def first_line(error):
  """One line that says what `error` was: its message's first line (its type's name if
  it has no message). Messages that end with their reason need `last_line`."""
  lines = str(error).strip().splitlines()
  return lines[0].strip() if lines else type(error).__name__


def last_line(error):
  """Like `first_line`, for messages that put their reason last (ml_collections')."""
  lines = str(error).strip().splitlines()
  return lines[-1].strip() if lines else type(error).__name__
