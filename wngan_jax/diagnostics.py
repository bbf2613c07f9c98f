"""Training-health measures read off a finished or running run: collapse and sample diversity (paper §6, app. B).

The paper calls a model collapsed when its generator keeps producing (almost) the same output and the
running-test reconstruction loss jumps up and stays up (§6, Fig. 1: the vanilla model around iteration
135,000). :func:`find_collapse` turns that into a rule on the loss curve alone (docs/study.md):

    a run collapses at the first running test ``t`` whose loss, and the losses of the next ``tests - 1``
    running tests, all exceed ``factor`` times the best loss of the tests before ``t``.

A non-finite loss counts as above the threshold. Runs whose curve ends before ``tests`` tests above the
threshold have not collapsed (yet). :func:`sample_diversity` is the quantity behind appendix B's visual
argument: how different the samples of a fixed set of codes are from each other at one iteration, and
:func:`find_diversity_collapse` the rule on its record (a generator whose codes give nearly the same image has
collapsed even while its reconstruction loss has not risen yet):

    a run collapses at the first record ``r`` whose diversity, and the diversities of the next ``records - 1``
    records, all lie below ``fraction`` times the highest diversity of the records before ``r``.

A run's collapse is the earliest of the two rules' (:func:`earliest`), or where its loss became non-finite for
good (the study gives up on it, ``rule="diverged"``). :func:`survival` is the Kaplan-Meier estimate of the
fraction of a model's runs not yet collapsed, runs that end without collapsing being censored.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

COLLAPSE_FACTOR = 1.5
COLLAPSE_TESTS = 3
DIVERSITY_FRACTION = 0.5  # find_diversity_collapse: below half the highest diversity before ...
DIVERSITY_RECORDS = 3  # ... for three records in a row
RULES = ("loss", "diversity", "diverged")


@dataclasses.dataclass(frozen=True)
class Collapse:
    """Where a run collapsed and by which rule (``RULES``). For the loss rule: the first test above the
    threshold, its loss, and the best loss before it; for the diversity rule, ``loss`` and ``best_loss`` are
    the diversities of the first record below the threshold and the highest before it (``best_iteration`` its
    iteration); a divergence has only its iteration."""

    iteration: int
    loss: float | None = None
    best_loss: float | None = None
    best_iteration: int | None = None
    rule: str = "loss"


def find_collapse(
    iterations: Sequence[int],
    losses: Sequence[float],
    *,
    factor: float = COLLAPSE_FACTOR,
    tests: int = COLLAPSE_TESTS,
) -> Collapse | None:
    """The first collapse of a running-test loss curve (module docstring), or ``None``."""
    if factor <= 1:
        raise ValueError(f"the collapse factor must exceed 1, got {factor}")
    if tests < 1:
        raise ValueError(f"the number of tests must be at least 1, got {tests}")
    if len(iterations) != len(losses):
        raise ValueError(f"{len(iterations)} iterations but {len(losses)} losses")
    best, best_at = math.inf, None
    above, best_before = [], []  # per test: above the threshold?, index of the best test before it
    for i, loss in enumerate(losses):
        above.append(best_at is not None and not (math.isfinite(loss) and loss <= factor * best))
        best_before.append(best_at)
        if math.isfinite(loss) and loss < best:
            best, best_at = loss, i
    for start in range(len(losses) - tests + 1):
        if all(above[start : start + tests]):
            prior = best_before[start]
            return Collapse(
                iteration=int(iterations[start]),
                loss=float(losses[start]),
                best_loss=float(losses[prior]),
                best_iteration=int(iterations[prior]),
            )
    return None


def sample_diversity(images) -> float:
    """Mean over all pairs of samples of their root-mean-square pixel difference, images in [0, 1].

    ``images`` is ``(N, H, W, C)``, uint8 (divided by 255) or float; ``N >= 2``. 0 means every code gives
    the same image (full collapse); independent uniform noise images give about 0.41.
    """
    x = np.asarray(images)
    x = (x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)).reshape(len(x), -1)
    if len(x) < 2:
        raise ValueError(f"diversity needs at least 2 samples, got {len(x)}")
    distances = [np.sqrt(np.mean(np.square(x[i + 1 :] - x[i]), axis=1)) for i in range(len(x) - 1)]
    return float(np.mean(np.concatenate(distances)))


def find_diversity_collapse(
    iterations: Sequence[int],
    diversities: Sequence[float],
    *,
    fraction: float = DIVERSITY_FRACTION,
    records: int = DIVERSITY_RECORDS,
) -> Collapse | None:
    """The first collapse of a sample-diversity record by the rule of the module docstring, or ``None``."""
    if not 0 < fraction < 1:
        raise ValueError(f"the diversity fraction must lie in (0, 1), got {fraction}")
    if records < 1:
        raise ValueError(f"the number of records must be at least 1, got {records}")
    if len(iterations) != len(diversities):
        raise ValueError(f"{len(iterations)} iterations but {len(diversities)} diversities")
    highest, at = -math.inf, None
    below, highest_before = [], []
    for i, value in enumerate(diversities):
        below.append(at is not None and not value >= fraction * highest)  # NaN counts as below
        highest_before.append(at)
        if value > highest:
            highest, at = value, i
    for start in range(len(diversities) - records + 1):
        if all(below[start : start + records]):
            prior = highest_before[start]
            return Collapse(
                iteration=int(iterations[start]),
                loss=float(diversities[start]),
                best_loss=float(diversities[prior]),
                best_iteration=int(iterations[prior]),
                rule="diversity",
            )
    return None


def earliest(*collapses: Collapse | None) -> Collapse | None:
    """The earliest of the collapses found (the first listed when two rules fire at one iteration)."""
    found = [c for c in collapses if c is not None]
    return min(found, key=lambda c: c.iteration) if found else None


def survival(events: Sequence[tuple[int, bool]]) -> tuple[list[int], list[float]]:
    """Kaplan-Meier estimate from ``(iteration, collapsed)`` per run (``collapsed=False``: the run ended there
    without collapsing, censored): ``([0, t1, t2, ...], [1, S(t1), S(t2), ...])``, ``S`` stepping down at each
    iteration where runs collapsed, by the fraction of the runs still at risk there that collapsed. A run
    censored at ``t`` is at risk at ``t`` (it was seen not to collapse before it ended)."""
    times, values, s = [0], [1.0], 1.0
    for t in sorted({t for t, collapsed in events if collapsed}):
        at_risk = sum(1 for u, _ in events if u >= t)
        collapsed = sum(1 for u, c in events if c and u == t)
        s *= 1 - collapsed / at_risk
        times.append(int(t))
        values.append(s)
    return times, values


def median_survival(events: Sequence[tuple[int, bool]]) -> int | None:
    """The first iteration where the Kaplan-Meier estimate (:func:`survival`) is at or below 1/2: the median
    iteration of collapse; ``None`` ("not reached") while more than half of the runs are estimated alive."""
    for t, s in zip(*survival(events)):
        if s <= 0.5:
            return t
    return None


def wilson_interval(collapsed: int, runs: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval (95% for the default ``z``) of a fraction ``collapsed / runs``: unlike the
    normal approximation it stays inside [0, 1] and is not empty at 0/3 or 3/3, which matters with few seeds."""
    if runs < 1 or not 0 <= collapsed <= runs:
        raise ValueError(f"need 0 <= collapsed <= runs and runs >= 1, got {collapsed}/{runs}")
    p, n = collapsed / runs, runs
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
