"""The collapse rule on synthetic loss curves, the diversity measure against scipy, the image upscaling."""

import math

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from wngan_jax import visualize
from wngan_jax.diagnostics import Collapse, find_collapse, sample_diversity

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
