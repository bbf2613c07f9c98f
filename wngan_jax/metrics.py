"""Training logs: JSON lines (``metrics.jsonl``) and TensorBoard event files (``tensorboard/``: scalars, and the
sample grids and running-test reconstruction pairs as images).

``metrics.jsonl`` holds one JSON record per line, each with its ``iteration``. Rows are appended whole or
not at all (``files.append``: a full disk leaves no half row), and the file is only ever rewritten by
replacing it (``files.write_atomic``), so no crash and no full disk loses a row that was written before.
A process killed in the middle of an append can still leave a cut-off last line: readers drop it with a
warning that names the file and the line; a bad line anywhere else is an error naming both.
"""

from __future__ import annotations

import json
import math
import pathlib
import warnings

from wngan_jax import files
from wngan_jax.errors import DamagedFile, WorkdirConflict

METRICS_FILE = "metrics.jsonl"


def _plain(value):
    value = float(value)
    return value if math.isfinite(value) else str(value)


def _records(path: pathlib.Path) -> tuple[list[tuple[str, dict]], bool]:
    """``([(line, record), ...], whole)`` of a metrics file; ``whole`` is false when its last line was cut off
    (dropped) or lacks its newline."""
    if not path.exists():
        return [], True
    text = path.read_text(errors="replace")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            valid = isinstance(record, dict) and isinstance(record.get("iteration"), int)
        except ValueError:
            valid = False
        if valid:
            rows.append((line, record))
        elif number == len(lines):
            warnings.warn(
                f"{path}, line {number}, is cut off (the process writing it was stopped, or the disk was full); "
                "ignoring that line",
                stacklevel=3,
            )
            return rows, False
        else:
            raise WorkdirConflict(
                f"{path}, line {number}, is not a metrics record ({line[:60]!r}); only a last line can be cut "
                "off by a crash. Repair or delete that line."
            )
    return rows, not text or text.endswith("\n")


class MetricsWriter:
    """Writes scalars to ``RUN/metrics.jsonl`` and TensorBoard; only process 0 writes."""

    def __init__(self, run_dir, *, enabled: bool = True):
        self.path = pathlib.Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self._tb = None
        if enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(pathlib.Path(run_dir) / "tensorboard"))

    def resume_at(self, iteration: int, row: dict | None = None) -> None:
        """Drop records past ``iteration`` (and a cut-off last line): on resume they describe work that the
        checkpoint does not hold. ``row``, the record of ``iteration`` that the checkpoint carries, is put back
        when a crash between the checkpoint and its record lost it. The file is replaced in one rename, so a
        crash or a full disk during the rewrite leaves it as it was; the temporary file of a rewrite that was
        killed is removed here."""
        if not self.enabled:
            return
        for path in self.path.parent.glob(f"{self.path.stem}.*"):
            if files.is_temp(path):
                path.unlink(missing_ok=True)
        rows, whole = _records(self.path)
        kept = [line for line, record in rows if record["iteration"] <= iteration]
        changed = not whole or len(kept) < len(rows)
        if row is not None and not any(record["iteration"] == iteration for _, record in rows):
            kept.append(json.dumps({"iteration": int(iteration)} | {k: _plain(v) for k, v in row.items()}))
            changed = True
        if changed:
            files.write_atomic(self.path, "".join(line + "\n" for line in kept))

    def write(self, iteration: int, scalars: dict) -> None:
        if not self.enabled:
            return
        record = {"iteration": int(iteration)} | {k: _plain(v) for k, v in scalars.items()}
        files.append(self.path, json.dumps(record) + "\n")
        for name, value in scalars.items():
            self._tb.add_scalar(name, float(value), int(iteration))

    def image(self, tag: str, image, iteration: int) -> None:
        """A uint8 ``(H, W, 3)`` image (a sample grid, reconstruction pairs) in TensorBoard's images tab."""
        if self.enabled:
            self._tb.add_image(tag, image, int(iteration), dataformats="HWC")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def records(run_dir) -> list[dict]:
    """Every record of a run's ``metrics.jsonl`` (a cut-off last line dropped with a warning)."""
    return [record for _, record in _records(pathlib.Path(run_dir) / METRICS_FILE)[0]]


def read_metrics(run_dir, key: str) -> tuple[list[int], list[float]]:
    """(iterations, values) of one scalar from a run's ``metrics.jsonl``. A value that is not a number (nor
    the ``"nan"``/``"inf"`` strings non-finite values are written as) is a ``DamagedFile`` naming the record."""
    return read_curves(run_dir, (key,))[key]


def read_curves(run_dir, keys) -> dict[str, tuple[list[int], list[float]]]:
    """``read_metrics`` of each of ``keys``, from one reading of the file."""
    curves = {key: ([], []) for key in keys}
    for record in records(run_dir):
        for key in keys:
            if key in record:
                curves[key][0].append(record["iteration"])
                curves[key][1].append(_number(record[key], run_dir, key, record["iteration"]))
    return curves


def _number(value, run_dir, key: str, iteration: int) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(value)
    raise DamagedFile(
        f"{pathlib.Path(run_dir) / METRICS_FILE}: the record of iteration {iteration} has {key} = {value!r}, "
        "not a number; repair or delete that line"
    )
