"""The final test: the paired comparison of two models on the same targets (a bootstrap over the targets),
the timing of ``--benchmark``, and the files a final test writes."""

import contextlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from wngan_jax import errors, reconstruction
from wngan_jax.evaluation import curve_steps, evaluate, paired_difference, write_outputs
from wngan_jax.models import ModelConfig
from wngan_jax.reconstruction import ReconstructionResult


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


@contextlib.contextmanager
def counting_compilations():
    """The number of XLA compilations inside the block (JAX's backend-compile event)."""
    count = []

    def listener(event, duration, **kwargs):
        if event == jax._src.dispatch.BACKEND_COMPILE_EVENT:
            count.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_benchmark_times_no_compilation(monkeypatch):
    """``evaluate(benchmark=True)`` compiles every segment of the timed run beforehand: 12 steps with recorded
    losses at 3 and 7 run segments of 3, 4 and 5 steps and two kinds of evaluation, none of which may compile
    inside the timed ``reconstruct``."""
    model = ModelConfig(norm="bn", image_size=8, channels=1, nfeature=4, code_size=6)
    variables = model.generator().init(jax.random.key(0), jnp.zeros((1, 6)))
    targets = np.random.default_rng(0).uniform(size=(5, 8, 8, 1)).astype(np.float32)
    timed = []
    reconstruct = reconstruction.reconstruct

    def counted(*args, **kwargs):
        with counting_compilations() as count:
            result = reconstruct(*args, **kwargs)
        timed.append(len(count))
        return result

    monkeypatch.setattr(reconstruction, "reconstruct", counted)
    report, _ = evaluate(model, variables, targets, steps=12, record_steps=(3, 7), benchmark=True, progress=False)
    assert timed == [0] and report["compile_included"] is False
    evaluate(model, variables, targets, steps=13, record_steps=(6,), benchmark=False, progress=False)
    assert timed[1] > 0  # the counter sees compilations: new segment lengths (5 + 1, 5 + 2) compile


@pytest.mark.parametrize("count", [3, 20])
def test_final_test_outputs_keep_the_first_eight_targets_as_uint8(tmp_path, count):
    """``targets.npy`` holds the first 8 targets (all of them when there are fewer) as 0-255 integers, the
    channels kept, so that a report shows them without the data; float targets are rounded to the nearest."""
    targets = np.random.default_rng(0).uniform(0.0, 1.0, (count, 4, 5, 1)).astype(np.float32)
    codes = np.zeros((count, 2), np.float32)
    result = ReconstructionResult(codes, np.zeros(count), 0.0, reconstructions=targets)
    write_outputs(tmp_path, {"mean_loss": 0.0}, result, targets)
    saved = np.load(tmp_path / "targets.npy")
    assert saved.dtype == np.uint8 and saved.shape == (min(count, 8), 4, 5, 1)
    expected = np.floor(targets[:8].astype(np.float64) * 255 + 0.5)
    assert np.array_equal(saved, expected)
    assert json.loads((tmp_path / "report.json").read_text()) == {"mean_loss": 0.0}
