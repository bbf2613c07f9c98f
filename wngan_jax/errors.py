"""The errors a user can cause and fix: every command prints them as one line, ``error: <message>``.

Raise the most specific class; the message names the flag, file or value it is about and says what to do.
Anything that is not a ``UserError`` is a bug in wngan_jax and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user asked for or gave that cannot work as it is."""


class ConfigError(UserError, ValueError):
    """A flag or config value that makes no sense (names the flag)."""


class DataError(UserError, ValueError):
    """A dataset or image array that cannot be used: wrong shape, range, size or content."""


class MissingDataError(UserError, FileNotFoundError):
    """A dataset, file or directory that is not where the user said it is (says how to get it)."""


class CacheDirError(UserError, OSError):
    """The data cache directory cannot be created or written."""


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable or does not fit the model it is loaded into."""


class WorkdirConflict(UserError):
    """The run directory holds a run that cannot be continued by this command."""


class DamagedFile(WorkdirConflict):
    """A file of a run or study that is cut off or holds something else than it should (names the file and
    what to do: restore or delete it, or start the run over)."""


class TrainingDiverged(UserError):
    """The loss stayed non-finite after the allowed number of rollbacks (``iteration``: the last time)."""

    def __init__(self, message: str, iteration: int | None = None):
        super().__init__(message)
        self.iteration = iteration


class MissingDependency(UserError, ImportError):
    """An optional package a feature needs is not installed (says which extra to install)."""
