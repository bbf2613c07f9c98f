"""Finding runs and reading each one once into the ``Study`` that the report's tables and figures share.

A run directory holds ``config.json``; a study directory (``experiments.study``) holds ``study.json`` and its
runs under ``<model>/seed_<k>/`` (``run_dir``; the model as ``ModelConfig.name`` calls it: ``wn``,
``resnet_wn``). Both names live here, where the runner that writes them and the report that reads them can
import them.

A damaged file leaves out only what it holds, and says so (``Study.left_out``, shown in the report): a run
whose ``config.json`` is cut off is left out; a damaged curve, final test, record or best checkpoint leaves
out that part of its run; a damaged ``study.json`` makes the runs below the directory be found by their
``config.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib

import numpy as np

from wngan_jax import checkpoint, diagnostics, evaluation, files, metrics
from wngan_jax import record as record_lib
from wngan_jax.config import TrainConfig
from wngan_jax.errors import CheckpointError, DamagedFile, MissingDataError
from wngan_jax.models import VARIANTS
from wngan_jax.rundir import FINAL_TEST_DIR, read_config

STUDY_FILE = "study.json"  # a study directory's models, seeds and command


def run_dir(root, model: str, seed: int) -> pathlib.Path:
    """Where a study keeps the run of ``model`` (``ModelConfig.name``: ``wn``, ``resnet_wn``) and ``seed``."""
    return pathlib.Path(root) / model / f"seed_{seed}"


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
    left_out: list[str] = dataclasses.field(default_factory=list)  # damaged parts: file, what, what to do

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
        """Whether ``checkpoints/best`` holds a checkpoint (not only its empty directory)."""
        best = self.run / "checkpoints" / "best"
        return best.is_dir() and any(p.name.isdigit() for p in best.iterdir())

    @functools.cached_property
    def record(self) -> tuple[list[int], np.ndarray | None]:
        """(iterations, samples ``(T, N, H, W, C)`` uint8) of the run's fixed-code record (``wngan_jax.record``),
        kept once read: only the figures of a model's representative run and of collapses show its images."""
        return self._read_record()

    @functools.cached_property
    def diversity(self) -> tuple[list[int], list[float]]:
        """(recorded iterations, ``diagnostics.sample_diversity`` of each record): from the record when it was
        read for a figure, otherwise read for this alone and not kept (a study's records need not fit memory)."""
        its, images = self.__dict__["record"] if "record" in self.__dict__ else self._read_record()
        if not its or images.shape[1] < 2:
            return [], []
        return its, [diagnostics.sample_diversity(x) for x in images]

    def _read_record(self) -> tuple[list[int], np.ndarray | None]:
        try:
            return record_lib.read(self.run)
        except DamagedFile as e:
            self.leave_out(e, "the fixed-code record")
            return [], None

    @functools.cached_property
    def generator(self):
        """(ModelConfig, variables) of the best generator, restored from ``checkpoints/best``; ``None`` (and
        noted in ``left_out``) when that checkpoint cannot be restored."""
        try:
            config, variables, _ = checkpoint.load_generator(self.run, "best")
        except CheckpointError as e:
            self.leave_out(e, "the best generator")
            return None
        return config, variables

    def leave_out(self, error: Exception, part: str) -> None:
        """Note that ``part`` of this run is left out of the report because of ``error``."""
        note = f"{self.label}: {part} left out: {error}"
        if note not in self.left_out:
            self.left_out.append(note)


@dataclasses.dataclass
class Study:
    """The runs a report is made of, each read once, and the collapse rule (docs/study.md) applied to them."""

    sources: list[pathlib.Path]  # the directories named
    instances: list[Instance]
    factor: float
    tests: int
    command: str | None = None  # the study's command line (``study.json``), when a study directory was named
    skipped: list[str] = dataclasses.field(default_factory=list)  # runs left out whole, and why

    @property
    def left_out(self) -> list[str]:
        """What the report leaves out and why: runs that could not be read, then damaged parts of runs."""
        return self.skipped + [note for i in self.instances for note in i.left_out]


def find_runs(paths) -> list[pathlib.Path]:
    """Run directories: given directly (with ``config.json``), or every run below a directory (a study
    directory's runs are those below it, whatever its ``study.json`` asked for)."""
    return _find(paths)[0]


def read_study(root) -> dict | None:
    """The ``study.json`` of a study directory (the union of the models, seeds and commands every call of
    ``experiments.study`` on it asked for), or None where there is none; a damaged one is a ``DamagedFile``."""
    path = pathlib.Path(root) / STUDY_FILE
    if not path.is_file():
        return None
    fix = "the report reads the runs below its directory without it (rerun the study to write it again)"
    spec = files.load_json(path, fix)
    if not (isinstance(spec, dict) and isinstance(spec.get("norms"), list) and isinstance(spec.get("seeds"), list)):
        raise DamagedFile(f"{path} does not hold a study's norms and seeds; {fix}")
    # Earlier releases recorded the latest call's command alone.
    return spec | {"commands": spec.get("commands") or [c for c in [spec.get("command")] if c]}


def _find(paths) -> tuple[list[pathlib.Path], str | None, list[str]]:
    """(runs, the study's latest command, notes on damaged ``study.json`` files). A study directory gives every
    run below it, whatever its ``study.json`` lists."""
    runs, command, notes = [], None, []
    for path in map(pathlib.Path, paths):
        if (path / "config.json").is_file():
            runs.append(path)
            continue
        found = sorted(p.parent for p in path.rglob("config.json"))
        if not found:
            raise MissingDataError(f"{path} is not a run directory and holds none (no config.json below it)")
        try:
            spec = read_study(path)
        except DamagedFile as e:
            notes.append(str(e))
            spec = None
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
    return runs, command, notes


def load_instance(run, *, factor: float, tests: int) -> Instance:
    """Read one run: its config, running-test curve (and collapse by the rule ``factor``, ``tests``), final
    test report and the first final-test codes and targets."""
    run = pathlib.Path(run)
    config = read_config(run, "the report leaves out this run (restore the file to include it)")
    instance = Instance(run, config.model.name, config.seed, config, [], [], {}, None)
    try:
        instance.iterations, instance.losses = metrics.read_metrics(run, "test_loss")
    except DamagedFile as e:
        instance.leave_out(e, "the running-test curve")
    instance.collapse = diagnostics.find_collapse(instance.iterations, instance.losses, factor=factor, tests=tests)
    final_dir = run / FINAL_TEST_DIR
    try:
        if (final_dir / "report.json").exists():
            instance.final = _final_report(final_dir / "report.json")
    except DamagedFile as e:
        instance.leave_out(e, "the final test's numbers")
    try:
        instance.final_codes = _first(final_dir / "codes.npy", (config.model.code_size,))
        instance.final_targets = _first(final_dir / "targets.npy", (*config.model.image_size, config.model.channels))
    except DamagedFile as e:
        instance.final_codes, instance.final_targets = None, None
        instance.leave_out(e, "the final test's reconstructions")
    return instance


def _final_report(path: pathlib.Path) -> dict:
    fix = "rerun the final test (python -m wngan_jax.eval --checkpoint RUN --out RUN/final_test)"
    final = files.load_json(path, fix)
    if not isinstance(final, dict):
        raise DamagedFile(f"{path} holds a {type(final).__name__}, not a final-test report; {fix}")
    return final


def _first(path: pathlib.Path, row_shape: tuple[int, ...]) -> np.ndarray | None:
    """The first ``SHOWN_TARGETS`` rows of a ``.npy`` file (only those are read), or None without it; a file
    cut off, or whose rows are not ``row_shape``, is a ``DamagedFile``."""
    if not path.exists():
        return None
    fix = "rerun the final test (python -m wngan_jax.eval --checkpoint RUN --out RUN/final_test)"
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as e:
        raise DamagedFile(f"{path} is cut off or damaged ({e}); {fix}") from None
    if tuple(array.shape[1:]) != tuple(row_shape):
        raise DamagedFile(f"{path} holds an array of shape {array.shape}, not rows of {tuple(row_shape)}; {fix}")
    return np.array(array[: evaluation.SHOWN_TARGETS])


def load(paths, *, factor: float = diagnostics.COLLAPSE_FACTOR, tests: int = diagnostics.COLLAPSE_TESTS) -> Study:
    """The runs in ``paths`` (``find_runs``), each read once, with collapses by the rule ``factor``, ``tests``.
    Runs that cannot be read are left out and listed in ``Study.skipped``; when none can be read, that is an
    error."""
    runs, command, skipped = _find(paths)
    instances = []
    for run in runs:
        try:
            instances.append(load_instance(run, factor=factor, tests=tests))
        except DamagedFile as e:
            skipped.append(str(e))
    if not instances:
        raise MissingDataError(f"no run could be read: {'; '.join(skipped)}")
    return Study(list(map(pathlib.Path, paths)), instances, factor, tests, command, skipped)


def by_model(instances: list[Instance]) -> dict[str, list[Instance]]:
    """Instances grouped by model, models in the paper's order (vanilla, bn, wn, ...), seeds ascending."""
    order = list(VARIANTS)
    models = sorted({i.model for i in instances}, key=lambda m: (order.index(m) if m in order else len(order), m))
    return {m: sorted((i for i in instances if i.model == m), key=lambda i: i.seed) for m in models}


def representative(group: list[Instance]) -> Instance:
    """The instance with the lowest best running-test loss (the paper shows its best instance, §6)."""
    return min(group, key=lambda i: (i.best[1] if i.best[1] is not None else np.inf, i.seed))
