"""The collapse rules on synthetic loss curves and diversity records, the diversity measure against scipy, the
image upscaling, time to collapse against a hand-computed Kaplan-Meier estimate, the Wilson interval against scipy."""

import math

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from wngan_jax import visualize
from wngan_jax.diagnostics import (
    Collapse,
    earliest,
    find_collapse,
    find_diversity_collapse,
    median_survival,
    sample_diversity,
    survival,
    wilson_interval,
)

ITERS = list(range(200, 4001, 200))  # 20 running tests


def curve(*values):
    return ITERS[: len(values)], list(values)


def test_a_curve_that_keeps_improving_or_wobbles_has_not_collapsed():
    assert find_collapse(*curve(*np.linspace(0.05, 0.02, 20))) is None
    wobble = [0.03, 0.02, 0.029, 0.02, 0.031, 0.021, 0.0299, 0.028, 0.02]  # never 3 tests above 1.5 x best
    assert find_collapse(*curve(*wobble)) is None


def test_collapse_is_the_first_of_three_tests_above_one_and_a_half_times_the_best_before_it():
    losses = [0.05, 0.03, 0.02, 0.022, 0.025, 0.031, 0.04, 0.06, 0.06, 0.07]
    # 0.031 > 1.5 * 0.02 = 0.03 starts three tests above: collapse at the 6th test
    assert find_collapse(*curve(*losses)) == Collapse(iteration=1200, loss=0.031, best_loss=0.02, best_iteration=600)
    # A spike of two tests does not count; the same curve with tests=2 does.
    spike = [0.05, 0.02, 0.021, 0.05, 0.05, 0.022, 0.021]
    assert find_collapse(*curve(*spike)) is None
    assert find_collapse(*curve(*spike), tests=2).iteration == 800
    # A larger factor moves (or removes) the collapse.
    assert find_collapse(*curve(*losses), factor=2.5).iteration == 1600  # 0.06 > 2.5 * 0.02
    assert find_collapse(*curve(*losses), factor=3.0) is None  # 0.06 is not above 0.06


def test_the_best_is_the_best_before_the_collapse_not_of_the_whole_curve():
    # Later recovery below the earlier best does not undo a collapse that happened.
    losses = [0.04, 0.02, 0.05, 0.05, 0.05, 0.01, 0.01]
    assert find_collapse(*curve(*losses)) == Collapse(600, 0.05, 0.02, 400)


def test_non_finite_losses_count_as_above_and_a_curve_ending_early_is_not_collapsed():
    losses = [0.03, 0.02, math.nan, math.inf, 0.09]
    assert find_collapse(*curve(*losses)).iteration == 600
    assert find_collapse(*curve(0.03, 0.02, 0.09, 0.09)) is None  # only two tests above so far
    assert find_collapse([], []) is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="factor"):
        find_collapse(*curve(0.1), factor=1.0)
    with pytest.raises(ValueError, match="tests"):
        find_collapse(*curve(0.1), tests=0)
    with pytest.raises(ValueError, match="losses"):
        find_collapse([1, 2], [0.1])


def test_sample_diversity_is_the_mean_pairwise_rms_distance():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 5, 4, 3), dtype=np.uint8)
    flat = images.reshape(7, -1).astype(np.float64) / 255.0
    expected = np.mean(pdist(flat, "euclidean") / np.sqrt(flat.shape[1]))
    assert sample_diversity(images) == pytest.approx(expected, rel=1e-9)
    assert sample_diversity(images.astype(np.float32) / 255.0) == pytest.approx(expected, rel=1e-6)
    assert sample_diversity(np.repeat(images[:1], 4, axis=0)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="2 samples"):
        sample_diversity(images[:1])


def test_upscale_repeats_pixels_until_the_short_side_is_readable():
    image = np.arange(2 * 16 * 24 * 1, dtype=np.uint8).reshape(2, 16, 24, 1)
    big = visualize.upscale(image)
    assert big.shape == (2, 64, 96, 1)
    assert np.array_equal(big[:, ::4, ::4], image) and np.array_equal(big[:, 3::4, 3::4], image)
    assert visualize.upscale(np.zeros((64, 64, 3))).shape == (64, 64, 3)
    assert visualize.grid(np.zeros((4, 16, 16, 1)), columns=2).shape == (2 * 66 + 2, 2 * 66 + 2, 3)
    assert visualize.grid(np.zeros((4, 16, 16, 1)), columns=2, min_side=0).shape == (38, 38, 3)


# ---------------------------------------------------------------------------------------------------------
# The diversity rule, the earliest collapse, time to collapse (Kaplan-Meier), the Wilson interval

RECORDS = list(range(100, 2001, 100))


def records(*values):
    return RECORDS[: len(values)], list(values)


def test_diversity_collapse_is_three_records_below_half_the_highest_before():
    # A WN generator starts near one image (diversity ~0) and spreads out: growth is not a collapse.
    assert find_diversity_collapse(*records(0.001, 0.01, 0.1, 0.25, 0.3, 0.28, 0.31)) is None
    # 0.14 < 0.5 * 0.3 starts three records below: collapse at the 6th record, against the 0.3 of the 4th.
    values = [0.05, 0.2, 0.25, 0.3, 0.2, 0.14, 0.05, 0.01, 0.3]
    assert find_diversity_collapse(*records(*values)) == Collapse(600, 0.14, 0.3, 400, rule="diversity")
    # Two records below are a dip; a NaN counts as below; a looser fraction or fewer records move it.
    dip = [0.3, 0.1, 0.1, 0.3, 0.3]
    assert find_diversity_collapse(*records(*dip)) is None
    assert find_diversity_collapse(*records(*dip), records=2).iteration == 200
    assert find_diversity_collapse(*records(0.3, 0.1, math.nan, 0.1)).iteration == 200
    assert find_diversity_collapse(*records(*values), fraction=0.2) is None  # 0.05, 0.01, then back up
    assert find_diversity_collapse(*records(*values), fraction=0.2, records=2).iteration == 700
    with pytest.raises(ValueError, match="fraction"):
        find_diversity_collapse(*records(0.1), fraction=1.0)
    with pytest.raises(ValueError, match="records"):
        find_diversity_collapse(*records(0.1), records=0)


def test_earliest_collapse_of_the_rules():
    loss, diversity = Collapse(800, 0.1, 0.05, 400), Collapse(600, 0.1, 0.3, 200, rule="diversity")
    assert earliest(loss, None, diversity) is diversity and earliest(None, None) is None
    assert earliest(Collapse(600), diversity).rule == "loss"  # a tie keeps the first listed


def test_kaplan_meier_against_a_hand_computation():
    # Four runs: collapses at 100 and 300, censored at 200 and 400. At 100, 1 of 4 at risk collapses: 3/4;
    # the run censored at 200 leaves; at 300, 1 of the 2 at risk collapses: 3/4 * 1/2.
    events = [(100, True), (200, False), (300, True), (400, False)]
    assert survival(events) == ([0, 100, 300], [1.0, 0.75, 0.375])
    assert median_survival(events) == 300
    # One collapse in three (censored at the end): the median is not reached.
    assert median_survival([(500, True), (1000, False), (1000, False)]) is None
    assert median_survival([(500, True), (700, True), (1000, False)]) == 700  # 2/3, then 1/3 <= 1/2
    # A run censored at the very iteration of a collapse is still at risk there.
    assert survival([(100, True), (100, False)]) == ([0, 100], [1.0, 0.5])


@pytest.mark.parametrize("k,n", [(0, 3), (1, 3), (3, 3), (7, 20)])
def test_wilson_interval_matches_scipy(k, n):
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-6)
    with pytest.raises(ValueError):
        wilson_interval(4, 3)
