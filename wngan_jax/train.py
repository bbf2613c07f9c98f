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
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from wngan_jax import checkpoint as ckpt_lib
from wngan_jax import data, reconstruction, visualize
from wngan_jax import record as record_lib
from wngan_jax.config import TrainConfig
from wngan_jax.metrics import MetricsWriter
from wngan_jax.train_step import init_state, make_mesh, make_train_step, replicate, run_key

CONFIG_FILE = "config.json"
FIXED_CODES_FILE = "fixed_codes.npy"
TENSORBOARD_PAIRS = 16  # running-test (target | reconstruction) pairs shown in TensorBoard


class TrainingDiverged(RuntimeError):
    """The loss stayed non-finite after the allowed number of rollbacks."""


class WorkdirConflict(RuntimeError):
    """The work directory holds a run with a different configuration."""


@dataclasses.dataclass
class Progress:
    """What a checkpoint's ``meta`` records besides the arrays."""

    iteration: int = 0
    best_loss: float | None = None
    best_iteration: int | None = None
    last_test_loss: float | None = None
    nan_events: int = 0
    data: dict | None = None

    def to_meta(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_meta(cls, meta: dict) -> Progress:
        return cls(**{f.name: meta.get(f.name) for f in dataclasses.fields(cls) if f.name in meta})


def check_workdir(config: TrainConfig, workdir: pathlib.Path, overwrite: bool) -> None:
    """Refuse a ``workdir`` that holds a run with another config (discard it when ``overwrite``)."""
    path = workdir / CONFIG_FILE
    if not path.exists():
        return
    diff = TrainConfig.from_dict(json.loads(path.read_text())).differences(config)
    if diff and not overwrite:
        lines = "\n".join(f"  {k}: {a!r} in the workdir, {b!r} now" for k, (a, b) in sorted(diff.items()))
        raise WorkdirConflict(
            f"{workdir} holds a run with a different config:\n{lines}\n"
            "Use another --workdir, or pass --overwrite to discard that run."
        )
    if diff and jax.process_index() == 0:
        import shutil

        shutil.rmtree(workdir)


def write_workdir(config: TrainConfig, workdir: pathlib.Path) -> None:
    """The run's config and model config, written atomically (process 0 only)."""
    if jax.process_index() != 0:
        return
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = workdir / (CONFIG_FILE + ".tmp")
    tmp.write_text(config.to_json())
    tmp.replace(workdir / CONFIG_FILE)
    ckpt_lib.write_model_config(workdir, config.model)


def _fixed_codes(config: TrainConfig, workdir: pathlib.Path) -> np.ndarray:
    path = workdir / FIXED_CODES_FILE
    if path.exists():
        return np.load(path)
    codes = (
        np.random.default_rng([config.seed, 1])
        .standard_normal((config.num_fixed_codes, config.code_size))
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
        check_workdir(config, self.workdir, overwrite)
        self.dataset = data.load(
            config.data,
            config.image_size,
            channels=config.channels,
            cache_dir=config.cache_dir or None,
            data_dir=config.data_dir or None,
            final_test=config.final_test,
            running_test=config.running_test,
            split_seed=config.split_seed,
            progress=config.progress and self.is_main,
        )
        if len(self.dataset.train) < config.batch_size:
            raise ValueError(
                f"{config.data} has {len(self.dataset.train)} training images, fewer than one "
                f"batch of {config.batch_size}"
            )
        write_workdir(config, self.workdir)  # only once the data is there: a failed start leaves nothing
        self.mesh = make_mesh()
        self.step_fn = make_train_step(config, self.mesh)
        self.checkpoints = ckpt_lib.Checkpoints(self.workdir, keep_period=config.keep_every)
        self.metrics = MetricsWriter(self.workdir, enabled=self.is_main)
        self.fixed_codes = _fixed_codes(config, self.workdir)
        codes = record_lib.record_codes(config.record_codes, config.code_size, config.seed)
        self.record = record_lib.RecordWriter(self.workdir, codes, enabled=self.is_main and config.record_codes > 0)
        self.generator = config.model.generator()
        self._sample = jax.jit(lambda v, z: self.generator.apply(v, z, train=False))
        self.progress = Progress()
        self._restore_or_init()

    # State ----------------------------------------------------------------------------------------------
    def _key(self):
        return run_key(self.config.seed, self.progress.nan_events, self.mesh)

    def _restore_or_init(self) -> None:
        if self.checkpoints.latest_step("last") is None:
            key = jax.random.fold_in(jax.random.key(self.config.seed), self.progress.nan_events)
            self.state = replicate(init_state(self.config, key), self.mesh)
            self.progress = Progress(nan_events=self.progress.nan_events)
        else:
            replicated = NamedSharding(self.mesh, PartitionSpec())
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
            nan_events = self.progress.nan_events
            self.progress = Progress.from_meta(restored["meta"])
            self.progress.nan_events = max(nan_events, self.progress.nan_events)
            step = replicate(jnp.asarray(self.progress.iteration, jnp.int32), self.mesh)
            self.state = dict(restored["models"]) | dict(restored["train"]) | {"step": step}
        self.batches = data.BatchIterator(
            self.dataset.train, self.config.batch_size, seed=self.config.seed, state=self.progress.data
        )
        self.metrics.truncate_after(self.progress.iteration)
        self.record.truncate_after(self.progress.iteration)

    def _save(self, best: bool) -> None:
        self.progress.data = self.batches.state()
        models = {"generator": self.state["generator"], "discriminator": self.state["discriminator"]}
        train = {"g_opt": self.state["g_opt"], "d_opt": self.state["d_opt"]}
        self.checkpoints.save(self.progress.iteration, models, self.progress.to_meta(), train=train, best=best)

    def _roll_back(self, iteration: int) -> None:
        self.progress.nan_events += 1
        consecutive = self.progress.nan_events - self._nan_events_at_checkpoint
        if consecutive > self.config.max_nan_restarts:
            raise TrainingDiverged(
                f"the loss became non-finite {consecutive} times in a row (last at iteration {iteration}) "
                f"although every time the run went back to its last checkpoint. Lower --lr, try another "
                f"--seed, or another --norm."
            )
        logging.warning(
            "non-finite loss by iteration %d: rolling back to the last checkpoint (%d so far)",
            iteration,
            self.progress.nan_events,
        )
        self.metrics.write(iteration, {"nan_rollbacks": self.progress.nan_events})
        self.batches.close()
        self._restore_or_init()

    # Periodic work --------------------------------------------------------------------------------------
    def _local_generator(self):
        """The generator's variables on this process's devices (for the sample grids, which are small)."""
        if jax.process_count() == 1:
            return self.state["generator"]
        return jax.tree.map(lambda a: a.addressable_data(0), self.state["generator"])

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
        self.metrics.image("running_test_pairs", pairs, self.progress.iteration)
        return float(result.mean_loss)

    def save_samples(self) -> None:
        images = np.asarray(jax.device_get(self._sample(self._local_generator(), self.fixed_codes)))
        if self.is_main:
            grid = visualize.grid(images)
            visualize.save_png(grid, self.workdir / "samples" / f"iter_{self.progress.iteration:07d}.png")
            self.metrics.image("samples", grid, self.progress.iteration)

    def save_record(self) -> None:
        """The dense fixed-code record (wngan_jax/record.py)."""
        images = np.asarray(jax.device_get(self._sample(self._local_generator(), self.record.codes)))
        self.record.write(self.progress.iteration, images)

    # Loop -----------------------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.config
        self._nan_events_at_checkpoint = self.progress.nan_events
        bar = _progress_bar(cfg, self.progress.iteration, self.is_main)
        pending, t0 = [], time.perf_counter()
        key = self._key()
        while self.progress.iteration < cfg.iterations:
            batch = data.shard_batch(next(self.batches), self.mesh)
            self.state, step_metrics = self.step_fn(self.state, batch, key)
            pending.append(step_metrics)
            it = self.progress.iteration + 1
            test_now = it % cfg.test_every == 0 or it == cfg.iterations
            keep_now = it % cfg.keep_every == 0
            sample_now = it % cfg.sample_every == 0 or it == cfg.iterations
            record_now = cfg.record_codes > 0 and it % cfg.record_every == 0
            if not (test_now or keep_now or sample_now or record_now or it % cfg.log_every == 0):
                self.progress.iteration = it
                continue
            fetched = jax.device_get(pending)  # the only host synchronisation: every log_every iterations
            pending = []
            if not all(m["finite"] for m in fetched):
                self._roll_back(it)
                key = self._key()
                bar.n = self.progress.iteration
                continue
            self.progress.iteration = it
            scalars = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0] if k != "finite"}
            scalars["iterations_per_s"] = len(fetched) / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            if test_now:
                loss = self.running_test()
                self.progress.last_test_loss = scalars["test_loss"] = loss
            best = test_now and (self.progress.best_loss is None or loss < self.progress.best_loss)
            if best:
                self.progress.best_loss, self.progress.best_iteration = loss, it
            if test_now or keep_now:
                self._save(best)
                self._nan_events_at_checkpoint = self.progress.nan_events
            if sample_now:
                self.save_samples()
            if record_now:
                self.save_record()
            self.metrics.write(it, scalars)
            bar.update(it - bar.n)
            bar.set_postfix(_postfix(scalars, self.progress), refresh=False)
        bar.close()
        self.batches.close()
        summary = self.progress.to_meta() | {"workdir": str(self.workdir)}
        summary.pop("data")
        if cfg.final_test_samples > 0 and cfg.final_test_steps > 0:
            summary["final_test"] = self.final_test()
        self.checkpoints.close()
        self.metrics.close()
        return summary

    def final_test(self) -> dict:
        """The paper's final evaluation: the best generator, ``final_test_steps`` steps on the final test set."""
        from wngan_jax import eval as eval_lib

        report_dir = self.workdir / "final_test"
        targets = self.dataset.final_test[: self.config.final_test_samples]
        report = eval_lib.evaluate_checkpoint(
            self.workdir,
            targets,
            which="best",
            steps=self.config.final_test_steps,
            out=report_dir,
            batch_size=self.config.batch_size,
            targets_name=f"data:{self.config.data} final test",
            progress=self.config.progress and self.is_main,
        )
        return {k: report[k] for k in ("mean_loss", "iteration", "steps", "samples")}


def _progress_bar(config: TrainConfig, start: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=config.iterations,
        initial=start,
        disable=not (enabled and config.progress),
        desc=f"{config.norm} {config.image_size[0]}x{config.image_size[1]}",
        unit="it",
        dynamic_ncols=True,
    )


def _postfix(scalars: dict, progress: Progress) -> dict:
    out = {"D": f"{scalars['d_loss']:.3f}", "G": f"{scalars['g_loss']:.3f}"}
    if progress.last_test_loss is not None:
        out["test"] = f"{progress.last_test_loss:.5f}"
    return out


def train_and_evaluate(config: TrainConfig, workdir, *, overwrite: bool = False) -> dict:
    """Train (or resume) one run in ``workdir`` and return its summary (best iteration/loss, final test)."""
    return Trainer(config, workdir, overwrite=overwrite).run()
