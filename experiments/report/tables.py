"""The paper's tables from a ``Study``: their numbers, headings and prose, written once for every format
(``render`` writes them as Markdown and HTML)."""

from __future__ import annotations

import dataclasses
import statistics

from experiments.report.loading import Instance, Study, by_model, representative
from wngan_jax import diagnostics, evaluation

SUMMARY_COLUMNS = ("model", "instances", "best_loss", "best_iteration", "final_loss", "collapsed", "median_collapse")
INSTANCE_COLUMNS = (
    "model",
    "seed",
    "best_iteration",
    "best_loss",
    "final_loss",
    "last_iteration",
    "last_final_loss",
    "collapse",
    "collapse_rule",
)
EMA_COLUMNS = ("ema_best_loss", "ema_final_loss")  # added to Tables 2-5 when a run kept a generator EMA
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


@dataclasses.dataclass(frozen=True)
class Table:
    """A table of the report: a title, the prose above (``intro``) and below (``note``) it, and its rows."""

    title: str
    columns: tuple[str, ...]
    headings: dict[str, str]
    rows: list[dict]
    intro: str = ""
    note: str = ""


def mean_std(values, *, iterations: bool = False) -> str:
    """``mean ± sample std`` of the values that exist (or the value when there is one, ``-`` when none)."""
    values = [v for v in values if v is not None]
    fmt = iteration_text if iterations else loss_text
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.mean(values))} ± {fmt(statistics.stdev(values))}"


def loss_text(v) -> str:
    """A loss as the tables print it (``-`` when there is none)."""
    return "-" if v is None else f"{v:.6f}"


def iteration_text(v) -> str:
    """An iteration as the tables print it (``-`` when there is none)."""
    return "-" if v is None else f"{v:,.0f}"


def median_collapse(group: list[Instance]) -> str:
    """The median iteration of collapse of a model's instances (Kaplan-Meier, runs that end without collapsing
    censored: ``diagnostics.median_survival``), or "not reached" while fewer than half have collapsed."""
    median = diagnostics.median_survival(survival_events(group))
    return "not reached" if median is None else iteration_text(median)


def survival_events(group: list[Instance]) -> list[tuple[int, bool]]:
    """``(iteration, collapsed)`` per instance: where it collapsed, or where it ended without collapsing."""
    return [(i.collapse.iteration, True) if i.collapse else (i.ended_at, False) for i in group]


def has_ema(instances: list[Instance]) -> bool:
    return any(i.ema_losses or i.ema_final_loss is not None for i in instances)


def summary_rows(instances: list[Instance]) -> list[dict]:
    """Paper Table 2 over instances: per model, the best running-test loss, its iteration and the final-test
    loss (mean ± std over instances), how many instances collapsed and the median iteration of collapse; with
    a generator EMA, the averaged generator's best running-test loss and final-test loss."""
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
                median_collapse=median_collapse(group),
                ema_best_loss=mean_std([i.ema_best[1] for i in group]),
                ema_final_loss=mean_std([i.ema_final_loss for i in group]),
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
                    best_iteration=iteration_text(i.best[0]),
                    best_loss=loss_text(i.best[1]),
                    final_loss=loss_text(i.final_loss),
                    last_iteration=iteration_text(i.iterations[-1] if i.iterations else None),
                    last_final_loss=loss_text(i.last_final_loss),
                    collapse=iteration_text(i.collapse.iteration) if i.collapse else "-",
                    collapse_rule=i.collapse.rule if i.collapse else "-",
                    ema_best_loss=loss_text(i.ema_best[1]),
                    ema_final_loss=loss_text(i.ema_final_loss),
                    setting=i.setting or "-",
                )
            )
    return rows


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


def loss_names(instances: list[Instance]) -> tuple[str, str]:
    """Names of the running-test and final-test losses, with their step counts when all runs share them."""
    test = {i.config.test_steps for i in instances}
    final = {i.final.get("steps") for i in instances if i.final}
    test_name = f"{test.pop():,}-step loss" if len(test) == 1 else "running-test loss"
    final_name = f"final {final.pop():,}-step loss" if len(final) == 1 else "final-test loss"
    return test_name, final_name


def headings(instances: list[Instance]) -> dict[str, str]:
    """Column headings of Tables 2-5."""
    test_name, final_name = loss_names(instances)
    return dict(
        model="Model",
        instances="Instances",
        seed="Seed",
        best_loss=f"Best {test_name}",
        best_iteration="Iteration",
        final_loss=final_name[0].upper() + final_name[1:],
        collapsed="Collapsed",
        median_collapse="Median collapse",
        last_iteration="Trained to",
        last_final_loss="Last generator's final loss",
        collapse="Collapse at",
        collapse_rule="Rule",
        ema_best_loss=f"EMA best {test_name}",
        ema_final_loss="EMA final loss",
        setting="Setting",
    )


def collapse_rule(factor: float, tests: int, diversity: float | None = None) -> str:
    text = (
        f"Collapse (docs/study.md): the first running test whose loss, and that of the next {tests - 1} tests, "
        f"exceeds {factor:g} times the best loss before it"
    )
    if diversity is not None:
        text += (
            f" (rule: loss), or the first fixed-code record whose sample diversity, and that of the next "
            f"{diagnostics.DIVERSITY_RECORDS - 1} records, is below {diversity:g} times the highest before it "
            "(rule: diversity), whichever comes first"
        )
    return text + "; a run whose loss stayed non-finite past its rollbacks collapsed where it stopped (rule: diverged)."


SUMMARY_INTRO = (
    "Mean ± sample standard deviation over the instances (seeds) of each model. Median collapse: the "
    "Kaplan-Meier median iteration of collapse, runs that end without collapsing counted as censored "
    '("not reached": fewer than half are estimated to have collapsed).'
)
EMA_NOTE = (
    "EMA: the generator's exponential moving average (--ema_decay), measured beside the raw generator at the "
    "iteration the raw generator's running test chose; it never selects."
)


def _columns(columns: tuple[str, ...], instances: list[Instance]) -> tuple[str, ...]:
    return columns + (EMA_COLUMNS if has_ema(instances) else ())


def summary(
    study: Study, instances: list[Instance] | None = None, title: str = "Table 2: best generator of each model"
) -> Table:
    """Paper Table 2: the best generator of each model (``summary_rows``) over ``instances`` (default: all)."""
    instances = study.instances if instances is None else instances
    return Table(
        title,
        _columns(SUMMARY_COLUMNS, instances),
        headings(instances),
        summary_rows(instances),
        intro=SUMMARY_INTRO,
        note=EMA_NOTE if has_ema(instances) else "",
    )


def by_setting(instances: list[Instance]) -> dict[str | None, list[Instance]]:
    """Instances grouped by the value of their study's swept flag, in the order the values were given."""
    groups: dict[str | None, list[Instance]] = {}
    for i in sorted(instances, key=lambda i: (i.setting_value is None, i.setting_value or 0)):
        groups.setdefault(i.setting, []).append(i)
    return groups


def all_tables(study: Study) -> list[Table]:
    """Table 2 (one per value of a swept flag, each headed like ``lr=2e-3``), Tables 3-5 with the collapse
    rule, and the paired comparison when two models can be paired (not across a sweep's values)."""
    if study.sweep:
        tables = [
            summary(study, group, f"Table 2, {setting}: best generator of each model")
            for setting, group in by_setting(study.instances).items()
        ]
        instance_columns = ("setting",) + INSTANCE_COLUMNS
    else:
        tables, instance_columns = [summary(study)], INSTANCE_COLUMNS
    tables.append(
        Table(
            "Tables 3-5: every instance",
            _columns(instance_columns, study.instances),
            headings(study.instances),
            instance_rows(study.instances),
            note=collapse_rule(study.factor, study.tests, study.diversity),
        )
    )
    if study.sweep:
        return tables
    if paired := paired_rows(study.instances):
        tables.append(Table("Paired comparison", PAIRED_COLUMNS, PAIRED_HEADINGS, paired, intro=PAIRED_TEXT))
    return tables
