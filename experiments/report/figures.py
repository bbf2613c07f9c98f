"""The paper's figures from a ``Study``: one PNG each, or, in its place, a sentence saying what the runs lack.

The figures read the runs through the study's instances (each run read once, ``loading``); the final-test
targets they show are those the final test saved (``final_test/targets.npy``), so a report renders without
the training data. Runs whose final test predates that file fall back to the run's data.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from experiments.report.loading import Instance, Study, by_model, load, representative
from experiments.report.tables import by_setting, loss_names, survival_events
from wngan_jax import diagnostics, evaluation, train, visualize
from wngan_jax.errors import UserError
from wngan_jax.generation import generate
from wngan_jax.visualize import Interval, Line, plot_intervals, plot_lines

RECONSTRUCTED_TARGETS = evaluation.SHOWN_TARGETS  # rows of Figs. 2/12: the targets every final test saves
TIMELINE_COLUMNS = 10  # recorded iterations shown in Figs. 3-4
TIMELINE_CODES = 4  # codes per cell of Figs. 3-4 (a 2x2 grid)
AROUND_COLLAPSE = (8, 4)  # records before and from the collapse in Figs. 5/9
COLLAPSE_CODES = 8  # rows of Figs. 5/9
INTERPOLATION_STEPS = 8


@dataclasses.dataclass
class Figure:
    """A figure of the report: its PNG (or ``None`` with the reason in ``caption``) and caption."""

    title: str
    caption: str
    path: pathlib.Path | None = None


def plot_curves(instances: list[Instance], path) -> pathlib.Path:
    """Paper Figs. 1, 13-14: running-test loss against iterations, one colour per model, one line per run,
    crosses at collapses; the averaged generators of runs with a generator EMA dashed beside them."""
    lines = []
    for group in by_model(instances).values():
        for i in group:
            lines.append(Line(i.model, i.label, i.iterations, i.losses, _collapse_mark(i)))
            if i.ema_losses:
                lines.append(Line(i.model, f"{i.label} EMA", i.ema_iterations, i.ema_losses, style="--"))
    return plot_lines(lines, path, ylabel=f"{loss_names(instances)[0]} (running test)")


def _collapse_mark(instance: Instance) -> list[tuple[int, float]]:
    """The point of the loss curve where the run collapsed (by whichever rule), or none."""
    if not instance.collapse or not instance.iterations:
        return []
    k = min(int(np.searchsorted(instance.iterations, instance.collapse.iteration)), len(instance.iterations) - 1)
    return [(instance.iterations[k], instance.losses[k])]


def plot(run_dirs, path, *, factor: float = diagnostics.COLLAPSE_FACTOR, tests: int = diagnostics.COLLAPSE_TESTS):
    """``plot_curves`` (paper Figs. 1, 13-14) of the runs in ``run_dirs``."""
    return plot_curves(load(run_dirs, factor=factor, tests=tests).instances, path)


def fig_curves(instances: list[Instance], out: pathlib.Path) -> list[Figure]:
    """Figs. 1, 13-14, one per value of a swept flag."""
    caption = "One colour per model, one line per instance; crosses mark collapses."
    if any(i.ema_losses for i in instances):
        caption += " Dashed: the same instance's averaged generator (EMA)."
    groups = by_setting(instances)
    title = "Figs. 1, 13-14: running-test reconstruction loss"
    if list(groups) == [None]:
        return [Figure(title, caption, plot_curves(instances, out / "fig1_running_test_loss.png"))]
    return [
        Figure(f"{title}, {setting}", caption, plot_curves(group, out / f"fig1_running_test_loss_{setting}.png"))
        for setting, group in groups.items()
    ]


def fig_survival(instances: list[Instance], out: pathlib.Path) -> Figure:
    """Time to collapse: the Kaplan-Meier fraction of each model's instances not yet collapsed (one line per
    model and value of a swept flag), runs that end without collapsing censored."""
    lines = []
    for model, group in by_model(instances).items():
        for setting, runs in by_setting(group).items():
            times, values = diagnostics.survival(survival_events(runs))
            end = max(i.ended_at for i in runs)
            label = (
                f"{model} ({len(runs)} run{'s' if len(runs) > 1 else ''})"
                if setting is None
                else f"{model}, {setting} ({len(runs)})"
            )
            lines.append(Line(model, label, [*times, end], [*values, values[-1]], steps=True))
    path = plot_lines(lines, out / "fig_survival.png", ylabel="fraction of instances not yet collapsed", ylim=(0, 1.02))
    return Figure(
        "Time to collapse (Kaplan-Meier)",
        "The fraction of each model's instances not yet collapsed against iterations: it steps down at each "
        "collapse by the share of the instances still running there that collapsed; an instance that ends without "
        "collapsing only leaves the count (censored). One colour per model (one line style per value of a swept "
        "flag). With three seeds each step is a third: read the curves as counts, not as rates.",
        path,
    )


def fig_collapse_fraction(instances: list[Instance], out: pathlib.Path) -> Figure | None:
    """A sweep's fraction of collapsed instances against the swept value, one line per model, with 95% Wilson
    intervals; ``None`` outside a sweep."""
    groups = by_setting(instances)
    if list(groups) == [None]:
        return None
    flag = next(iter(groups)).partition("=")[0]
    series = []
    for model, group in by_model(instances).items():
        points = [(runs[0].setting_value, runs) for runs in by_setting(group).values()]
        counts = [(sum(i.collapse is not None for i in runs), len(runs)) for _, runs in points]
        bounds = [diagnostics.wilson_interval(k, n) for k, n in counts]
        series.append(
            Interval(
                model,
                [float(v) for v, _ in points],
                [k / n for k, n in counts],
                [lo for lo, _ in bounds],
                [hi for _, hi in bounds],
            )
        )
    values = [x for s in series for x in s.xs]
    log_x = min(values) > 0 and max(values) >= 10 * min(values)
    path = plot_intervals(
        series, out / "fig_collapse_fraction.png", xlabel=flag, ylabel="fraction of instances collapsed", log_x=log_x
    )
    seeds = sorted({len(runs) for g in by_model(instances).values() for runs in by_setting(g).values()})
    return Figure(
        f"Collapses against {flag}",
        f"The fraction of each model's instances that collapsed (any rule, divergence included) at each value of "
        f"--{flag}, with 95% Wilson intervals. {'/'.join(map(str, seeds))} instances per point are few: an interval "
        "spans most of [0, 1], so only a difference between 0/3 and 3/3 says much.",
        path,
    )


def fig_reconstruction_steps(instances: list[Instance], out: pathlib.Path) -> Figure:
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


def _with_final_codes(instances: list[Instance], count: int) -> dict[str, Instance]:
    """Each model's representative, where it has ``count`` or more final-test codes and a best checkpoint that
    restores (one that does not is noted in the instance's ``left_out``)."""
    reps = {m: representative(g) for m, g in by_model(instances).items()}
    reps = {m: i for m, i in reps.items() if i.has_best and i.final_codes is not None and len(i.final_codes) >= count}
    return {m: i for m, i in reps.items() if i.generator is not None}


def _final_targets(instance: Instance, count: int) -> tuple[np.ndarray | None, str]:
    """``(images, "")``: the first ``count`` final-test images of ``instance`` (uint8), those its final test saved
    or, for a run without ``final_test/targets.npy``, rebuilt from the run's data; ``(None, why)`` when that data
    cannot be loaded."""
    if instance.final_targets is not None and len(instance.final_targets) >= count:
        return instance.final_targets[:count], ""
    c = instance.config
    try:
        ds = train.load_data(c, progress=False)
    except UserError as e:
        return None, (
            f"Not available: {instance.run / 'final_test'} holds no targets.npy and the run's data "
            f"({c.data}) cannot be loaded: {e}"
        )
    return visualize.to_uint8(ds.final_test[:count], rgb=False), ""


def fig_reconstructions(instances: list[Instance], out: pathlib.Path) -> Figure:
    """Paper Figs. 2, 12: the same final-test images reconstructed by each model (its representative's best
    generator on the codes its final test found)."""
    title = "Figs. 2, 12: the same final-test images reconstructed by each model"
    groups = _with_final_codes(instances, 1)
    if not groups:
        return Figure(title, "Not available: no run has a final test (final_test/codes.npy) and a best checkpoint.")
    n = min(RECONSTRUCTED_TARGETS, *(len(i.final_codes) for i in groups.values()))
    targets, missing = _final_targets(next(iter(groups.values())), n)
    if targets is None:
        return Figure(title, missing)
    columns = [visualize.to_uint8(targets)]
    for instance in groups.values():
        config, variables = instance.generator
        columns.append(visualize.to_uint8(generate(config, variables, instance.final_codes[:n])))
    cells = [[column[r] for column in columns] for r in range(n)]
    path = visualize.plot_image_table(cells, out / "fig2_reconstructions.png", column_labels=["target", *groups])
    return Figure(
        title,
        f"The first {n} final-test images (left) and their reconstructions by the best generator of each model's "
        "best instance (the codes its final test found).",
        path,
    )


def fig_samples_over_time(instances: list[Instance], out: pathlib.Path) -> Figure:
    """Paper Figs. 3-4: samples of the same fixed codes across training, one row per model."""
    title = "Figs. 3-4: samples of fixed codes during training"
    records = {m: representative(g).record for m, g in by_model(instances).items()}
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


def fig_collapses(instances: list[Instance], out: pathlib.Path) -> list[Figure]:
    """Paper Figs. 5, 9: the fixed codes' samples at the records around each collapse."""
    collapsed = [i for g in by_model(instances).values() for i in g if i.collapse]
    title = "Figs. 5, 9: samples around each collapse"
    if not collapsed:
        return [Figure(title, "No instance collapsed, so there is no collapse to show.")]
    figures = []
    for i in collapsed:
        its, images = i.record
        name = f"{i.label}, collapse at iteration {i.collapse.iteration:,} (rule: {i.collapse.rule})"
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
            out / f"fig5_collapse_{i.model}_seed{i.seed}{'_' + i.setting if i.setting else ''}.png",
            column_labels=[f"{its[t]:,}" + ("\n(collapse)" if its[t] == i.collapse.iteration else "") for t in window],
            title=name,
        )
        figures.append(
            Figure(
                f"{title}: {name}",
                f"{len(cells)} fixed codes (rows) at the recorded iterations around the collapse (columns). "
                + _collapse_text(i.collapse),
                path,
            )
        )
    return figures


def _collapse_text(collapse: diagnostics.Collapse) -> str:
    """How the collapse was found, for the caption of its figure."""
    if collapse.rule == "loss":
        return (
            f"The collapse is dated by the first running test past the loss rule; the best loss before it was "
            f"{collapse.best_loss:.6f} at iteration {collapse.best_iteration:,}."
        )
    if collapse.rule == "diversity":
        return (
            f"The collapse is dated by the first record past the diversity rule: diversity {collapse.loss:.4f}, "
            f"against {collapse.best_loss:.4f} at iteration {collapse.best_iteration:,}."
        )
    return "The loss became non-finite there and stayed so past the run's rollbacks (the study gave up on it)."


def diversity_curve(instance: Instance) -> tuple[list[int], list[float]]:
    """(recorded iterations, :func:`wngan_jax.diagnostics.sample_diversity` of each record)."""
    return instance.diversity


def fig_diversity(instances: list[Instance], out: pathlib.Path) -> Figure:
    """Appendix B: the diversity of the fixed codes' samples against iterations, one line per instance."""
    title = "Sample diversity during training (appendix B)"
    lines = []
    for group in by_model(instances).values():
        for i in group:
            its, values = diversity_curve(i)
            if its:
                marks = ()
                if i.collapse and i.collapse.rule == "diversity":
                    marks = [(i.collapse.iteration, i.collapse.loss)]
                elif i.collapse:
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


def fig_interpolation(instances: list[Instance], out: pathlib.Path) -> Figure:
    """§2: each model's best generator along the straight line between the codes of two reconstructed images."""
    title = "Interpolation between the codes of two reconstructed test images (§2)"
    groups = _with_final_codes(instances, 2)
    if not groups:
        return Figure(title, "Not available: no run has a final test of two or more images and a best checkpoint.")
    targets, missing = _final_targets(next(iter(groups.values())), 2)
    if targets is None:
        return Figure(title, missing)
    targets = visualize.to_uint8(targets)
    weights = np.linspace(0.0, 1.0, INTERPOLATION_STEPS, dtype=np.float32)[:, None]
    cells = []
    for instance in groups.values():
        config, variables = instance.generator
        a, b = instance.final_codes[:2]
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


def all_figures(study: Study, out: pathlib.Path) -> list[Figure]:
    """Every figure of the report, its PNG written to ``out``."""
    instances = study.instances
    fraction = fig_collapse_fraction(instances, out)
    return [
        *fig_curves(instances, out),
        *([fraction] if fraction else []),
        fig_survival(instances, out),
        fig_reconstruction_steps(instances, out),
        fig_reconstructions(instances, out),
        fig_samples_over_time(instances, out),
        *fig_collapses(instances, out),
        fig_diversity(instances, out),
        fig_interpolation(instances, out),
    ]
