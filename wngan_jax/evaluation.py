"""The final reconstruction test of a generator held in memory (paper §4, §5.1; docs/reconstruction.md).

``evaluate(model, variables, targets, steps=...)`` reconstructs ``targets`` and returns a JSON-ready report
with the ``ReconstructionResult``; ``write_outputs`` writes them to a directory. The trainer calls both on the
generators it holds; ``python -m wngan_jax.eval`` calls them on a checkpoint it loads.
"""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np

from wngan_jax import data, fid, files, generation, inception, reconstruction, sharding, visualize
from wngan_jax.errors import CheckpointError, ConfigError, DataError
from wngan_jax.models import ModelConfig

GRID_PAIRS = 64
# The first targets saved as ``targets.npy`` beside their codes: the report shows them (experiments.report, paper
# Figs. 2, 12 and the interpolation of §2) without the training data.
SHOWN_TARGETS = 8
# Steps at which the final test also records the mean loss (appendix C.3: the ranking of the models can change
# with the number of reconstruction steps); those below the final step count are recorded.
CURVE_STEPS = (50, 100, 200, 500, 1000, 2000, 5000)


def curve_steps(steps: int) -> tuple[int, ...]:
    """``CURVE_STEPS`` below ``steps``, then ``steps``."""
    return tuple(s for s in CURVE_STEPS if s < steps) + (steps,)


def load_targets(path, samples: int) -> np.ndarray:
    """The first ``samples`` images of a ``.npy`` file: ``(N, H, W, C)`` uint8, or float in [0, 1]."""
    images = files.load_npy(path, "--targets", mmap_mode="r")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(
            f"{path} holds an array of shape {images.shape}; --targets needs images of shape "
            "(N, H, W, C) with C = 1 or 3"
        )
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise DataError(f"{path} holds {images.dtype} images; --targets needs uint8 (0-255) or float in [0, 1]")
    return first(images, samples, str(path))


def load_dataset(spec: str, model: ModelConfig, samples: int, *, data_dir=None, cache_dir=None):
    """The dataset ``spec`` at the generator's size and channels, split with ``samples`` final-test images
    (the first ``samples`` of the split permutation, the rows every run on this data tests on)."""
    return data.load(
        spec,
        model.image_size,
        channels=model.channels,
        data_dir=data_dir or None,
        cache_dir=cache_dir or None,
        final_test=samples,
        running_test=min(samples, 200),
    )


def first(images, samples: int, name: str) -> np.ndarray:
    """``images[:samples]`` in memory, or an error naming ``name`` when there are fewer."""
    if samples < 1:
        raise ConfigError(f"--samples must be positive, got {samples}")
    if len(images) < samples:
        raise DataError(f"{name} has only {len(images)} images; pass --samples {len(images)} or fewer")
    return np.asarray(images[:samples])


def check_fits(model: ModelConfig, targets: np.ndarray) -> None:
    """The targets must have the generator's image size and channel count."""
    hw, channels = tuple(targets.shape[1:3]), targets.shape[3]
    if hw != tuple(model.image_size) or channels != model.channels:
        raise DataError(
            f"the targets are {hw[0]}x{hw[1]} with {channels} channels but the generator makes "
            f"{model.image_size[0]}x{model.image_size[1]} images with {model.channels}; use targets (or "
            "--data at) the size the model was trained at"
        )


def evaluate(
    model: ModelConfig,
    variables,
    targets,
    *,
    steps: int,
    batch_size: int = reconstruction.AUTHORS_BATCH,
    chunk_size: int | None = None,
    record_steps=None,
    benchmark: bool = False,
    progress: bool = True,
    mesh=None,
) -> tuple[dict, reconstruction.ReconstructionResult]:
    """Reconstruct ``targets`` with the generator ``variables``: ``(report, result)``.

    The report holds only JSON values: the mean loss (the paper's number), per-sample losses, the loss curve
    at ``record_steps`` (default ``curve_steps(steps)``), timing and device. ``benchmark`` compiles first, so
    that the timing excludes compilation (``reconstruction.warm_up``). ``mesh`` as in ``reconstruction.reconstruct``.
    """
    check_fits(model, targets)
    gen = reconstruction.generator_fn(model.generator(), variables)
    record = curve_steps(steps) if record_steps is None else tuple(record_steps)
    kwargs = dict(steps=steps, chunk_size=chunk_size, return_reconstructions=True, mesh=mesh, record_steps=record)
    report = {}
    if benchmark:  # every computation the timed run uses, compiled (and run once) beforehand
        start = time.perf_counter()
        reconstruction.warm_up(gen, targets, **kwargs)
        report["warmup_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    result = reconstruction.reconstruct(gen, targets, authors_batch=batch_size, progress=progress, **kwargs)
    if not np.isfinite(result.mean_loss):
        raise CheckpointError(
            "the reconstruction loss is not finite: the generator's variables hold NaN or inf (a diverged or "
            "damaged checkpoint)"
        )
    seconds = time.perf_counter() - start
    report |= {
        "mean_loss": result.mean_loss,
        "per_sample_loss": [float(v) for v in result.per_sample_loss],
        "loss_curve": {str(k): v for k, v in result.loss_curve().items()},
        "samples": len(targets),
        "steps": steps,
        "batch_size": batch_size,
        "seconds": seconds,
        "sample_steps_per_s": len(targets) * steps / seconds if seconds > 0 else None,
        "compile_included": not benchmark,
        "device": sharding.device_description(),
        "model": model.to_dict(),
    }
    return report, result


def final_test(
    model: ModelConfig,
    generators: dict,
    targets,
    out,
    *,
    steps: int,
    batch_size: int,
    targets_name: str,
    progress: bool = True,
    mesh=None,
    write: bool = True,
) -> dict:
    """The paper's final evaluation (§5.1, Tables 6-7) of a run's ``generators``: ``{"best": (iteration,
    variables), "last": (iteration, variables)}``; "last" is left out when it is the best one (the paper tests
    the last generator too, "in case it converges with a much worse 50-step loss than at its optimal
    iteration"). Other names (the averaged generators ``ema`` and ``ema_last`` of a run with ``--ema_decay``) are
    tested the same way. Each reconstructs ``targets`` in ``steps`` steps. With ``write``, ``out/report.json``
    holds the best's report with each other's under its name, and ``out/<name>/`` each other's outputs. Returns
    ``{"best": {...}, "last": {...}, ...}`` (mean loss, iteration, steps, samples, loss curve)."""
    reports, results = {}, {}
    for which, (iteration, variables) in generators.items():
        report, result = evaluate(
            model, variables, targets, steps=steps, batch_size=batch_size, progress=progress, mesh=mesh
        )
        reports[which] = report | {"which": which, "iteration": iteration, "targets": targets_name}
        results[which] = result
    reports.setdefault("last", reports["best"] | {"which": "last", "same_as_best": True})
    if write:
        out = pathlib.Path(out)
        others = {which: report for which, report in reports.items() if which != "best"}
        for which in others.keys() & results.keys():
            write_outputs(out / which, reports[which], results[which], targets)
        write_outputs(out, reports["best"] | others, results["best"], targets)
    keys = ("mean_loss", "iteration", "steps", "samples", "loss_curve")
    return {which: {k: r[k] for k in keys} for which, r in reports.items()}


def sample_quality(
    model: ModelConfig,
    variables,
    reference: fid.Reference,
    extractor: inception.Extractor,
    metrics=("fid",),
    *,
    samples: int = 10_000,
    seed: int = 0,
) -> dict:
    """FID, KID and/or precision/recall (``metrics`` of ``fid.METRICS``) of ``samples`` images generated from
    standard normal codes (``seed``) against ``reference`` (``fid.dataset_reference``: the training images),
    through ``extractor`` (``fid.extractor``, built once by callers that measure repeatedly). The images stay
    on the device between the generator and the Inception network. A JSON-ready dict (``fid.sample_metrics``)."""
    metrics = fid.check_metrics(metrics)
    codes = generation.normal_codes(samples, model.code_size, seed)
    images = generation.generate_batches(model, variables, codes, on_device=True)
    return fid.sample_metrics(images, reference, extractor, metrics) | {"seed": seed}


def write_report(out, report: dict) -> pathlib.Path:
    """``out/report.json``, written atomically (a reader never sees half a report)."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files.write_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    return out / "report.json"


def write_outputs(out, report: dict, result, targets, *, pairs: bool = False) -> pathlib.Path:
    """``out/report.json`` (written last, atomically), ``codes.npy``, ``targets.npy`` (the first
    ``SHOWN_TARGETS`` targets, uint8), ``pairs.png`` (the first 64 target | reconstruction pairs) and, with
    ``pairs``, one pair image per sample under ``out/pairs/``."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "codes.npy", result.codes)
    np.save(out / "targets.npy", visualize.to_uint8(targets[:SHOWN_TARGETS], rgb=False))
    visualize.save_grid(visualize.pairs(targets[:GRID_PAIRS], result.reconstructions[:GRID_PAIRS]), out / "pairs.png")
    if pairs:
        digits = len(str(len(targets) - 1))
        for i, pair in enumerate(visualize.pairs(targets, result.reconstructions)):
            visualize.save_png(pair, out / "pairs" / f"{i:0{digits}d}.png")
    return write_report(out, report)


def paired_difference(losses_a, losses_b, *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> dict:
    """Model A against model B on the same final-test targets: the mean per-sample difference ``A - B`` of
    their reconstruction losses, and ``mean(A) / mean(B) - 1`` ("A is 10.5% lower than B" is -0.105), each
    with a percentile bootstrap interval at ``confidence`` over ``resamples`` resamplings of the targets.

    Pairing removes the variation between targets that both models share, so the interval is that of the
    models' difference alone.
    """
    a, b = np.asarray(losses_a, np.float64), np.asarray(losses_b, np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) < 2:
        raise DataError(
            f"a paired comparison needs per-sample losses of two models on the same targets, got shapes "
            f"{a.shape} and {b.shape}"
        )
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must lie in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    mean_a, mean_b = np.empty(resamples), np.empty(resamples)
    for start in range(0, resamples, 1000):  # 1000 resamples at a time bound the index array's memory
        index = rng.integers(0, len(a), (min(1000, resamples - start), len(a)))
        mean_a[start : start + len(index)] = a[index].mean(axis=1)
        mean_b[start : start + len(index)] = b[index].mean(axis=1)
    tails = [(1 - confidence) / 2, (1 + confidence) / 2]
    difference = np.quantile(mean_a - mean_b, tails)
    relative = np.quantile(mean_a / mean_b - 1, tails)
    return {
        "mean_difference": float(np.mean(a - b)),
        "difference_interval": [float(v) for v in difference],
        "relative_difference": float(a.mean() / b.mean() - 1),
        "relative_interval": [float(v) for v in relative],
        "samples": len(a),
        "confidence": confidence,
        "resamples": resamples,
    }
