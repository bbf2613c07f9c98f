"""``python -m wngan_jax.data prepare NAME --manual_dir DIR --data_dir DIR`` builds a dataset from its raw files;
``python -m wngan_jax.data info --data SPEC [--image_size N]`` counts its images and, with ``--image_size``, builds
or opens its cache and prints the paper's split (docs/data.md)."""

from __future__ import annotations

import sys

from absl import flags

from wngan_jax import cli
from wngan_jax.data import cache, prepare, sources
from wngan_jax.errors import ConfigError

COMMANDS = ("prepare", "info")


def define(fv: flags.FlagValues) -> None:
    cli.define_data_flags(fv)
    flags.DEFINE_string("manual_dir", None, "prepare: directory holding the raw files", flag_values=fv)
    cli.define_image_size(fv, help_text="info: also build or open the cache at this size (N or HxW)")
    flags.DEFINE_integer("channels", 3, "info: 1 (gray) or 3 (RGB)", flag_values=fv)
    cli.define_count(fv, "crop", None, "info: centre crop side before resizing (default: the source's)")
    cli.define_count(fv, "final_test", 2000, "info: final test set size")
    cli.define_count(fv, "running_test", 200, "info: running test set size")


def body(fv: flags.FlagValues, args: list[str]) -> int:
    if not args or args[0] not in COMMANDS:
        raise ConfigError(f"name a command: {' or '.join(COMMANDS)} (see python -m wngan_jax.data --help)")
    command, rest = args[0], args[1:]
    if command == "prepare":
        if len(rest) != 1 or not fv.manual_dir or not fv.data_dir:
            raise ConfigError(f"usage: prepare NAME --manual_dir DIR --data_dir DIR; {prepare.PREPARE_HELP}")
        for spec in prepare.prepare(rest[0], fv.manual_dir, fv.data_dir):
            print(f"ready: --data {spec}" + (f" --data_dir {fv.data_dir}" if spec.startswith("tfds:") else ""))
        return 0
    cli.no_arguments(rest)
    if not fv.data:
        raise ConfigError(f"info needs --data: {sources.SPEC_HELP}")
    source = sources.open_source(fv.data, data_dir=fv.data_dir or None)
    print(f"{source.spec}: {len(source)} images, default crop {source.default_crop or 'none'}")
    if fv.image_size:
        ds = cache.load(
            fv.data,
            fv.image_size,
            channels=fv.channels,
            cache_dir=fv.cache_dir or None,
            data_dir=fv.data_dir or None,
            final_test=fv.final_test,
            running_test=fv.running_test,
            crop=fv.crop,
        )
        meta = ds.info
        print(
            f"cache {meta['cache_dir']}: {meta['count']} readable ({len(meta['skipped'])} "
            f"skipped), train {len(ds.train)}, final test {len(ds.final_test)}, "
            f"running test {len(ds.running_test)}"
        )
    return 0


def main(argv=None) -> int:
    return cli.run("wngan_jax.data", __doc__, define, body, argv)


if __name__ == "__main__":
    sys.exit(main())
