"""``python -m wngan_jax.sample``: images from a checkpoint's generator (``wngan_jax.generation``).

Command line (docs/convert.md)::

    python -m wngan_jax.sample --checkpoint DIR [--which best|last|N] --codes codes.npy --out images.npy
    python -m wngan_jax.sample --checkpoint DIR --num 64 --seed 0 --out images.npy --grid samples.png

Codes are ``(N, code_size)`` float arrays; ``--num`` draws them from the standard normal prior. The output is
``(N, H, W, C)`` float32 in [0, 1].
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
from absl import flags

from wngan_jax import checkpoint, cli, generation, visualize


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
    if fv.codes:
        codes = generation.load_codes(fv.codes, config.code_size)
    else:
        codes = generation.normal_codes(fv.num, config.code_size, fv.seed)
    images = generation.generate(config, variables, codes, fv.batch_size)
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
