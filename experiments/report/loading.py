"""Finding runs and reading each one once into the ``Study`` that the report's tables and figures share.

A run directory holds ``config.json``; a study directory (``experiments.study``) holds ``study.json`` and its
runs under ``<model>/seed_<k>/``, or ``<model>/<flag>=<value>/seed_<k>/`` for a study that sweeps a flag
(``run_dir``; the model as ``ModelConfig.name`` calls it: ``wn``, ``resnet_wn``); a run the study gave up on
(its loss stayed non-finite past its rollbacks) holds ``diverged.json``. These names live here, where the
runner that writes them and the report that reads them can import them.

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
from wngan_jax.config import MODEL_FIELDS, TrainConfig
from wngan_jax.errors import CheckpointError, DamagedFile, MissingDataError
from wngan_jax.models import VARIANTS
from wngan_jax.rundir import FINAL_TEST_DIR, read_config

STUDY_FILE = "study.json"  # a study directory's models, seeds, swept flag and values, and commands
DIVERGED_FILE = "diverged.json"  # in a run the study gave up on: the iteration and the error


def run_dir(root, model: str, seed: int, setting: str | None = None) -> pathlib.Path:
    """Where a study keeps the run of ``model`` (``ModelConfig.name``: ``wn``, ``resnet_wn``) and ``seed`` (and
    ``setting``, ``"lr=2e-4"``, in a sweep)."""
    root = pathlib.Path(root) / model
    return (root / setting if setting else root) / f"seed_{seed}"


def settings(sweep: dict | None) -> list[str | None]:
    """A study's settings of its swept flag (``study.json``'s ``sweep``) as ``"<flag>=<value>"``, or ``[None]``."""
    return [f"{sweep['flag']}={value}" for value in sweep["values"]] if sweep else [None]


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
    ema_iterations: list[int] = dataclasses.field(default_factory=list)  # the averaged generator's running test
    ema_losses: list[float] = dataclasses.field(default_factory=list)  # (runs with --ema_decay)
    setting: str | None = None  # "lr=2e-4": the value of the flag its study sweeps (run_dir)
    diverged: dict | None = None  # diverged.json: the study gave up on the run at this iteration

    @property
    def label(self) -> str:
        return f"{self.model} seed {self.seed}" + (f", {self.setting}" if self.setting else "")

    @property
    def best(self) -> tuple[int, float] | tuple[None, None]:
        """(iteration, loss) of the lowest running-test loss (the earliest if tied)."""
        return _lowest(self.iterations, self.losses)

    @property
    def setting_value(self):
        """The value of the swept flag in this run's config (``None`` outside a sweep)."""
        if self.setting is None:
            return None
        flag = self.setting.partition("=")[0]
        return getattr(self.config.model if flag in MODEL_FIELDS else self.config, flag)

    @property
    def ended_at(self) -> int:
        """The last iteration the run is known to have reached without collapsing being seen (censoring)."""
        last = self.iterations[-1] if self.iterations else 0
        return max(last, (self.diverged or {}).get("iteration") or 0)

    @property
    def ema_best(self) -> tuple[int, float] | tuple[None, None]:
        """(iteration, loss) of the averaged generator's lowest running-test loss (not a selection: the raw
        generator's running test picks the best iteration)."""
        return _lowest(self.ema_iterations, self.ema_losses)

    @property
    def ema_final_loss(self) -> float | None:
        """The final test of the averaged generator at the best iteration (``--ema_decay`` runs)."""
        return self.final.get("ema", {}).get("mean_loss")

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


def _lowest(iterations, losses) -> tuple[int, float] | tuple[None, None]:
    """(iteration, loss) of the lowest finite loss, the earliest if tied."""
    finite = [(loss, it) for it, loss in zip(iterations, losses) if np.isfinite(loss)]
    if not finite:
        return None, None
    loss, it = min(finite)
    return it, loss


@dataclasses.dataclass
class Study:
    """The runs a report is made of, each read once, and the collapse rule (docs/study.md) applied to them."""

    sources: list[pathlib.Path]  # the directories named
    instances: list[Instance]
    factor: float
    tests: int
    command: str | None = None  # the study's command line (``study.json``), when a study directory was named
    skipped: list[str] = dataclasses.field(default_factory=list)  # runs left out whole, and why
    diversity: float | None = diagnostics.DIVERSITY_FRACTION  # the diversity rule's fraction (None: not applied)

    @property
    def sweep(self) -> str | None:
        """The flag the runs' study sweeps (``lr``), or ``None``."""
        flags = {i.setting.partition("=")[0] for i in self.instances if i.setting}
        return flags.pop() if len(flags) == 1 else None

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
            wanted = (
                run_dir(path, n, s, setting)
                for s in spec["seeds"]
                for setting in settings(spec.get("sweep"))
                for n in spec["norms"]
            )
            missing = [r for r in wanted if r not in found]
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
    instance = Instance(run, config.model.name, config.seed, config, [], [], {}, None, setting=_setting(run))
    try:
        curves = metrics.read_curves(run, ("test_loss", "ema_test_loss"))
        instance.iterations, instance.losses = curves["test_loss"]
        instance.ema_iterations, instance.ema_losses = curves["ema_test_loss"]
    except DamagedFile as e:
        instance.leave_out(e, "the running-test curve")
    gave_up = None
    if (run / DIVERGED_FILE).exists():  # the study gave up on the run: a collapse where it stopped
        try:
            diverged = files.load_json(run / DIVERGED_FILE, "the divergence is dated by the run's last test")
        except DamagedFile as e:
            instance.leave_out(e, "the iteration of its divergence")
            diverged = {}
        instance.diverged = diverged if isinstance(diverged, dict) else {}
        gave_up = diagnostics.Collapse(instance.diverged.get("iteration") or instance.ended_at, rule="diverged")
    found = diagnostics.find_collapse(instance.iterations, instance.losses, factor=factor, tests=tests)
    instance.collapse = diagnostics.earliest(found, gave_up)
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


def _setting(run: pathlib.Path) -> str | None:
    """``"lr=2e-4"`` for a run of a sweep (``run_dir``: its parent is named ``<config flag>=<value>``)."""
    flag, sep, _ = run.parent.name.partition("=")
    fields = {f.name for f in dataclasses.fields(TrainConfig)} | set(MODEL_FIELDS)
    return run.parent.name if sep and flag in fields else None


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


def load(
    paths,
    *,
    factor: float = diagnostics.COLLAPSE_FACTOR,
    tests: int = diagnostics.COLLAPSE_TESTS,
    diversity: float | None = diagnostics.DIVERSITY_FRACTION,
) -> Study:
    """The runs in ``paths`` (``find_runs``), each read once, with collapses by the loss rule ``factor``,
    ``tests``, by the diversity rule ``diversity`` (``None``: not applied) and by divergence. Runs that cannot
    be read are left out and listed in ``Study.skipped``; when none can be read, that is an error."""
    runs, command, skipped = _find(paths)
    instances = []
    for run in runs:
        try:
            instances.append(load_instance(run, factor=factor, tests=tests))
        except DamagedFile as e:
            skipped.append(str(e))
    if not instances:
        raise MissingDataError(f"no run could be read: {'; '.join(skipped)}")
    if diversity is not None:
        apply_diversity_rule(instances, diversity)
    return Study(list(map(pathlib.Path, paths)), instances, factor, tests, command, skipped, diversity)


def apply_diversity_rule(instances: list[Instance], fraction: float) -> None:
    """Read every instance's fixed-code record once: its diversity curve, and its collapse now the earliest of
    the loss rule's, the diversity rule's (``diagnostics.find_diversity_collapse``) and its divergence. Only
    the records that figures show (each model's representative, the collapsed runs) stay in memory."""
    shown = {id(representative(group)) for group in by_model(instances).values()}
    for instance in instances:
        its, images = instance._read_record()
        values = [diagnostics.sample_diversity(x) for x in images] if its and images.shape[1] >= 2 else []
        instance.__dict__["diversity"] = (its, values) if values else ([], [])
        found = diagnostics.find_diversity_collapse(its, values, fraction=fraction) if values else None
        instance.collapse = diagnostics.earliest(instance.collapse, found)
        if id(instance) in shown or instance.collapse is not None:
            instance.__dict__["record"] = (its, images)


def by_model(instances: list[Instance]) -> dict[str, list[Instance]]:
    """Instances grouped by model, models in the paper's order (vanilla, bn, wn, ...), seeds ascending."""
    order = list(VARIANTS)
    models = sorted({i.model for i in instances}, key=lambda m: (order.index(m) if m in order else len(order), m))
    return {m: sorted((i for i in instances if i.model == m), key=lambda i: i.seed) for m in models}


def representative(group: list[Instance]) -> Instance:
    """The instance with the lowest best running-test loss (the paper shows its best instance, §6)."""
    return min(group, key=lambda i: (i.best[1] if i.best[1] is not None else np.inf, i.seed))
