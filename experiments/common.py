"""Flags shared by every experiment: one per TrainConfig field, plus the run directory and multi-host setup.

Only flags given on the command line override the preset, so ``--lr=5e-5`` changes nothing else.
"""

from __future__ import annotations

import dataclasses
import sys

from absl import app, flags

from wngan_jax.config import PRESETS, TrainConfig
from wngan_jax.models import AUTHOR_NAMES, VARIANTS

FLAGS = flags.FLAGS
_FIELD_HELP = {
    "norm": f"norm variant: {', '.join(VARIANTS)} (or the authors' {', '.join(AUTHOR_NAMES)})",
    "image_size": "image size, 64 or HxW such as 64x96 (even sides)",
    "data": "data source: digits, folder:PATH, tfds:NAME[:SPLIT] (see docs/data.md)",
    "loss": "bce (the paper), lsgan, or wasserstein (appendix D critic; needs --norm=wn)",
    "dtype": "compute dtype: float32, or bfloat16 on GPU/TPU (parameters and losses stay float32)",
}


def _parse_size(text: str):
    parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    return (parts[0], parts[0]) if len(parts) == 1 else tuple(parts)


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
    """Flags for every TrainConfig field (defaults come from the preset), --workdir, --overwrite, multi-host."""
    for field in dataclasses.fields(TrainConfig):
        help_text = _FIELD_HELP.get(field.name, field.name.replace("_", " "))
        default = field.default
        if isinstance(default, bool):
            flags.DEFINE_bool(field.name, None, help_text, flag_values=fv)
        elif isinstance(default, int):
            flags.DEFINE_integer(field.name, None, help_text, flag_values=fv)
        elif isinstance(default, float):
            flags.DEFINE_float(field.name, None, help_text, flag_values=fv)
        else:
            flags.DEFINE_string(field.name, None, help_text, flag_values=fv)
    flags.DEFINE_string("workdir", None, "run directory; an existing run there is resumed", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "discard a run in --workdir whose config differs", flag_values=fv)
    flags.DEFINE_string(
        "coordinator_address", None, "multi-host: host:port of process 0 (jax.distributed)", flag_values=fv
    )
    flags.DEFINE_integer("num_processes", None, "multi-host: number of processes", flag_values=fv)
    flags.DEFINE_integer("process_id", None, "multi-host: index of this process", flag_values=fv)


def config_from_flags(preset: str, fv: flags.FlagValues = FLAGS, **overrides) -> TrainConfig:
    """The preset, with the flags given on the command line, then ``overrides``, applied."""
    config = PRESETS[preset]()
    changes = {}
    for field in dataclasses.fields(TrainConfig):
        if fv[field.name].present:
            value = fv[field.name].value
            changes[field.name] = _parse_size(value) if field.name == "image_size" else value
    return config.replace(**(changes | overrides))


def init_distributed() -> None:
    if FLAGS.coordinator_address is None and FLAGS.num_processes is None:
        return
    import jax

    jax.distributed.initialize(
        coordinator_address=FLAGS.coordinator_address, num_processes=FLAGS.num_processes, process_id=FLAGS.process_id
    )


def run_experiment(preset: str, workdir: str | None = None, **overrides) -> dict:
    """Build the preset's config from the flags (and ``overrides``), train, and print the summary."""
    from wngan_jax.train import train_and_evaluate

    config = config_from_flags(preset, **overrides)
    workdir = workdir or FLAGS.workdir or f"runs/{preset}_{config.norm}"
    summary = train_and_evaluate(config, workdir, overwrite=FLAGS.overwrite)
    print(f"run directory: {workdir}")
    print(f"best running-test loss {summary['best_loss']} at iteration {summary['best_iteration']}")
    if "final_test" in summary:
        print(
            f"final test ({summary['final_test']['samples']} images, {summary['final_test']['steps']} steps): "
            f"{summary['final_test']['mean_loss']:.6f}"
        )
    return summary


def main_for(preset: str, entry=None):
    """Run ``entry(argv)`` (default: train the preset) under ``absl.app`` with clear one-line errors."""
    define_flags()

    def main(argv):
        from absl import logging as absl_logging

        if not FLAGS["verbosity"].present:  # libraries' INFO chatter would bury the progress bar
            absl_logging.set_verbosity(absl_logging.WARNING)
        init_distributed()
        try:
            (entry or (lambda a: run_experiment(preset)))(argv)
        except Exception as e:  # known user errors get one clear line, not a traceback
            from wngan_jax.checkpoint import CheckpointError
            from wngan_jax.train import TrainingDiverged, WorkdirConflict

            if isinstance(e, (ValueError, FileNotFoundError, CheckpointError, TrainingDiverged, WorkdirConflict)):
                sys.exit(f"error: {e}")
            raise

    app.run(main)
