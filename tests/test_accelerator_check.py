"""``tools/accelerator_check.sh``: the orchestrator on stub parts, each measuring part at a tiny size, every
planned command against its own flags, and the goals and tables of a report.

The parts that are the project's own commands are tested where they live: ``correctness`` is
tests/test_accelerator.py, ``digits`` tests/test_experiments.py (the run directory ``collect_digits`` reads)
and the bench commands tests/test_bench.py.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time

from absl import flags

import experiments.common
import experiments.digits
import wngan_jax.bench.__main__ as bench_command

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load(name: str):
    """A module of tools/ (not a package: its files run as scripts, importing each other by name)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report_module = _load("accelerator_report")
measure = _load("accelerator_parts")
check = _load("accelerator_check")


# --- the orchestrator --------------------------------------------------------------------------------------


def _stub(name: str, code: str, **kwargs):
    """A part whose command is a few lines of Python."""
    return check.Part(name, f"stub {name}", kwargs.pop("limit_s", 30), ["-c", code], **kwargs)


def _print_rows(*rows) -> str:
    return "".join(f"print({json.dumps(json.dumps(r))});" for r in rows)


def _run_check(monkeypatch, tmp_path, platform: str, stubs, *args: str):
    """``accelerator_check.main`` on stub parts behind a stub device part that reports ``platform``."""
    row = dict(what="device", platform=platform, device_kind="stub", device_count=1, memory_bytes_limit=None)
    row |= dict(python="3", jax="0", torch=None, torch_cuda=None, missing_modules=[])
    device = _stub("device", _print_rows(row) + "print('{not a row')")
    monkeypatch.setattr(check, "parts", lambda sizes, work: [device, *stubs])
    out = tmp_path / "out"
    code = check.main(["--out", str(out), *args])
    return code, json.loads((out / "accelerator_check.json").read_text()), out


def test_parts_run_in_order_and_the_report_is_rewritten_after_each(monkeypatch, tmp_path):
    """Without an accelerator the check is a dry run: each part's JSON lines become its rows (the correctness
    part's come from the file its tests record to), a part sees the report of the parts before it, a failure
    is reported with its output and makes the exit code 1, and a part not meant for a dry run is skipped."""
    comparison = dict(check="8x8", quantity="forward", precision="highest", error=0.0, tolerance=1e-4, ok=True)
    record = f"import os; open(os.environ['WNGAN_ACCELERATOR_RECORD'], 'a').write({json.dumps(comparison)!r} + '\\n')"
    seen = (
        "import json, sys; parts = json.load(open(sys.argv[1]))['parts'];"
        "print(json.dumps(dict(what='seen', parts=[p['name'] for p in parts])))"
    )
    stubs = [
        _stub("correctness", record),
        check.Part("seen", "stub seen", 30, ["-c", seen, str(tmp_path / "out" / "accelerator_check.json")]),
        _stub("fails", "import sys; print('boom'); sys.exit(3)"),
        _stub("bench_only", "print('never run')", in_dry_run=False),
    ]
    code, report, out = _run_check(monkeypatch, tmp_path, "cpu", stubs)

    assert code == 1
    assert (report["mode"], report["budget_s"]) == ("dry run", check.DRY_RUN_BUDGET_S)
    parts = {p["name"]: p for p in report["parts"]}
    assert list(parts) == ["device", "correctness", "seen", "fails", "bench_only"]
    assert {name: p["status"] for name, p in parts.items()} == dict(
        device="ok", correctness="ok", seen="ok", fails="failed", bench_only="skipped"
    )
    assert [(r["what"], r["platform"]) for r in parts["device"]["rows"]] == [("device", "cpu")]
    assert parts["correctness"]["rows"] == [comparison]
    assert parts["seen"]["rows"] == [dict(what="seen", parts=["device", "correctness"])]
    assert parts["fails"]["returncode"] == 3 and parts["fails"]["output_tail"] == ["boom"]
    assert parts["bench_only"]["why"].startswith("dry run")
    assert report["elapsed_s"] > 0
    log = (out / "accelerator_check.log").read_text()
    assert all(f"===== {name}:" in log for name in ("device", "correctness", "seen", "fails")) and "boom" in log
    assert "never run" not in log
    table = (out / "accelerator_check.md").read_text()
    assert table.startswith("# Accelerator check (dry run)") and "### fails: failed" in table


def test_an_accelerator_gets_the_full_check_and_only_the_parts_asked_for(monkeypatch, tmp_path):
    """With a GPU the budget is the full one and each part has its own limit; ``--only`` skips the others."""
    stubs = [_stub("wanted", _print_rows(dict(what="x")), limit_s=7), _stub("other", "print('never run')")]
    code, report, _ = _run_check(monkeypatch, tmp_path, "gpu", stubs, "--only", "wanted")
    assert code == 0
    assert (report["mode"], report["budget_s"]) == ("full", check.BUDGET_S)
    device, wanted, other = report["parts"]
    assert (device["status"], wanted["status"], wanted["limit_s"], wanted["rows"]) == ("ok", "ok", 7, [dict(what="x")])
    assert (other["status"], other["why"]) == ("skipped", "not asked for (--only)")


def test_parts_are_skipped_once_the_budget_is_spent(monkeypatch, tmp_path):
    """A part starts only while at least ``MIN_PART_S`` of the budget is left."""
    stubs = [_stub("slow", "import time; time.sleep(2.5)"), _stub("late", "print('never run')")]
    code, report, _ = _run_check(monkeypatch, tmp_path, "cpu", stubs, "--budget", str(check.MIN_PART_S + 2))
    assert code == 0
    _, slow, late = report["parts"]
    assert slow["status"] == "ok" and late["status"] == "skipped" and late["why"].startswith("out of time")


def test_a_part_past_its_limit_is_killed_with_its_children(tmp_path):
    """The part's whole process group goes: a child still holding the output pipe would otherwise keep the
    check waiting for its 60 s."""
    code = (
        "import subprocess, sys, time;"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print('started', flush=True); time.sleep(60)"
    )
    start = time.perf_counter()
    with open(tmp_path / "log", "w") as log:
        result = check.run_part(_stub("hangs", code), 2, dict(os.environ), log)
    assert time.perf_counter() - start < 30
    assert (result["status"], result["output_tail"]) == ("timeout", ["started"])


def test_digits_run_is_summarised_from_what_it_left(tmp_path):
    """Checkpoints, sample grids and final-test reports of a run directory (the layout tests/test_experiments.py
    checks) become one row; the last grid and the pairs are copied out; a run that left none of them failed."""
    run, out = tmp_path / "run", tmp_path / "out"
    for path in ("checkpoints/last/2", "checkpoints/best/2", "samples", "final_test/last"):
        (run / path).mkdir(parents=True)
    for name in ("iter_0000001.png", "iter_0000002.png"):
        (run / "samples" / name).write_bytes(name.encode())
    (run / "final_test" / "pairs.png").write_bytes(b"pairs")
    (run / "final_test" / "report.json").write_text(json.dumps(dict(mean_loss=0.05, iteration=2, device="cpu")))
    (run / "final_test" / "last" / "report.json").write_text(json.dumps(dict(mean_loss=0.06, iteration=2)))
    (run / "metrics.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    out.mkdir()
    result = dict(status="ok")
    check.collect_digits(result, run, out)
    assert result["status"] == "ok"
    assert result["rows"] == [
        dict(
            what="digits",
            checkpoints=["best/2", "last/2"],
            samples=["iter_0000001.png", "iter_0000002.png"],
            metrics_lines=2,
            final_test={
                "final_test": dict(mean_loss=0.05, iteration=2),
                "final_test/last": dict(mean_loss=0.06, iteration=2),
            },
        )
    ]
    assert (out / "digits_samples.png").read_bytes() == b"iter_0000002.png"
    assert (out / "digits_final_test_pairs.png").read_bytes() == b"pairs"

    empty = dict(status="ok")
    (tmp_path / "empty").mkdir()
    check.collect_digits(empty, tmp_path / "empty", out)
    assert empty["status"] == "failed" and empty["rows"][0]["checkpoints"] == []


def test_every_planned_command_parses_with_its_own_flags(tmp_path):
    """Each part's command line, at the paper's sizes and the tiny ones, is accepted by the command it runs,
    and the digits run's flags make a valid config."""
    modules = {"wngan_jax.bench": [bench_command.define], "experiments.digits": [experiments.common.define_flags]}
    modules["experiments.digits"].append(experiments.digits.define)
    for sizes in (check.FULL, check.TINY):
        for part in check.parts(sizes, tmp_path):
            if part.argv[0] == check.PARTS:
                measure.parser().parse_args(part.argv[1:])
            elif part.argv[:2] == ["-m", "pytest"]:
                assert (ROOT / next(a for a in part.argv if a.endswith(".py"))).is_file()
            else:
                assert part.argv[0] == "-m", part
                fv = flags.FlagValues()
                for define in modules[part.argv[1]]:
                    define(fv)
                fv([part.argv[1], *part.argv[2:]])
                if part.argv[1] == "experiments.digits":
                    config = experiments.common.config_from_flags(fv, "digits")
                    assert config.iterations == sizes.digits["iterations"]


# --- the measuring parts -----------------------------------------------------------------------------------


def test_shell_script_runs_the_device_part(tmp_path):
    """``tools/accelerator_check.sh --dry-run --only device``: the wrapper, the orchestrator and the device part
    for real: the device and its three peaks, measured at the CPU's matrix size."""
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, WHEELS=str(tmp_path / "no_wheels"))
    proc = subprocess.run(
        ["bash", str(ROOT / "tools" / "accelerator_check.sh"), "--dry-run", "--only", "device"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads((out / "accelerator_check.json").read_text())
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert report["mode"] == "dry run"
    device, *skipped = report["parts"]
    assert device["command"] == f"python {check.PARTS} device --matmul={check.TINY.matmul}"
    assert {p["status"] for p in skipped} == {"skipped"}
    (dev,), peaks = device["rows"][:1], device["rows"][1:]
    assert (dev["what"], dev["platform"]) == ("device", "cpu")
    assert [(p["dtype"], p["precision"], p["n"]) for p in peaks] == [
        ("bfloat16", "default", measure.CPU_MATMUL),
        ("float32", "default", measure.CPU_MATMUL),
        ("float32", "highest", measure.CPU_MATMUL),
    ]
    assert all(p["gflops"] > 0 for p in peaks)
    assert "Peak matmul: bfloat16 default" in (out / "accelerator_check.md").read_text()


def test_final_test_part_at_a_tiny_size(capsys):
    """``accelerator_parts.py final_test``: both measurements, in one chunk here, and the 2000 x 2000 final
    test's time extrapolated from the second one's rate."""
    sizes = dict(size=16, nfeature=8, code_size=8, samples=8, steps=5, final_samples=8)
    assert measure.main(["final_test", *[f"--{k}={v}" for k, v in sizes.items()]]) == 0
    first, final = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (first["samples"], first["steps"], final["samples"], final["steps"]) == (8, 5, 8, 10)
    assert (first["chunk"], first["chunks"], final["chunk"], final["chunks"]) == (8, 1, 8, 1)
    assert final["extrapolated_final_test_s"] == 2000 * 2000 / final["sample_steps_per_s"]
    assert final["sample_steps_per_s"] == 8 * 10 / final["seconds"]
    # Random targets against a fresh generator's images, both in [0, 1]: a mean squared error well inside (0, 1).
    assert 0 < first["mean_loss"] < 1 and 0 < final["mean_loss"] < 1


# --- the report --------------------------------------------------------------------------------------------


def _report(speedup_64, speedup_160, f32_ms, bf16_ms, final_rate):
    """A full-mode report with the rows the goals read."""

    def authors(size, speedup):
        return dict(what="authors", size=size, norm="wn", batch=32, median_ms=f32_ms, gflops=1e5, speedup=speedup)

    return dict(
        mode="full",
        started_utc="2026-11-27T00:00:00+00:00",
        budget_s=290,
        elapsed_s=250,
        parts=[
            dict(
                name="device",
                description="",
                status="ok",
                rows=[dict(what="peak", dtype="float32", precision="default", gflops=4e5)],
            ),
            dict(
                name="authors_wn",
                description="",
                status="ok",
                rows=[authors(64, speedup_64), authors(160, speedup_160)],
            ),
            dict(
                name="authors_resnet_wn",
                description="",
                status="ok",
                rows=[authors(160, speedup_160) | dict(model="resnet_wn")],
            ),
            dict(
                name="train_bf16_wn",
                description="",
                status="ok",
                rows=[
                    dict(what="train", size=160, norm="wn", batch=32, dtype="bfloat16", median_ms=bf16_ms, gflops=2e5)
                ],
            ),
            dict(
                name="final_test",
                description="",
                status="timeout",
                command="python tools/accelerator_parts.py final_test --size=160",
                output_tail=["Killed"],
                rows=[
                    dict(
                        what="final_test",
                        size=160,
                        samples=2000,
                        steps=10,
                        chunk=400,
                        chunks=5,
                        sample_steps_per_s=final_rate,
                        gflops=2e5,
                        peak_bytes_in_use=2**34,
                        compile_s=9.0,
                        extrapolated_final_test_s=4e6 / final_rate,
                    )
                ],
            ),
        ],
    )


def test_goals_are_judged_against_the_issue_targets():
    """1.5x the authors' at each size (the paper's WN model and the ResNet follow-up), bfloat16 1.8x float32 at
    160, the final test under 300 s."""
    met = {g["goal"]: g["met"] for g in report_module.goals(_report(1.6, 1.4, 10.0, 5.0, 4e6 / 299))}
    assert met == {
        "WN 64x64 iteration >= 1.5x the authors'": True,
        "WN 160x160 iteration >= 1.5x the authors'": False,
        "WN ResNet 160x160 iteration >= 1.5x the authors'": False,
        "WN 160x160 bfloat16 vs float32": True,
        "final test 2000 x 2000 at 160x160, seconds": True,
    }
    met = {g["goal"]: g["met"] for g in report_module.goals(_report(1.5, 1.5, 10.0, 5.6, 4e6 / 301))}
    assert not met["WN 160x160 bfloat16 vs float32"] and not met["final test 2000 x 2000 at 160x160, seconds"]
    dry = _report(1.0, 1.0, 1.0, 1.0, 1.0) | {"mode": "dry run"}
    assert all(g["met"] is None for g in report_module.goals(dry))


def test_markdown_shows_fractions_of_the_peak_and_failures():
    """Each row's TFLOP/s as a share of the device part's peak for its dtype; a failed part shows its output."""
    table = report_module.markdown(_report(1.6, 1.4, 10.0, 5.0, 20000.0))
    assert "| 160 | wn | float32 | 10.00 | - | 100.0 | 25.0 | - | 1.40 |" in table
    assert "| 160 | resnet_wn | float32 | 10.00 | - | 100.0 | 25.0 | - | 1.40 |" in table
    assert "| 160 | wn | bfloat16 | 5.00 | - | 200.0 | - | - | - |" in table  # no bfloat16 peak measured
    assert "| 160 | 2000 x 10 | 400 (5) | 20000 | 50.0 | 16.0 | 9.0 | 200 |" in table
    assert "### final_test: timeout" in table and "python tools/accelerator_parts.py" in table and "Killed" in table


def test_markdown_tabulates_the_correctness_layers_and_digits_rows(monkeypatch, tmp_path):
    """The comparisons as tests/test_accelerator.py records them, the layers bench's rows and the digits summary."""
    from test_accelerator import check as compare

    record = tmp_path / "correctness.jsonl"
    monkeypatch.setenv("WNGAN_ACCELERATOR_RECORD", str(record))
    compare("8x8 layer 1", "forward", "highest", 2.5e-6, 1e-4)
    correctness = dict(name="correctness", description="", status="ok")
    check.collect_correctness(correctness, record)
    layers = dict(what="layers", layer="G conv 1", custom_ms=0.5, xla_ms=1.0, speedup=2.0, torch_ms=None)
    digits = dict(what="digits", checkpoints=["last/2"], samples=["a.png"], metrics_lines=3, final_test={})
    report = _report(1.6, 1.4, 10.0, 5.0, 20000.0) | {"mode": "dry run"}
    report["parts"] += [
        correctness,
        dict(name="layers", description="", status="ok", rows=[layers]),
        dict(name="digits", description="", status="ok", rows=[digits]),
    ]
    table = report_module.markdown(report)
    assert "| 8x8 layer 1 | forward | highest | 2.50e-06 | 1e-04 | yes |" in table
    assert "| G conv 1 | 0.500 | 1.000 | 2.00 | - |" in table
    assert "Digits run: 1 checkpoints, 1 sample grids, 3 metric lines; final test none." in table
