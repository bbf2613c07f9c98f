"""Command line: `python -m wngan_jax.data {prepare,info} ...` (docs/data.md)."""

from __future__ import annotations

import argparse
import sys

from wngan_jax.data import cache, prepare, sources
from wngan_jax.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wngan_jax.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="build a dataset from its raw files")
    prep.add_argument("name", help=prepare.PREPARE_HELP)
    prep.add_argument("--manual-dir", required=True, help="directory holding the raw files")
    prep.add_argument("--data-dir", required=True, help="where the prepared dataset goes")
    info = commands.add_parser("info", help="count the images of a data spec")
    info.add_argument("spec", help=sources.SPEC_HELP)
    info.add_argument("--data-dir", help="TFDS data dir for tfds: specs")
    info.add_argument("--size", type=int, help="also build/open the cache at this size")
    info.add_argument("--channels", type=int, default=3)
    info.add_argument("--crop", type=int)
    info.add_argument("--cache-dir")
    info.add_argument("--final-test", type=int, default=2000)
    info.add_argument("--running-test", type=int, default=200)
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            for spec in prepare.prepare(args.name, args.manual_dir, args.data_dir):
                print(f"ready: --data {spec}" + (f" --data_dir {args.data_dir}" if spec.startswith("tfds:") else ""))
            return 0
        source = sources.open_source(args.spec, data_dir=args.data_dir)
        print(f"{source.spec}: {len(source)} images, default crop {source.default_crop or 'none'}")
        if args.size:
            ds = cache.load(
                args.spec,
                args.size,
                channels=args.channels,
                cache_dir=args.cache_dir,
                data_dir=args.data_dir,
                final_test=args.final_test,
                running_test=args.running_test,
                crop=args.crop,
            )
            meta = ds.info
            print(
                f"cache {meta['cache_dir']}: {meta['count']} readable ({len(meta['skipped'])} "
                f"skipped), train {len(ds.train)}, final test {len(ds.final_test)}, "
                f"running test {len(ds.running_test)}"
            )
        return 0
    except (FileNotFoundError, ImportError, ValueError, UserError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
