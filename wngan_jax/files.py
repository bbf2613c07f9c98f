"""Run and cache files: written so that a crash or a full disk never leaves a half-written one, read so that
a missing or damaged one is a one-line error.

* ``write_atomic`` writes a whole file under a temporary name beside it, flushes it to the disk and renames
  it over the old one: readers see the old file or the new one, never a mixture, and a failed write (a full
  disk, ``ENOSPC``) leaves the old file untouched and removes the temporary one.
* ``append`` adds a line or nothing: when the write fails part way, the file is cut back to its old length.
* Temporary names are ``<stem>.<random>.tmp<suffix>`` (``temp_path``; ``is_temp`` recognises them), so the
  leftovers of a killed process can be found and removed.
* ``load_npy`` reads a user's ``.npy`` array (never unpickling), or says in one line what is wrong with it;
  ``load_json`` reads a run's JSON file, or says that it is damaged and what to do.
* ``check_output`` refuses, before any work, a place a command could not write its output to.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import uuid
from pathlib import Path

import numpy as np

from wngan_jax.errors import ConfigError, DamagedFile, DataError, MissingDataError

_TEMP = re.compile(r"\.[0-9a-f]{32}\.tmp(\.[^.]*)?$")


def temp_path(path: Path) -> Path:
    """A unique temporary name beside ``path``: ``images.npy`` -> ``images.<32 hex>.tmp.npy``."""
    return path.with_name(f"{path.stem}.{uuid.uuid4().hex}.tmp{path.suffix}")


def is_temp(path: Path) -> bool:
    """Whether ``path`` is named like a ``temp_path``."""
    return _TEMP.search(path.name) is not None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: Path) -> None:
    """Makes a rename or a new file in ``directory`` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def removed_on_error(path: Path):
    """Removes ``path`` when the block raises (anything, ``KeyboardInterrupt`` included), then re-raises."""
    try:
        yield path
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replaces ``path`` with ``data`` in one rename, after the new content is on the disk."""
    path = Path(path)
    data = data.encode() if isinstance(data, str) else data
    with removed_on_error(temp_path(path)) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    fsync_dir(path.parent)


def append(path: Path, data: bytes | str) -> None:
    """Appends ``data`` to ``path`` completely or not at all, and flushes it to the disk."""
    data = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        end = os.lseek(fd, 0, os.SEEK_END)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, end)
            raise
    finally:
        os.close(fd)


def load_npy(path, what: str, mmap_mode=None) -> np.ndarray:
    """The array in the ``.npy`` file ``path``; ``what`` names it in errors (a flag such as ``--codes``).

    Never unpickles (object arrays are refused); a missing or unreadable file is a one-line ``UserError``."""
    if not Path(path).is_file():
        raise MissingDataError(f"{what}={path}: no such file")
    try:
        return np.load(path, mmap_mode=mmap_mode)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{what}={path} is not a readable .npy array: {e}") from e


def load_json(path, fix: str):
    """The JSON in ``path``; a file cut off or not JSON is a one-line ``DamagedFile`` naming it and ending with
    ``fix`` (what to do about it)."""
    try:
        return json.loads(Path(path).read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        raise DamagedFile(f"{path} is cut off or damaged (not JSON: {e}); {fix}") from None


def check_output(path, flag: str, *, directory: bool = False) -> Path:
    """``path`` (``~`` expanded), where a command will write a file (or with ``directory`` a folder), once it is
    sure the command can: an empty path, a folder where a file goes (or a file where a folder goes), a file where
    a parent folder goes, or a location that cannot be written (tried with a temporary file, so that it holds
    for root too) is a one-line ``ConfigError`` naming ``flag``, raised before any work. Nothing is created."""
    want = "directory" if directory else "file"
    if not str(path).strip():
        raise ConfigError(f"{flag} is empty; name the {want} to write")
    path = Path(path).expanduser()
    if path.exists() and path.is_dir() != directory:
        raise ConfigError(f"{flag}={path} is a {'directory' if path.is_dir() else 'file'}; name a {want}")
    existing = path.absolute() if directory else path.absolute().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{flag}={path} lies under the file {existing}; name a {want} elsewhere")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ConfigError(
            f"{flag}={path}: {existing} cannot be written ({e.strerror}); name a {want} elsewhere"
        ) from None
    return path
