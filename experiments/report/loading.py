"""Finding runs and reading each one once into the ``Study`` that the report's tables and figures share.

A run directory holds ``config.json``; a study directory (``experiments.study``) holds ``study.json`` and its
runs under ``<norm>/seed_<k>/`` (``run_dir``). Both names live here, where the runner that writes them and
the report that reads them can import them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import pathlib

import numpy as np

from wngan_jax import checkpoint, diagnostics, evaluation, metrics
from wngan_jax import record as record_lib
from wngan_jax.config import TrainConfig
from wngan_jax.errors import MissingDataError
from wngan_jax.models import VARIANTS
from wngan_jax.rundir import FINAL_TEST_DIR

STUDY_FILE = "study.json"  # a study directory's models, seeds and command


def run_dir(root, norm: str, seed: int) -> pathlib.Path:
    """Where a study keeps the run of ``norm`` and ``seed``."""
    return pathlib.Path(root) / norm / f"seed_{seed}"


@dataclasses.dataclass
class Instance:
    """One run of a study, read once: its curve, its Table 2 numbers, its collapse and the first final-test
    targets and codes the figures show. Its fixed-code record and best generator are read the first time a
    figure asks for them, and kept."""

    run: pathlib.Path
    model: str
    seed: int
    config: TrainConfig
    iterations: list[int]
    losses: list[float]
    final: dict
    collapse: diagnostics.Collapse | None
    final_codes: np.ndarray | None = None  # the first SHOWN_TARGETS codes the final test found
    final_targets: np.ndarray | None = None  # their targets, uint8 (None: a run written before targets.npy)

    @property
    def label(self) -> str:
        return f"{self.model} seed {self.seed}"

    @property
    def best(self) -> tuple[int, float] | tuple[None, None]:
        """(iteration, loss) of the lowest running-test loss (the earliest if tied)."""
        finite = [(loss, it) for it, loss in zip(self.iterations, self.losses) if np.isfinite(loss)]
        if not finite:
            return None, None
        loss, it = min(finite)
        return it, loss

    @property
    def final_loss(self) -> float | None:
        """The final test of the best generator (paper Table 2)."""
        return self.final.get("mean_loss")

    @property
    def last_final_loss(self) -> float | None:
        """The final test of the last generator (paper Tables 6-7), when the run's final test made one."""
        return self.final.get("last", {}).get("mean_loss")

    @property
    def has_best(self) -> bool:
        return (self.run / "checkpoints" / "best").is_dir()

    @functools.cached_property
    def record(self) -> tuple[list[int], np.ndarray | None]:
        """(iterations, samples ``(T, N, H, W, C)`` uint8) of the run's fixed-code record (``wngan_jax.record``),
        kept once read: only the figures of a model's representative run and of collapses show its images."""
        return record_lib.read(self.run)

    @functools.cached_property
    def diversity(self) -> tuple[list[int], list[float]]:
        """(recorded iterations, ``diagnostics.sample_diversity`` of each record): from the record when it was
        read for a figure, otherwise read for this alone and not kept (a study's records need not fit memory)."""
        its, images = self.__dict__["record"] if "record" in self.__dict__ else record_lib.read(self.run)
        if not its or images.shape[1] < 2:
            return [], []
        return its, [diagnostics.sample_diversity(x) for x in images]

    @functools.cached_property
    def generator(self):
        """(ModelConfig, variables) of the best generator, restored from ``checkpoints/best``."""
        config, variables, _ = checkpoint.load_generator(self.run, "best")
        return config, variables


@dataclasses.dataclass
class Study:
    """The runs a report is made of, each read once, and the collapse rule (docs/study.md) applied to them."""

    sources: list[pathlib.Path]  # the directories named
    instances: list[Instance]
    factor: float
    tests: int
    command: str | None = None  # the study's command line (``study.json``), when a study directory was named


def find_runs(paths) -> list[pathlib.Path]:
    """Run directories: given directly (with ``config.json``), or every run below a directory (a study
    directory's runs are those below it, whatever its ``study.json`` asked for)."""
    return _find(paths)[0]


def read_study(root) -> dict | None:
    """The ``study.json`` of a study directory (the union of the models, seeds and commands every call of
    ``experiments.study`` on it asked for), or None where there is none."""
    path = pathlib.Path(root) / STUDY_FILE
    if not path.is_file():
        return None
    spec = json.loads(path.read_text())
    # Earlier releases recorded the latest call's command alone.
    return spec | {"commands": spec.get("commands") or [c for c in [spec.get("command")] if c]}


def _find(paths) -> tuple[list[pathlib.Path], str | None]:
    runs, command = [], None
    for path in map(pathlib.Path, paths):
        if (path / "config.json").is_file():
            runs.append(path)
            continue
        found = sorted(p.parent for p in path.rglob("config.json"))
        if not found:
            raise MissingDataError(f"{path} is not a run directory and holds none (no config.json below it)")
        spec = read_study(path)
        if spec:
            command = command or (spec["commands"][-1] if spec["commands"] else None)
            missing = [r for r in (run_dir(path, n, s) for s in spec["seeds"] for n in spec["norms"]) if r not in found]
            if missing:
                logging.warning(
                    "%s asked for runs that were never started, left out: %s",
                    path / STUDY_FILE,
                    ", ".join(str(r.relative_to(path)) for r in missing),
                )
        runs += found
    return runs, command


def load_instance(run, *, factor: float, tests: int) -> Instance:
    """Read one run: its config, running-test curve (and collapse by the rule ``factor``, ``tests``), final
    test report and the first final-test codes and targets."""
    run = pathlib.Path(run)
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    iterations, losses = metrics.read_metrics(run, "test_loss")
    final_dir = run / FINAL_TEST_DIR
    final = json.loads((final_dir / "report.json").read_text()) if (final_dir / "report.json").exists() else {}
    return Instance(
        run=run,
        model=config.norm,
        seed=config.seed,
        config=config,
        iterations=iterations,
        losses=losses,
        final=final,
        collapse=diagnostics.find_collapse(iterations, losses, factor=factor, tests=tests),
        final_codes=_first(final_dir / "codes.npy"),
        final_targets=_first(final_dir / "targets.npy"),
    )


def _first(path: pathlib.Path) -> np.ndarray | None:
    """The first ``SHOWN_TARGETS`` rows of a ``.npy`` file (only those are read), or None without it."""
    if not path.exists():
        return None
    return np.array(np.load(path, mmap_mode="r")[: evaluation.SHOWN_TARGETS])


def load(paths, *, factor: float = diagnostics.COLLAPSE_FACTOR, tests: int = diagnostics.COLLAPSE_TESTS) -> Study:
    """The runs in ``paths`` (``find_runs``), each read once, with collapses by the rule ``factor``, ``tests``."""
    runs, command = _find(paths)
    instances = [load_instance(r, factor=factor, tests=tests) for r in runs]
    return Study(list(map(pathlib.Path, paths)), instances, factor, tests, command)


def by_model(instances: list[Instance]) -> dict[str, list[Instance]]:
    """Instances grouped by model, models in the paper's order (vanilla, bn, wn, ...), seeds ascending."""
    order = list(VARIANTS)
    models = sorted({i.model for i in instances}, key=lambda m: (order.index(m) if m in order else len(order), m))
    return {m: sorted((i for i in instances if i.model == m), key=lambda i: i.seed) for m in models}


def representative(group: list[Instance]) -> Instance:
    """The instance with the lowest best running-test loss (the paper shows its best instance, §6)."""
    return min(group, key=lambda i: (i.best[1] if i.best[1] is not None else np.inf, i.seed))
