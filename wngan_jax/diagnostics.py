"""Training-health measures read off a finished or running run: collapse and sample diversity (paper §6, app. B).

The paper calls a model collapsed when its generator keeps producing (almost) the same output and the
running-test reconstruction loss jumps up and stays up (§6, Fig. 1: the vanilla model around iteration
135,000). :func:`find_collapse` turns that into a rule on the loss curve alone (docs/study.md):

    a run collapses at the first running test ``t`` whose loss, and the losses of the next ``tests - 1``
    running tests, all exceed ``factor`` times the best loss of the tests before ``t``.

A non-finite loss counts as above the threshold. Runs whose curve ends before ``tests`` tests above the
threshold have not collapsed (yet). :func:`sample_diversity` is the quantity behind appendix B's visual
argument: how different the samples of a fixed set of codes are from each other at one iteration.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

COLLAPSE_FACTOR = 1.5
COLLAPSE_TESTS = 3


@dataclasses.dataclass(frozen=True)
class Collapse:
    """Where a loss curve collapsed: the first test above the threshold, and the best loss before it."""

    iteration: int
    loss: float
    best_loss: float
    best_iteration: int


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
