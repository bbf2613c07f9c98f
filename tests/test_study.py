"""The study runner (train, resume, skip), the fixed-code record, and the report of real runs: in a browser,
and without their training data."""

import collections
import json
import os
import pathlib
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import parallel, report, study
from wngan_jax import checkpoint, data, errors, record
from wngan_jax.config import TrainConfig

TINY = [
    "--image_size=16",
    "--nfeature=8",
    "--code_size=16",
    "--batch_size=16",
    "--test_every=2",
    "--sample_every=2",
    "--log_every=2",
    "--record_every=1",
    "--test_steps=3",
    "--final_test_samples=20",
    "--final_test_steps=3",
]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """A study of two models trained to 2 iterations, then continued to 4; its directory and flags."""
    root = tmp_path_factory.mktemp("study")
    argv = [*TINY, "--norms=vanilla,wn", "--seeds=0", f"--workdir={root}", f"--cache_dir={root / 'cache'}"]
    for iterations in (2, 4):
        assert study.main([*argv, f"--iterations={iterations}"]) == 0
    return root, argv


def test_study_trains_every_pair_then_resumes_then_skips(study_dir, capsys):
    root, _ = study_dir
    for norm in ("vanilla", "wn"):
        run = root / norm / "seed_0"
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["iteration"] for r in lines if "test_loss" in r] == [2, 4]  # continued, not restarted
        assert json.loads((run / "final_test" / "report.json").read_text())["iteration"] in (2, 4)
        iterations, images = record.read(run)
        assert iterations == [1, 2, 3, 4] and images.shape == (4, 16, 16, 16, 1) and images.dtype == np.uint8
        images = tensorboard_images(run)
        assert set(images) == {"samples", "running_test_pairs"}
        assert images["samples"] == (8 * 66 + 2, 8 * 66 + 2)  # 64 codes, 16x16 enlarged 4x, 2-pixel borders
    # The record's codes depend on the seed only: both models of seed 0 are recorded on the same 16 codes,
    # standard normal ones.
    vanilla, wn = (np.load(root / norm / "seed_0" / "record" / "codes.npy") for norm in ("vanilla", "wn"))
    np.testing.assert_array_equal(vanilla, wn)
    assert vanilla.shape == (16, 16) and vanilla.dtype == np.float32 and len(np.unique(vanilla)) == 256
    assert abs(vanilla.mean()) < 0.25 and 0.8 < vanilla.std() < 1.2
    assert json.loads((root / "study.json").read_text())["norms"] == ["vanilla", "wn"]


def test_study_skips_finished_runs_and_refuses_changed_ones(tmp_path, capsys, study_dir):
    root, argv = study_dir
    assert study.main([*argv, "--iterations=4"]) == 0
    out = capsys.readouterr().out
    assert out.count("finished, skipped") == 2 and "experiments.report" in out
    # A flag that changes the runs' maths is refused before anything trains.
    assert study.main([*argv, "--iterations=4", "--lr=1"]) == 1
    assert "different config" in capsys.readouterr().err
    assert study.main(["--norm=wn", f"--workdir={tmp_path}"]) == 1
    assert "--norms" in capsys.readouterr().err
    assert study.main(["--norms=nonsense", f"--workdir={tmp_path}"]) == 1
    assert not (tmp_path / "nonsense").exists()


def test_a_sweep_trains_every_model_value_and_seed_and_a_diverged_run_is_a_result(tmp_path, capsys, monkeypatch):
    """``--sweep=lr=...``: one run per (model, value, seed) under ``<norm>/lr=<value>/seed_<k>``, each with its
    value, recorded in study.json; a run that diverges is marked, the study goes on, exits 0, and skips it when
    run again. (Training itself is replaced: the runs' training is tested above.)"""
    trained = []

    def fake_train(config, run, overwrite=False):
        trained.append((run.relative_to(tmp_path).as_posix(), config.lr, config.norm, config.seed))
        if config.lr == 4e-3 and config.norm == "vanilla":
            raise errors.TrainingDiverged("the loss became non-finite", iteration=1234)
        return {"workdir": str(run)}

    monkeypatch.setattr(study.train, "train_and_evaluate", fake_train)
    argv = ["--norms=vanilla,sn", "--seeds=0,1", "--sweep=lr=2e-4,4e-3", f"--workdir={tmp_path}"]
    assert study.main(argv) == 0
    assert trained[:4] == [
        ("vanilla/lr=2e-4/seed_0", 2e-4, "vanilla", 0),
        ("sn/lr=2e-4/seed_0", 2e-4, "sn", 0),
        ("vanilla/lr=4e-3/seed_0", 4e-3, "vanilla", 0),
        ("sn/lr=4e-3/seed_0", 4e-3, "sn", 0),
    ]
    assert len(trained) == 8 and "collapses in the report" in capsys.readouterr().out
    spec = json.loads((tmp_path / "study.json").read_text())
    assert spec["sweep"] == {"flag": "lr", "values": ["2e-4", "4e-3"]} and spec["norms"] == ["vanilla", "sn"]
    diverged = json.loads((tmp_path / "vanilla" / "lr=4e-3" / "seed_1" / "diverged.json").read_text())
    assert diverged["iteration"] == 1234 and "non-finite" in diverged["error"]
    trained.clear()
    assert study.main(argv) == 0
    assert "diverged earlier, skipped" in capsys.readouterr().out
    assert ("vanilla/lr=4e-3/seed_0", 4e-3, "vanilla", 0) not in trained and len(trained) == 6
    # The union of calls: another value adds to study.json; no sweep, or another flag, is another study.
    assert study.main(["--norms=sn", "--seeds=0", "--sweep=lr=1e-3", f"--workdir={tmp_path}"]) == 0
    assert json.loads((tmp_path / "study.json").read_text())["sweep"]["values"] == ["2e-4", "4e-3", "1e-3"]
    for other in ("--sweep=batch_size=8,16", "--iterations=3"):
        assert study.main(["--norms=sn", other, f"--workdir={tmp_path}"]) == 1
        assert "this study sweeps --lr" in capsys.readouterr().err
    for bad, message in [
        ("--sweep=lr", "--sweep must be FLAG=V1,V2"),
        ("--sweep=seed=1,2", "other than norm, arch and seed"),
        ("--sweep=colour=1,2", "--sweep must be FLAG=V1,V2"),
        ("--sweep=lr=1e-3,1e-3", "distinct values"),
        ("--sweep=lr=fast", "is not a value of --lr"),
        ("--sweep=lr=-1", "--lr must be a positive"),
    ]:
        assert study.main(["--norms=wn", bad, f"--workdir={tmp_path / 'bad'}"]) == 1, bad
        assert message in capsys.readouterr().err, bad
    assert study.main(["--norms=wn", "--lr=1e-3", "--sweep=lr=1e-3,2e-3", f"--workdir={tmp_path / 'bad'}"]) == 1
    assert "set per run by --sweep" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def tensorboard_images(run) -> dict:
    """{tag: (height, width)} of the images in a run's TensorBoard event files."""
    from tensorboardX.proto.event_pb2 import Event

    images = {}
    for path in (run / "tensorboard").glob("events.*"):
        data, pos = path.read_bytes(), 0
        while pos < len(data):  # TFRecord: length (8 bytes), its CRC (4), the event, its CRC (4)
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            for value in Event.FromString(data[pos + 12 : pos + 12 + length]).summary.value:
                if value.HasField("image"):
                    images[value.tag] = (value.image.height, value.image.width)
            pos += 16 + length
    return images


def test_the_record_is_truncated_on_resume(tmp_path):
    writer = record.RecordWriter(tmp_path, np.zeros((2, 3), np.float32))
    for it in (100, 200, 300):
        writer.write(it, np.full((2, 4, 4, 1), it / 300.0))
    (tmp_path / "record" / "iter_0000400.0123456789abcdef0123456789abcdef.tmp.npy").write_bytes(b"cut")  # killed
    writer.truncate_after(200)
    iterations, images = record.read(tmp_path)
    assert iterations == [100, 200] and images[1].max() == round(200 / 300 * 255)
    assert record.read(tmp_path / "nothing") == ([], None)


def _images_loaded_in_chromium(index, tmp_path) -> str:
    """``"loaded/total"`` images of ``index`` once the page's load event fired in headless Chromium."""
    page = tmp_path / "check.html"
    marker = (
        "<script>addEventListener('load',()=>{const im=[...document.images];"
        "document.body.dataset.images=im.filter(i=>i.complete&&i.naturalWidth>0).length+'/'+im.length;});</script>"
    )
    page.write_text(index.read_text().replace("</body>", marker + "</body>"))
    dom = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=20000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    start = dom.find('data-images="')
    assert start >= 0, f"Chromium did not run the page's load handler:\n{dom[:500]}"
    return dom[start + len('data-images="') :].split('"')[0]


def test_report_of_real_runs_has_every_figure_and_opens_in_chromium(study_dir, tmp_path):
    root, _ = study_dir
    index = report.write_report([root], tmp_path / "report")
    names = sorted(p.name for p in index.parent.glob("*.png"))
    assert names == [
        "fig1_running_test_loss.png",
        "fig2_reconstructions.png",
        "fig3_samples_over_time.png",
        "fig_diversity.png",
        "fig_interpolation.png",
        "fig_survival.png",
    ]
    text = index.read_text()
    assert text.count("<img ") == 6 and "No instance collapsed" in text and "experiments.study" in text
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (make test installs Debian's chromium where apt-get and root allow)")
    assert _images_loaded_in_chromium(index, tmp_path) == "6/6"
    # The check sees a broken image: the same page with one image that cannot load.
    broken = tmp_path / "broken" / "index.html"
    broken.parent.mkdir()
    broken.write_text(text.replace("<h1>", "<img src='missing.png'><h1>"))
    assert _images_loaded_in_chromium(broken, tmp_path) == "6/7"


def test_report_renders_every_figure_after_the_training_data_is_deleted(study_dir, tmp_path, monkeypatch):
    """The final test saves the targets the figures show, so the report of runs whose data cache is gone
    renders every figure without rebuilding it, restoring each best generator once. Runs without saved
    targets fall back to their data (the same figure), or say which data is missing when it is gone."""
    root, _ = study_dir
    runs = tmp_path / "study"  # the runs on a machine without their data: the cache they name does not exist
    shutil.copytree(root, runs, ignore=shutil.ignore_patterns("cache"))
    gone = tmp_path / "deleted_cache"
    for path in runs.glob("*/seed_0/config.json"):
        config = TrainConfig.from_dict(json.loads(path.read_text()))
        path.write_text(config.replace(cache_dir=str(gone)).to_json())
    restored = collections.Counter()
    load_generator = checkpoint.load_generator

    def counted(run, which):
        restored[run.parent.name, which] += 1
        return load_generator(run, which)

    monkeypatch.setattr(checkpoint, "load_generator", counted)
    page = report.write_report([runs], tmp_path / "report").read_text()
    assert page.count("<img ") == 6  # as with the data (the final tests of 3 steps make no appendix C.3 curve)
    assert not gone.exists()  # nothing read or rebuilt the data
    # Fig. 2 and the interpolation share each model's restored generator.
    assert restored == {("vanilla", "best"): 1, ("wn", "best"): 1}

    for path in runs.glob("*/seed_0/final_test/targets.npy"):  # runs written before the final test saved them
        path.unlink()
    report.write_report([runs], tmp_path / "rebuilt")  # from the run's data (the built-in digits, recached)
    for name in ("fig2_reconstructions.png", "fig_interpolation.png"):
        assert (tmp_path / "rebuilt" / name).read_bytes() == (tmp_path / "report" / name).read_bytes()

    def no_data(spec, *args, **kwargs):
        raise errors.MissingDataError(f"{spec} is not on this machine")

    monkeypatch.setattr(data, "load", no_data)
    page = report.write_report([runs], tmp_path / "missing").read_text()
    assert page.count("<img ") == 4  # the curves, the survival, the samples over time and the diversity need no data
    assert page.count("holds no targets.npy and the run&#x27;s data (digits) cannot be loaded") == 2
    assert page.count("digits is not on this machine") == 2


def test_a_rerun_with_fewer_models_keeps_every_run_in_the_study_and_its_report(study_dir, tmp_path, caplog):
    """A study directory is the union of what was asked of it: a second call with fewer models and another
    seed adds to ``study.json``, and the report shows every run on disk and names the ones never started."""
    root, argv = study_dir
    copy = tmp_path / "study"
    shutil.copytree(root, copy)
    argv = [a for a in argv if not a.startswith("--workdir")] + [f"--workdir={copy}", "--iterations=4"]
    assert study.main([*argv, "--norms=wn"]) == 0  # finished: skipped, nothing trains
    spec = json.loads((copy / "study.json").read_text())
    assert spec["norms"] == ["vanilla", "wn"] and spec["seeds"] == [0]
    assert "--norms=vanilla,wn" in spec["commands"][0] and spec["commands"][-1].endswith("--norms=wn")
    assert {(i.model, i.seed) for i in report.load([copy]).instances} == {("vanilla", 0), ("wn", 0)}
    # A study.json of an earlier release, rewritten by its last call, still leaves no finished run out;
    # a run it asked for that was never started is named.
    (copy / "study.json").write_text(json.dumps({"norms": ["wn"], "seeds": [0, 1], "command": "old"}))
    with caplog.at_level("WARNING"):
        loaded = report.load([copy])
    assert {(i.model, i.seed) for i in loaded.instances} == {("vanilla", 0), ("wn", 0)}
    assert loaded.command == "old" and "never started" in caplog.text and "wn/seed_1" in caplog.text


def test_a_damaged_study_file_is_rebuilt_from_the_runs_on_disk(tmp_path):
    """A rerun over a cut-off ``study.json`` keeps every run on disk in the union (nothing is dropped)."""
    for norm, seed in (("wn", 0), ("bn", 3)):
        (tmp_path / norm / f"seed_{seed}").mkdir(parents=True)
        (tmp_path / norm / f"seed_{seed}" / "config.json").write_text("{}")
    (tmp_path / "study.json").write_text('{"norms": ["wn", "b')
    study.record_study(tmp_path, ["vanilla"], [1], "python -m experiments.study ...")
    recorded = json.loads((tmp_path / "study.json").read_text())
    assert recorded["norms"] == ["bn", "wn", "vanilla"] and recorded["seeds"] == [0, 3, 1]


def test_a_study_trains_the_resnet_beside_dcgan_models_and_the_report_names_it(tmp_path, capsys):
    """``resnet_wn`` in ``--norms`` is the authors' ResNet with the preset's ResNet setting (lr 2e-5, eps 1e-8)
    and the ResNet lists given; the DCGAN model of the same command keeps its own family, and the report
    names each model as ``ModelConfig.name`` does."""
    resnet = ["--gen_features=8,8", "--gen_blocks=1,1", "--dis_features=8,8", "--dis_blocks=1,1"]
    argv = [*TINY, *resnet, "--iterations=2", "--seeds=0", f"--workdir={tmp_path}", f"--cache_dir={tmp_path / 'c'}"]
    argv += ["--final_test_samples=0", "--record_codes=0"]  # the report's figures are tested above
    assert study.main([*argv, "--norms=weight,resnet_wn"]) == 0
    configs = {
        p.parent.parent.name: TrainConfig.from_dict(json.loads(p.read_text()))
        for p in tmp_path.glob("*/seed_0/config.json")
    }
    assert set(configs) == {"wn", "resnet_wn"}
    wn, res = configs["wn"].model, configs["resnet_wn"]
    assert (wn.arch, wn.norm, wn.gen_features, wn.nfeature) == ("dcgan", "wn", (), 8)
    assert (res.model.arch, res.model.norm, res.model.gen_features, res.model.dis_blocks) == (
        "resnet",
        "wn",
        (8, 8),
        (1, 1),
    )
    assert (res.lr, res.rmsprop_eps, configs["wn"].lr) == (2e-5, 1e-8, 2e-4)  # the digits preset's per family
    assert json.loads((tmp_path / "study.json").read_text())["norms"] == ["wn", "resnet_wn"]
    loaded = report.load([tmp_path])
    assert [m for m in report.by_model(loaded.instances)] == ["wn", "resnet_wn"]  # the paper's models first
    table = report.markdown_table(report.summary(loaded))
    assert "| resnet_wn |" in table and "| wn |" in table
    # --arch is the study's to set per model; a ResNet norm other than wn is no model.
    assert study.main([*argv, "--norms=wn", "--arch=resnet"]) == 1
    assert "--norms" in capsys.readouterr().err
    assert study.main([*argv, "--norms=resnet_bn"]) == 1
    assert "unknown model 'resnet_bn'" in capsys.readouterr().err


def _metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.skipif(parallel.available_cpus() < 2, reason="--jobs=2 needs 2 CPUs")
def test_jobs_2_gives_the_runs_of_jobs_1_each_with_its_log_and_a_failed_run_stops_only_itself(
    study_dir, tmp_path, capsys, monkeypatch
):
    """``--jobs=2`` trains the study's runs two at once, each in its own process on one CPU with its output in
    ``RUN/study.log``, and they are the runs ``--jobs=1`` trained (``study_dir``): the same training losses, the
    same reconstruction losses up to the order of float sums. A run that fails (its lock file is a directory)
    is named with its log at the end, the command exits 1, and the run beside it finishes."""
    root, argv = study_dir
    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "4")  # as this process (conftest), so the shards are the same
    parallel_root = tmp_path / "study"
    (parallel_root / "bn" / "seed_0" / "run.lock").mkdir(parents=True)
    argv = [a for a in argv if not a.startswith(("--workdir", "--norms"))]
    argv += [f"--workdir={parallel_root}", "--norms=bn,wn", "--iterations=4", "--jobs=2"]
    assert study.main(argv) == 1
    out, err = capsys.readouterr()
    bn_log = parallel_root / "bn" / "seed_0" / "study.log"
    assert err.strip() == (
        f"error: runs that failed (run the command again to retry them): {bn_log.parent} (log: {bn_log})"
    )
    starts = [line for line in out.splitlines() if ": training in its own process on CPUs " in line]
    assert [line.split()[1] for line in starts] == ["bn", "wn"]  # in the study's order
    assert {line.split(" on CPUs ")[1][0] for line in starts} == {"0", "1"}  # one CPU each, not the same
    assert "[1/2] bn seed 0" in out and "failed after" in out and "WorkdirConflict" in out
    assert "Traceback" in bn_log.read_text() and "cannot use" in bn_log.read_text()
    run, reference = parallel_root / "wn" / "seed_0", root / "wn" / "seed_0"
    assert f"[2/2] wn seed 0 ({run}): trained in " in out
    assert f"wn seed 0 ({run}): training" in (run / "study.log").read_text()
    rows, expected = _metrics(run), _metrics(reference)
    assert [r["iteration"] for r in rows] == [r["iteration"] for r in expected] == [1, 2, 3, 4]
    for row, want in zip(rows, expected, strict=True):
        assert (row["d_loss"], row["g_loss"]) == (want["d_loss"], want["g_loss"])
        assert row.get("test_loss", 0) == pytest.approx(want.get("test_loss", 0), rel=1e-6)
    final, want = (json.loads((r / "final_test" / "report.json").read_text()) for r in (run, reference))
    assert final["iteration"] == want["iteration"]
    assert final["mean_loss"] == pytest.approx(want["mean_loss"], rel=1e-6)


def test_calls_in_processes_are_pinned_apart_logged_and_go_on_past_a_failure(tmp_path):
    """At most ``jobs`` calls at once, in order, each in a process pinned to a CPU set no other running call
    holds, its output appended to its log; a call that raises ends with its error and the next starts."""
    if parallel.available_cpus() < 2 or not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs 2 CPUs and sched_setaffinity")
    events, running = [], {}
    calls = [
        parallel.Call("first", (0,), tmp_path / "first.log"),
        parallel.Call("bad", ("not a process id",), tmp_path / "new" / "bad.log"),
        parallel.Call("third", (0,), tmp_path / "third.log"),
    ]
    (tmp_path / "third.log").write_text("an earlier line\n")

    def started(call, cpus):
        assert all(cpus.isdisjoint(other) for other in running.values()) and len(running) < 2
        running[call.key] = cpus
        events.append(("start", call.key))

    def ended(call, outcome):
        events.append(("end", call.key, outcome.result == running.pop(call.key), outcome.error))

    parallel.run_in_processes(os.sched_getaffinity, calls, 2, started=started, ended=ended)
    assert events[:2] == [("start", "first"), ("start", "bad")]  # the third waits for a free CPU set
    assert events.index(("start", "third")) > min(i for i, e in enumerate(events) if e[0] == "end")
    ends = {e[1]: e[2:] for e in events if e[0] == "end"}
    assert ends["first"] == ends["third"] == (True, None)  # each ran on exactly the CPUs it was given
    assert ends["bad"][1].startswith("TypeError: ")
    assert "Traceback" in (tmp_path / "new" / "bad.log").read_text()
    third = (tmp_path / "third.log").read_text().splitlines()
    assert third[0] == "an earlier line" and " on CPUs " in third[1]  # appended


def test_interrupting_the_calls_stops_their_processes_at_once(tmp_path):
    """Ctrl-C (here raised as a call starts) terminates the processes still running instead of waiting."""

    def interrupt(call, cpus):
        raise KeyboardInterrupt

    calls = [parallel.Call("sleep", (60,), tmp_path / "sleep.log")]
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        parallel.run_in_processes(time.sleep, calls, 1, started=interrupt, ended=None)
    assert time.monotonic() - start < 30


SLEEP_IN_A_CALL = """
import pathlib, sys, time
from experiments import parallel
call = parallel.Call("sleep", (120,), pathlib.Path(sys.argv[1]))
parallel.run_in_processes(time.sleep, [call], 1, started=lambda call, cpus: print("started", flush=True), ended=None)
"""


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (an orphan's zombie may never be reaped in a container)."""
    stat = pathlib.Path(f"/proc/{pid}/stat")
    if pathlib.Path("/proc/self/stat").exists():
        return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("parent_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_no_call_outlives_the_process_that_started_it(tmp_path, parent_signal):
    """``kill`` (SIGTERM) of the study ends its runs' processes with it, as Ctrl-C does; on Linux even a
    SIGKILL of the study ends them (the kernel sends them SIGTERM)."""
    if parent_signal == signal.SIGKILL and not sys.platform.startswith("linux"):
        pytest.skip("a process ends with its parent only on Linux (prctl PR_SET_PDEATHSIG)")
    log = tmp_path / "sleep.log"
    parent = subprocess.Popen(
        [sys.executable, "-c", SLEEP_IN_A_CALL, str(log)], cwd=os.getcwd(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout.readline() == "started\n"
        deadline = time.monotonic() + 60
        while not re.search(r"process (\d+)", log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "the call's process never started"
            time.sleep(0.1)
        child = int(re.search(r"process (\d+)", log.read_text()).group(1))
        assert _running(child)
        parent.send_signal(parent_signal)
        assert parent.wait(timeout=60) == (143 if parent_signal == signal.SIGTERM else -signal.SIGKILL)
        while _running(child):
            assert time.monotonic() < deadline + 60, "the call's process outlived its parent"
            time.sleep(0.1)
    finally:
        parent.kill()
        parent.wait()


def test_jobs_that_cannot_run_are_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(study.parallel, "available_cpus", lambda: 2)
    workdir = tmp_path / "study"
    for flags_given, message in [
        (["--jobs=0"], "--jobs must be at least 1, got 0"),
        (["--jobs=-1"], "--jobs must be at least 1, got -1"),
        (["--jobs=3"], "--jobs=3 is more than the 2 CPUs this process may use"),
        (["--jobs=2", "--num_processes=2"], "--jobs above 1 trains runs side by side on one host"),
    ]:
        assert study.main(["--norms=wn", f"--workdir={workdir}", *flags_given]) == 1, flags_given
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith(f"error: {message}"), err
    monkeypatch.setattr(study.jax, "default_backend", lambda: "gpu")
    assert study.main(["--norms=wn", f"--workdir={workdir}", "--jobs=2"]) == 1
    assert "--jobs=2: every run would share this gpu; use --jobs=1" in capsys.readouterr().err
    assert not workdir.exists()
