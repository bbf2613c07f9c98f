"""``python -m wngan_jax.bench --what=train|reconstruct|data|layers|all [--size N] [--norm ...] [--json]``.

Prints one line per measurement, or one JSON object per line with ``--json``; every figure is a median over
repeated runs after warm-up, and speeds are compared with a large matmul measured in the same process.
"""
from __future__ import annotations

import argparse
import json

WHAT = ("train", "reconstruct", "data", "layers")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wngan_jax.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--what", default="all", choices=WHAT + ("all",))
    parser.add_argument("--size", type=int, action="append", help="image size (repeatable); default per bench")
    parser.add_argument("--norm", action="append", help="norm variant (repeatable); default vanilla, bn, wn")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--json", action="store_true", help="one JSON object per measurement")
    args = parser.parse_args(argv)
    whats = WHAT if args.what == "all" else (args.what,)

    from wngan_jax.bench.common import device_name, matmul_gflops

    roofline = matmul_gflops()
    if not args.json:
        print(f"device {device_name()}; float32 matmul roofline {roofline:.1f} GFLOP/s")
    for what in whats:
        for row in _run(what, args, roofline):
            print(json.dumps(row) if args.json else row.pop("_text"))


def _run(what: str, args, roofline: float):
    if what == "train":
        from wngan_jax.bench import train

        rows = train.run(sizes=tuple(args.size or (32, 64, 160)), norms=tuple(args.norm or ("vanilla", "bn", "wn")),
                         batch=args.batch, roofline_gflops=roofline, repeats=args.repeats, dtype=args.dtype)
        texts = [train.format_row(r) for r in rows]
    elif what == "reconstruct":
        from wngan_jax.bench import reconstruct

        rows = reconstruct.run(sizes=tuple(args.size or (32, 64)), norm=(args.norm or ["wn"])[0], as_json=True)
        texts = [json.dumps(r) for r in rows]
    elif what == "data":
        from wngan_jax.bench import data

        rows = data.run(sizes=tuple(args.size or (64, 160)), batch=args.batch, as_json=True)
        texts = [f"data {r['size']}x{r['size']}: {r['images_per_s']:.0f} images/s (batch {r['batch']})" for r in rows]
    else:
        from wngan_jax.bench import layers

        rows = layers.run(size=(args.size or [64])[0], batch=args.batch, as_json=True, repeats=args.repeats)
        texts = [json.dumps(r) for r in rows]
    return [dict(r, _text=t) for r, t in zip(rows, texts)]


if __name__ == "__main__":
    main()
