"""The preset experiments' command line: one flag per config field (model fields included), the run
directory and multi-host setup, in the convention of ``wngan_jax.cli``.

Only flags given on the command line override the preset, so ``--lr=5e-5`` changes nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from absl import flags

from wngan_jax import cli
from wngan_jax.config import MODEL_FIELDS, TrainConfig
from wngan_jax.config import preset as preset_config
from wngan_jax.models import ARCHS, AUTHOR_NAMES, RESNET_LIST_FIELDS, VARIANTS, ModelConfig, model_fields
from wngan_jax.train import train_and_evaluate

_FIELD_HELP = {
    "norm": f"norm variant: {', '.join(VARIANTS)} (or the authors' {', '.join(AUTHOR_NAMES)})",
    "arch": f"model family: {', '.join(ARCHS)} (the paper's models, or the authors' weight-normalized ResNet "
    "follow-up with its defaults: lr 2e-5, eps 1e-8, code 128; docs/design.md)",
    "gen_features": "--arch=resnet: generator features per level from the image side, e.g. 64,128,256,384,512",
    "gen_blocks": "--arch=resnet: generator residual blocks per level, e.g. 1,1,1,1,1",
    "dis_features": "--arch=resnet: discriminator features per level from the image side",
    "dis_blocks": "--arch=resnet: discriminator residual blocks per level",
    "data": "data source: digits, folder:PATH, lmdb:PATH, tfds:NAME[:SPLIT] (docs/data.md)",
    "data_dir": "where a tfds: dataset's prepared files are (TFDS data_dir)",
    "cache_dir": "root of the preprocessed-image cache (default $WNGAN_CACHE or ~/.cache/wngan_jax)",
    "loss": "bce (the paper), lsgan, or wasserstein (appendix D critic; needs --norm=wn)",
    "dtype": "compute dtype: float32, or bfloat16 on GPU/TPU (parameters and losses stay float32)",
    "progress_bar": "show a progress bar",
    "max_rollbacks": "non-finite losses in a row rolled back to the last checkpoint before giving up",
    "ema_decay": "keep an exponential moving average of the generator with this decay (0.999 typical; 0: none)",
}


def config_fields() -> list[dataclasses.Field]:
    """The leaf fields that are flags: the model's (but ``critic``, which follows from the loss), then the rest."""
    model = [f for f in dataclasses.fields(ModelConfig) if f.name in MODEL_FIELDS]
    return model + [f for f in dataclasses.fields(TrainConfig) if f.name != "model"]


def define_config_flags(fv: flags.FlagValues) -> None:
    """A flag per config field, default unset (the preset's value applies)."""
    for field in config_fields():
        help_text = _FIELD_HELP.get(field.name, field.name.replace("_", " "))
        if field.name == "image_size":
            cli.define_image_size(fv)
        elif isinstance(field.default, tuple):
            cli.define_int_list(fv, field.name, None, help_text)
        elif isinstance(field.default, bool):
            flags.DEFINE_bool(field.name, None, help_text, flag_values=fv)
        elif isinstance(field.default, int):
            flags.DEFINE_integer(field.name, None, help_text, flag_values=fv)
        elif isinstance(field.default, float):
            flags.DEFINE_float(field.name, None, help_text, flag_values=fv)
        else:
            flags.DEFINE_string(field.name, None, help_text, flag_values=fv)


def define_flags(fv: flags.FlagValues) -> None:
    """Config flags, ``--workdir``, ``--overwrite`` and the multi-host flags."""
    define_config_flags(fv)
    flags.DEFINE_string("workdir", None, "run directory; an existing run there is resumed", flag_values=fv)
    flags.register_validator(
        "workdir", lambda v: v is None or bool(v.strip()), "--workdir is empty; name the run directory", flag_values=fv
    )
    flags.DEFINE_bool("overwrite", False, "discard a run in --workdir whose config differs", flag_values=fv)
    cli.define_distributed_flags(fv)


def config_from_flags(fv: flags.FlagValues, preset: str, **overrides) -> TrainConfig:
    """The preset for the ``--arch`` given (``wngan_jax.config.preset``), with the flags given on the command
    line, then ``overrides``, applied."""
    given = {f.name: fv[f.name].value for f in config_fields() if fv[f.name].present}
    changes = given | overrides
    return preset_config(preset, changes.pop("arch", "dcgan"), **changes)


def config_for_model(fv: flags.FlagValues, preset: str, model: str) -> TrainConfig:
    """The config of the model that tables and figures call ``model`` (``wn``, ``resnet_wn``;
    ``wngan_jax.models.model_fields``): the preset for its family, with the flags given that apply to that
    family (``--gen_features`` and the other ResNet lists to ResNet models only), so one study's command line
    serves both families."""
    fields = model_fields(model)
    given = {f.name: fv[f.name].value for f in config_fields() if fv[f.name].present}
    if fields["arch"] == "dcgan":
        given = {k: v for k, v in given.items() if k not in RESNET_LIST_FIELDS}
    return preset_config(preset, **(given | fields))


def run_experiment(fv: flags.FlagValues, preset: str, workdir=None, **overrides) -> dict:
    """Build the preset's config from the flags (and ``overrides``), train, and print the summary."""
    config = config_from_flags(fv, preset, **overrides)
    workdir = workdir or fv.workdir or f"runs/{preset}_{config.model.name}"
    summary = train_and_evaluate(config, workdir, overwrite=fv.overwrite)
    print(f"run directory: {workdir}")
    print(f"best running-test loss {summary['best_loss']} at iteration {summary['best_iteration']}")
    for which in ("best", "last", "ema", "ema_last"):
        final = summary.get("final_test", {}).get(which)
        if final:
            print(
                f"final test of the {which} generator (iteration {final['iteration']}, {final['samples']} images, "
                f"{final['steps']} steps): {final['mean_loss']:.6f}"
            )
    return summary


def main_for(
    preset: str,
    doc: str,
    argv=None,
    *,
    define: Callable[[flags.FlagValues], None] | None = None,
    entry: Callable[[flags.FlagValues], object] | None = None,
) -> int:
    """``python -m experiments.<preset>``: train the preset, or run ``entry(flags)`` with ``define``'s extra flags."""

    def define_all(fv):
        define_flags(fv)
        if define:
            define(fv)

    def body(fv, args):
        cli.no_arguments(args)
        cli.init_distributed(fv)
        (entry or (lambda fv: run_experiment(fv, preset)))(fv)
        return 0

    return cli.run(f"experiments.{preset}", doc, define_all, body, argv)
