"""The final reconstruction test of a trained generator (paper §4, §5.1; docs/reconstruction.md).

Command line::

    python -m wngan_jax.eval --checkpoint DIR [--which best|last|N] --data SPEC [--data_dir PATH] \\
        --samples 2000 --steps 2000 --out DIR [--pairs] [--benchmark]
    python -m wngan_jax.eval --checkpoint DIR --targets images.npy --out DIR

``--data`` reconstructs the dataset's final test set (the first ``--samples`` images of its split,
docs/authors.md §3), ``--targets`` any ``(N, H, W, C)`` images (uint8, or float in [0, 1]). Writes
``OUT/report.json`` (loss, per-sample losses, timing), ``OUT/codes.npy``, ``OUT/pairs.png`` (the first 64 target |
reconstruction pairs) and, with ``--pairs``, one pair image per sample under ``OUT/pairs/`` as the
authors' final test does. ``--benchmark`` compiles first, so ``seconds`` and the throughput exclude
compilation.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import numpy as np

from wngan_jax import checkpoint, reconstruction, visualize
from wngan_jax.checkpoint import CheckpointError
from wngan_jax.models import ModelConfig

GRID_PAIRS = 64


def load_targets(path, samples: int) -> np.ndarray:
    """The first ``samples`` images of a ``.npy`` file: ``(N, H, W, C)`` uint8, or float in [0, 1]."""
    images = np.load(path, mmap_mode="r")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"{path} holds an array of shape {images.shape}; --targets needs images of shape "
            "(N, H, W, C) with C = 1 or 3"
        )
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{path} holds {images.dtype} images; --targets needs uint8 (0-255) or float in [0, 1]")
    return _first(images, samples, str(path))


def load_final_test(spec: str, config: ModelConfig, samples: int, *, data_dir=None, cache_dir=None) -> np.ndarray:
    """The first ``samples`` images of the dataset's final test set, at the generator's size and channels."""
    from wngan_jax import data

    ds = data.load(
        spec,
        config.image_size,
        channels=config.channels,
        data_dir=data_dir,
        cache_dir=cache_dir,
        final_test=samples,
        running_test=min(samples, 200),
    )
    return _first(ds.final_test, samples, spec)


def _first(images, samples: int, name: str) -> np.ndarray:
    if samples < 1:
        raise ValueError(f"--samples must be positive, got {samples}")
    if len(images) < samples:
        raise ValueError(f"{name} has only {len(images)} images; pass --samples {len(images)} or fewer")
    return np.asarray(images[:samples])


def check_fits(config: ModelConfig, targets: np.ndarray) -> None:
    """The targets must have the generator's image size and channel count."""
    hw, channels = tuple(targets.shape[1:3]), targets.shape[3]
    if hw != tuple(config.image_size) or channels != config.channels:
        raise ValueError(
            f"the targets are {hw[0]}x{hw[1]} with {channels} channels but the generator makes "
            f"{config.image_size[0]}x{config.image_size[1]} images with {config.channels}; use targets (or "
            "--data at) the size the model was trained at"
        )


def device_description() -> str:
    devices = jax.local_devices()
    return f"{devices[0].device_kind} x{len(devices)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wngan_jax.eval", description="Reconstruction loss of a generator (paper §4)."
    )
    checkpoint.add_checkpoint_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="dataset spec (as for training); its final test set is reconstructed")
    source.add_argument("--targets", help=".npy file of images (N, H, W, C), uint8 or float in [0, 1]")
    parser.add_argument("--data_dir", help="where the dataset's files are (see wngan_jax.data)")
    parser.add_argument("--cache_dir", help="preprocessed-data cache root (see wngan_jax.data)")
    parser.add_argument("--samples", type=int, default=2000, help="number of test images (paper: 2000)")
    parser.add_argument("--steps", type=int, default=2000, help="RMSProp steps per code (paper: 2000)")
    parser.add_argument(
        "--batch_size",
        type=int,
        default=reconstruction.AUTHORS_BATCH,
        help="the authors' test batch, which sets each sample's 1/B loss scale (12 for LSUN)",
    )
    parser.add_argument("--chunk_size", type=int, help="samples per device per pass (default: fit memory)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--pairs", action="store_true", help="one (target | reconstruction) PNG per sample")
    parser.add_argument(
        "--benchmark", action="store_true", help="compile first, then time the reconstruction and print its throughput"
    )
    args = parser.parse_args(argv)
    try:
        if args.targets:
            targets = load_targets(args.targets, args.samples)
        else:
            config = checkpoint.read_model_config(args.checkpoint)
            targets = load_final_test(args.data, config, args.samples, data_dir=args.data_dir, cache_dir=args.cache_dir)
        report = evaluate_checkpoint(
            args.checkpoint,
            targets,
            which=args.which,
            steps=args.steps,
            out=args.out,
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            pairs=args.pairs,
            benchmark=args.benchmark,
            targets_name=args.targets or f"data:{args.data}",
        )
    except (CheckpointError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"reconstruction loss {report['mean_loss']:.6f} ({report['samples']} samples, {report['steps']} "
        f"steps, {report['seconds']:.1f} s, {report['sample_steps_per_s']:.0f} sample-steps/s on "
        f"{report['device']}); wrote {args.out}"
    )
    return 0


def evaluate_checkpoint(
    run_dir,
    targets,
    *,
    which="best",
    steps: int,
    out,
    batch_size: int = reconstruction.AUTHORS_BATCH,
    chunk_size: int | None = None,
    pairs: bool = False,
    benchmark: bool = False,
    targets_name: str = "",
    progress: bool = True,
) -> dict:
    """Load a checkpoint's generator, reconstruct ``targets``, write ``out`` and return the report."""
    config, variables, iteration = checkpoint.load_generator(run_dir, which)
    which, _ = _resolved(run_dir, which)
    check_fits(config, targets)
    report = evaluate(
        config,
        variables,
        targets,
        steps=steps,
        batch_size=batch_size,
        chunk_size=chunk_size,
        benchmark=benchmark,
        progress=progress,
    )
    result = report.pop("result")
    report |= {
        "checkpoint": str(pathlib.Path(run_dir).absolute()),
        "which": which,
        "iteration": iteration,
        "targets": targets_name,
        "model": config.to_dict(),
    }
    write_outputs(pathlib.Path(out), report, result, targets, pairs=pairs)
    return report


def _resolved(run_dir, which) -> tuple[str, int]:
    ckpt = checkpoint.Checkpoints(run_dir, read_only=True)
    try:
        return ckpt.resolve(which)
    finally:
        ckpt.close()


def evaluate(
    config: ModelConfig,
    variables,
    targets,
    *,
    steps: int,
    batch_size: int = reconstruction.AUTHORS_BATCH,
    chunk_size: int | None = None,
    benchmark: bool = False,
    progress: bool = True,
) -> dict:
    """Reconstruct ``targets``; the report's numbers plus ``result`` (the ReconstructionResult)."""
    gen = reconstruction.generator_fn(config.generator(), variables)
    kwargs = dict(steps=steps, authors_batch=batch_size, chunk_size=chunk_size, return_reconstructions=True)
    report = {}
    if benchmark:  # one step compiles both jitted functions for these shapes; the steps are a loop argument
        start = time.perf_counter()
        reconstruction.reconstruct(gen, targets, **kwargs | {"steps": 1})
        report["warmup_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    result = reconstruction.reconstruct(gen, targets, progress=progress, **kwargs)
    seconds = time.perf_counter() - start
    report |= {
        "mean_loss": result.mean_loss,
        "per_sample_loss": [float(v) for v in result.per_sample_loss],
        "samples": len(targets),
        "steps": steps,
        "batch_size": batch_size,
        "seconds": seconds,
        "sample_steps_per_s": len(targets) * steps / seconds,
        "compile_included": not benchmark,
        "device": device_description(),
        "result": result,
    }
    return report


def write_outputs(out: pathlib.Path, report: dict, result, targets, *, pairs: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "codes.npy", result.codes)
    visualize.save_grid(visualize.pairs(targets[:GRID_PAIRS], result.reconstructions[:GRID_PAIRS]), out / "pairs.png")
    if pairs:
        digits = len(str(len(targets) - 1))
        for i, pair in enumerate(visualize.pairs(targets, result.reconstructions)):
            visualize.save_png(pair, out / "pairs" / f"{i:0{digits}d}.png")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
