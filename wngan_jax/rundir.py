"""A run's directory: its identity, its history, its lock (docs/reliability.md).

    RUN/config.json       the TrainConfig            RUN/checkpoints/{last,best}/   orbax (wngan_jax/checkpoint.py)
    RUN/model.json        its ModelConfig            RUN/metrics.jsonl, events.*    (wngan_jax/metrics.py)
    RUN/data.json         the data's identity        RUN/samples/, RUN/record/      grids; the fixed-code record
    RUN/fixed_codes.npy   the sample grids' codes    RUN/final_test/                the final test (evaluation.py)
    RUN/study.log         the run's output when a study trained it in a process of its own (experiments.study --jobs)

A run is identified by its config less where its data and cache live (``config.LOCATION_FIELDS``) and the
data spec: a moved dataset resumes when its images are the same (``content_sha256``). A directory that holds
another run, or a run's history without a checkpoint to resume from, is refused unless ``--overwrite``.
"""

from __future__ import annotations

import json
import logging
import pathlib
import shutil

import jax
import numpy as np

from wngan_jax import checkpoint, files, locks, metrics
from wngan_jax.config import LOCATION_FIELDS, RESUMABLE_CHANGES, TrainConfig
from wngan_jax.errors import DamagedFile, UserError, WorkdirConflict

CONFIG_FILE = "config.json"
DATA_FILE = "data.json"
FIXED_CODES_FILE = "fixed_codes.npy"
FINAL_TEST_DIR = "final_test"
SAMPLES_DIR = "samples"
LOG_FILE = "study.log"
RESUME_FIX = "restore it from a copy, or pass --overwrite to discard that run"


def read_config(run, fix: str = RESUME_FIX) -> TrainConfig | None:
    """The ``TrainConfig`` in ``run/config.json`` (``None`` without one). A file that is cut off or holds no
    config is a ``DamagedFile`` naming it and ending with ``fix``."""
    path = pathlib.Path(run) / CONFIG_FILE
    if not path.exists():
        return None
    recorded = files.load_json(path, fix)
    try:
        return TrainConfig.from_dict(recorded)
    except (UserError, TypeError, KeyError, ValueError, AttributeError) as e:
        raise DamagedFile(f"{path} does not hold a wngan_jax config ({e}); {fix}") from None


class RunDirectory:
    """The directory of one run. Only process 0 writes (``is_main``); every process reads."""

    def __init__(self, path):
        self.path = pathlib.Path(path).absolute()
        self.is_main = jax.process_index() == 0

    def lock(self):
        """Hold the run's lock (``locks.hold_run``): a second process started on it is refused."""
        return locks.hold_run(self.path, enabled=self.is_main)

    def clear(self) -> None:
        """Empty the directory but for the lock this process holds and the log its output may be going to."""
        if not self.is_main:
            return
        for child in self.path.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            elif child.name not in (locks.LOCK_FILE, LOG_FILE):
                child.unlink()

    def recorded_config(self) -> TrainConfig | None:
        return read_config(self.path)

    def check_config(self, config: TrainConfig, overwrite: bool) -> bool:
        """Refuse a directory that holds a run with another config, or a damaged ``config.json`` (clear it
        when ``overwrite``).

        Where the data and cache live is not part of a run's identity, nor is the data spec: returns whether
        the spec differs, so that the data can be compared by content once it is loaded (``check_data``)."""
        try:
            recorded = self.recorded_config()
        except DamagedFile:
            if not overwrite:
                raise
            self.clear()
            return False
        if recorded is None:
            return False
        diff = recorded.differences(config, ignore=RESUMABLE_CHANGES + LOCATION_FIELDS + ("data",))
        if diff and not overwrite:
            lines = "\n".join(f"  {k}: {a!r} in the workdir, {b!r} now" for k, (a, b) in sorted(diff.items()))
            raise WorkdirConflict(
                f"{self.path} holds a run with a different config:\n{lines}\n"
                "Use another --workdir, or pass --overwrite to discard that run."
            )
        if diff:
            self.clear()
            return False
        return recorded.data != config.data

    def check_data(self, config: TrainConfig, info: dict, overwrite: bool) -> None:
        """A run whose data spec changed resumes only on the same images (``content_sha256`` of the cache):
        moved folders, lmdb files and TFDS directories are recognised; other data is refused."""
        path = self.path / DATA_FILE
        try:
            recorded = files.load_json(path, RESUME_FIX) if path.exists() else {}
        except DamagedFile:
            if not overwrite:
                raise
            recorded = {}
        recorded = recorded if isinstance(recorded, dict) else {}
        if recorded.get("content_sha256") and recorded["content_sha256"] == info.get("content_sha256"):
            logging.warning(
                "%s: the data moved from %s to %s (same images); resuming", self.path, recorded["spec"], config.data
            )
            return
        if not overwrite:
            raise WorkdirConflict(
                f"{self.path} holds a run on --data={recorded.get('spec', '?')}, and --data={config.data} holds "
                "other images (their SHA-256 differs, or the run predates that record). Use another --workdir, or "
                "pass --overwrite to discard that run."
            )
        self.clear()

    def check_history(self, overwrite: bool) -> None:
        """A directory with a run's history (a best checkpoint, running-test records, a final test) but no
        ``last`` checkpoint to resume from is an error, not a silent restart that would replace that history."""
        last = self.path / "checkpoints" / "last"
        if last.is_dir() and any(p.name.isdigit() for p in last.iterdir()):
            return
        best = self.path / "checkpoints" / "best"
        history = [str(p.relative_to(self.path)) for p in best.glob("[0-9]*")] if best.is_dir() else []
        if any("test_loss" in r for r in metrics.records(self.path)):
            history.append("metrics.jsonl with running-test losses")
        if (self.path / FINAL_TEST_DIR).is_dir():
            history.append(FINAL_TEST_DIR)
        if not history:
            return
        if not overwrite:
            raise WorkdirConflict(
                f"{self.path} holds a run's history ({', '.join(sorted(history))}) but no checkpoint in "
                f"{last} to resume from. Restore that checkpoint, use another --workdir, or pass --overwrite to "
                "start this run over (discarding that history)."
            )
        self.clear()

    def write_identity(self, config: TrainConfig, info: dict) -> None:
        """The run's config, model config and data identity, written atomically."""
        if not self.is_main:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        files.write_atomic(self.path / CONFIG_FILE, config.to_json())
        record = {"spec": config.data, "content_sha256": info.get("content_sha256"), "count": info.get("count")}
        files.write_atomic(self.path / DATA_FILE, json.dumps(record, indent=2) + "\n")
        checkpoint.write_model_config(self.path, config.model)

    def fixed_codes(self, config: TrainConfig) -> np.ndarray:
        """The sample grids' codes: drawn from the seed once, then read back, so a resumed run keeps them."""
        path = self.path / FIXED_CODES_FILE
        if path.exists():
            return np.load(path)
        codes = (
            np.random.default_rng([config.seed, 1])
            .standard_normal((config.num_fixed_codes, config.model.code_size))
            .astype(np.float32)
        )
        if self.is_main:
            np.save(path, codes)
        return codes
