"""A run survives crashes at the exact points that used to break it, a moved dataset, a lost checkpoint and
nonsense input: each resumed run ends with the metrics, best pointer and parameters of an uninterrupted one.
The runs compared keep a generator EMA (``--ema_decay``), so resume and rollback are checked to keep it too."""

import json
import shutil

import jax
import numpy as np
import pytest
from test_data import make_folder
from test_train import tiny

from wngan_jax import checkpoint, data, errors, evaluation, generation, train
from wngan_jax.checkpoint import Checkpoints
from wngan_jax.metrics import MetricsWriter


def averaged(**changes):
    """The tiny run of tests/test_train.py, keeping a generator EMA."""
    return tiny(ema_decay=0.9, **changes)


class Crash(BaseException):
    """Stands for the process dying at an exact point (not an Exception, so nothing catches it)."""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory, cache_dir):
    """The uninterrupted run every crash is compared with (iterations 6, tests at 3 and 6)."""
    workdir = tmp_path_factory.mktemp("straight") / "run"
    train.train_and_evaluate(averaged(cache_dir=cache_dir), workdir)
    return workdir


def _state(workdir):
    ckpt = Checkpoints(workdir, read_only=True)
    last, best = ckpt.restore("last"), ckpt.steps("best")
    ckpt.close()
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return last["models"], last["meta"], best, rows


def _assert_same_run(workdir, straight):
    models, meta, best, rows = _state(workdir)
    want_models, want_meta, want_best, want_rows = _state(straight)
    assert set(models) == set(want_models) == {"generator", "discriminator", "generator_ema"}
    assert best == want_best and meta["best_iteration"] == want_meta["best_iteration"]
    assert [r["iteration"] for r in rows] == [r["iteration"] for r in want_rows]
    for got, want in zip(rows, want_rows):
        assert got.get("test_loss") == want.get("test_loss") and got["d_loss"] == want["d_loss"]
        assert got.get("ema_test_loss") == want.get("ema_test_loss")
    for a, b in zip(jax.tree_util.tree_leaves(models), jax.tree_util.tree_leaves(want_models)):
        np.testing.assert_array_equal(a, b)


def _crash_once(monkeypatch, cls, name, when):
    original = getattr(cls, name)
    fired = []

    def patched(self, *args, **kwargs):
        if not fired and when(*args, **kwargs):
            fired.append(True)
            raise Crash
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, patched)


def test_crash_between_the_last_and_the_best_save_keeps_the_best_generator(tmp_path, cache_dir, straight, monkeypatch):
    _crash_once(monkeypatch, Checkpoints, "save_best", lambda step, *a, **k: step == 3)
    with pytest.raises(Crash):
        train.train_and_evaluate(averaged(cache_dir=cache_dir), tmp_path / "run")
    monkeypatch.undo()
    summary = train.train_and_evaluate(averaged(cache_dir=cache_dir), tmp_path / "run")
    assert summary["iteration"] == 6
    _assert_same_run(tmp_path / "run", straight)


def test_crash_between_a_checkpoint_and_its_metrics_row_loses_no_row(tmp_path, cache_dir, straight, monkeypatch):
    _crash_once(monkeypatch, MetricsWriter, "write", lambda iteration, scalars: "test_loss" in scalars)
    with pytest.raises(Crash):
        train.train_and_evaluate(averaged(cache_dir=cache_dir), tmp_path / "run")
    monkeypatch.undo()
    train.train_and_evaluate(averaged(cache_dir=cache_dir), tmp_path / "run")
    _assert_same_run(tmp_path / "run", straight)


def test_history_without_a_checkpoint_is_an_error_not_a_restart(tmp_path, cache_dir):
    config = tiny(cache_dir=cache_dir, iterations=3)
    train.train_and_evaluate(config, tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "last")
    with pytest.raises(errors.WorkdirConflict, match="no checkpoint in .* to resume from") as raised:
        train.train_and_evaluate(config, tmp_path / "run")
    assert "checkpoints/best/3" in str(raised.value)
    assert (tmp_path / "run" / "checkpoints" / "best" / "3").is_dir()  # nothing was touched
    summary = train.train_and_evaluate(config, tmp_path / "run", overwrite=True)
    assert summary["iteration"] == 3


def test_a_moved_dataset_and_cache_resume_the_run_other_data_is_refused(tmp_path):
    make_folder(tmp_path / "images", count=24, size=(20, 20))
    config = tiny(data=f"folder:{tmp_path / 'images'}", channels=3, cache_dir=str(tmp_path / "cache_a"))
    config = config.replace(final_test=8, running_test=4, batch_size=4)
    train.train_and_evaluate(config.replace(iterations=3), tmp_path / "run")
    shutil.move(tmp_path / "images", tmp_path / "moved")
    moved = config.replace(data=f"folder:{tmp_path / 'moved'}", cache_dir=str(tmp_path / "cache_b"))
    assert train.train_and_evaluate(moved, tmp_path / "run")["iteration"] == 6
    assert json.loads((tmp_path / "run" / "data.json").read_text())["spec"] == moved.data
    make_folder(tmp_path / "other", count=25, size=(20, 20))  # one image more: other data
    other = moved.replace(data=f"folder:{tmp_path / 'other'}", iterations=9)
    with pytest.raises(errors.WorkdirConflict, match="holds other images"):
        train.train_and_evaluate(other, tmp_path / "run")


def test_nan_codes_or_weights_are_errors_not_nan_images(tmp_path, cache_dir):
    config = tiny(cache_dir=cache_dir, iterations=3)
    train.train_and_evaluate(config, tmp_path / "run")
    model, variables, _ = checkpoint.load_generator(tmp_path / "run")
    codes = np.zeros((2, model.code_size), np.float32)
    codes[1, 0] = np.nan
    np.save(tmp_path / "codes.npy", codes)
    with pytest.raises(errors.DataError, match="NaN"):
        generation.load_codes(tmp_path / "codes.npy", model.code_size)
    broken = jax.tree.map(lambda a: a * np.nan, variables)
    with pytest.raises(errors.CheckpointError, match="non-finite"):
        generation.generate(model, broken, np.zeros((2, model.code_size)))
    targets = np.zeros((2, *model.image_size, model.channels), np.uint8)
    with pytest.raises(errors.CheckpointError, match="not finite"):
        evaluation.evaluate(model, broken, targets, steps=1, progress=False)


def test_full_disk_at_a_checkpoint_is_one_line_and_the_run_resumes(tmp_path, cache_dir, straight, monkeypatch):
    import errno

    import orbax.checkpoint as ocp

    original = ocp.CheckpointManager.save

    def full_disk(self, step, *args, **kwargs):
        if step == 6:
            (self.directory / f"{step}.orbax-checkpoint-tmp-1234").mkdir()  # what orbax leaves while writing
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    with pytest.raises(errors.CheckpointError, match="No space left on device") as raised:
        train.train_and_evaluate(averaged(cache_dir=cache_dir), tmp_path / "run")
    assert "\n" not in str(raised.value) and "run the same command again" in str(raised.value)
    assert not list((tmp_path / "run" / "checkpoints").glob("*/*.orbax-checkpoint-tmp*"))
    monkeypatch.undo()
    train.train_and_evaluate(averaged(cache_dir=cache_dir), tmp_path / "run")
    _assert_same_run(tmp_path / "run", straight)


def test_corrupt_checkpoint_arrays_are_one_line(tmp_path, cache_dir):
    train.train_and_evaluate(tiny(cache_dir=cache_dir, iterations=3), tmp_path / "run")
    data_files = [p for p in (tmp_path / "run" / "checkpoints" / "best" / "3").rglob("*") if p.is_file()]
    for path in data_files:
        if path.stat().st_size > 100 and "manifest" not in path.name and path.suffix != ".json":
            path.write_bytes(b"\0" * path.stat().st_size)
    with pytest.raises(errors.CheckpointError) as raised:
        checkpoint.load_generator(tmp_path / "run", "best")
    message = str(raised.value)
    assert "\n" not in message and len(message) < 600 and "best checkpoint at iteration 3" in message


def test_a_rollback_restores_the_averaged_generator_of_its_checkpoint(tmp_path, cache_dir, monkeypatch):
    """A NaN batch at iteration 5 poisons the raw and the averaged generator; the rollback to iteration 3 puts
    back the average saved there, and the run ends finite."""
    saved, restored = {}, {}
    save, roll_back, next_batch = train.Trainer.save, train.Trainer.roll_back, data.BatchIterator.__next__

    def saving(self, best):
        save(self, best)
        saved[self.meta.iteration] = jax.device_get(self.state["generator_ema"])

    def rolling_back(self, iteration):
        roll_back(self, iteration)
        restored[self.meta.iteration] = jax.device_get(self.state["generator_ema"])

    calls = []

    def poisoned(self):
        calls.append(1)
        return next_batch(self) * np.nan if len(calls) == 5 else next_batch(self)

    monkeypatch.setattr(train.Trainer, "save", saving)
    monkeypatch.setattr(train.Trainer, "roll_back", rolling_back)
    monkeypatch.setattr(data.BatchIterator, "__next__", poisoned)
    summary = train.train_and_evaluate(averaged(cache_dir=cache_dir), tmp_path / "run")
    assert summary["rollbacks"] == 1 and list(restored) == [3]
    for a, b in zip(jax.tree_util.tree_leaves(restored[3]), jax.tree_util.tree_leaves(saved[3])):
        np.testing.assert_array_equal(a, b)
    assert all(np.all(np.isfinite(a)) for a in jax.tree_util.tree_leaves(saved[6]))


def test_a_failed_write_in_orbax_threads_logs_no_traceback(tmp_path, monkeypatch, caplog):
    """A full disk hits orbax in its writer threads, which log the exception with its traceback before it
    reaches ``save``: the user sees the one ``CheckpointError`` line only. A save that succeeds keeps its logs."""
    import errno
    import logging

    import numpy as np
    import orbax.checkpoint as ocp

    async def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    models = {"generator": {"w": np.arange(6, dtype=np.float32)}}
    ckpt = checkpoint.Checkpoints(tmp_path / "run")
    monkeypatch.setattr(ocp.type_handlers.NumpyHandler, "_open_and_write", full_disk)
    with caplog.at_level(logging.WARNING), pytest.raises(errors.CheckpointError, match="No space left") as raised:
        ckpt.save(1, models, {"iteration": 1})
    assert "\n" not in str(raised.value)
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage()[:200] for r in caplog.records]
    monkeypatch.undo()
    logging.getLogger("absl").warning("after the failed save")  # the logger is not left muted
    ckpt.save(1, models, {"iteration": 1})
    ckpt.close()
    assert [r.getMessage() for r in caplog.records] == ["after the failed save"]
