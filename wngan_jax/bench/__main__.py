"""``python -m wngan_jax.bench --what=train|authors|ablations|stabilizers|reconstruct|data|layers|fid|all
[--image_size N] [--json]``; ``train`` and ``authors`` also take the model family (``--arch=resnet``,
``--code_size``, ``--gen_features``, ``--gen_blocks``, ``--dis_features``, ``--dis_blocks``;
``bench.train.family_changes``).

Prints one line per measurement, or one JSON object per line with ``--json``; every figure is a median over
repeated runs after warm-up, and speeds are compared with a large matmul measured in the same process.
``authors`` runs the authors' PyTorch iteration next to the one here (needs ``wngan_jax[torch]``); ``all``
runs it too when PyTorch is installed. ``ablations`` times the iteration as shipped against variants with
one speed decision undone; ``stabilizers`` the iteration of WN with a generator EMA, and of the spectrally
normalized model, against plain WN.
"""

from __future__ import annotations

import importlib.util
import json
import sys

from absl import flags

from wngan_jax import cli, sharding
from wngan_jax.bench import ablations, authors, data, fid, layers, reconstruct, stabilizers, train
from wngan_jax.bench.common import matmul_gflops
from wngan_jax.errors import ConfigError
from wngan_jax.models import ARCHS

FAMILY_FLAGS = ("arch", "code_size", "gen_features", "gen_blocks", "dis_features", "dis_blocks")
WHAT = ("train", "authors", "ablations", "stabilizers", "reconstruct", "data", "layers", "fid")


def define(fv: flags.FlagValues) -> None:
    flags.DEFINE_enum("what", "all", WHAT + ("all",), "which benchmark", flag_values=fv)
    flags.DEFINE_multi_integer("image_size", None, "square image size (repeatable); default per bench", flag_values=fv)
    flags.DEFINE_multi_string(
        "norm", None, "norm variant (repeatable); default vanilla, bn, wn (--arch=resnet: wn)", flag_values=fv
    )
    flags.DEFINE_enum(
        "arch", "dcgan", ARCHS, "train, authors: the paper's models or the ResNet follow-up", flag_values=fv
    )
    cli.define_count(fv, "code_size", None, "train, authors: code size (default 256, --arch=resnet 128)")
    for side in ("gen", "dis"):
        default = "the generator's" if side == "dis" else "64x64: 64,128,256,512; 160x160: their README's"
        cli.define_int_list(fv, f"{side}_features", None, f"--arch=resnet: features per level (default {default})")
        cli.define_int_list(fv, f"{side}_blocks", None, "--arch=resnet: blocks per level (default one per level)")
    cli.define_count(fv, "batch_size", 32, "training batch, and the authors' reconstruction batch")
    cli.define_count(fv, "repeats", 5, "timed repetitions (the median is reported)")
    flags.DEFINE_enum("dtype", "float32", ("float32", "bfloat16"), "train: compute dtype", flag_values=fv)
    cli.define_count(fv, "samples", 64, "reconstruct: number of target images")
    flags.DEFINE_string("profile", None, "train: also trace three iterations into this directory", flag_values=fv)
    cli.define_count(fv, "chunk_size", None, "reconstruct: samples per chunk (default: memory budget)")
    flags.DEFINE_bool("json", False, "one JSON object per measurement", flag_values=fv)


def body(fv: flags.FlagValues, args: list[str]) -> int:
    cli.no_arguments(args)
    whats = tuple(w for w in WHAT if w != "authors" or _has_torch()) if fv.what == "all" else (fv.what,)
    given = [f"--{name}" for name in FAMILY_FLAGS if fv[name].present]
    if given and set(whats) - {"train", "authors"}:
        raise ConfigError(f"only --what=train and --what=authors take {', '.join(given)}")
    roofline = matmul_gflops()
    if not fv.json:
        print(f"device {sharding.device_description()}; float32 matmul roofline {roofline:.1f} GFLOP/s")
    for what in whats:
        for row in _run(what, fv):
            if fv.json:
                common = {
                    "norm": None,
                    "batch": fv.batch_size,
                    "median_ms": None,
                    "gflops": None,
                    "roofline_fraction": None,
                    "device": sharding.device_description(),
                }
                print(json.dumps(common | row), flush=True)
    return 0


def main(argv=None) -> int:
    return cli.run("wngan_jax.bench", __doc__, define, body, argv)


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def _family(args) -> dict:
    """The model family's flags given, for ``bench.train.family_changes``."""
    return {name: args[name].value for name in FAMILY_FLAGS if args[name].value is not None}


def _run(what: str, args) -> list[dict]:
    family = _family(args)
    resnet = family.get("arch") == "resnet"
    if what == "train":
        return train.run(
            sizes=tuple(args.image_size or ((64, 160) if resnet else (32, 64, 160))),
            norms=tuple(args.norm or (("wn",) if resnet else ("vanilla", "bn", "wn"))),
            batch=args.batch_size,
            repeats=args.repeats,
            dtype=args.dtype,
            profile_dir=args.profile,
            as_json=args.json,
            family=family,
        )
    if what == "authors":
        return authors.run(
            sizes=tuple(args.image_size or ((64, 160) if resnet else (32, 64))),
            norms=tuple(args.norm or (("wn",) if resnet else ("vanilla", "bn", "wn"))),
            batch=args.batch_size,
            repeats=args.repeats,
            as_json=args.json,
            family=family,
        )
    if what == "ablations":
        return ablations.run(
            sizes=tuple(args.image_size or (32, 64)),
            norms=tuple(args.norm or ("wn",)),
            batch=args.batch_size,
            repeats=args.repeats,
            as_json=args.json,
        )
    if what == "stabilizers":
        sizes = tuple(args.image_size or (32,))
        return stabilizers.run(sizes=sizes, batch=args.batch_size, repeats=args.repeats, as_json=args.json)
    if what == "reconstruct":
        return reconstruct.run(
            sizes=tuple(args.image_size or (32, 64)),
            norm=(args.norm or ["wn"])[0],
            samples=args.samples,
            chunk_size=args.chunk_size,
            as_json=args.json,
        )
    if what == "data":
        return data.run(sizes=tuple(args.image_size or (64, 160)), batch=args.batch_size, as_json=args.json)
    if what == "fid":
        sizes = tuple(args.image_size or (32, 64))
        return fid.run(sizes=sizes, batch=args.batch_size, dtype=args.dtype, repeats=args.repeats, as_json=args.json)
    return layers.run(size=(args.image_size or [64])[0], batch=args.batch_size, as_json=args.json, repeats=args.repeats)


if __name__ == "__main__":
    sys.exit(main())
