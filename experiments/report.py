"""The paper's tables and figures from training runs (docs/study.md).

``python -m experiments.report runs/study --out report/`` reads every run under ``runs/study`` (a study of
``python -m experiments.study``, or any run directories) and writes ``report/index.html`` (one page, images
embedded, opens offline), ``report/tables.md`` and one PNG per figure: Table 2 and Tables 3-5 (per model and
per instance), Figs. 1/13-14 (running-test loss, collapses marked), Figs. 2/12 (the same test images
reconstructed by each model), Figs. 3-4 (samples of fixed codes across training), Figs. 5/9 (samples around
each collapse), the sample diversity of every instance (appendix B) and code interpolations (§2).

``--markdown docs/results.md`` also writes that page (provenance, tables, figures copied to ``docs/results/``)
for the repository. ``python -m experiments.report RUN... [--plot FILE]`` prints Table 2 for the runs (one
row per run) and plots Fig. 1.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import json
import pathlib
import statistics
import sys

import numpy as np
from absl import flags

from wngan_jax import cli, diagnostics, evaluation, visualize
from wngan_jax import record as record_lib
from wngan_jax.config import TrainConfig
from wngan_jax.errors import ConfigError, MissingDataError
from wngan_jax.metrics import read_metrics
from wngan_jax.models import VARIANTS
from wngan_jax.visualize import Line, plot_lines

RECONSTRUCTED_TARGETS = 8  # rows of Figs. 2/12
TIMELINE_COLUMNS = 10  # recorded iterations shown in Figs. 3-4
TIMELINE_CODES = 4  # codes per cell of Figs. 3-4 (a 2x2 grid)
AROUND_COLLAPSE = (8, 4)  # records before and from the collapse in Figs. 5/9
COLLAPSE_CODES = 8  # rows of Figs. 5/9
INTERPOLATION_STEPS = 8


# Runs ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Instance:
    """One run of a study: its curve, its Table 2 numbers and its collapse."""

    run: pathlib.Path
    model: str
    seed: int
    config: TrainConfig
    iterations: list[int]
    losses: list[float]
    final: dict
    collapse: diagnostics.Collapse | None

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


def find_runs(paths) -> list[pathlib.Path]:
    """Run directories: given directly (with ``config.json``), the runs of a study directory (its
    ``study.json``), or every run below a directory."""
    from experiments.study import STUDY_FILE, run_dir

    runs = []
    for path in map(pathlib.Path, paths):
        if (path / "config.json").is_file():
            found = [path]
        elif (path / STUDY_FILE).is_file():
            spec = json.loads((path / STUDY_FILE).read_text())
            found = [run_dir(path, n, s) for n in spec["norms"] for s in spec["seeds"]]
            found = [r for r in found if (r / "config.json").is_file()]
        else:
            found = sorted(p.parent for p in path.rglob("config.json"))
        if not found:
            raise MissingDataError(f"{path} is not a run directory and holds none (no config.json below it)")
        runs += found
    return runs


def load_instance(run, *, factor: float, tests: int) -> Instance:
    run = pathlib.Path(run)
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    iterations, losses = read_metrics(run, "test_loss")
    final_path = run / "final_test" / "report.json"
    final = json.loads(final_path.read_text()) if final_path.exists() else {}
    return Instance(
        run=run,
        model=config.norm,
        seed=config.seed,
        config=config,
        iterations=iterations,
        losses=losses,
        final=final,
        collapse=diagnostics.find_collapse(iterations, losses, factor=factor, tests=tests),
    )


def by_model(instances: list[Instance]) -> dict[str, list[Instance]]:
    """Instances grouped by model, models in the paper's order (vanilla, bn, wn, ...), seeds ascending."""
    order = list(VARIANTS)
    models = sorted({i.model for i in instances}, key=lambda m: (order.index(m) if m in order else len(order), m))
    return {m: sorted((i for i in instances if i.model == m), key=lambda i: i.seed) for m in models}


def representative(group: list[Instance]) -> Instance:
    """The instance with the lowest best running-test loss (the paper shows its best instance, §6)."""
    return min(group, key=lambda i: (i.best[1] if i.best[1] is not None else np.inf, i.seed))


# Tables ---------------------------------------------------------------------------------------------------
def mean_std(values, *, iterations: bool = False) -> str:
    """``mean ± sample std`` of the values that exist (or the value when there is one, ``-`` when none)."""
    values = [v for v in values if v is not None]
    fmt = _iteration if iterations else _num
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.mean(values))} ± {fmt(statistics.stdev(values))}"


def _num(v) -> str:
    return "-" if v is None else f"{v:.6f}"


def _iteration(v) -> str:
    return "-" if v is None else f"{v:,.0f}"


def summary_rows(instances: list[Instance]) -> list[dict]:
    """Paper Table 2 over instances: per model, the best running-test loss, its iteration and the final-test
    loss (mean ± std over instances), and how many instances collapsed."""
    rows = []
    for model, group in by_model(instances).items():
        rows.append(
            dict(
                model=model,
                instances=len(group),
                best_loss=mean_std([i.best[1] for i in group]),
                best_iteration=mean_std([i.best[0] for i in group], iterations=True),
                final_loss=mean_std([i.final_loss for i in group]),
                collapsed=f"{sum(i.collapse is not None for i in group)}/{len(group)}",
            )
        )
    return rows


def instance_rows(instances: list[Instance]) -> list[dict]:
    """Paper Tables 3-5: every instance's best running-test loss, its iteration, final loss and collapse."""
    rows = []
    for model, group in by_model(instances).items():
        for i in group:
            rows.append(
                dict(
                    model=model,
                    seed=i.seed,
                    best_iteration=_iteration(i.best[0]),
                    best_loss=_num(i.best[1]),
                    final_loss=_num(i.final_loss),
                    last_iteration=_iteration(i.iterations[-1] if i.iterations else None),
                    last_final_loss=_num(i.last_final_loss),
                    collapse=_iteration(i.collapse.iteration) if i.collapse else "-",
                )
            )
    return rows


def _steps(instances: list[Instance]) -> tuple[str, str]:
    test = {i.config.test_steps for i in instances}
    final = {i.final.get("steps") for i in instances if i.final}
    test_head = f"{test.pop():,}-step loss" if len(test) == 1 else "running-test loss"
    final_head = f"final {final.pop():,}-step loss" if len(final) == 1 else "final-test loss"
    return test_head, final_head


SUMMARY_COLUMNS = ("model", "instances", "best_loss", "best_iteration", "final_loss", "collapsed")
INSTANCE_COLUMNS = (
    "model",
    "seed",
    "best_iteration",
    "best_loss",
    "final_loss",
    "last_iteration",
    "last_final_loss",
    "collapse",
)


def _headings(instances) -> dict:
    test_head, final_head = _steps(instances)
    return dict(
        model="Model",
        instances="Instances",
        seed="Seed",
        best_loss=f"Best {test_head}",
        best_iteration="Iteration",
        final_loss=final_head[0].upper() + final_head[1:],
        collapsed="Collapsed",
        last_iteration="Trained to",
        last_final_loss="Last generator's final loss",
        collapse="Collapse at",
    )


def markdown_table(rows: list[dict], columns, headings: dict) -> str:
    lines = ["| " + " | ".join(headings[c] for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def paired_rows(instances: list[Instance], confidence: float = 0.95) -> list[dict]:
    """Each model's representative instance against the first model's (vanilla when present), paired on the
    same final-test targets (``evaluation.paired_difference``): "WN is 10.5% lower than vanilla" with its
    bootstrap interval. Models whose final test used other targets (other data, split or count) are left out."""
    reps = {m: representative(g) for m, g in by_model(instances).items()}
    if len(reps) < 2:
        return []
    base, *others = reps.values()
    rows = []
    for inst in others:
        a, b = inst.final.get("per_sample_loss"), base.final.get("per_sample_loss")
        same = (inst.config.data, inst.config.split_seed, inst.config.final_test) == (
            base.config.data,
            base.config.split_seed,
            base.config.final_test,
        )
        if not (a and b and len(a) == len(b) and same):
            continue
        r = evaluation.paired_difference(a, b, confidence=confidence)
        (lo, hi), (rlo, rhi) = r["difference_interval"], r["relative_interval"]
        rows.append(
            dict(
                model=f"{inst.label} vs {base.label}",
                samples=r["samples"],
                difference=f"{r['mean_difference']:+.6f} [{lo:+.6f}, {hi:+.6f}]",
                relative=f"{100 * r['relative_difference']:+.1f}% [{100 * rlo:+.1f}%, {100 * rhi:+.1f}%]",
            )
        )
    return rows


PAIRED_COLUMNS = ("model", "samples", "difference", "relative")
PAIRED_HEADINGS = {
    "model": "Models (best instances)",
    "samples": "Targets",
    "difference": "Mean difference of final-test losses [95% interval]",
    "relative": "Relative [95% interval]",
}
PAIRED_TEXT = (
    "Each model's best instance against the first model's on the same final-test targets: the mean per-target "
    "difference of the final-test losses, with a 95% percentile bootstrap interval over the targets "
    "(negative: lower loss than the first model)."
)


def tables_markdown(instances: list[Instance], *, factor: float, tests: int) -> str:
    heads = _headings(instances)
    paired = paired_rows(instances)
    return (
        "## Table 2: best generator of each model\n\n"
        "Mean ± sample standard deviation over the instances (seeds) of each model.\n\n"
        f"{markdown_table(summary_rows(instances), SUMMARY_COLUMNS, heads)}\n\n"
        "## Tables 3-5: every instance\n\n"
        f"{markdown_table(instance_rows(instances), INSTANCE_COLUMNS, heads)}\n\n"
        f"{collapse_rule(factor, tests)}\n"
        + (
            f"\n## Paired comparison\n\n{PAIRED_TEXT}\n\n{markdown_table(paired, PAIRED_COLUMNS, PAIRED_HEADINGS)}\n"
            if paired
            else ""
        )
    )


def summary_table(paths, *, factor: float = diagnostics.COLLAPSE_FACTOR, tests: int = diagnostics.COLLAPSE_TESTS):
    """Paper Table 2 (markdown) for the runs in ``paths``."""
    instances = [load_instance(r, factor=factor, tests=tests) for r in find_runs(paths)]
    return markdown_table(summary_rows(instances), SUMMARY_COLUMNS, _headings(instances))


def collapse_rule(factor: float, tests: int) -> str:
    return (
        f"Collapse (docs/study.md): the first running test whose loss, and that of the next {tests - 1} tests, "
        f"exceeds {factor:g} times the best loss before it."
    )


def plot(run_dirs, path, *, factor: float = diagnostics.COLLAPSE_FACTOR, tests: int = diagnostics.COLLAPSE_TESTS):
    """Paper Figs. 1, 13-14: running-test loss against iterations, one colour per model, one line per run,
    crosses at collapses."""
    instances = [load_instance(d, factor=factor, tests=tests) for d in run_dirs]
    lines = [
        Line(i.model, i.label, i.iterations, i.losses, [(i.collapse.iteration, i.collapse.loss)] if i.collapse else ())
        for group in by_model(instances).values()
        for i in group
    ]
    return plot_lines(lines, path, ylabel=f"{_steps(instances)[0]} (running test)")


# Figures --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Figure:
    """A figure of the report: its PNG (or ``None`` with the reason in ``caption``) and caption."""

    title: str
    caption: str
    path: pathlib.Path | None = None


def fig_curves(runs, out: pathlib.Path, factor: float, tests: int) -> Figure:
    path = plot(runs, out / "fig1_running_test_loss.png", factor=factor, tests=tests)
    return Figure(
        "Figs. 1, 13-14: running-test reconstruction loss",
        "One colour per model, one line per instance; crosses mark collapses.",
        path,
    )


def fig_reconstruction_steps(instances, out: pathlib.Path) -> Figure:
    """Appendix C.3: the final-test loss against the number of reconstruction steps (the ranking of the models
    can change with it), one line per instance, from the losses the final test records on its way."""
    title = "Appendix C.3: final-test loss against reconstruction steps"
    lines = [
        Line(i.model, i.label, [int(k) for k in curve], list(curve.values()))
        for i in instances
        if len(curve := i.final.get("loss_curve", {})) > 1
    ]
    if not lines:
        return Figure(title, "Not available: no final test recorded its loss at several step counts.")
    path = plot_lines(
        lines, out / "fig_reconstruction_steps.png", xlabel="reconstruction steps", ylabel="final-test loss"
    )
    return Figure(title, "One colour per model, one line per instance; the loss after 50, 100, 200, ... steps.", path)


def _variables(instance: Instance, which: str = "best"):
    from wngan_jax import checkpoint

    return checkpoint.load_generator(instance.run, which)


def _final_targets(instance: Instance, count: int) -> np.ndarray:
    """The first ``count`` images of the run's final test set (those ``final_test/codes.npy`` reconstruct)."""
    from wngan_jax import data

    c = instance.config
    ds = data.load(
        c.data,
        c.model.image_size,
        channels=c.model.channels,
        cache_dir=c.cache_dir or None,
        data_dir=c.data_dir or None,
        final_test=c.final_test,
        running_test=c.running_test,
        split_seed=c.split_seed,
        progress=False,
    )
    return np.asarray(ds.final_test[:count])


def _has_final_codes(i: Instance) -> bool:
    return (i.run / "final_test" / "codes.npy").exists() and (i.run / "checkpoints" / "best").is_dir()


def fig_reconstructions(instances, out: pathlib.Path) -> Figure:
    from wngan_jax.generation import generate

    title = "Figs. 2, 12: the same final-test images reconstructed by each model"
    groups = {m: representative(g) for m, g in by_model(instances).items()}
    groups = {m: i for m, i in groups.items() if _has_final_codes(i)}
    if not groups:
        return Figure(title, "Not available: no run has a final test (final_test/codes.npy) and a best checkpoint.")
    first = next(iter(groups.values()))
    n = min(RECONSTRUCTED_TARGETS, *(len(np.load(i.run / "final_test" / "codes.npy")) for i in groups.values()))
    targets = visualize.to_uint8(_final_targets(first, n))
    columns = [targets]
    for instance in groups.values():
        config, variables, _ = _variables(instance)
        codes = np.load(instance.run / "final_test" / "codes.npy")[:n]
        columns.append(visualize.to_uint8(generate(config, variables, codes)))
    cells = [[column[r] for column in columns] for r in range(n)]
    path = visualize.plot_image_table(cells, out / "fig2_reconstructions.png", column_labels=["target", *groups])
    return Figure(
        title,
        f"The first {n} final-test images (left) and their reconstructions by the best generator of each model's "
        "best instance (the codes its final test found).",
        path,
    )


def fig_samples_over_time(instances, out: pathlib.Path) -> Figure:
    title = "Figs. 3-4: samples of fixed codes during training"
    records = {m: record_lib.read(representative(g).run) for m, g in by_model(instances).items()}
    records = {m: r for m, r in records.items() if r[0]}
    if not records:
        return Figure(title, "Not available: no run has a fixed-code record (RUN/record/).")
    common = sorted(set.intersection(*(set(its) for its, _ in records.values())))
    pick = [common[round(k)] for k in np.linspace(0, len(common) - 1, min(TIMELINE_COLUMNS, len(common)))]
    pick = list(dict.fromkeys(pick))
    cells = []
    for its, images in records.values():
        cells.append([visualize.grid(images[its.index(t)][:TIMELINE_CODES], columns=2, min_side=0) for t in pick])
    path = visualize.plot_image_table(
        cells,
        out / "fig3_samples_over_time.png",
        row_labels=list(records),
        column_labels=[f"{t:,}" for t in pick],
    )
    return Figure(
        title,
        f"The same {TIMELINE_CODES} codes (the run's record codes, shared by all models of a seed) at {len(pick)} "
        "recorded iterations; one row per model (its best instance).",
        path,
    )


def fig_collapses(instances, out: pathlib.Path) -> list[Figure]:
    collapsed = [i for g in by_model(instances).values() for i in g if i.collapse]
    title = "Figs. 5, 9: samples around each collapse"
    if not collapsed:
        return [Figure(title, "No instance collapsed, so there is no collapse to show.")]
    figures = []
    for i in collapsed:
        its, images = record_lib.read(i.run)
        name = f"{i.model} seed {i.seed}, collapse at iteration {i.collapse.iteration:,}"
        if not its:
            figures.append(Figure(f"{title}: {name}", "Not available: this run has no fixed-code record."))
            continue
        at = int(np.searchsorted(its, i.collapse.iteration))
        before, after = AROUND_COLLAPSE
        window = list(range(max(0, at - before), min(len(its), at + after)))
        shown = visualize.to_uint8(images[window])  # (columns, codes, H, W, 3)
        cells = [list(shown[:, c]) for c in range(min(COLLAPSE_CODES, shown.shape[1]))]
        path = visualize.plot_image_table(
            cells,
            out / f"fig5_collapse_{i.model}_seed{i.seed}.png",
            column_labels=[f"{its[t]:,}" + ("\n(collapse)" if its[t] == i.collapse.iteration else "") for t in window],
            title=name,
        )
        figures.append(
            Figure(
                f"{title}: {name}",
                f"{len(cells)} fixed codes (rows) at the recorded iterations around the collapse (columns). "
                f"The collapse is dated by the first running test past the rule; the best loss before it was "
                f"{i.collapse.best_loss:.6f} at iteration {i.collapse.best_iteration:,}.",
                path,
            )
        )
    return figures


def diversity_curve(instance: Instance) -> tuple[list[int], list[float]]:
    """(recorded iterations, :func:`wngan_jax.diagnostics.sample_diversity` of each record)."""
    its, images = record_lib.read(instance.run)
    if not its or images.shape[1] < 2:
        return [], []
    return its, [diagnostics.sample_diversity(x) for x in images]


def fig_diversity(instances, out: pathlib.Path) -> Figure:
    title = "Sample diversity during training (appendix B)"
    lines = []
    for group in by_model(instances).values():
        for i in group:
            its, values = diversity_curve(i)
            if its:
                marks = ()
                if i.collapse:
                    k = min(int(np.searchsorted(its, i.collapse.iteration)), len(its) - 1)
                    marks = [(its[k], values[k])]
                lines.append(Line(i.model, i.label, its, values, marks))
    if not lines:
        return Figure(title, "Not available: no run has a fixed-code record with two or more codes.")
    path = plot_lines(lines, out / "fig_diversity.png", ylabel="mean pairwise RMS distance of fixed-code samples")
    return Figure(
        title,
        "Mean over all pairs of the record's fixed codes of the root-mean-square pixel difference of their "
        "samples (0: every code gives the same image). One colour per model, one line per instance; crosses mark "
        "collapses. See docs/study.md for how this relates to the paper's visual argument.",
        path,
    )


def fig_interpolation(instances, out: pathlib.Path) -> Figure:
    from wngan_jax.generation import generate

    title = "Interpolation between the codes of two reconstructed test images (§2)"
    groups = {m: representative(g) for m, g in by_model(instances).items()}
    groups = {m: i for m, i in groups.items() if _has_final_codes(i)}
    groups = {m: i for m, i in groups.items() if len(np.load(i.run / "final_test" / "codes.npy")) >= 2}
    if not groups:
        return Figure(title, "Not available: no run has a final test of two or more images and a best checkpoint.")
    targets = visualize.to_uint8(_final_targets(next(iter(groups.values())), 2))
    weights = np.linspace(0.0, 1.0, INTERPOLATION_STEPS, dtype=np.float32)[:, None]
    cells = []
    for instance in groups.values():
        config, variables, _ = _variables(instance)
        a, b = np.load(instance.run / "final_test" / "codes.npy")[:2]
        images = visualize.to_uint8(generate(config, variables, (1 - weights) * a + weights * b))
        cells.append([targets[0], *images, targets[1]])
    labels = ["target A", *(f"{w:.2f}" for w in weights[:, 0]), "target B"]
    path = visualize.plot_image_table(
        cells, out / "fig_interpolation.png", row_labels=list(groups), column_labels=labels
    )
    return Figure(
        title,
        "Each row: the first two final-test images at the ends and, between them, the model's best generator "
        "on the straight line between the two codes its final test found for them (weights of B above).",
        path,
    )


# Report ---------------------------------------------------------------------------------------------------
def write_report(
    paths,
    out,
    *,
    factor: float = diagnostics.COLLAPSE_FACTOR,
    tests: int = diagnostics.COLLAPSE_TESTS,
    markdown=None,
) -> pathlib.Path:
    """Write ``out/index.html``, ``out/tables.md`` and the figures' PNGs for the runs in ``paths``; with
    ``markdown``, also that Markdown page with copies of the figures in a folder named after it."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = find_runs(paths)
    instances = [load_instance(r, factor=factor, tests=tests) for r in runs]
    tables = tables_markdown(instances, factor=factor, tests=tests)
    (out / "tables.md").write_text(tables)
    figures = [
        fig_curves(runs, out, factor, tests),
        fig_reconstruction_steps(instances, out),
        fig_reconstructions(instances, out),
        fig_samples_over_time(instances, out),
        *fig_collapses(instances, out),
        fig_diversity(instances, out),
        fig_interpolation(instances, out),
    ]
    index = out / "index.html"
    index.write_text(_html(paths, instances, figures, factor, tests))
    if markdown is not None:
        write_markdown(pathlib.Path(markdown), paths, instances, figures, tables)
    return index


def write_markdown(path: pathlib.Path, paths, instances, figures, tables: str) -> None:
    """A Markdown page of the study (e.g. docs/results.md): provenance, tables, figures (copied next to it)."""
    import shutil

    folder = path.parent / path.stem
    folder.mkdir(parents=True, exist_ok=True)
    devices = sorted({i.final["device"] for i in instances if "device" in i.final})
    command = _study_command(paths)
    lines = [
        "# Results\n",
        f"- Command: `{command}`" if command else f"- Runs: {', '.join(map(str, paths))}",
        f"- Report written: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}; "
        f"{len(instances)} runs, trained to iterations "
        f"{', '.join(sorted({_iteration(i.iterations[-1]) for i in instances if i.iterations}))}",
        f"- Final tests ran on: {', '.join(devices) or '-'}\n",
        tables,
    ]
    for fig in figures:
        lines.append(f"## {fig.title}\n")
        if fig.path is not None:
            shutil.copy(fig.path, folder / fig.path.name)
            lines.append(f"![{fig.title}]({folder.name}/{fig.path.name})\n")
        lines.append(f"{fig.caption}\n")
    path.write_text("\n".join(lines))


def _study_command(paths) -> str | None:
    from experiments.study import STUDY_FILE

    for p in map(pathlib.Path, paths):
        if (p / STUDY_FILE).is_file():
            return json.loads((p / STUDY_FILE).read_text()).get("command")
    return None


def _html_table(rows, columns, heads) -> str:
    head = "".join(f"<th>{html.escape(heads[c])}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(paths, instances, figures, factor, tests) -> str:
    heads = _headings(instances)
    command = _study_command(paths)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>wngan_jax study report</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
        "img{max-width:100%;image-rendering:pixelated}figure{margin:2em 0}figcaption{color:#444}"
        "</style></head><body>",
        "<h1>Study report</h1>",
        f"<p>{len(instances)} runs from {html.escape(', '.join(map(str, paths)))}; written "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}.</p>",
    ]
    if command:
        parts.append(f"<p>Study command: <code>{html.escape(command)}</code></p>")
    parts += [
        "<h2>Table 2: best generator of each model</h2>",
        "<p>Mean ± sample standard deviation over the instances (seeds) of each model.</p>",
        _html_table(summary_rows(instances), SUMMARY_COLUMNS, heads),
        "<h2>Tables 3-5: every instance</h2>",
        _html_table(instance_rows(instances), INSTANCE_COLUMNS, heads),
        f"<p>{html.escape(collapse_rule(factor, tests))}</p>",
    ]
    if paired := paired_rows(instances):
        parts += [
            "<h2>Paired comparison</h2>",
            f"<p>{html.escape(PAIRED_TEXT)}</p>",
            _html_table(paired, PAIRED_COLUMNS, PAIRED_HEADINGS),
        ]
    for fig in figures:
        parts.append(f"<figure><h2>{html.escape(fig.title)}</h2>")
        if fig.path is not None:
            data = base64.b64encode(fig.path.read_bytes()).decode()
            parts.append(f"<img src='data:image/png;base64,{data}' alt='{html.escape(fig.path.name)}'>")
        parts.append(f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


# Command --------------------------------------------------------------------------------------------------
def define(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("out", None, "write index.html, tables.md and the figures' PNGs here", flag_values=fv)
    flags.DEFINE_string(
        "markdown",
        None,
        "with --out: also this Markdown page (figures copied to a folder named after it)",
        flag_values=fv,
    )
    flags.DEFINE_string("plot", None, "write the running-test loss curves (Fig. 1) to this PNG", flag_values=fv)
    flags.DEFINE_float(
        "collapse_factor", diagnostics.COLLAPSE_FACTOR, "collapse: loss above this times the best", flag_values=fv
    )
    flags.DEFINE_integer(
        "collapse_tests", diagnostics.COLLAPSE_TESTS, "collapse: for this many running tests in a row", flag_values=fv
    )


def body(fv: flags.FlagValues, args: list[str]) -> int:
    if not args:
        raise MissingDataError("name the run directories or study directories to report on")
    runs = find_runs(args)
    if fv.markdown and not fv.out:
        raise ConfigError("--markdown needs --out (the report it is made from)")
    if fv.out:
        index = write_report(args, fv.out, factor=fv.collapse_factor, tests=fv.collapse_tests, markdown=fv.markdown)
        print(summary_table(args, factor=fv.collapse_factor, tests=fv.collapse_tests))
        print(f"\nreport: {index}\ntables: {index.parent / 'tables.md'}")
        return 0
    print(summary_table(runs, factor=fv.collapse_factor, tests=fv.collapse_tests))
    if fv.plot:
        print(f"plot: {plot(runs, fv.plot, factor=fv.collapse_factor, tests=fv.collapse_tests)}")
    return 0


def main(argv=None) -> int:
    return cli.run("experiments.report", __doc__, define, body, argv)


if __name__ == "__main__":
    sys.exit(main())
