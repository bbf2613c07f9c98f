"""One command-line convention for every ``python -m`` command of wngan_jax.

* Flags are absl flags, spelled in snake_case (``--data_dir``, ``--batch_size``, ``--image_size``); a flag
  that means the same thing in two commands has the same name, help and parser in both (the ``define_*``
  helpers below). Positional arguments are what remains after the flags.
* Each command has its own ``flags.FlagValues``, so commands can be run in one process (tests, notebooks):
  ``main(argv) -> exit code``, and ``sys.exit(main())`` under ``__main__``.
* ``--help`` prints the command's description and flags. A bad flag exits with code 2, a
  ``wngan_jax.errors.UserError`` with code 1; both print one line, ``error: <message>``.
* The spellings of 0.1.0 and 0.2.0 (``--data-dir``, ``--batch-size``, ``--batch``, ``--image-size``, ...)
  still work until ``SPELLINGS_REMOVED_IN`` and print a deprecation note naming the new spelling.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

import jax
from absl import flags
from absl import logging as absl_logging

from wngan_jax.errors import ConfigError, UserError
from wngan_jax.models import INT32_MAX, image_hw

# The release that stops accepting DEPRECATED_SPELLINGS (CHANGELOG.md, 0.3.0: Deprecated).
SPELLINGS_REMOVED_IN = "1.0.0"
# Spelling of 0.1.0 and 0.2.0 -> flag, accepted with a deprecation note until SPELLINGS_REMOVED_IN.
DEPRECATED_SPELLINGS = {
    "data-dir": "data_dir",
    "cache-dir": "cache_dir",
    "manual-dir": "manual_dir",
    "batch-size": "batch_size",
    "batch": "batch_size",
    "image-size": "image_size",
    "size": "image_size",
    "code-size": "code_size",
    "final-test": "final_test",
    "running-test": "running_test",
    "max_nan_restarts": "max_rollbacks",
    "progress": "progress_bar",
    "noprogress": "noprogress_bar",
}
HELP_FLAGS = ("-h", "--help", "--helpfull")

Body = Callable[[flags.FlagValues, list[str]], "int | None"]


class ImageSizeParser(flags.ArgumentParser):
    """``64`` or ``64x96`` (height x width) -> ``(height, width)``."""

    syntactic_help = "N or HxW"

    def parse(self, argument):
        try:
            return image_hw(argument)
        except ValueError as e:
            raise ValueError(str(e)) from None

    def flag_type(self):
        return "image size"


class ImageSizeSerializer(flags.ArgumentSerializer):
    def serialize(self, value):
        return f"{value[0]}x{value[1]}"


class IntListParser(flags.ArgumentParser):
    """``50,100,200`` (or ``[50, 100, 200]``, as config.json writes it; empty: ``[]``) -> ``[50, 100, 200]``."""

    syntactic_help = "comma-separated integers"

    def parse(self, argument):
        if isinstance(argument, (list, tuple)):
            return [int(a) for a in argument]
        try:
            return [int(a) for a in argument.strip().removeprefix("[").removesuffix("]").split(",") if a.strip()]
        except ValueError:
            raise ValueError(f"expected comma-separated integers, got {argument!r}") from None

    def flag_type(self):
        return "int list"


def define_int_list(fv: flags.FlagValues, name: str, default, help_text: str) -> None:
    flags.DEFINE(IntListParser(), name, default, help_text, flag_values=fv, serializer=flags.CsvListSerializer(","))


def define_count(
    fv: flags.FlagValues, name: str, default, help_text: str, *, minimum: int = 1, maximum: int = INT32_MAX
) -> None:
    """An integer flag from ``minimum`` to ``maximum`` (the config's limit, ``models.INT32_MAX``): a value
    outside is a bad flag (exit 2) before the command starts."""
    flags.DEFINE_integer(name, default, help_text, lower_bound=minimum, upper_bound=maximum, flag_values=fv)


def no_arguments(args: list[str]) -> None:
    """Commands without positional arguments refuse stray words (often a flag missing its ``--``)."""
    if args:
        raise ConfigError(f"unexpected arguments {' '.join(args)}; flags start with --")


def define_image_size(fv: flags.FlagValues, default=None, help_text: str | None = None) -> None:
    flags.DEFINE(
        ImageSizeParser(),
        "image_size",
        default,
        help_text or "image size: N, or HxW such as 64x96 (even sides)",
        flag_values=fv,
        serializer=ImageSizeSerializer(),
    )


def define_checkpoint_flags(fv: flags.FlagValues) -> None:
    """``--checkpoint``, ``--which`` and ``--ema``, for every command that reads a checkpoint."""
    flags.DEFINE_string(
        "checkpoint", None, "run directory, or the --out of `python -m wngan_jax.convert`", flag_values=fv
    )
    flags.DEFINE_string("which", "best", "best, last or an iteration number", flag_values=fv)
    flags.DEFINE_bool(
        "ema",
        False,
        "the averaged generator of that checkpoint (a run trained with --ema_decay > 0) instead of the raw one",
        flag_values=fv,
    )
    flags.mark_flag_as_required("checkpoint", flag_values=fv)


def define_data_flags(fv: flags.FlagValues, *, data_default: str | None = None) -> None:
    """``--data``, ``--data_dir`` and ``--cache_dir``, as training spells them (docs/data.md)."""
    flags.DEFINE_string(
        "data",
        data_default,
        "data source: digits, folder:PATH, lmdb:PATH, tfds:NAME[:SPLIT] (docs/data.md)",
        flag_values=fv,
    )
    flags.DEFINE_string("data_dir", "", "where a tfds: dataset's prepared files are (TFDS data_dir)", flag_values=fv)
    flags.DEFINE_string(
        "cache_dir",
        "",
        "root of the preprocessed-image cache (default $WNGAN_CACHE or ~/.cache/wngan_jax)",
        flag_values=fv,
    )


def define_inception_weights(fv: flags.FlagValues) -> None:
    """``--inception_weights``, for every command that computes FID, KID or precision/recall (docs/metrics.md)."""
    flags.DEFINE_string(
        "inception_weights",
        None,
        "pytorch-fid's pt_inception-2015-12-05-6726825d.pth, or its .npz export (default $WNGAN_INCEPTION_WEIGHTS)",
        flag_values=fv,
    )


def define_distributed_flags(fv: flags.FlagValues) -> None:
    """Multi-host flags (``jax.distributed``); on a TPU pod slice JAX finds the processes itself."""
    flags.DEFINE_string("coordinator_address", None, "multi-host: host:port of process 0", flag_values=fv)
    flags.DEFINE_integer("num_processes", None, "multi-host: number of processes", flag_values=fv)
    flags.DEFINE_integer("process_id", None, "multi-host: index of this process", flag_values=fv)


def init_distributed(fv: flags.FlagValues) -> None:
    """``jax.distributed.initialize`` when the multi-host flags are given."""
    if fv.coordinator_address is None and fv.num_processes is None:
        return
    jax.distributed.initialize(
        coordinator_address=fv.coordinator_address, num_processes=fv.num_processes, process_id=fv.process_id
    )


def respell(argv: Sequence[str]) -> list[str]:
    """``argv`` with deprecated flag spellings replaced (a note on stderr for each)."""
    out = []
    for arg in argv:
        if arg.startswith("--") and arg != "--":
            name, eq, value = arg[2:].partition("=")
            if name in DEPRECATED_SPELLINGS:
                new = DEPRECATED_SPELLINGS[name]
                print(
                    f"note: --{name} is deprecated and will be removed in {SPELLINGS_REMOVED_IN}; use --{new}",
                    file=sys.stderr,
                )
                arg = f"--{new}{eq}{value}"
        out.append(arg)
    return out


def run(
    prog: str,
    description: str,
    define: Callable[[flags.FlagValues], None],
    body: Body,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) with the flags ``define`` adds and call ``body(flags, args)``.

    Returns the exit code: ``body``'s return value (``None`` is 0), 1 for a ``UserError``, 2 for bad flags.
    """
    fv = flags.FlagValues()
    define(fv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in HELP_FLAGS for a in argv):
        print(f"usage: python -m {prog} [flags]\n\n{description.strip()}\n\nflags:")
        print(fv.get_help(include_special_flags=False))
        return 0
    try:
        args = fv([prog, *respell(argv)])[1:]
    except flags.Error as e:
        print(f"error: {e}\n(see python -m {prog} --help)", file=sys.stderr)
        return 2
    _quiet_libraries()
    try:
        return body(fv, args) or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _quiet_libraries() -> None:
    """Warnings and errors only: the libraries' INFO chatter would bury the progress bars."""
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
