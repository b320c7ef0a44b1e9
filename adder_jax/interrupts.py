"""Ctrl-C during training: finish the running chunk of steps, save, then stop.

A compiled chunk cannot be stopped halfway, and a KeyboardInterrupt raised between two
host operations could land in the middle of a checkpoint or metrics write. So SIGINT
only sets a flag, which the training loop checks between chunks. A second Ctrl-C
stops at once, without saving.
"""

import os
import signal
import threading


class TrainingInterrupted(Exception):
  """Training stopped on Ctrl-C after saving its state; the message says where."""


class InterruptFlag:
  """Between `install` and `uninstall`, SIGINT sets `requested`
  instead of raising KeyboardInterrupt."""

  def __init__(self):
    self.requested = False
    self._previous_handler = None
    self._installed = False

  def install(self):
    # Python only lets the main thread install signal handlers.
    if threading.current_thread() is threading.main_thread():
      self._previous_handler = signal.signal(signal.SIGINT, self._handle)
      self._installed = True
    return self

  def uninstall(self):
    if self._installed:
      signal.signal(signal.SIGINT, self._previous_handler)
      self._installed = False

  def _handle(self, signum, frame):
    if self.requested:
      raise KeyboardInterrupt
    self.requested = True
    # os.write, not print: the handler may run in the middle of a print to stderr
    # (the progress bar), and a buffered stream refuses reentrant writes.
    os.write(2, b"\ninterrupt: saving a checkpoint after the running chunk of steps "
                b"(press Ctrl-C again to stop without saving)\n")
