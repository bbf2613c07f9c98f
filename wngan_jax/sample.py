"""Generate images from a checkpoint's generator in inference mode (paper Figs. 3-4: samples from codes).

Command line (docs/convert.md)::

    python -m wngan_jax.sample --checkpoint DIR [--which best|last|N] --codes codes.npy --out images.npy
    python -m wngan_jax.sample --checkpoint DIR --num 64 --seed 0 --out images.npy --grid samples.png

Codes are ``(N, code_size)`` float arrays; ``--num`` draws them from the standard normal prior. The output is
``(N, H, W, C)`` float32 in [0, 1].
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from wngan_jax import checkpoint, visualize
from wngan_jax.checkpoint import CheckpointError
from wngan_jax.models import ModelConfig


def normal_codes(num: int, code_size: int, seed: int = 0) -> np.ndarray:
    """``(num, code_size)`` standard normal codes (the prior of paper §5.1), reproducible from ``seed``."""
    if num < 1:
        raise ValueError(f"--num must be positive, got {num}")
    return np.random.default_rng(seed).standard_normal((num, code_size), dtype=np.float32)


def load_codes(path, code_size: int) -> np.ndarray:
    """Codes ``(N, code_size)`` from a ``.npy`` file, checked against the generator's code size."""
    codes = np.load(path)
    if codes.ndim != 2 or codes.shape[1] != code_size or codes.shape[0] == 0:
        raise ValueError(
            f"{path} holds an array of shape {codes.shape}; this generator needs codes of shape (N, {code_size})"
        )
    return codes.astype(np.float32)


def generate(config: ModelConfig, variables, codes, batch_size: int = 64) -> np.ndarray:
    """Images ``(N, H, W, C)`` in [0, 1] for ``codes``, in batches of one compiled shape (last one padded)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    codes = np.asarray(codes, np.float32)
    model = config.generator()
    apply = jax.jit(lambda v, z: model.apply(v, z, train=False))
    batch = min(batch_size, len(codes))
    out = []
    for start in range(0, len(codes), batch):
        chunk = codes[start : start + batch]
        padded = np.pad(chunk, ((0, batch - len(chunk)), (0, 0)))
        out.append(np.asarray(apply(variables, jnp.asarray(padded)))[: len(chunk)])
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wngan_jax.sample", description="Generate images with a checkpoint's generator."
    )
    checkpoint.add_checkpoint_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--codes", help=".npy file of codes, shape (N, code_size)")
    source.add_argument("--num", type=int, help="draw this many standard normal codes")
    parser.add_argument("--seed", type=int, default=0, help="seed for --num")
    parser.add_argument("--out", required=True, help=".npy file for the images (N, H, W, C) in [0, 1]")
    parser.add_argument("--grid", help="also write the images as one PNG grid")
    parser.add_argument("--columns", type=int, help="grid columns (default: about square)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    try:
        config, variables, step = checkpoint.load_generator(args.checkpoint, args.which)
        codes = (
            load_codes(args.codes, config.code_size)
            if args.codes
            else normal_codes(args.num, config.code_size, args.seed)
        )
        images = generate(config, variables, codes, args.batch_size)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, images)
    print(f"wrote {out}: {images.shape[0]} images {images.shape[1:]} from {args.checkpoint} (iteration {step})")
    if args.grid:
        print(f"wrote {visualize.save_grid(images, args.grid, args.columns)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
