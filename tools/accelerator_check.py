"""The accelerator check: correctness against the CPU, speed, and a short training run, in a few minutes.

``tools/accelerator_check.sh`` (which installs carried wheels first) runs this file; directly::

    python tools/accelerator_check.py --out DIR [--dry-run] [--only PART ...] [--budget SECONDS]

Each part is a subprocess with its own time limit, so a crash or a hang costs only that part; parts run in
order of importance until the budget (default 290 s) is spent, and the report is rewritten after each:
``DIR/accelerator_check.json`` (every row), ``DIR/accelerator_check.md`` (tables), ``DIR/accelerator_check.log``
(each part's output) and two images of the training run. Without an accelerator, or with ``--dry-run``,
the parts run at tiny sizes (tests/test_accelerator_check.py): ``device``, ``correctness`` (one check of
each kind), ``final_test``, ``digits`` and ``layers``; the other bench commands, of the same form as
``layers``, are skipped there (tests/test_bench.py runs them). The parts (``--only`` takes their names):

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
* ``digits``: ``python -m experiments.digits`` for 100 iterations: checkpoints, samples, final test.
* ``layers``: ``bench --what=layers`` at 64: each layer's custom VJP against XLA's native transposed
  convolution (and PyTorch).
* ``reconstruct_loop``: ``bench --what=reconstruct`` at 160: ``reconstruct`` against the authors' loop.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
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

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUDGET_S = 290  # the whole check, so that it and a rerun fit a 15-minute lease with the machine's starts
DRY_RUN_BUDGET_S = 600
MIN_PART_S = 15  # a part is skipped when less than this is left
REPORT = "accelerator_check"

# Module the training run imports that a bare GPU image may lack (tools/accelerator_check.sh --fetch-wheels).
NEEDED_MODULES = ("tensorboardX",)


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
FINAL_TEST = (2000, 2000)  # the paper's final test: samples x steps (§5.1)
FINAL_TEST_MEASURED_STEPS = 10  # steps timed at the final test's chunking (after one compiling segment)


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
        Part("device", "device, versions, peak matmul", 40, [__file__, "--part=device", f"--matmul={sizes.matmul}"]),
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
            [__file__, "--part=final_test", *[f"--{k}={v}" for k, v in rec.items()]],
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
    parser.add_argument("--part", help=argparse.SUPPRESS)  # one measuring part, in a subprocess
    args, rest = parser.parse_known_args(argv)
    if args.part:
        return measure_part(args.part, rest)

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
            platform = next((r["platform"] for r in _rows(report, "device", what="device")), None)
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


# --- the measuring parts (run in their own process) ------------------------------------------------------


def measure_part(name: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"accelerator_check --part={name}")
    if name == "device":
        parser.add_argument("--matmul", type=int, required=True)
        args = parser.parse_args(argv)
        rows = device_rows(args.matmul)
    elif name == "final_test":
        for key in ("size", "nfeature", "code_size", "samples", "steps", "final_samples"):
            parser.add_argument(f"--{key}", type=int, required=True)
        rows = final_test_rows(**vars(parser.parse_args(argv)))
    else:
        raise SystemExit(f"unknown part {name!r}")
    for row in rows:
        print(json.dumps(row), flush=True)
    return 0


def device_rows(n: int):
    """The device and the peak matmul throughput in each compute precision (median of 10 after warm-up)."""
    import importlib.util
    import platform as host_platform

    import jax
    import jax.numpy as jnp
    import jaxlib
    from jax import lax

    from wngan_jax.bench.common import median_seconds

    device = jax.devices()[0]
    n = n if device.platform != "cpu" else min(n, TINY.matmul)  # a CPU would take minutes at the GPU's size
    stats = device.memory_stats() or {}
    torch_version = torch_cuda = None
    if importlib.util.find_spec("torch"):
        import torch

        torch_version, torch_cuda = torch.__version__, torch.cuda.is_available()
    yield dict(
        what="device",
        platform=device.platform,
        device_kind=device.device_kind,
        device_count=jax.device_count(),
        memory_bytes_limit=stats.get("bytes_limit"),
        python=host_platform.python_version(),
        jax=jax.__version__,
        jaxlib=jaxlib.__version__,
        torch=torch_version,
        torch_cuda=torch_cuda,
        missing_modules=[m for m in NEEDED_MODULES if importlib.util.find_spec(m) is None],
    )
    for dtype, precision in (("bfloat16", "default"), ("float32", "default"), ("float32", "highest")):
        a = jax.random.normal(jax.random.key(0), (n, n), dtype)
        b = jax.random.normal(jax.random.key(1), (n, n), dtype)
        matmul = jax.jit(functools.partial(jnp.matmul, precision=lax.Precision[precision.upper()]))
        seconds = median_seconds(matmul, a, b, repeats=10, warmup=2)
        yield dict(what="peak", dtype=dtype, precision=precision, n=n, gflops=2 * n**3 / seconds / 1e9)


def final_test_rows(size, nfeature, code_size, samples, steps, final_samples):
    """Reconstruction throughput at ``samples`` x ``steps`` and at the final test's chunking, and the paper's
    final test (2000 x 2000) extrapolated from it, with the chunk size the memory budget picks."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh

    from wngan_jax import reconstruction
    from wngan_jax.bench.common import compiled_flops
    from wngan_jax.models import ModelConfig

    config = ModelConfig("wn", size, nfeature=nfeature, code_size=code_size)
    module = config.generator()
    variables = module.init(jax.random.key(0), jnp.zeros((1, code_size)))
    gen = reconstruction.generator_fn(module, variables)
    rng = np.random.default_rng(0)
    device = jax.devices()[0]
    mesh = Mesh(np.asarray(jax.local_devices()), ("data",))

    # FLOPs of one sample-step: the gradient of the per-sample losses wrt the codes (RMSProp's are negligible).
    x = jnp.zeros((32, size, size, 3), jnp.uint8)
    z = jnp.zeros((32, code_size))
    grad = jax.jit(jax.grad(lambda z, x: jnp.sum(reconstruction.per_sample_loss(gen(z), x))))
    flops = compiled_flops(grad.lower(z, x).compile())
    flops_per_sample_step = flops / 32 if flops else None

    def timed(n, run_steps):
        targets = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        chunk = reconstruction._chunk_for_budget(gen, code_size, targets, None, mesh)
        start = time.perf_counter()
        reconstruction.reconstruct(gen, targets, steps=reconstruction.SEGMENT_STEPS)  # compiles for the chunk
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        result = reconstruction.reconstruct(gen, targets, steps=run_steps)
        seconds = time.perf_counter() - start
        rate = n * run_steps / seconds
        stats = device.memory_stats() or {}
        return dict(
            what="final_test",
            size=size,
            norm="wn",
            samples=n,
            steps=run_steps,
            chunk=min(chunk, n),
            chunks=-(-n // min(chunk, n)),
            compile_s=compile_s,
            seconds=seconds,
            sample_steps_per_s=rate,
            gflops=rate * flops_per_sample_step / 1e9 if flops_per_sample_step else None,
            mean_loss=result.mean_loss,
            peak_bytes_in_use=stats.get("peak_bytes_in_use"),
            bytes_limit=stats.get("bytes_limit"),
            extrapolated_final_test_s=FINAL_TEST[0] * FINAL_TEST[1] / rate,
        )

    yield timed(samples, steps)
    yield timed(final_samples, FINAL_TEST_MEASURED_STEPS)


# --- the report ------------------------------------------------------------------------------------------


def _rows(report: dict, *names: str, what: str | None = None) -> list[dict]:
    rows = [r for p in report["parts"] if p["name"] in names for r in p.get("rows", [])]
    return [r for r in rows if what is None or r.get("what") == what]


def _peak(report: dict, dtype: str, precision: str = "default"):
    """The measured peak matmul GFLOP/s for a compute dtype (the ``device`` part)."""
    peaks = {(r["dtype"], r["precision"]): r["gflops"] for r in _rows(report, "device", what="peak")}
    return peaks.get((dtype, precision))


def _fmt(value, spec=".1f", scale=1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def _share(gflops, peak) -> str:
    """Percent of the peak."""
    return _fmt(gflops / peak if gflops and peak else None, ".1f", 100)


def _table(header: list[str], rows: list[list]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
    ]


def goals(report: dict) -> list[dict]:
    """The goals on one GPU: the WN iteration at least 1.5x the authors' at 64 and 160, bfloat16 at least
    1.8x float32 at 160, the final test under 5 minutes. ``met`` is None where not judged (a dry run)."""
    judged = report["mode"] == "full"
    out = []
    authors = {r["size"]: r for r in _rows(report, "authors_wn", what="authors") if r["norm"] == "wn"}
    bf16 = {r["size"]: r for r in _rows(report, "train_bf16_wn", what="train") if r["norm"] == "wn"}
    for size, r in sorted(authors.items()):
        out.append(dict(goal=f"WN {size}x{size} iteration >= 1.5x the authors'", value=r["speedup"], target=1.5))
    for size in sorted(set(authors) & set(bf16)):
        ratio = authors[size]["median_ms"] / bf16[size]["median_ms"]
        out.append(dict(goal=f"WN {size}x{size} bfloat16 vs float32", value=ratio, target=1.8 if size == 160 else None))
    final = _rows(report, "final_test", what="final_test")
    if final:
        seconds = final[-1]["extrapolated_final_test_s"]
        out.append(dict(goal="final test 2000 x 2000 at 160x160, seconds", value=seconds, target=-300))
    for g in out:  # a negative target is an upper bound
        t = g.pop("target")
        g["met"] = None if t is None or not judged else (g["value"] >= t if t > 0 else g["value"] < -t)
    return out


def markdown(report: dict) -> str:
    lines = [f"# Accelerator check ({report['mode']}), {report['started_utc']}", ""]
    dev = next(iter(_rows(report, "device", what="device")), None)
    if dev:
        memory = dev["memory_bytes_limit"]
        missing = ", ".join(dev["missing_modules"])
        peaks = _rows(report, "device", what="peak")
        lines += [
            f"Device: {dev['platform']} {dev['device_kind']} x{dev['device_count']}"
            + (f", {memory / 2**30:.1f} GiB for JAX" if memory else "")
            + f"; Python {dev['python']}, JAX {dev['jax']}, PyTorch {dev['torch']} (CUDA: {dev['torch_cuda']})"
            + (f"; missing: {missing}" if missing else ""),
            "",
            "Peak matmul: "
            + ", ".join(f"{r['dtype']} {r['precision']} {r['gflops'] / 1e3:.1f} TFLOP/s" for r in peaks),
            "",
        ]
    lines += _table(
        ["part", "what", "status", "seconds", "CPU seconds"],
        [
            [
                p["name"],
                p["description"],
                p["status"] + (f" ({p['why']})" if p.get("why") else ""),
                _fmt(p.get("elapsed_s")),
                _fmt(p.get("cpu_s")),
            ]
            for p in report["parts"]
        ],
    )
    if report.get("elapsed_s"):
        lines += ["", f"Total {report['elapsed_s']:.0f} s of a {report['budget_s']:.0f} s budget."]

    met = {None: "-", True: "yes", False: "NO"}
    if g := goals(report):
        lines += ["", "## Goals", ""] + _table(
            ["goal", "measured", "met"], [[x["goal"], _fmt(x["value"], ".2f"), met[x["met"]]] for x in g]
        )

    if checks := _rows(report, "correctness"):
        lines += ["", "## Correctness: accelerator against CPU", ""] + _table(
            ["check", "quantity", "precision", "error", "tolerance", "ok"],
            [
                [c["check"], c["quantity"], c["precision"], f"{c['error']:.2e}", f"{c['tolerance']:.0e}", met[c["ok"]]]
                for c in checks
            ],
        )

    parts = ("authors_wn", "authors_vanilla_bn", "train_bf16_wn", "train_bf16_vanilla_bn")
    if train := [r for r in _rows(report, *parts) if r.get("what") in ("authors", "train")]:
        rows = []
        for r in sorted(train, key=lambda r: (r["size"], r["norm"], r.get("dtype", "float32"))):
            dtype = r.get("dtype", "float32")
            rows.append(
                [
                    r["size"],
                    r["norm"],
                    dtype,
                    _fmt(r["median_ms"], ".2f"),
                    _fmt(r.get("gflop_per_iteration")),
                    _fmt(r["gflops"], ".1f", 1e-3),
                    _share(r["gflops"], _peak(report, dtype)),
                    _fmt(r.get("authors_median_ms"), ".2f"),
                    _fmt(r.get("speedup"), ".2f"),
                ]
            )
        header = ["size", "norm", "dtype", "ms/it", "GFLOP/it", "TFLOP/s", "% of peak", "authors' ms/it", "speedup"]
        lines += ["", f"## Training iteration (batch {train[0]['batch']}, D step + G step)", ""] + _table(header, rows)

    if final := _rows(report, "final_test", what="final_test"):
        peak = _peak(report, "float32")
        rows = [
            [
                r["size"],
                f"{r['samples']} x {r['steps']}",
                f"{r['chunk']} ({r['chunks']})",
                f"{r['sample_steps_per_s']:.0f}",
                _share(r["gflops"], peak),
                _fmt(r["peak_bytes_in_use"], ".1f", 2**-30),
                f"{r['compile_s']:.1f}",
                f"{r['extrapolated_final_test_s']:.0f}",
            ]
            for r in final
        ]
        header = ["size", "samples x steps", "chunk (chunks)", "sample-steps/s", "% of peak", "peak GiB", "compile s"]
        lines += ["", "## Reconstruction (WN generator, float32, default precision)", ""]
        lines += _table(header + ["2000 x 2000 extrapolated, s"], rows)
    for r in _rows(report, "reconstruct_loop", what="reconstruct"):
        lines += [
            "",
            f"`reconstruct` against the authors' loop at {r['size']}x{r['size']}, {r['samples']} samples: "
            f"{r['sample_steps_per_s']:.0f} vs {r['baseline_sample_steps_per_s']:.0f} sample-steps/s "
            f"({r['speedup']:.2f}x).",
        ]

    if layers := _rows(report, "layers", what="layers"):
        rows = [
            [
                r["layer"],
                f"{r['custom_ms']:.3f}",
                f"{r['xla_ms']:.3f}",
                f"{r['speedup']:.2f}",
                _fmt(r["torch_ms"], ".3f"),
            ]
            for r in layers
        ]
        lines += ["", "## Layers: custom VJP against XLA's native transposed convolution (forward + backward)", ""]
        lines += _table(["layer", "custom ms", "XLA ms", "custom speedup", "PyTorch ms"], rows)

    for d in _rows(report, "digits", what="digits"):
        tests = "; ".join(f"{k}: {v.get('mean_loss')}" for k, v in d["final_test"].items()) or "none"
        lines += [
            "",
            f"Digits run: {len(d['checkpoints'])} checkpoints, {len(d['samples'])} sample grids, "
            f"{d['metrics_lines']} metric lines; final test {tests}.",
        ]

    for p in report["parts"]:
        if p["status"] in ("failed", "timeout"):
            lines += ["", f"### {p['name']}: {p['status']}", "", "```", p["command"], *p["output_tail"], "```"]
    return "\n".join(lines) + "\n"


def write_report(out: pathlib.Path, report: dict) -> None:
    (out / f"{REPORT}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{REPORT}.md").write_text(markdown(report))


if __name__ == "__main__":
    sys.exit(main())
