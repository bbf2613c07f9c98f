"""The paired comparison of two models on the same final-test targets (a bootstrap over the targets)."""

import numpy as np
import pytest
import scipy.stats

from wngan_jax import errors
from wngan_jax.evaluation import curve_steps, paired_difference


def test_a_constant_ratio_gives_an_exact_relative_difference():
    """A = 0.9 B on every target: A is 10% lower whatever the resample, so the interval is that one point."""
    b = np.random.default_rng(0).uniform(0.01, 0.03, 500)
    result = paired_difference(0.9 * b, b, resamples=2000)
    assert result["relative_difference"] == pytest.approx(-0.1)
    assert result["relative_interval"] == pytest.approx([-0.1, -0.1])
    assert result["mean_difference"] == pytest.approx(-0.1 * b.mean())


def test_known_difference_with_noise_matches_scipy_bootstrap():
    """A = B + 0.002 + noise: the mean difference, and an interval that contains 0.002 and agrees with
    scipy's percentile bootstrap of the mean difference (Monte Carlo error aside)."""
    rng = np.random.default_rng(1)
    b = rng.uniform(0.01, 0.03, 400)
    a = b + 0.002 + rng.normal(0.0, 0.001, 400)
    result = paired_difference(a, b, resamples=4000, seed=3)
    assert result["mean_difference"] == pytest.approx(np.mean(a - b))
    low, high = result["difference_interval"]
    assert low < 0.002 < high
    reference = scipy.stats.bootstrap(
        (a - b,), np.mean, method="percentile", n_resamples=4000, random_state=5, confidence_level=0.95
    ).confidence_interval
    width = reference.high - reference.low
    assert abs(low - reference.low) < 0.1 * width and abs(high - reference.high) < 0.1 * width
    standard_error = np.std(a - b, ddof=1) / np.sqrt(400)
    assert (high - low) == pytest.approx(2 * 1.96 * standard_error, rel=0.1)


def test_paired_difference_refuses_unpaired_losses():
    with pytest.raises(errors.DataError, match="same targets"):
        paired_difference(np.ones(3), np.ones(4))
    with pytest.raises(errors.ConfigError, match="confidence"):
        paired_difference(np.ones(3), np.ones(3), confidence=95)


def test_curve_steps_end_at_the_final_step_and_share_their_points():
    """Rising step counts ending at the final test's; a shorter final test records exactly a longer one's points
    below its own count (so curves of runs with different --final_test_steps meet there); the 2000-step final
    test (paper Table 2) records the running test's 50-step loss on its way."""
    longest = curve_steps(10_000)
    for steps in range(1, 10_000):
        points = curve_steps(steps)
        assert points[-1] == steps and all(a < b for a, b in zip(points, points[1:]))
        assert points[:-1] == tuple(p for p in longest[:-1] if p < steps)
    assert curve_steps(2000)[0] == 50 and curve_steps(3) == (3,)
