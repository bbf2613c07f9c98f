"""The paper's study: every (model, seed) of a preset trained as ordinary runs, one after another.

``python -m experiments.study --preset=digits --norms=vanilla,bn,wn --seeds=0,1,2 --workdir=runs/study``

trains ``runs/study/<model>/seed_<k>/`` for every pair (the paper repeats the vanilla and BN trainings three
times, appendix C.1), each data-parallel over all devices, every model for the first seed before the next seed.
``--norms`` names models as tables and figures do: the paper's norm variants, and ``resnet_wn``, the authors'
weight-normalized ResNet follow-up with the preset's ResNet setting (``--norms=vanilla,bn,wn,resnet_wn``).
Running the same command again resumes unfinished runs and skips finished ones, so a killed study continues
where it stopped. Every flag of the preset's own command (``--iterations``, ``--lr``, ``--data``, ...) applies
to every run. ``python -m experiments.report runs/study --out runs/study/report`` then writes the paper's
tables and figures from the runs (docs/study.md).
"""

from __future__ import annotations

import functools
import json
import logging
import pathlib
import sys
from collections.abc import Mapping

from absl import flags

from experiments import common
from experiments.report.loading import STUDY_FILE, read_study, run_dir
from wngan_jax import checkpoint, cli, errors, files, train
from wngan_jax.config import PRESETS, SEED_MAX, TrainConfig
from wngan_jax.models import check_int
from wngan_jax.rundir import RunDirectory


def check_runs(configs, root, *, overwrite: bool) -> None:
    """Refuse, before anything trains, a study whose runs on disk were made with another config."""
    if overwrite:
        return
    for config in configs:
        RunDirectory(run_dir(root, config.model.name, config.seed)).check_config(config, overwrite=False)


def record_study(root: pathlib.Path, norms, seeds, command: str | None) -> None:
    """Add ``norms``, ``seeds`` and ``command`` to ``ROOT/study.json``: it records the union of every call on
    the directory, so a later call with fewer models or seeds takes nothing from the report."""
    try:
        earlier = read_study(root) or {"norms": [], "seeds": [], "commands": []}
    except errors.DamagedFile as e:  # rebuilt from the runs on disk: the union is what they are
        logging.warning("%s; rebuilding it from the runs below %s", e, root)
        runs = [p.parent.relative_to(root).parts for p in root.glob("*/seed_*/config.json")]
        earlier = {
            "norms": sorted({n for n, _ in runs}),
            "seeds": sorted({int(s[5:]) for _, s in runs}),
            "commands": [],
        }
    study = {
        "norms": list(dict.fromkeys([*earlier["norms"], *norms])),
        "seeds": list(dict.fromkeys([*earlier["seeds"], *seeds])),
        "commands": [*earlier["commands"], *([command] if command else [])],
    }
    files.write_atomic(root / STUDY_FILE, json.dumps(study | {"command": command}, indent=2) + "\n")


def is_finished(run: pathlib.Path, config: TrainConfig) -> bool:
    """The run reached ``config.iterations`` and, when the config asks for one, wrote its final test."""
    if not (run / "config.json").exists():
        return False
    ckpt = checkpoint.Checkpoints(run, read_only=True)
    try:
        last = ckpt.latest_step("last")
    finally:
        ckpt.close()
    wants_final = config.final_test_samples > 0 and config.final_test_steps > 0
    return (
        last is not None
        and last >= config.iterations
        and (not wants_final or (run / "final_test" / "report.json").exists())
    )


def run_study(
    models: Mapping[str, TrainConfig], seeds, root, *, overwrite: bool = False, command: str | None = None
) -> list[dict]:
    """Train (or resume, or skip) each model's config (``{name: config}``, names as ``ModelConfig.name``) for
    every seed under ``root``; one summary per run.

    A run whose loss stays non-finite (``TrainingDiverged``) is reported and the study goes on.
    """
    root = pathlib.Path(root)
    for name, config in models.items():
        if config.model.name != name:
            raise errors.ConfigError(f"the study's model {name!r} has the config of {config.model.name!r}")
    # Seed-major: a study stopped early has every model at least once.
    configs = [config.replace(seed=int(seed)) for seed in seeds for config in models.values()]
    files.check_output(root, "--workdir", directory=True)
    check_runs(configs, root, overwrite=overwrite)
    root.mkdir(parents=True, exist_ok=True)
    record_study(root, [c.model.name for c in configs], [c.seed for c in configs], command)
    summaries = []
    for i, config in enumerate(configs):
        run = run_dir(root, config.model.name, config.seed)
        head = f"[{i + 1}/{len(configs)}] {config.model.name} seed {config.seed} ({run})"
        if is_finished(run, config):
            print(f"{head}: finished, skipped", flush=True)
            summaries.append({"workdir": str(run), "status": "skipped"})
            continue
        print(f"{head}: {'resuming' if (run / 'config.json').exists() else 'training'}", flush=True)
        try:
            summary = train.train_and_evaluate(config, run, overwrite=overwrite) | {"status": "trained"}
        except errors.TrainingDiverged as e:
            print(f"{head}: failed: {e}", flush=True)
            summary = {"workdir": str(run), "status": "diverged", "error": str(e)}
        summaries.append(summary)
    return summaries


def define(fv: flags.FlagValues) -> None:
    common.define_flags(fv)
    flags.DEFINE_enum("preset", "digits", sorted(PRESETS), "the preset every run starts from", flag_values=fv)
    flags.DEFINE_list(
        "norms",
        "vanilla,bn,wn",
        "models to train: norm variants of the paper's models (the --norm of each run), or resnet_wn",
        flag_values=fv,
    )
    flags.DEFINE_list("seeds", "0", "seeds to train each model with (the --seed of each run)", flag_values=fv)


def body(fv: flags.FlagValues, args: list[str], command: str = "") -> int:
    cli.no_arguments(args)
    for name, plural in (("norm", "norms"), ("arch", "norms"), ("seed", "seeds")):
        if fv[name].present:
            raise errors.ConfigError(f"--{name} is set per run by the study; use --{plural}")
    try:
        seeds = [int(s) for s in fv.seeds]
    except ValueError:
        raise errors.ConfigError(f"--seeds must be integers, got {','.join(fv.seeds)}") from None
    if not fv.norms or not seeds:
        raise errors.ConfigError("--norms and --seeds must each name at least one value")
    for seed in seeds:
        check_int("seeds", seed, 0, SEED_MAX)
    models = {}
    for model in fv.norms:
        config = common.config_for_model(fv, fv.preset, model)
        models[config.model.name] = config  # the authors' names (weight) become the project's (wn)
    cli.init_distributed(fv)
    root = pathlib.Path(fv.workdir or f"runs/study_{fv.preset}")
    summaries = run_study(models, seeds, root, overwrite=fv.overwrite, command=command)
    failed = [s["workdir"] for s in summaries if s["status"] == "diverged"]
    print(f"\nstudy directory: {root}\nreport: python -m experiments.report {root} --out {root / 'report'}")
    if failed:
        print(f"runs that diverged: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m experiments.study", *argv])
    return cli.run("experiments.study", __doc__, define, functools.partial(body, command=command), argv)


if __name__ == "__main__":
    sys.exit(main())
