"""``python -m wngan_jax.bench --what=train|authors|ablations|reconstruct|data|layers|fid|all [--size N] [--json]``.

Prints one line per measurement, or one JSON object per line with ``--json``; every figure is a median over
repeated runs after warm-up, and speeds are compared with a large matmul measured in the same process.
``authors`` runs the authors' PyTorch iteration next to the one here (needs ``wngan_jax[torch]``); ``all``
runs it too when PyTorch is installed. ``ablations`` times the iteration as shipped against variants with
one speed decision undone.
"""

from __future__ import annotations

import argparse
import json

WHAT = ("train", "authors", "ablations", "reconstruct", "data", "layers", "fid")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m wngan_jax.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--what", default="all", choices=WHAT + ("all",))
    parser.add_argument("--size", type=int, action="append", help="image size (repeatable); default per bench")
    parser.add_argument("--norm", action="append", help="norm variant (repeatable); default vanilla, bn, wn")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--samples", type=int, default=64, help="reconstruct: number of target images")
    parser.add_argument("--profile", metavar="DIR", help="train: also trace three iterations into DIR")
    parser.add_argument("--chunk_size", type=int, help="reconstruct: samples per chunk (default: memory budget)")
    parser.add_argument("--json", action="store_true", help="one JSON object per measurement")
    args = parser.parse_args(argv)
    whats = tuple(w for w in WHAT if w != "authors" or _has_torch()) if args.what == "all" else (args.what,)

    from wngan_jax.bench.common import device_name, matmul_gflops

    roofline = matmul_gflops()
    if not args.json:
        print(f"device {device_name()}; float32 matmul roofline {roofline:.1f} GFLOP/s")
    for what in whats:
        for row in _run(what, args):
            if args.json:
                common = {
                    "norm": None,
                    "batch": args.batch,
                    "median_ms": None,
                    "gflops": None,
                    "roofline_fraction": None,
                    "device": device_name(),
                }
                print(json.dumps(common | row), flush=True)


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _run(what: str, args) -> list[dict]:
    if what == "train":
        from wngan_jax.bench import train

        return train.run(
            sizes=tuple(args.size or (32, 64, 160)),
            norms=tuple(args.norm or ("vanilla", "bn", "wn")),
            batch=args.batch,
            repeats=args.repeats,
            dtype=args.dtype,
            profile_dir=args.profile,
            as_json=args.json,
        )
    if what == "authors":
        from wngan_jax.bench import authors

        return authors.run(
            sizes=tuple(args.size or (32, 64)),
            norms=tuple(args.norm or ("vanilla", "bn", "wn")),
            batch=args.batch,
            repeats=args.repeats,
            as_json=args.json,
        )
    if what == "ablations":
        from wngan_jax.bench import ablations

        return ablations.run(
            sizes=tuple(args.size or (32, 64)),
            norms=tuple(args.norm or ("wn",)),
            batch=args.batch,
            repeats=args.repeats,
            as_json=args.json,
        )
    if what == "reconstruct":
        from wngan_jax.bench import reconstruct

        return reconstruct.run(
            sizes=tuple(args.size or (32, 64)),
            norm=(args.norm or ["wn"])[0],
            samples=args.samples,
            chunk_size=args.chunk_size,
            as_json=args.json,
        )
    if what == "data":
        from wngan_jax.bench import data

        return data.run(sizes=tuple(args.size or (64, 160)), batch=args.batch, as_json=args.json)
    if what == "fid":
        from wngan_jax.bench import fid

        sizes = tuple(args.size or (32, 64))
        return fid.run(sizes=sizes, batch=args.batch, dtype=args.dtype, repeats=args.repeats, as_json=args.json)
    from wngan_jax.bench import layers

    return layers.run(size=(args.size or [64])[0], batch=args.batch, as_json=args.json, repeats=args.repeats)


if __name__ == "__main__":
    main()
