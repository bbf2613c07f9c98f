"""The paper's study: every (model, seed) of a preset trained as ordinary runs, one after another or a few at once.

``python -m experiments.study --preset=digits --norms=vanilla,bn,wn --seeds=0,1,2 --workdir=runs/study``

trains ``runs/study/<model>/seed_<k>/`` for every pair (the paper repeats the vanilla and BN trainings three
times, appendix C.1), each data-parallel over all devices, every model for the first seed before the next seed.
``--norms`` names models as tables and figures do: the paper's norm variants, and ``resnet_wn``, the authors'
weight-normalized ResNet follow-up with the preset's ResNet setting (``--norms=vanilla,bn,wn,resnet_wn``).
Running the same command again resumes unfinished runs and skips finished ones, so a killed study continues
where it stopped. Every flag of the preset's own command (``--iterations``, ``--lr``, ``--data``, ...) applies
to every run. ``--sweep=lr=2e-4,1e-3,4e-3`` trains every (model, value, seed) instead, in
``runs/study/<model>/lr=2e-4/seed_<k>/``. A run whose loss stays non-finite past its rollbacks is marked
(``diverged.json``, a collapse for the report) and the study goes on. ``--jobs=2`` trains two runs at once
on a CPU machine, each in its own process on half of the CPUs, its output in ``RUN/study.log`` (a run that
fails there is named at the end and the command exits 1; the others go on). Killing the study (Ctrl-C) loses
no more than each run's work since its last checkpoint, and running the command again resumes them.
``python -m experiments.report runs/study --out runs/study/report`` then writes the paper's tables and
figures from the runs (docs/study.md).
"""

from __future__ import annotations

import functools
import json
import logging
import pathlib
import sys
from collections.abc import Mapping

import jax
from absl import flags

from experiments import common, parallel
from experiments.report.loading import DIVERGED_FILE, STUDY_FILE, read_study, run_dir
from wngan_jax import checkpoint, cli, errors, files, train
from wngan_jax.config import PRESETS, SEED_MAX, TrainConfig
from wngan_jax.models import check_int
from wngan_jax.rundir import LOG_FILE, RunDirectory


def check_runs(runs, *, overwrite: bool) -> None:
    """Refuse, before anything trains, a study whose runs on disk (``(directory, config)``) were made with
    another config."""
    if overwrite:
        return
    for run, config in runs:
        RunDirectory(run).check_config(config, overwrite=False)


def record_study(root: pathlib.Path, norms, seeds, command: str | None, sweep: dict | None = None) -> None:
    """Add ``norms``, ``seeds``, ``command`` and the values of ``sweep`` (``{"flag", "values"}``) to
    ``ROOT/study.json``: it records the union of every call on the directory, so a later call with fewer models,
    seeds or values takes nothing from the report. A study sweeps one flag, or none, in every call."""
    try:
        earlier = read_study(root) or {"norms": [], "seeds": [], "commands": []}
    except errors.DamagedFile as e:  # rebuilt from the runs on disk: the union is what they are
        logging.warning("%s; rebuilding it from the runs below %s", e, root)
        runs = [p.parent.relative_to(root).parts for p in root.glob("**/seed_*/config.json")]
        earlier = {
            "norms": sorted({r[0] for r in runs}),
            "seeds": sorted({int(r[-1][5:]) for r in runs}),
            "commands": [],
        }
        swept = sorted({r[1] for r in runs if len(r) == 3 and "=" in r[1]})
        if swept:
            earlier["sweep"] = {"flag": swept[0].partition("=")[0], "values": [v.partition("=")[2] for v in swept]}
    before = earlier.get("sweep")
    if (before or {}).get("flag") != (sweep or {}).get("flag") and (earlier["norms"] or before):
        had = f"sweeps --{before['flag']}" if before else "sweeps no flag"
        now = f"--sweep={sweep['flag']}=..." if sweep else "no --sweep"
        raise errors.ConfigError(
            f"{root / STUDY_FILE}: this study {had}; a call with {now} belongs in another --workdir"
        )
    study = {
        "norms": list(dict.fromkeys([*earlier["norms"], *norms])),
        "seeds": list(dict.fromkeys([*earlier["seeds"], *seeds])),
        "commands": [*earlier["commands"], *([command] if command else [])],
    }
    if sweep:
        study["sweep"] = {
            "flag": sweep["flag"],
            "values": list(dict.fromkeys([*(before or {}).get("values", []), *sweep["values"]])),
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
    models: Mapping[str, TrainConfig],
    seeds,
    root,
    *,
    sweep: tuple[str, dict[str, object]] | None = None,
    overwrite: bool = False,
    command: str | None = None,
    jobs: int = 1,
) -> list[dict]:
    """Train (or resume, or skip) each model's config (``{name: config}``, names as ``ModelConfig.name``) for
    every seed under ``root``; one summary per run.

    ``sweep`` is ``(flag, {value text: value})``: every run is then trained at every value of ``flag``. A run
    whose loss stays non-finite past its rollbacks (``TrainingDiverged``) is marked with ``diverged.json``
    (the report counts it as a collapse), skipped when the study is run again, and the study goes on.

    ``jobs`` above 1 trains that many runs at once (fewer when fewer are left to train), each in its own process
    on its share of this process's CPUs, its output appended to ``RUN/study.log`` (``train_in_processes``); a
    run that fails there is summarized with status ``failed`` and the others go on.
    """
    root = pathlib.Path(root)
    for name, config in models.items():
        if config.model.name != name:
            raise errors.ConfigError(f"the study's model {name!r} has the config of {config.model.name!r}")
    flag, values = sweep or (None, {None: None})
    # Seed-major: a study stopped early has every model (at every value) at least once.
    runs = []
    for seed in seeds:
        for text, value in values.items():
            setting = f"{flag}={text}" if flag else None
            for base in models.values():
                config = base.replace(seed=int(seed), **({flag: value} if flag else {}))
                runs.append((run_dir(root, config.model.name, config.seed, setting), config))
    files.check_output(root, "--workdir", directory=True)
    check_runs(runs, overwrite=overwrite)
    root.mkdir(parents=True, exist_ok=True)
    swept = {"flag": flag, "values": list(values)} if flag else None
    record_study(root, [c.model.name for _, c in runs], [c.seed for _, c in runs], command, swept)
    summaries, calls = [], []
    for i, (run, config) in enumerate(runs):
        head = f"[{i + 1}/{len(runs)}] {config.model.name} seed {config.seed} ({run})"
        if (run / DIVERGED_FILE).exists():
            print(f"{head}: diverged earlier, skipped", flush=True)
            summaries.append({"workdir": str(run), "status": "diverged"})
        elif is_finished(run, config):
            print(f"{head}: finished, skipped", flush=True)
            summaries.append({"workdir": str(run), "status": "skipped"})
        elif jobs == 1:
            summaries.append(train_run(run, config, head, overwrite=overwrite))
        else:  # trained below; a log file gets no progress bar
            summaries.append(None)
            calls.append(parallel.Call(i, (run, config.replace(progress_bar=False), head, overwrite), run / LOG_FILE))
    if calls:
        summaries = train_in_processes(calls, min(jobs, len(calls)), summaries)
    return summaries


def starting(run: pathlib.Path) -> str:
    """What training ``run`` does now: ``resuming`` a run on disk, or ``training`` a new one."""
    return "resuming" if (run / "config.json").exists() else "training"


def train_run(run: pathlib.Path, config: TrainConfig, head: str, overwrite: bool = False) -> dict:
    """Train or resume one run of the study (``head`` names it in what is printed) and return its summary with
    its ``status``: ``trained``, or ``diverged`` when its loss stays non-finite past its rollbacks
    (``TrainingDiverged``): the run is then marked with ``diverged.json``, a collapse for the report."""
    print(f"{head}: {starting(run)}", flush=True)
    try:
        return train.train_and_evaluate(config, run, overwrite=overwrite) | {"status": "trained"}
    except errors.TrainingDiverged as e:
        print(f"{head}: diverged (a collapse for the report): {e}", flush=True)
        record = {"iteration": e.iteration, "error": str(e)}
        run.mkdir(parents=True, exist_ok=True)
        files.write_atomic(run / DIVERGED_FILE, json.dumps(record, indent=2) + "\n")
        return {"workdir": str(run), "status": "diverged", "error": str(e)}


def train_in_processes(calls: list[parallel.Call], jobs: int, summaries: list) -> list[dict]:
    """``train_run`` for each call (``key``: the run's place in ``summaries``), ``jobs`` at once, each in its own
    process on its share of the CPUs with its output in its log; ``summaries`` with theirs filled in. A run that
    fails is summarized with status ``failed`` (its error and log) and the others go on."""
    summaries = list(summaries)

    def started(call, cpus):
        run, _, head, _ = call.args
        print(f"{head}: {starting(run)} in its own process {parallel.placement(cpus)} (log: {call.log})", flush=True)

    def ended(call, outcome):
        run, _, head, _ = call.args
        took = f"{outcome.seconds:.1f} s"
        if outcome.error is not None:
            print(f"{head}: failed after {took}: {outcome.error} (log: {call.log})", flush=True)
            summary = {"workdir": str(run), "status": "failed", "error": outcome.error, "log": str(call.log)}
        else:
            summary = outcome.result
            note = " (a collapse for the report)" if summary["status"] == "diverged" else ""
            print(f"{head}: {summary['status']} in {took}{note}", flush=True)
        summaries[call.key] = summary

    parallel.run_in_processes(train_run, calls, jobs, started=started, ended=ended)
    return summaries


def check_jobs(fv: flags.FlagValues) -> None:
    """Refuse a ``--jobs`` that cannot run: below 1, above the CPUs this process may use, or above 1 with
    several hosts or on an accelerator (every run would share it: one at a time there)."""
    jobs, cpus = fv.jobs, parallel.available_cpus()
    if jobs < 1:
        raise errors.ConfigError(f"--jobs must be at least 1, got {jobs}")
    if jobs > cpus:
        raise errors.ConfigError(f"--jobs={jobs} is more than the {cpus} CPUs this process may use")
    if jobs > 1 and (fv.num_processes or 1) > 1:
        raise errors.ConfigError(
            "--jobs above 1 trains runs side by side on one host; use --jobs=1 with --num_processes"
        )


def check_backend(jobs: int) -> None:
    """Refuse ``--jobs`` above 1 where JAX's default backend is not the CPU (once the backend can start)."""
    if jobs > 1 and (backend := jax.default_backend()) != "cpu":
        raise errors.ConfigError(f"--jobs={jobs}: every run would share this {backend}; use --jobs=1 (one at a time)")


def parse_sweep(fv: flags.FlagValues, text: str) -> tuple[str, dict[str, object]]:
    """``"lr=2e-4,1e-3"`` -> ``("lr", {"2e-4": 0.0002, "1e-3": 0.001})``: one config flag and its values, each
    parsed as that flag parses it."""
    flag, sep, values = text.partition("=")
    names = {f.name for f in common.config_fields()} - {"norm", "arch", "seed"}
    if not sep or flag not in names:
        raise errors.ConfigError(
            f"--sweep must be FLAG=V1,V2,... with FLAG a config flag other than norm, arch and seed, got {text!r}"
        )
    if fv[flag].present:
        raise errors.ConfigError(f"--{flag} is set per run by --sweep; leave it out")
    texts = [v.strip() for v in values.split(",") if v.strip()]
    if not texts or len(set(texts)) != len(texts):
        raise errors.ConfigError(f"--sweep needs distinct values of --{flag}, got {values!r}")
    parsed = {}
    for value in texts:
        try:
            parsed[value] = fv[flag].parser.parse(value)
        except (ValueError, TypeError) as e:
            raise errors.ConfigError(f"--sweep: {value!r} is not a value of --{flag}: {e}") from None
    return flag, parsed


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
    flags.DEFINE_integer(
        "jobs",
        1,
        "train this many runs at once, each in its own process on its share of the CPUs, its output in RUN/study.log "
        "(CPU only; docs/study.md says when it helps)",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "sweep", None, "FLAG=V1,V2,...: train every model and seed at each value of one config flag", flag_values=fv
    )


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
    check_jobs(fv)
    sweep = parse_sweep(fv, fv.sweep) if fv.sweep else None
    models = {}
    for model in fv.norms:  # an unknown name or value fails here, before anything trains
        config = common.config_for_model(fv, fv.preset, model)
        models[config.model.name] = config  # the authors' names (weight) become the project's (wn)
        for value in sweep[1].values() if sweep else [None]:
            config.replace(**({sweep[0]: value} if sweep else {}))
    cli.init_distributed(fv)
    check_backend(fv.jobs)
    root = pathlib.Path(fv.workdir or f"runs/study_{fv.preset}")
    summaries = run_study(models, seeds, root, sweep=sweep, overwrite=fv.overwrite, command=command, jobs=fv.jobs)
    diverged = [s["workdir"] for s in summaries if s["status"] == "diverged"]
    print(f"\nstudy directory: {root}\nreport: python -m experiments.report {root} --out {root / 'report'}")
    if diverged:  # a result of the study (a collapse), not a failure of the command
        print(f"runs that diverged past their rollbacks (collapses in the report): {', '.join(diverged)}")
    failed = [f"{s['workdir']} (log: {s['log']})" for s in summaries if s["status"] == "failed"]
    if failed:
        print(f"error: runs that failed (run the command again to retry them): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m experiments.study", *argv])
    return cli.run("experiments.study", __doc__, define, functools.partial(body, command=command), argv)


if __name__ == "__main__":
    sys.exit(main())
