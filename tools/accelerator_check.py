"""The accelerator check: correctness against the CPU, speed, and a short training run, in a few minutes.

``tools/accelerator_check.sh`` (which installs carried wheels first) runs this file; directly::

    python tools/accelerator_check.py --out DIR [--dry-run] [--only PART ...] [--budget SECONDS]

Each part is a subprocess with its own time limit, so a crash or a hang costs only that part; parts run in
order of importance until the budget (default 290 s) is spent, and the report is rewritten after each:
``DIR/accelerator_check.json`` (every row), ``DIR/accelerator_check.md`` (tables), ``DIR/accelerator_check.log``
(each part's output) and two images of the training run. Without an accelerator, or with ``--dry-run``,
the parts run at tiny sizes: ``device``, ``correctness`` (one check of each kind), ``final_test``, ``digits``
and ``layers``; the other bench commands, of the same form as ``layers``, are skipped there
(tests/test_bench.py runs them).

This file only runs the parts and writes the report. ``device`` and ``final_test`` are the commands of
``tools/accelerator_parts.py``, the other parts the project's own commands, and ``tools/accelerator_report.py``
renders the tables. The parts (``--only`` takes their names):

* ``device``: platform, device kind, memory, versions; the peak matmul throughput (8192^3) in bfloat16,
  float32 at the default precision (TensorFloat-32 on NVIDIA GPUs) and float32 at ``highest``: the peaks
  that every other figure is a fraction of.
* ``correctness``: ``pytest -m accelerator tests/test_accelerator.py``: the convolutions and their VJPs,
  one training iteration and a short reconstruction against the CPU, each with its error and tolerance.
* ``authors_wn``, ``authors_vanilla_bn``: ``bench --what=authors`` at 64 and 160: the training iteration
  here (float32) next to the authors' PyTorch iteration on the same device.
* ``train_bf16_wn``, ``train_bf16_vanilla_bn``: ``bench --what=train --dtype=bfloat16`` at 64 and 160.
* ``final_test``: reconstruction (paper §4) of 200 samples x 200 steps at 160x160 with the chunk size the
  memory budget picks, then the paper's final test's chunking (2000 samples) for a few steps: its peak
  memory and throughput, and the 2000 x 2000 final test's time extrapolated from it.
* ``authors_resnet_wn``: ``bench --what=authors --arch=resnet`` at 64 and 160: the follow-up's model (their
  README's features and blocks) and loop here next to theirs in PyTorch.
* ``digits``: ``python -m experiments.digits`` for 100 iterations: checkpoints, samples, final test.
* ``layers``: ``bench --what=layers`` at 64: each layer's custom VJP against XLA's native transposed
  convolution (and PyTorch).
* ``reconstruct_loop``: ``bench --what=reconstruct`` at 160: ``reconstruct`` against the authors' loop.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from accelerator_report import markdown, part_rows

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUDGET_S = 290  # the whole check, so that it and a rerun fit a 15-minute lease with the machine's starts
DRY_RUN_BUDGET_S = 600
MIN_PART_S = 15  # a part is skipped when less than this is left
REPORT = "accelerator_check"
PARTS = "tools/accelerator_parts.py"  # the measuring parts' command, relative to ROOT, where every part runs


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What the parts run at: the paper's sizes on an accelerator, tiny ones for a dry run."""

    bench_sizes: tuple[int, ...]
    batch: int
    repeats: int
    matmul: int
    layers_size: int
    layers_batch: int
    reconstruct: dict
    digits: dict
    dry: bool
    # pytest -k for the correctness part: all on an accelerator; in a dry run one of each kind of check (the
    # suite runs them all anyway).
    tests: str | None = None


FULL = Sizes(
    bench_sizes=(64, 160),
    batch=32,
    repeats=5,
    matmul=8192,
    layers_size=64,
    layers_batch=32,
    reconstruct=dict(size=160, nfeature=64, code_size=256, samples=200, steps=200, final_samples=2000),
    digits=dict(
        iterations=100,
        test_every=50,
        sample_every=50,
        log_every=25,
        keep_every=50,
        test_steps=20,
        final_test_samples=200,
        final_test_steps=100,
    ),
    dry=False,
)
TINY = Sizes(
    bench_sizes=(16,),
    batch=4,
    repeats=1,
    matmul=256,
    layers_size=16,
    layers_batch=2,
    reconstruct=dict(size=16, nfeature=8, code_size=8, samples=8, steps=5, final_samples=8),
    digits=dict(
        iterations=2,
        test_every=2,
        sample_every=2,
        log_every=1,
        keep_every=2,
        test_steps=1,
        running_test=8,
        final_test_samples=8,
        final_test_steps=1,
    ),
    dry=True,
    tests="highest and not bn",
)


@dataclasses.dataclass(frozen=True)
class Part:
    name: str
    description: str
    limit_s: int  # on an accelerator; a dry run has the whole budget
    argv: list[str]
    # False: a bench command like the layers part's, skipped in a dry run to keep it short (each bench command
    # times a matmul twice and compiles a training step: tests/test_bench.py runs them all).
    in_dry_run: bool = True


def bench(what: str, image_sizes, batch: int, repeats: int, *extra: str) -> list[str]:
    """``python -m wngan_jax.bench`` with JSON rows."""
    sizes = [f"--image_size={s}" for s in image_sizes]
    return [
        "-m",
        "wngan_jax.bench",
        f"--what={what}",
        *sizes,
        f"--batch_size={batch}",
        f"--repeats={repeats}",
        "--json",
        *extra,
    ]


def parts(sizes: Sizes, work: pathlib.Path) -> list[Part]:
    """Every part, most important first."""
    rec = sizes.reconstruct
    norms = ["--norm=bn"] if sizes.dry else ["--norm=vanilla", "--norm=bn"]
    iteration = (sizes.bench_sizes, sizes.batch, sizes.repeats)
    return [
        Part("device", "device, versions, peak matmul", 40, [PARTS, "device", f"--matmul={sizes.matmul}"]),
        Part(
            "correctness",
            "accelerator = CPU (pytest -m accelerator)",
            100,
            ["-m", "pytest", "-m", "accelerator", "-p", "no:cacheprovider", "-q", "tests/test_accelerator.py"]
            + (["-k", sizes.tests] if sizes.tests else []),
        ),
        Part(
            "authors_wn",
            "WN iteration vs the authors' PyTorch",
            60,
            bench("authors", *iteration, "--norm=wn"),
            in_dry_run=False,
        ),
        Part(
            "train_bf16_wn",
            "WN iteration in bfloat16",
            45,
            bench("train", *iteration, "--norm=wn", "--dtype=bfloat16"),
            in_dry_run=False,
        ),
        Part(
            "final_test",
            "reconstruction throughput and the final test",
            60,
            [PARTS, "final_test", *[f"--{k}={v}" for k, v in rec.items()]],
        ),
        Part(
            "authors_resnet_wn",
            "WN ResNet follow-up iteration vs the authors' PyTorch",
            60,
            bench("authors", *iteration, "--arch=resnet"),
            in_dry_run=False,
        ),
        Part(
            "digits",
            "digits training end to end",
            45,
            [
                "-m",
                "experiments.digits",
                f"--workdir={work / 'digits'}",
                f"--cache_dir={work / 'cache'}",
                *[f"--{k}={v}" for k, v in sizes.digits.items()],
            ],
        ),
        Part(
            "layers",
            "custom VJPs vs XLA's transposed convolution",
            30,
            bench("layers", (sizes.layers_size,), sizes.layers_batch, sizes.repeats),
        ),
        Part(
            "authors_vanilla_bn",
            "vanilla and BN iterations vs the authors' PyTorch",
            60,
            bench("authors", *iteration, *norms),
            in_dry_run=False,
        ),
        Part(
            "train_bf16_vanilla_bn",
            "vanilla and BN iterations in bfloat16",
            45,
            bench("train", *iteration, *norms, "--dtype=bfloat16"),
            in_dry_run=False,
        ),
        Part(
            "reconstruct_loop",
            "reconstruct vs the authors' loop",
            45,
            bench(
                "reconstruct", (rec["size"],), sizes.batch, sizes.repeats, "--norm=wn", f"--samples={rec['samples']}"
            ),
            in_dry_run=False,
        ),
    ]


# --- running the parts -----------------------------------------------------------------------------------


def run_part(part: Part, limit_s: float, env: dict, log) -> dict:
    """Run one part's command with a time limit; its JSON lines (stdout) become its rows."""
    argv = [sys.executable, *part.argv]
    log.write(f"\n===== {part.name}: {' '.join(argv)} (limit {limit_s:.0f} s)\n")
    log.flush()
    start, cpu_start = time.perf_counter(), _children_cpu_s()
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    status = "ok"
    try:
        output, _ = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the part's own process group, children included
        output, _ = proc.communicate()
        status = "timeout"
    elapsed = time.perf_counter() - start
    log.write(output)
    log.flush()
    if status == "ok" and proc.returncode != 0:
        status = "failed"
    rows = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a log line that merely starts with a brace
    tail = output.strip().splitlines()[-15:]
    return dict(
        name=part.name,
        description=part.description,
        command=" ".join(["python", *part.argv]),
        status=status,
        returncode=proc.returncode,
        elapsed_s=round(elapsed, 1),
        cpu_s=round(_children_cpu_s() - cpu_start, 1),
        limit_s=round(limit_s),
        rows=rows,
        output_tail=tail if status != "ok" else [],
    )


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def collect_correctness(result: dict, record_path: pathlib.Path) -> None:
    """The comparisons the tests recorded (``WNGAN_ACCELERATOR_RECORD``) become the part's rows."""
    if record_path.exists():
        result["rows"] = [json.loads(line) for line in record_path.read_text().splitlines() if line.strip()]


def collect_digits(result: dict, run_dir: pathlib.Path, out: pathlib.Path) -> None:
    """What the training run left: checkpoints, sample grids, the final test's report; two images to ``out``."""
    reports = sorted(run_dir.rglob("report.json"))
    samples = sorted((run_dir / "samples").glob("*.png")) if (run_dir / "samples").exists() else []
    checkpoints = sorted(str(p.relative_to(run_dir / "checkpoints")) for p in (run_dir / "checkpoints").glob("*/*"))
    metrics = run_dir / "metrics.jsonl"
    row = dict(
        what="digits",
        checkpoints=checkpoints,
        samples=[p.name for p in samples],
        metrics_lines=len(metrics.read_text().splitlines()) if metrics.exists() else 0,
        final_test={
            str(p.parent.relative_to(run_dir)): {
                k: v
                for k, v in json.loads(p.read_text()).items()
                if k in ("mean_loss", "iteration", "samples", "steps")
            }
            for p in reports
        },
    )
    result["rows"] = [row]
    if result["status"] == "ok" and not (checkpoints and samples and reports):
        result["status"] = "failed"
        result["output_tail"] = ["the run finished without checkpoints, sample grids or a final-test report"]
    if samples:
        shutil.copy(samples[-1], out / "digits_samples.png")
    pairs = sorted(run_dir.rglob("pairs.png"))
    if pairs:
        shutil.copy(pairs[0], out / "digits_final_test_pairs.png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/accelerator_check", help="report directory")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes, on whatever device JAX has")
    parser.add_argument("--only", nargs="+", metavar="PART", help="run only these parts (device always runs)")
    parser.add_argument(
        "--budget", type=float, help=f"seconds for the whole check (default {BUDGET_S}; dry run {DRY_RUN_BUDGET_S})"
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="accelerator_check_"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env["PYTHONUNBUFFERED"] = "1"
    env["WNGAN_ACCELERATOR_RECORD"] = str(work / "correctness.jsonl")
    report = dict(
        started_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=" ".join(sys.argv),
        budget_s=None,
        mode=None,
        parts=[],
    )
    try:
        with open(out / f"{REPORT}.log", "w") as log:
            plan = parts(TINY if args.dry_run else FULL, work)
            report["parts"].append(run_part(plan[0], plan[0].limit_s, env, log))
            platform = next((r["platform"] for r in part_rows(report, "device", what="device")), None)
            sizes = TINY if args.dry_run or platform in (None, "cpu") else FULL  # no accelerator: the dry run
            plan = parts(sizes, work)
            budget = args.budget or (DRY_RUN_BUDGET_S if sizes.dry else BUDGET_S)
            report.update(mode="dry run" if sizes.dry else "full", budget_s=budget)
            write_report(out, report)
            for part in plan[1:]:
                left = budget - (time.perf_counter() - started)
                skip = None
                if args.only and part.name not in args.only:
                    skip = "not asked for (--only)"
                elif sizes.dry and not part.in_dry_run:
                    skip = "dry run: a bench command like the layers part's"
                elif left < MIN_PART_S:
                    skip = f"out of time ({left:.0f} s of the {budget:.0f} s budget left)"
                if skip:
                    report["parts"].append(
                        dict(name=part.name, description=part.description, status="skipped", why=skip, rows=[])
                    )
                    continue
                result = run_part(part, left if sizes.dry else min(part.limit_s, left), env, log)
                if part.name == "correctness":
                    collect_correctness(result, work / "correctness.jsonl")
                elif part.name == "digits":
                    collect_digits(result, work / "digits", out)
                report["parts"].append(result)
                write_report(out, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    write_report(out, report)
    print((out / f"{REPORT}.md").read_text())
    return 0 if all(p["status"] in ("ok", "skipped") for p in report["parts"]) else 1


def write_report(out: pathlib.Path, report: dict) -> None:
    """The report so far: ``accelerator_check.json`` (every row) and ``accelerator_check.md`` (its tables)."""
    (out / f"{REPORT}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{REPORT}.md").write_text(markdown(report))


if __name__ == "__main__":
    sys.exit(main())
