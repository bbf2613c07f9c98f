"""Finding runs and reading each one once into the ``Study`` that the report's tables and figures share.

A run directory holds ``config.json``; a study directory (``experiments.study``) holds ``study.json`` and its
runs under ``<norm>/seed_<k>/``, or ``<norm>/<flag>=<value>/seed_<k>/`` for a study that sweeps a flag
(``run_dir``); a run the study gave up on (its loss stayed non-finite past its rollbacks) holds
``diverged.json``. These names live here, where the runner that writes them and the report that reads them
can import them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib

import numpy as np

from wngan_jax import checkpoint, diagnostics, evaluation, metrics
from wngan_jax import record as record_lib
from wngan_jax.config import MODEL_FIELDS, TrainConfig
from wngan_jax.errors import MissingDataError
from wngan_jax.models import VARIANTS
from wngan_jax.rundir import FINAL_TEST_DIR

STUDY_FILE = "study.json"  # a study directory's models, seeds, swept flag and values, and command
DIVERGED_FILE = "diverged.json"  # in a run the study gave up on: the iteration and the error


def run_dir(root, norm: str, seed: int, setting: str | None = None) -> pathlib.Path:
    """Where a study keeps the run of ``norm`` and ``seed`` (and ``setting``, ``"lr=2e-4"``, in a sweep)."""
    root = pathlib.Path(root) / norm
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
    ema_iterations: list[int] = dataclasses.field(default_factory=list)  # the averaged generator's running test
    ema_losses: list[float] = dataclasses.field(default_factory=list)  # (runs with --ema_decay)
    setting: str | None = None  # "lr=2e-4": the value of the flag its study sweeps (run_dir)
    diverged: dict | None = None  # diverged.json: the study gave up on the run at this iteration

    @property
    def label(self) -> str:
        return f"{self.model} seed {self.seed}" + (f", {self.setting}" if self.setting else "")

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
    def best(self) -> tuple[int, float] | tuple[None, None]:
        """(iteration, loss) of the lowest running-test loss (the earliest if tied)."""
        return _lowest(self.iterations, self.losses)

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
    diversity: float | None = diagnostics.DIVERSITY_FRACTION  # the diversity rule's fraction (None: not applied)

    @property
    def sweep(self) -> str | None:
        """The flag the runs' study sweeps (``lr``), or ``None``."""
        flags = {i.setting.partition("=")[0] for i in self.instances if i.setting}
        return flags.pop() if len(flags) == 1 else None


def find_runs(paths) -> list[pathlib.Path]:
    """Run directories: given directly (with ``config.json``), the runs of a study directory (its
    ``study.json``), or every run below a directory."""
    return _find(paths)[0]


def _find(paths) -> tuple[list[pathlib.Path], str | None]:
    runs, command = [], None
    for path in map(pathlib.Path, paths):
        if (path / "config.json").is_file():
            found = [path]
        elif (path / STUDY_FILE).is_file():
            spec = json.loads((path / STUDY_FILE).read_text())
            command = command or spec.get("command")
            found = [
                run_dir(path, n, s, setting)
                for n in spec["norms"]
                for setting in settings(spec.get("sweep"))
                for s in spec["seeds"]
            ]
            found = [r for r in found if (r / "config.json").is_file()]
        else:
            found = sorted(p.parent for p in path.rglob("config.json"))
        if not found:
            raise MissingDataError(f"{path} is not a run directory and holds none (no config.json below it)")
        runs += found
    return runs, command


def load_instance(run, *, factor: float, tests: int) -> Instance:
    """Read one run: its config, running-test curve (and collapse by the rule ``factor``, ``tests``), final
    test report and the first final-test codes and targets."""
    run = pathlib.Path(run)
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    curves = _curves(run, ("test_loss", "ema_test_loss"))
    (iterations, losses), (ema_iterations, ema_losses) = curves["test_loss"], curves["ema_test_loss"]
    final_dir = run / FINAL_TEST_DIR
    final = json.loads((final_dir / "report.json").read_text()) if (final_dir / "report.json").exists() else {}
    diverged = json.loads((run / DIVERGED_FILE).read_text()) if (run / DIVERGED_FILE).exists() else None
    gave_up = None
    if diverged is not None:
        gave_up = diagnostics.Collapse(
            diverged.get("iteration") or (iterations[-1] if iterations else 0), rule="diverged"
        )
    return Instance(
        run=run,
        model=config.norm,
        seed=config.seed,
        config=config,
        iterations=iterations,
        losses=losses,
        final=final,
        collapse=diagnostics.earliest(
            diagnostics.find_collapse(iterations, losses, factor=factor, tests=tests), gave_up
        ),
        final_codes=_first(final_dir / "codes.npy"),
        final_targets=_first(final_dir / "targets.npy"),
        ema_iterations=ema_iterations,
        ema_losses=ema_losses,
        setting=_setting(run),
        diverged=diverged,
    )


def _setting(run: pathlib.Path) -> str | None:
    """``"lr=2e-4"`` for a run of a sweep (``run_dir``: its parent is named ``<config flag>=<value>``)."""
    flag, sep, _ = run.parent.name.partition("=")
    fields = {f.name for f in dataclasses.fields(TrainConfig)} | set(MODEL_FIELDS)
    return run.parent.name if sep and flag in fields else None


def _curves(run: pathlib.Path, keys) -> dict[str, tuple[list[int], list[float]]]:
    """(iterations, values) of each scalar in ``keys`` from one reading of the run's metrics."""
    curves = {k: ([], []) for k in keys}
    for row in metrics.records(run):
        for key in keys:
            if key in row:
                curves[key][0].append(row["iteration"])
                curves[key][1].append(float(row[key]))
    return curves


def _first(path: pathlib.Path) -> np.ndarray | None:
    """The first ``SHOWN_TARGETS`` rows of a ``.npy`` file (only those are read), or None without it."""
    if not path.exists():
        return None
    return np.array(np.load(path, mmap_mode="r")[: evaluation.SHOWN_TARGETS])


def load(
    paths,
    *,
    factor: float = diagnostics.COLLAPSE_FACTOR,
    tests: int = diagnostics.COLLAPSE_TESTS,
    diversity: float | None = diagnostics.DIVERSITY_FRACTION,
) -> Study:
    """The runs in ``paths`` (``find_runs``), each read once, with collapses by the loss rule ``factor``,
    ``tests``, by the diversity rule ``diversity`` (``None``: not applied) and by divergence."""
    runs, command = _find(paths)
    instances = [load_instance(r, factor=factor, tests=tests) for r in runs]
    if diversity is not None:
        apply_diversity_rule(instances, diversity)
    return Study(list(map(pathlib.Path, paths)), instances, factor, tests, command, diversity)


def apply_diversity_rule(instances: list[Instance], fraction: float) -> None:
    """Read every instance's fixed-code record once: its diversity curve, and its collapse now the earliest of
    the loss rule's, the diversity rule's (``diagnostics.find_diversity_collapse``) and its divergence. Only
    the records that figures show (each model's representative, the collapsed runs) stay in memory."""
    shown = {id(representative(group)) for group in by_model(instances).values()}
    for instance in instances:
        its, images = record_lib.read(instance.run)
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
