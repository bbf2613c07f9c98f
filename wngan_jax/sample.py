"""``python -m wngan_jax.sample``: images from a checkpoint's generator (``wngan_jax.generation``).

Command line (docs/convert.md)::

    python -m wngan_jax.sample --checkpoint DIR [--which best|last|N] [--ema] --codes codes.npy --out images.npy
    python -m wngan_jax.sample --checkpoint DIR --num 64 --seed 0 --out images.npy --grid samples.png

Codes are ``(N, code_size)`` float arrays; ``--num`` draws them from the standard normal prior. The output is
``(N, H, W, C)`` float32 in [0, 1]. ``--ema`` samples the averaged generator of a run trained with
``--ema_decay``.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
from absl import flags

from wngan_jax import checkpoint, cli, files, generation, visualize
from wngan_jax.config import SEED_MAX


def define(fv: flags.FlagValues) -> None:
    cli.define_checkpoint_flags(fv)
    flags.DEFINE_string("codes", None, ".npy file of codes, shape (N, code_size)", flag_values=fv)
    cli.define_count(fv, "num", None, "draw this many standard normal codes")
    flags.mark_flags_as_mutual_exclusive(["codes", "num"], required=True, flag_values=fv)
    cli.define_count(fv, "seed", 0, "seed for --num", minimum=0, maximum=SEED_MAX)
    flags.DEFINE_string("out", None, ".npy file for the images (N, H, W, C) in [0, 1]", flag_values=fv)
    flags.mark_flag_as_required("out", flag_values=fv)
    flags.DEFINE_string("grid", None, "also write the images as one grid image (.png, .jpg, ...)", flag_values=fv)
    cli.define_count(fv, "columns", None, "grid columns (default: about square)")
    cli.define_count(fv, "batch_size", 64, "codes per generator call")


def body(fv: flags.FlagValues, args: list[str]) -> int:
    cli.no_arguments(args)
    files.check_output(fv.out, "--out")  # before anything is computed or written
    if fv.grid:
        visualize.check_image_path(files.check_output(fv.grid, "--grid"), "--grid")
    config, variables, step = checkpoint.load_generator(fv.checkpoint, fv.which, ema=fv.ema)
    if fv.codes:
        codes = generation.load_codes(fv.codes, config.code_size)
    else:
        codes = generation.normal_codes(fv.num, config.code_size, fv.seed)
    images = generation.generate(config, variables, codes, fv.batch_size)
    out = pathlib.Path(fv.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, images)
    source = f"{fv.checkpoint} ({'averaged generator, ' if fv.ema else ''}iteration {step})"
    print(f"wrote {out}: {images.shape[0]} images {images.shape[1:]} from {source}")
    if fv.grid:
        print(f"wrote {visualize.save_grid(images, fv.grid, fv.columns)}")
    return 0


def main(argv=None) -> int:
    return cli.run("wngan_jax.sample", __doc__, define, body, argv)


if __name__ == "__main__":
    sys.exit(main())
