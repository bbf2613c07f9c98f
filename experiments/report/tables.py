"""The paper's tables from a ``Study``: their numbers, headings and prose, written once for every format
(``render`` writes them as Markdown and HTML)."""

from __future__ import annotations

import dataclasses
import statistics

from experiments.report.loading import Instance, Study, by_model, representative
from wngan_jax import evaluation

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
                    best_iteration=iteration_text(i.best[0]),
                    best_loss=loss_text(i.best[1]),
                    final_loss=loss_text(i.final_loss),
                    last_iteration=iteration_text(i.iterations[-1] if i.iterations else None),
                    last_final_loss=loss_text(i.last_final_loss),
                    collapse=iteration_text(i.collapse.iteration) if i.collapse else "-",
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
        last_iteration="Trained to",
        last_final_loss="Last generator's final loss",
        collapse="Collapse at",
    )


def collapse_rule(factor: float, tests: int) -> str:
    return (
        f"Collapse (docs/study.md): the first running test whose loss, and that of the next {tests - 1} tests, "
        f"exceeds {factor:g} times the best loss before it."
    )


def summary(study: Study) -> Table:
    """Paper Table 2: the best generator of each model (``summary_rows``)."""
    return Table(
        "Table 2: best generator of each model",
        SUMMARY_COLUMNS,
        headings(study.instances),
        summary_rows(study.instances),
        intro="Mean ± sample standard deviation over the instances (seeds) of each model.",
    )


def all_tables(study: Study) -> list[Table]:
    """Table 2, Tables 3-5 with the collapse rule, and the paired comparison when two models can be paired."""
    tables = [
        summary(study),
        Table(
            "Tables 3-5: every instance",
            INSTANCE_COLUMNS,
            headings(study.instances),
            instance_rows(study.instances),
            note=collapse_rule(study.factor, study.tests),
        ),
    ]
    if paired := paired_rows(study.instances):
        tables.append(Table("Paired comparison", PAIRED_COLUMNS, PAIRED_HEADINGS, paired, intro=PAIRED_TEXT))
    return tables
