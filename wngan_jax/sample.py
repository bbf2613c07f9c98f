"""Generate images from a checkpoint's generator in inference mode (paper Figs. 3-4: samples from codes).

Command line (docs/convert.md)::

    python -m wngan_jax.sample --checkpoint DIR [--which best|last|N] --codes codes.npy --out images.npy
    python -m wngan_jax.sample --checkpoint DIR --num 64 --seed 0 --out images.npy --grid samples.png

Codes are ``(N, code_size)`` float arrays; ``--num`` draws them from the standard normal prior. The output is
``(N, H, W, C)`` float32 in [0, 1].
"""

from __future__ import annotations

import functools
import pathlib
import sys
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from wngan_jax import checkpoint, cli, visualize
from wngan_jax.errors import CheckpointError, ConfigError, DataError
from wngan_jax.models import ModelConfig


def normal_codes(num: int, code_size: int, seed: int = 0) -> np.ndarray:
    """``(num, code_size)`` standard normal codes (the prior of paper §5.1), reproducible from ``seed``."""
    if num < 1:
        raise ConfigError(f"--num must be positive, got {num}")
    return np.random.default_rng(seed).standard_normal((num, code_size), dtype=np.float32)


def load_codes(path, code_size: int) -> np.ndarray:
    """Codes ``(N, code_size)`` from a ``.npy`` file, checked against the generator's code size."""
    codes = cli.load_npy(path, "--codes")
    if codes.ndim != 2 or codes.shape[1] != code_size or codes.shape[0] == 0:
        raise DataError(
            f"{path} holds an array of shape {codes.shape}; this generator needs codes of shape (N, {code_size})"
        )
    if not np.issubdtype(codes.dtype, np.number) or not np.isfinite(codes).all():
        raise DataError(f"{path} holds non-numeric, NaN or infinite codes; codes must be finite numbers")
    return codes.astype(np.float32)


@functools.lru_cache(maxsize=8)
def _inference(config: ModelConfig):
    """The generator in inference mode, jitted once per model (FID during training calls it repeatedly)."""
    model = config.generator()
    return jax.jit(lambda v, z: model.apply(v, z, train=False))


def generate_batches(config: ModelConfig, variables, codes, batch_size: int = 64) -> Iterator[np.ndarray]:
    """Images ``(n, H, W, C)`` in [0, 1] for ``codes``, batch after batch, in one compiled shape (the last batch
    padded, then cut), so that a large set never has to fit in memory at once."""
    if batch_size < 1:
        raise ConfigError(f"--batch_size must be positive, got {batch_size}")
    codes = np.asarray(codes, np.float32)
    apply = _inference(config)
    batch = min(batch_size, len(codes))
    for start in range(0, len(codes), batch):
        chunk = codes[start : start + batch]
        padded = np.pad(chunk, ((0, batch - len(chunk)), (0, 0)))
        images = np.asarray(apply(variables, jnp.asarray(padded)))[: len(chunk)]
        if not np.isfinite(images).all():
            raise CheckpointError(
                "the generator made non-finite images: its variables hold NaN or inf (a diverged or damaged "
                "checkpoint); use another --which"
            )
        yield images


def generate(config: ModelConfig, variables, codes, batch_size: int = 64) -> np.ndarray:
    """Images ``(N, H, W, C)`` in [0, 1] for ``codes`` (``generate_batches``, concatenated)."""
    return np.concatenate(list(generate_batches(config, variables, codes, batch_size)))


def define(fv: flags.FlagValues) -> None:
    cli.define_checkpoint_flags(fv)
    flags.DEFINE_string("codes", None, ".npy file of codes, shape (N, code_size)", flag_values=fv)
    flags.DEFINE_integer("num", None, "draw this many standard normal codes", flag_values=fv)
    flags.mark_flags_as_mutual_exclusive(["codes", "num"], required=True, flag_values=fv)
    flags.DEFINE_integer("seed", 0, "seed for --num", flag_values=fv)
    flags.DEFINE_string("out", None, ".npy file for the images (N, H, W, C) in [0, 1]", flag_values=fv)
    flags.mark_flag_as_required("out", flag_values=fv)
    flags.DEFINE_string("grid", None, "also write the images as one grid image (.png, .jpg, ...)", flag_values=fv)
    flags.DEFINE_integer("columns", None, "grid columns (default: about square)", flag_values=fv)
    flags.DEFINE_integer("batch_size", 64, "codes per generator call", flag_values=fv)


def body(fv: flags.FlagValues, args: list[str]) -> int:
    cli.no_arguments(args)
    if fv.grid:
        visualize.check_image_path(fv.grid, "--grid")  # before anything is written
    config, variables, step = checkpoint.load_generator(fv.checkpoint, fv.which)
    codes = load_codes(fv.codes, config.code_size) if fv.codes else normal_codes(fv.num, config.code_size, fv.seed)
    images = generate(config, variables, codes, fv.batch_size)
    out = pathlib.Path(fv.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, images)
    print(f"wrote {out}: {images.shape[0]} images {images.shape[1:]} from {fv.checkpoint} (iteration {step})")
    if fv.grid:
        print(f"wrote {visualize.save_grid(images, fv.grid, fv.columns)}")
    return 0


def main(argv=None) -> int:
    return cli.run("wngan_jax.sample", __doc__, define, body, argv)


if __name__ == "__main__":
    sys.exit(main())
