"""``python -m wngan_jax.inception export``: pytorch-fid's Inception weights -> an ``.npz`` read without PyTorch.

    python -m wngan_jax.inception export --inception_weights pt_inception-2015-12-05-6726825d.pth --out inception.npz

The network and the readers are ``wngan_jax.inception`` (docs/metrics.md).
"""

from __future__ import annotations

import sys

from absl import flags

from wngan_jax import cli, files, inception
from wngan_jax.errors import ConfigError


def define(fv: flags.FlagValues) -> None:
    cli.define_inception_weights(fv)
    flags.DEFINE_string("out", None, "the .npz to write", flag_values=fv)
    flags.mark_flag_as_required("out", flag_values=fv)


def body(fv: flags.FlagValues, args: list[str]) -> int:
    if args != ["export"]:
        raise ConfigError(f"expected the subcommand `export`, got {' '.join(args) or 'none'}")
    files.check_output(fv.out, "--out")  # an empty --out, first: it has no name to add .npz to
    out = files.check_output(inception.npz_path(fv.out), "--out")
    out = inception.export_npz(inception.load_weights(fv.inception_weights), out)
    print(f"wrote {out}; pass --inception_weights {out} (no PyTorch needed)")
    return 0


def main(argv=None) -> int:
    """``python -m wngan_jax.inception export --inception_weights PTH --out NPZ``."""
    return cli.run(
        "wngan_jax.inception",
        "export --inception_weights pt_inception-2015-12-05-6726825d.pth --out inception.npz: convert pytorch-fid's "
        "Inception weights once to an .npz that reads without PyTorch.",
        define,
        body,
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
