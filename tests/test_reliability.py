"""What a run survives (docs/reliability.md): concurrent starts, kills, torn and half-written files, a full disk."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from wngan_jax import files, locks, metrics
from wngan_jax.errors import WorkdirConflict

HOLDER = textwrap.dedent(
    """
    import sys, time
    from wngan_jax import locks
    with locks.hold_run(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
    """
)


@pytest.fixture
def holder(tmp_path):
    """A second process holding the run lock of ``tmp_path / 'run'``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "run"), "--marker"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    assert proc.stdout.readline() == "held\n"
    yield proc
    proc.kill()
    proc.wait()


# --- lock on a run directory ---------------------------------------------------------------------


def test_second_process_on_a_run_is_refused_and_told_who_holds_it(tmp_path, holder):
    with pytest.raises(WorkdirConflict) as refused:
        with locks.hold_run(tmp_path / "run"):
            pytest.fail("two holders")
    message = str(refused.value)
    assert f"process {holder.pid} on host {os.uname().nodename}" in message
    assert "--marker" in message and str(tmp_path / "run") in message and "--workdir" in message
    assert "\n" not in message


def test_a_killed_holder_leaves_no_stale_lock(tmp_path, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "run" / locks.LOCK_FILE).exists()  # left behind by kill -9, but not locked
    with locks.hold_run(tmp_path / "run"):
        record = json.loads((tmp_path / "run" / locks.LOCK_FILE).read_text())
        assert record["pid"] == os.getpid()
    assert not (tmp_path / "run" / locks.LOCK_FILE).exists()


def test_lock_is_released_after_the_run_and_after_a_failed_start(tmp_path):
    with locks.hold_run(tmp_path / "run"):
        (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(RuntimeError):
        with locks.hold_run(tmp_path / "new"):
            raise RuntimeError("the data could not be loaded")
    assert not (tmp_path / "new").exists()  # a failed start leaves nothing
    with locks.hold_run(tmp_path / "run"), pytest.raises(WorkdirConflict, match=f"process {os.getpid()}"):
        with locks.hold_run(tmp_path / "run"):
            pass
    with locks.hold_run(tmp_path / "run", enabled=False), locks.hold_run(tmp_path / "run"):
        pass  # processes other than 0 of a multi-host run take nothing


def test_run_directory_that_is_a_file_or_unwritable_is_a_one_line_error(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    with pytest.raises(WorkdirConflict, match=r"cannot use .*file as a run directory \(.*File exists.*--workdir"):
        with locks.hold_run(tmp_path / "file"):
            pass

    def unwritable(path, flags, mode=0o777):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(locks.os, "open", unwritable)
    with pytest.raises(WorkdirConflict, match="Permission denied") as err:
        with locks.hold_run(tmp_path / "run"):
            pass
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_file_system_without_locks_warns_and_runs(tmp_path, monkeypatch, caplog):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(locks.fcntl, "flock", no_locks)
    with locks.hold_run(tmp_path / "run"):
        pass
    assert "would not be refused" in caplog.text and locks.LOCK_FILE in caplog.text


# --- metrics.jsonl --------------------------------------------------------------------------------


def rows(n):
    return "".join(json.dumps({"iteration": i, "d_loss": 0.5 * i}) + "\n" for i in range(1, n + 1))


def full_disk_at(monkeypatch, name, written=7):
    """``os.write`` to a file whose name contains ``name`` writes ``written`` bytes, then fails with ENOSPC."""
    real_write = os.write

    def write(fd, data):
        if name in os.readlink(f"/proc/self/fd/{fd}"):
            real_write(fd, bytes(data[:written]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)


def test_full_disk_during_an_append_leaves_no_half_row(tmp_path, monkeypatch):
    writer = metrics.MetricsWriter(tmp_path)
    writer.write(1, {"d_loss": 0.5})
    before = (tmp_path / metrics.METRICS_FILE).read_bytes()
    with monkeypatch.context() as patch:
        full_disk_at(patch, metrics.METRICS_FILE)
        with pytest.raises(OSError, match="No space"):
            writer.write(2, {"d_loss": 1.0})
    assert (tmp_path / metrics.METRICS_FILE).read_bytes() == before
    writer.write(2, {"d_loss": 1.0})  # space again
    writer.close()
    assert metrics.read_metrics(tmp_path, "d_loss") == ([1, 2], [0.5, 1.0])


def test_full_disk_during_the_resume_rewrite_loses_no_row(tmp_path, monkeypatch):
    (tmp_path / metrics.METRICS_FILE).write_text(rows(5))
    writer = metrics.MetricsWriter(tmp_path)
    with monkeypatch.context() as patch:
        full_disk_at(patch, "metrics.")
        with pytest.raises(OSError, match="No space"):
            writer.resume_at(3)
    assert (tmp_path / metrics.METRICS_FILE).read_text() == rows(5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [metrics.METRICS_FILE, "tensorboard"]  # no temp file
    writer.resume_at(3)
    writer.close()
    assert (tmp_path / metrics.METRICS_FILE).read_text() == rows(3)


def test_cut_off_last_line_is_reported_and_dropped_on_read_and_resume(tmp_path):
    path = tmp_path / metrics.METRICS_FILE
    path.write_text(rows(3) + '{"iteration": 4, "d_lo')
    with pytest.warns(UserWarning, match=rf"{path}, line 4, is cut off"):
        assert metrics.read_metrics(tmp_path, "d_loss") == ([1, 2, 3], [0.5, 1.0, 1.5])
    writer = metrics.MetricsWriter(tmp_path)
    with pytest.warns(UserWarning, match="line 4, is cut off"):
        writer.resume_at(10)
    writer.write(4, {"d_loss": 2.0})
    writer.close()
    assert path.read_text() == rows(4)


def test_last_row_without_its_newline_is_completed_before_appending(tmp_path):
    path = tmp_path / metrics.METRICS_FILE
    path.write_text(rows(2).rstrip("\n"))
    writer = metrics.MetricsWriter(tmp_path)
    writer.resume_at(10)
    writer.write(3, {"d_loss": 1.5})
    writer.close()
    assert path.read_text() == rows(3)


KILLED_AT = {
    "the append": "os.write = lambda fd, data: (real_write(fd, data[:20]), os.kill(os.getpid(), signal.SIGKILL))",
    "the rename": "os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)",
}


@pytest.mark.parametrize("point", sorted(KILLED_AT))
def test_process_killed_while_writing_metrics_loses_no_row(tmp_path, point):
    (tmp_path / metrics.METRICS_FILE).write_text(rows(5))
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from wngan_jax import metrics
        writer = metrics.MetricsWriter(sys.argv[1])
        real_write = os.write
        {KILLED_AT[point]}
        writer.write(6, {{"d_loss": 3.0}}) if "append" in {point!r} else writer.resume_at(2)
        """
    )
    assert subprocess.run([sys.executable, "-c", script, str(tmp_path)]).returncode == -signal.SIGKILL
    assert (tmp_path / metrics.METRICS_FILE).read_text().startswith(rows(5))
    writer = metrics.MetricsWriter(tmp_path)
    if point == "the append":
        with pytest.warns(UserWarning, match="line 6, is cut off"):
            writer.resume_at(5)
    else:
        writer.resume_at(2)
    writer.close()
    assert (tmp_path / metrics.METRICS_FILE).read_text() == rows(5 if point == "the append" else 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [metrics.METRICS_FILE, "tensorboard"]


def test_bad_line_before_the_end_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / metrics.METRICS_FILE
    path.write_text(rows(1) + '{"iteration": 2, "d_lo\n' + rows(3)[len(rows(2)) :])
    with pytest.raises(WorkdirConflict, match=rf"{path}, line 2, is not a metrics record"):
        metrics.read_metrics(tmp_path, "d_loss")
    writer = metrics.MetricsWriter(tmp_path)
    with pytest.raises(WorkdirConflict, match="line 2"):
        writer.resume_at(10)
    writer.close()


def test_write_atomic_keeps_the_old_file_on_any_failure(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    files.write_atomic(path, "old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        files.write_atomic(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["config.json"]
    assert files.is_temp(files.temp_path(tmp_path / "images.npy")) and not files.is_temp(path)


def test_training_on_a_held_run_is_refused_before_anything_is_written(tmp_path, holder):
    from wngan_jax import train
    from wngan_jax.config import TrainConfig

    with pytest.raises(WorkdirConflict, match=f"in use by process {holder.pid} on host"):
        train.train_and_evaluate(TrainConfig(data="digits"), tmp_path / "run")
    assert os.listdir(tmp_path / "run") == [locks.LOCK_FILE]


def test_overwrite_discards_the_run_but_keeps_it_locked(tmp_path):
    """``--overwrite`` empties the run directory but for its lock (nobody can start on it meanwhile) and the log
    that a study's process may be writing the run's output to (``experiments.study --jobs``)."""
    from wngan_jax.config import TrainConfig
    from wngan_jax.rundir import LOG_FILE, RunDirectory

    run = tmp_path / "run"
    with locks.hold_run(run):
        (run / "config.json").write_text(TrainConfig(lr=0.5).to_json())
        (run / "checkpoints" / "last").mkdir(parents=True)
        (run / metrics.METRICS_FILE).write_text(rows(2))
        (run / LOG_FILE).write_text("the output so far\n")
        RunDirectory(run).check_config(TrainConfig(), overwrite=True)
        assert sorted(os.listdir(run)) == sorted([locks.LOCK_FILE, LOG_FILE])
        second = subprocess.run([sys.executable, "-c", HOLDER, str(run)], capture_output=True, text=True)
        assert second.returncode == 1 and "WorkdirConflict" in second.stderr


def test_a_cut_off_config_is_refused_on_resume_naming_the_file(tmp_path, capsys):
    """A plain resume and a study's rerun both refuse a run whose ``config.json`` is cut off, in one line that
    names the file and what to do, before anything is loaded or written; ``--overwrite`` starts the run over."""
    from experiments import study
    from wngan_jax import train
    from wngan_jax.config import TrainConfig
    from wngan_jax.errors import DamagedFile
    from wngan_jax.rundir import RunDirectory

    run = tmp_path / "study" / "vanilla" / "seed_0"
    run.mkdir(parents=True)
    text = TrainConfig(data="digits").to_json()
    (run / "config.json").write_text(text[: len(text) // 2])
    with pytest.raises(DamagedFile) as refused:
        train.train_and_evaluate(TrainConfig(data="digits"), run)
    message = str(refused.value)
    assert message.startswith(f"{run / 'config.json'} is cut off or damaged") and "--overwrite" in message
    assert "\n" not in message and os.listdir(run) == ["config.json"]
    argv = ["--norms=vanilla", "--seeds=0", "--iterations=2", f"--workdir={tmp_path / 'study'}"]
    assert study.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run / 'config.json'} is cut off") and len(err.strip().splitlines()) == 1
    (run / "data.json").write_text('{"spec": "digits", "content_sha256": "ab')
    with pytest.raises(DamagedFile, match=f"^{run / 'data.json'} is cut off or damaged .*--overwrite"):
        RunDirectory(run).check_data(TrainConfig(data="digits"), {"content_sha256": "ab"}, overwrite=False)
    with locks.hold_run(run):
        RunDirectory(run).check_config(TrainConfig(data="digits"), overwrite=True)
        assert os.listdir(run) == [locks.LOCK_FILE]
