"""Locks that the operating system releases when their holder dies, so they never go stale.

A ``FileLock`` is an exclusive ``fcntl.flock`` on a file; the holder writes who it is into the file (process
id, host, start time, command line), so a process that is refused can say who holds it. Killing the holder,
even with ``kill -9``, closes its descriptor and frees the lock; the file it leaves behind is reused by the
next holder. A holder that finishes removes the file.

``hold_run(workdir)`` holds ``RUN/run.lock`` for a training run: a second process started on the same run
directory is refused with a ``WorkdirConflict`` that names the first. With several hosts only process 0
takes it (the others follow process 0, which stops them when it is refused).

On a file system without locks (``flock`` fails with ``ENOLCK``, ``EOPNOTSUPP`` or ``ENOSYS``) nothing is
locked and a warning says that concurrent starts are not detected there.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
from pathlib import Path

from wngan_jax.errors import WorkdirConflict

LOCK_FILE = "run.lock"
UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)

log = logging.getLogger(__name__)


def _holder_record() -> str:
    return json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join(getattr(sys, "orig_argv", sys.argv)).replace("\n", "\\n"),  # one line
        }
    )


class FileLock:
    """An exclusive ``flock`` on ``path`` (created when missing) that records its holder in the file."""

    def __init__(self, path):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, blocking: bool = False) -> bool:
        """Takes the lock; ``False`` when another process holds it and ``blocking`` is off.

        Raises ``OSError`` when the file cannot be created or the file system has no locks (``UNSUPPORTED``).
        """
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            # A holder that finished removed the file between our open and our lock: lock the new file.
            try:
                on_disk = os.stat(self.path)
                mine = os.fstat(fd)
                same = (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, _holder_record().encode())
        self._fd = fd
        return True

    def release(self) -> None:
        """Removes the file while still holding it (nobody can lock a file about to vanish), then unlocks."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def holder(self) -> str:
        """Who holds the lock, as its holder recorded it."""
        try:
            record = json.loads(self.path.read_text())
            return f"process {record['pid']} on host {record['host']}, started {record['started']}: {record['command']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "a process that has not recorded itself yet"


@contextlib.contextmanager
def hold_run(workdir, *, enabled: bool = True):
    """Holds ``workdir/run.lock`` for the block; raises ``WorkdirConflict`` naming the holder when it is taken.

    ``enabled=False`` (processes other than 0 of a multi-host run) takes nothing. A run directory that this
    call created and that is still empty afterwards is removed, so a start that fails leaves nothing. A
    run directory that cannot be created or written is a ``WorkdirConflict`` too.
    """
    if not enabled:
        yield
        return
    workdir = Path(workdir)
    created = not workdir.exists()
    lock = FileLock(workdir / LOCK_FILE)
    try:
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            if not lock.acquire():
                raise WorkdirConflict(
                    f"{workdir} is in use by {lock.holder()}. Wait for that run to end (or stop it), "
                    "or use another --workdir."
                )
        except OSError as err:
            if err.errno not in UNSUPPORTED:
                raise WorkdirConflict(
                    f"cannot use {workdir} as a run directory ({err}); pass another --workdir"
                ) from err
            log.warning("cannot lock %s (%s): a second run started on it would not be refused", lock.path, err)
        yield
    finally:
        lock.release()
        if created:
            with contextlib.suppress(OSError):
                workdir.rmdir()
