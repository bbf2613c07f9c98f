"""Training logs: JSON lines (``metrics.jsonl``) and TensorBoard event files (``tensorboard/``: scalars, and
the sample grids and running-test reconstruction pairs as images)."""

from __future__ import annotations

import json
import math
import pathlib


def _plain(value):
    value = float(value)
    return value if math.isfinite(value) else str(value)


class MetricsWriter:
    """Writes scalars to ``RUN/metrics.jsonl`` and TensorBoard; only process 0 writes."""

    def __init__(self, run_dir, *, enabled: bool = True):
        self.path = pathlib.Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        if enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(pathlib.Path(run_dir) / "tensorboard"))

    def truncate_after(self, iteration: int) -> None:
        """Drop records past ``iteration``: on resume they describe work that the checkpoint does not hold."""
        if not (self.enabled and self.path.exists()):
            return
        kept = [
            line
            for line in self.path.read_text().splitlines()
            if line.strip() and json.loads(line)["iteration"] <= iteration
        ]
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, iteration: int, scalars: dict) -> None:
        if not self.enabled:
            return
        record = {"iteration": int(iteration)} | {k: _plain(v) for k, v in scalars.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for name, value in scalars.items():
            self._tb.add_scalar(name, float(value), int(iteration))

    def image(self, tag: str, image, iteration: int) -> None:
        """A uint8 ``(H, W, 3)`` image (a sample grid, reconstruction pairs) in TensorBoard's images tab."""
        if self.enabled:
            self._tb.add_image(tag, image, int(iteration), dataformats="HWC")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir, key: str) -> tuple[list[int], list[float]]:
    """(iterations, values) of one scalar from a run's ``metrics.jsonl``."""
    xs, ys = [], []
    path = pathlib.Path(run_dir) / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        record = json.loads(line)
        if key in record:
            xs.append(record["iteration"])
            ys.append(float(record[key]))
    return xs, ys
