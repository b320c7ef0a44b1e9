"""The one exception type for mistakes a user can fix (bad flags, data, files).

Entry points catch it, print its message on one line to stderr and exit with status 2;
anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
  """A problem with the user's input, explained in one line."""
