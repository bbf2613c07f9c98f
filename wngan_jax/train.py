"""The training loop: data -> jitted step -> running test, samples, checkpoints, logs (paper §5.1).

``train_and_evaluate(config, workdir)`` runs or resumes one experiment. Resuming restores parameters,
optimizer states, the data position, the best-so-far and the random stream, so an interrupted and resumed
run ends with the same parameters as an uninterrupted one. A non-finite loss rolls the run back to its last
checkpoint (the paper: the WN model "might fail in the first handful of iterations ... just restart").
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import pathlib
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from wngan_jax import checkpoint as ckpt_lib
from wngan_jax import data, evaluation, fid, files, inception, locks, reconstruction, sample, sharding, visualize
from wngan_jax import metrics as metrics_lib
from wngan_jax import record as record_lib
from wngan_jax.config import LOCATION_FIELDS, RESUMABLE_CHANGES, TrainConfig
from wngan_jax.errors import DataError, TrainingDiverged, WorkdirConflict
from wngan_jax.metrics import MetricsWriter
from wngan_jax.train_step import init_state, make_train_step, run_key

CONFIG_FILE = "config.json"
DATA_FILE = "data.json"
FIXED_CODES_FILE = "fixed_codes.npy"
FINAL_TEST_DIR = "final_test"
TENSORBOARD_PAIRS = 16  # running-test (target | reconstruction) pairs shown in TensorBoard


@dataclasses.dataclass
class CheckpointMeta:
    """What a checkpoint's ``meta`` records besides the arrays: the loop's position and bookkeeping."""

    iteration: int = 0
    best_loss: float | None = None
    best_iteration: int | None = None
    last_test_loss: float | None = None
    rollbacks: int = 0  # non-finite losses rolled back to a checkpoint so far (each changes the random stream)
    data: dict | None = None  # BatchIterator.state() of the next batch
    row: dict | None = None  # the metrics record of this iteration, put back if a crash lost it

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, meta: dict) -> CheckpointMeta:
        meta = {("rollbacks" if k == "nan_events" else k): v for k, v in meta.items()}  # 0.1.0, 0.2.0 name
        return cls(**{f.name: meta[f.name] for f in dataclasses.fields(cls) if f.name in meta})


def _clear(workdir: pathlib.Path) -> None:
    """Empty ``workdir`` but for the lock this process holds (``locks.hold_run``)."""
    for child in workdir.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        elif child.name != locks.LOCK_FILE:
            child.unlink()


def check_workdir(config: TrainConfig, workdir: pathlib.Path, overwrite: bool) -> bool:
    """Refuse a ``workdir`` that holds a run with another config (discard it when ``overwrite``).

    Where the data and cache live (``LOCATION_FIELDS``) is not part of a run's identity, nor is the data spec:
    returns whether the spec differs, so that the data can be compared by content once it is loaded
    (``check_same_data``)."""
    path = workdir / CONFIG_FILE
    if not path.exists():
        return False
    diff = TrainConfig.from_dict(json.loads(path.read_text())).differences(
        config, ignore=RESUMABLE_CHANGES + LOCATION_FIELDS + ("data",)
    )
    if diff and not overwrite:
        lines = "\n".join(f"  {k}: {a!r} in the workdir, {b!r} now" for k, (a, b) in sorted(diff.items()))
        raise WorkdirConflict(
            f"{workdir} holds a run with a different config:\n{lines}\n"
            "Use another --workdir, or pass --overwrite to discard that run."
        )
    if diff:
        if jax.process_index() == 0:
            _clear(workdir)
        return False
    return TrainConfig.from_dict(json.loads(path.read_text())).data != config.data


def check_same_data(config: TrainConfig, workdir: pathlib.Path, info: dict, overwrite: bool) -> None:
    """A run whose data spec changed resumes only on the same images (``content_sha256`` of the cache):
    moved folders, lmdb files and TFDS directories are recognised; other data is refused."""
    path = workdir / DATA_FILE
    recorded = json.loads(path.read_text()) if path.exists() else {}
    if recorded.get("content_sha256") and recorded["content_sha256"] == info.get("content_sha256"):
        logging.warning(
            "%s: the data moved from %s to %s (same images); resuming", workdir, recorded["spec"], config.data
        )
        return
    if not overwrite:
        raise WorkdirConflict(
            f"{workdir} holds a run on --data={recorded.get('spec', '?')}, and --data={config.data} holds other "
            "images (their SHA-256 differs, or the run predates that record). Use another --workdir, or pass "
            "--overwrite to discard that run."
        )
    if jax.process_index() == 0:
        _clear(workdir)


def write_workdir(config: TrainConfig, workdir: pathlib.Path, info: dict) -> None:
    """The run's config, model config and data identity, written atomically (process 0 only)."""
    if jax.process_index() != 0:
        return
    workdir.mkdir(parents=True, exist_ok=True)
    files.write_atomic(workdir / CONFIG_FILE, config.to_json())
    record = {"spec": config.data, "content_sha256": info.get("content_sha256"), "count": info.get("count")}
    files.write_atomic(workdir / DATA_FILE, json.dumps(record, indent=2) + "\n")
    ckpt_lib.write_model_config(workdir, config.model)


def _fixed_codes(config: TrainConfig, workdir: pathlib.Path) -> np.ndarray:
    path = workdir / FIXED_CODES_FILE
    if path.exists():
        return np.load(path)
    codes = (
        np.random.default_rng([config.seed, 1])
        .standard_normal((config.num_fixed_codes, config.model.code_size))
        .astype(np.float32)
    )
    if jax.process_index() == 0:
        np.save(path, codes)
    return codes


class Trainer:
    """Owns the state of one run; ``run()`` trains to ``config.iterations`` and returns a summary."""

    def __init__(self, config: TrainConfig, workdir, *, overwrite: bool = False):
        self.config = config
        self.workdir = pathlib.Path(workdir).absolute()
        self.is_main = jax.process_index() == 0
        data_changed = check_workdir(config, self.workdir, overwrite)
        model = config.model
        self.dataset = data.load(
            config.data,
            model.image_size,
            channels=model.channels,
            cache_dir=config.cache_dir or None,
            data_dir=config.data_dir or None,
            final_test=config.final_test,
            running_test=config.running_test,
            split_seed=config.split_seed,
            progress=config.progress_bar and self.is_main,
        )
        if len(self.dataset.train) < config.batch_size:
            raise DataError(
                f"{config.data} has {len(self.dataset.train)} training images, fewer than one "
                f"batch of {config.batch_size}"
            )
        if data_changed:
            check_same_data(config, self.workdir, self.dataset.info, overwrite)
        self._check_history(overwrite)
        write_workdir(
            config, self.workdir, self.dataset.info
        )  # only once the data is there: a failed start leaves nothing
        self.mesh = sharding.make_mesh()
        self.step_fn = make_train_step(config, self.mesh)
        self.checkpoints = ckpt_lib.Checkpoints(self.workdir, keep_period=config.keep_every)
        self.metrics = MetricsWriter(self.workdir, enabled=self.is_main)
        self.fixed_codes = _fixed_codes(config, self.workdir)
        codes = record_lib.record_codes(config.record_codes, model.code_size, config.seed)
        self.record = record_lib.RecordWriter(self.workdir, codes, enabled=self.is_main and config.record_codes > 0)
        self.generator = model.generator()
        self._sample = jax.jit(lambda v, z: self.generator.apply(v, z, train=False))
        if config.fid_every:  # the weights and the reference features once, before the first iteration
            self.inception = inception.load_weights(config.inception_weights or None)
            self.fid_reference = fid.dataset_reference(self.dataset, self.inception, num=config.fid_reference)
        self.meta = CheckpointMeta()
        self._best_generator = None  # host copy of the best generator's variables once this run has seen it
        self._restore_or_init()

    # State ----------------------------------------------------------------------------------------------
    def _key(self):
        return run_key(self.config.seed, self.meta.rollbacks, self.mesh)

    def _restore_or_init(self) -> None:
        if self.checkpoints.latest_step("last") is None:
            key = jax.random.fold_in(jax.random.key(self.config.seed), self.meta.rollbacks)
            self.state = sharding.replicate(init_state(self.config, key), self.mesh)
            self.meta = CheckpointMeta(rollbacks=self.meta.rollbacks)
        else:
            replicated = sharding.replicated(self.mesh)
            abstract = jax.tree.map(  # restored straight into the replicated layout, whatever saved it
                lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
                jax.eval_shape(functools.partial(init_state, self.config), jax.random.key(0)),
            )
            restored = self.checkpoints.restore(
                "last",
                models={"generator": abstract["generator"], "discriminator": abstract["discriminator"]},
                train={"g_opt": abstract["g_opt"], "d_opt": abstract["d_opt"]},
                with_train=True,
            )
            rollbacks = self.meta.rollbacks
            self.meta = CheckpointMeta.from_dict(restored["meta"])
            self.meta.rollbacks = max(rollbacks, self.meta.rollbacks)
            step = sharding.replicate(jnp.asarray(self.meta.iteration, jnp.int32), self.mesh)
            self.state = dict(restored["models"]) | dict(restored["train"]) | {"step": step}
            self._complete_best(restored["models"])
        self.batches = data.BatchIterator(
            self.dataset.train, self.config.batch_size, seed=self.config.seed, state=self.meta.data
        )
        self.metrics.resume_at(self.meta.iteration, self.meta.row)
        self.record.truncate_after(self.meta.iteration)

    def _complete_best(self, models) -> None:
        """A crash between the ``last`` and the ``best`` save of a new best leaves ``best`` one generator behind
        the meta that ``last`` holds; ``last`` has that generator (same iteration), so it is saved as ``best``."""
        best = self.meta.best_iteration
        if best == self.meta.iteration and best not in self.checkpoints.steps("best"):
            logging.warning("%s: completing the best checkpoint of iteration %d from the last one", self.workdir, best)
            self.checkpoints.save_best(best, models, self.meta.to_dict())

    def _check_history(self, overwrite: bool) -> None:
        """A run directory with history (a best checkpoint, running-test records, a final test) but no
        ``last`` checkpoint to resume from is an error, not a silent restart that would replace that history."""
        last = self.workdir / "checkpoints" / "last"
        if last.is_dir() and any(p.name.isdigit() for p in last.iterdir()):
            return
        best = self.workdir / "checkpoints" / "best"
        history = [str(p.relative_to(self.workdir)) for p in best.glob("[0-9]*")] if best.is_dir() else []
        if any("test_loss" in r for r in metrics_lib.records(self.workdir)):
            history.append("metrics.jsonl with running-test losses")
        if (self.workdir / FINAL_TEST_DIR).is_dir():
            history.append(FINAL_TEST_DIR)
        if not history:
            return
        if not overwrite:
            raise WorkdirConflict(
                f"{self.workdir} holds a run's history ({', '.join(sorted(history))}) but no checkpoint in "
                f"{last} to resume from. Restore that checkpoint, use another --workdir, or pass --overwrite to "
                "start this run over (discarding that history)."
            )
        if self.is_main:
            _clear(self.workdir)

    def _save(self, best: bool) -> None:
        self.meta.data = self.batches.state()
        models = {"generator": self.state["generator"], "discriminator": self.state["discriminator"]}
        train = {"g_opt": self.state["g_opt"], "d_opt": self.state["d_opt"]}
        self.checkpoints.save(self.meta.iteration, models, self.meta.to_dict(), train=train, best=best)
        if best:
            self._best_generator = jax.device_get(sharding.local_copy(self.state["generator"]))

    def _roll_back(self, iteration: int) -> None:
        self.meta.rollbacks += 1
        consecutive = self.meta.rollbacks - self._rollbacks_at_checkpoint
        if consecutive > self.config.max_rollbacks:
            raise TrainingDiverged(
                f"the loss became non-finite {consecutive} times in a row (last at iteration {iteration}) "
                f"although every time the run went back to its last checkpoint. Lower --lr, try another "
                f"--seed, or another --norm."
            )
        logging.warning(
            "non-finite loss by iteration %d: rolling back to the last checkpoint (%d rollbacks so far)",
            iteration,
            self.meta.rollbacks,
        )
        self.metrics.write(iteration, {"rollbacks": self.meta.rollbacks})
        self.batches.close()
        self._restore_or_init()

    # Periodic work --------------------------------------------------------------------------------------
    def running_test(self) -> float:
        """50-step reconstruction loss on the running test set (paper §4, §5.1)."""
        # Over the run's mesh: with several processes each evaluates its share of the samples.
        result = reconstruction.reconstruct(
            reconstruction.generator_fn(self.generator, self.state["generator"]),
            self.dataset.running_test,
            steps=self.config.test_steps,
            authors_batch=self.config.batch_size,
            mesh=self.mesh,
            return_reconstructions=True,
        )
        n = TENSORBOARD_PAIRS
        pairs = visualize.grid(visualize.pairs(self.dataset.running_test[:n], result.reconstructions[:n]))
        self.metrics.image("running_test_pairs", pairs, self.meta.iteration)
        return float(result.mean_loss)

    def sample_fid(self) -> float:
        """FID of ``fid_samples`` images from fixed codes against the training images (docs/metrics.md)."""
        cfg = self.config
        codes = sample.normal_codes(cfg.fid_samples, cfg.model.code_size, cfg.seed)
        images = sample.generate_batches(cfg.model, sharding.local_copy(self.state["generator"]), codes)
        return fid.sample_metrics(images, self.fid_reference, self.inception, ("fid",))["fid"]

    def save_samples(self) -> None:
        generator = sharding.local_copy(self.state["generator"])
        images = np.asarray(jax.device_get(self._sample(generator, self.fixed_codes)))
        if self.is_main:
            grid = visualize.grid(images)
            visualize.save_png(grid, self.workdir / "samples" / f"iter_{self.meta.iteration:07d}.png")
            self.metrics.image("samples", grid, self.meta.iteration)

    def save_record(self) -> None:
        """The dense fixed-code record (wngan_jax/record.py)."""
        generator = sharding.local_copy(self.state["generator"])
        images = np.asarray(jax.device_get(self._sample(generator, self.record.codes)))
        self.record.write(self.meta.iteration, images)

    # Loop -----------------------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.config
        self._rollbacks_at_checkpoint = self.meta.rollbacks
        bar = _progress_bar(cfg, self.meta.iteration, self.is_main)
        pending, t0 = [], time.perf_counter()
        key = self._key()
        while self.meta.iteration < cfg.iterations:
            batch = sharding.shard_batch(next(self.batches), self.mesh)
            self.state, step_metrics = self.step_fn(self.state, batch, key)
            pending.append(step_metrics)
            it = self.meta.iteration + 1
            test_now = it % cfg.test_every == 0 or it == cfg.iterations
            keep_now = it % cfg.keep_every == 0
            sample_now = it % cfg.sample_every == 0 or it == cfg.iterations
            fid_now = cfg.fid_every > 0 and it % cfg.fid_every == 0
            record_now = cfg.record_codes > 0 and it % cfg.record_every == 0
            if not (test_now or keep_now or sample_now or fid_now or record_now or it % cfg.log_every == 0):
                self.meta.iteration = it
                continue
            fetched = jax.device_get(pending)  # the only host synchronisation: every log_every iterations
            pending = []
            if not all(m["finite"] for m in fetched):
                self._roll_back(it)
                key = self._key()
                bar.n = self.meta.iteration
                continue
            self.meta.iteration = it
            scalars = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0] if k != "finite"}
            scalars["iterations_per_s"] = len(fetched) / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            if test_now:
                loss = self.running_test()
                self.meta.last_test_loss = scalars["test_loss"] = loss
            best = test_now and (self.meta.best_loss is None or loss < self.meta.best_loss)
            if best:
                self.meta.best_loss, self.meta.best_iteration = loss, it
            if fid_now:
                scalars["fid"] = self.sample_fid()
            if test_now or keep_now:  # the checkpoint carries this iteration's record (``resume_at``)
                self.meta.row = scalars
                self._save(best)
                self._rollbacks_at_checkpoint = self.meta.rollbacks
            if sample_now:
                self.save_samples()
            if record_now:
                self.save_record()
            self.metrics.write(it, scalars)
            bar.update(it - bar.n)
            bar.set_postfix(_postfix(scalars, self.meta), refresh=False)
        bar.close()
        self.batches.close()
        summary = self.meta.to_dict() | {"workdir": str(self.workdir)}
        summary.pop("data")
        if cfg.final_test_samples > 0 and cfg.final_test_steps > 0:
            summary["final_test"] = self.final_test()
        self.checkpoints.close()
        self.metrics.close()
        return summary

    def best_generator(self):
        """The best generator's variables: kept in memory since it was saved, or read from ``checkpoints/best``."""
        if self._best_generator is None:
            self._best_generator = self.checkpoints.restore("best")["models"]["generator"]
        return self._best_generator

    def final_test(self) -> dict:
        """The paper's final evaluation (§5.1, Tables 6-7): the best generator and, "in case it converges with a
        much worse 50-step loss than at its optimal iteration", the last one, ``final_test_steps`` steps each on
        the first ``final_test_samples`` final-test images. ``final_test/report.json`` holds the best's report
        with the last's under ``"last"``; returns ``{"best": {...}, "last": {...}}`` (loss, iteration, ...)."""
        cfg = self.config
        targets = self.dataset.final_test[: cfg.final_test_samples]
        out = self.workdir / FINAL_TEST_DIR
        generators = {"best": (self.meta.best_iteration, self.best_generator())}
        if self.meta.best_iteration != self.meta.iteration:
            generators["last"] = (self.meta.iteration, self.state["generator"])
        reports, results = {}, {}
        for which, (iteration, variables) in generators.items():
            report, result = evaluation.evaluate(
                cfg.model,
                variables,
                targets,
                steps=cfg.final_test_steps,
                batch_size=cfg.batch_size,
                progress=cfg.progress_bar and self.is_main,
                mesh=self.mesh,
            )
            report |= {"which": which, "iteration": iteration, "targets": f"data:{cfg.data} final test"}
            reports[which], results[which] = report, result
        reports.setdefault("last", reports["best"] | {"which": "last", "same_as_best": True})
        if self.is_main:
            if "last" in results:
                evaluation.write_outputs(out / "last", reports["last"], results["last"], targets)
            evaluation.write_outputs(out, reports["best"] | {"last": reports["last"]}, results["best"], targets)
        keys = ("mean_loss", "iteration", "steps", "samples", "loss_curve")
        return {which: {k: r[k] for k in keys} for which, r in reports.items()}


def _progress_bar(config: TrainConfig, start: int, enabled: bool):
    return tqdm(
        total=config.iterations,
        initial=start,
        disable=not (enabled and config.progress_bar),
        desc=f"{config.norm} {config.model.image_size[0]}x{config.model.image_size[1]}",
        unit="it",
        dynamic_ncols=True,
    )


def _postfix(scalars: dict, meta: CheckpointMeta) -> dict:
    out = {"D": f"{scalars['d_loss']:.3f}", "G": f"{scalars['g_loss']:.3f}"}
    if meta.last_test_loss is not None:
        out["test"] = f"{meta.last_test_loss:.5f}"
    return out


def train_and_evaluate(config: TrainConfig, workdir, *, overwrite: bool = False) -> dict:
    """Train (or resume) one run in ``workdir`` and return its summary (best iteration/loss, final tests).

    The run directory is locked for the whole call: a second process started on it is refused."""
    with locks.hold_run(workdir, enabled=jax.process_index() == 0):
        return Trainer(config, workdir, overwrite=overwrite).run()
