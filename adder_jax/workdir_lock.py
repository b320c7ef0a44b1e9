"""One training run per workdir: WORKDIR/lock, held while `adder_jax.main` runs.

Two runs on one workdir would write the same checkpoints and metrics.jsonl. The lock is
an advisory `flock` on WORKDIR/lock, which the operating system releases when its holder
exits in any way (a crash, `kill -9`, a reboot), so a lock is never left held by a dead
process. The file itself names its holder (host, process id, start time) while it is
held and is emptied on a clean exit; a file that still names a holder but is not
locked was left by a process that died, and is taken over with a notice.

Only training takes the lock (in a multi-process run, only process 0): evaluate and
predict read a workdir without it. POSIX systems only (Linux, macOS); on a network
filesystem the lock works where the filesystem supports `flock` (NFS does, through
byte-range locks).
"""

import datetime
import fcntl
import json
import os
import socket
import sys

from adder_jax.errors import UserError

LOCK_FILE = "lock"


class WorkdirLock:
  """The lock of one workdir; `with WorkdirLock(workdir):` holds it for the block."""

  def __init__(self, workdir):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd = None

  def acquire(self):
    """Takes the lock, or raises UserError naming the process that holds it."""
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: a live process holds it.
      holder = _read_holder(fd)
      os.close(fd)
      raise UserError(
          f"workdir {os.path.dirname(self.path)} is in use by {_describe(holder)}; wait for "
          "that run to end, stop it, or pass another --workdir.") from None
    previous = _read_holder(fd)
    if previous:
      print(f"note: taking over the lock of {os.path.dirname(self.path)}, left by "
            f"{_describe(previous)}, which is no longer running.", file=sys.stderr)
    holder = {"host": socket.gethostname(), "pid": os.getpid(),
              "since": datetime.datetime.now().isoformat(timespec="seconds")}
    _write(fd, json.dumps(holder) + "\n")
    self._fd = fd
    return self

  def release(self):
    if self._fd is None:
      return
    _write(self._fd, "")  # An empty file: no holder, so the next run gives no notice.
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc_info):
    self.release()


def _write(fd, text):
  os.ftruncate(fd, 0)
  os.pwrite(fd, text.encode(), 0)
  os.fsync(fd)


def _read_holder(fd):
  """The holder recorded in the lock file: a dict, {} if the file is empty."""
  text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
  if not text:
    return {}
  try:
    holder = json.loads(text)
  except ValueError:
    return {"unknown": text[:100]}
  return holder if isinstance(holder, dict) else {"unknown": text[:100]}


def _describe(holder):
  if "pid" not in holder:
    return "another process"
  return (f"process {holder['pid']} on host {holder.get('host', '?')} (started "
          f"{holder.get('since', '?')})")
