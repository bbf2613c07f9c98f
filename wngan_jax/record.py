"""The dense fixed-code record of a run: what the generator made of a few fixed codes, every few iterations.

A collapse is only known once the run is past it (docs/study.md), so a run keeps, cheaply, what is needed to
show it afterwards (paper Figs. 5 and 9: samples every 100 iterations around the collapse; Figs. 6-8: the
loss of diversity before it)::

    RUN/record/codes.npy              (record_codes, code_size) float32, the same for every run with one seed
    RUN/record/iter_<iteration>.npy   (record_codes, H, W, C) uint8 samples of those codes at that iteration

One ``.npy`` per record, written whole or not at all (``files.write_atomic``), so a killed run never leaves a
broken record; a 16x16 digit record is 4 KiB, a 160x160 RGB one 1.2 MiB. The sample grids (``RUN/samples/``) keep
their own interval and codes.
"""

from __future__ import annotations

import collections
import io
import pathlib

import numpy as np

from wngan_jax import files
from wngan_jax.errors import DamagedFile
from wngan_jax.visualize import to_uint8

DIR = "record"
CODES_FILE = "codes.npy"


def record_codes(num: int, code_size: int, seed: int) -> np.ndarray:
    """The record's codes: standard normal, from the run's seed only, so all models of one seed share them."""
    return np.random.default_rng([seed, 2]).standard_normal((num, code_size)).astype(np.float32)


class RecordWriter:
    """Writes ``RUN/record/``; ``enabled=False`` (processes other than 0) writes nothing."""

    def __init__(self, run_dir, codes: np.ndarray, *, enabled: bool = True):
        self.dir = pathlib.Path(run_dir) / DIR
        self.enabled = enabled
        if enabled:
            self.dir.mkdir(parents=True, exist_ok=True)
            if not (self.dir / CODES_FILE).exists():
                _save(self.dir / CODES_FILE, codes)
        self.codes = np.load(self.dir / CODES_FILE) if (self.dir / CODES_FILE).exists() else codes

    def write(self, iteration: int, images) -> None:
        """Store the samples of :attr:`codes` at ``iteration`` (float in [0, 1] or uint8)."""
        if self.enabled:
            _save(self.dir / f"iter_{iteration:07d}.npy", to_uint8(images, rgb=False))

    def truncate_after(self, iteration: int) -> None:
        """Drop records past ``iteration``: on resume they describe work that the checkpoint does not hold."""
        if self.enabled:
            for iteration_, path in _files(self.dir):
                if iteration_ > iteration:
                    path.unlink()


def read(run_dir) -> tuple[list[int], np.ndarray | None]:
    """(iterations, samples ``(T, N, H, W, C)`` uint8) of a run's record; ``([], None)`` when it has none.

    A record file that is cut off, or whose array is not the ``(N, H, W, C)`` uint8 of the others, is a
    ``DamagedFile`` naming it."""
    paths = _files(pathlib.Path(run_dir) / DIR)
    if not paths:
        return [], None
    arrays = [_load(p) for _, p in paths]
    kinds = collections.Counter((a.shape, a.dtype) for a in arrays)
    (shape, dtype), _ = kinds.most_common(1)[0]
    for (_, path), array in zip(paths, arrays):
        if array.ndim != 4 or array.dtype != np.uint8 or (array.shape, array.dtype) != (shape, dtype):
            raise DamagedFile(
                f"{path} holds a {array.dtype} array of shape {array.shape}, not the uint8 (N, H, W, C) "
                f"samples {shape} of the record's other files; delete it (the rest of the record stays usable)"
            )
    return [i for i, _ in paths], np.stack(arrays)


def _load(path: pathlib.Path) -> np.ndarray:
    try:
        return np.load(path)
    except (OSError, ValueError, EOFError) as e:
        raise DamagedFile(
            f"{path} is cut off or damaged ({e}); delete it (the rest of the record stays usable)"
        ) from None


def _files(directory: pathlib.Path) -> list[tuple[int, pathlib.Path]]:
    if not directory.is_dir():
        return []
    paths = (p for p in directory.glob("iter_*.npy") if not files.is_temp(p))  # not a killed write's leftover
    return sorted((int(p.stem[len("iter_") :]), p) for p in paths)


def _save(path: pathlib.Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    files.write_atomic(path, buffer.getvalue())
