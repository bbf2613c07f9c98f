"""The training loop (paper §5.1): data -> jitted step -> periodic work -> the final test.

``train_and_evaluate(config, workdir)`` runs or resumes one experiment. Resuming restores parameters,
optimizer states, the data position, the best-so-far and the random stream, so an interrupted and resumed
run ends with the same parameters as an uninterrupted one. A non-finite loss rolls the run back to its last
checkpoint (the paper: the WN model "might fail in the first handful of iterations ... just restart").

Who does what: ``rundir.RunDirectory`` (the run's identity, history and lock), ``periodic`` (running test, FID,
checkpoints, sample grids, the fixed-code record, each with its schedule), ``evaluation.final_test``, and here
the state: initialisation or restore, the loop, rollbacks.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from wngan_jax import checkpoint, data, evaluation, generation, periodic, sharding
from wngan_jax import metrics as metrics_lib
from wngan_jax import record as record_lib
from wngan_jax.config import TrainConfig
from wngan_jax.errors import DataError, TrainingDiverged
from wngan_jax.rundir import FINAL_TEST_DIR, RunDirectory
from wngan_jax.train_step import MODELS, init_state, make_train_step, run_key


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


def load_data(config: TrainConfig, *, progress: bool) -> data.Dataset:
    """The run's dataset at the model's size, split as the config says; at least one batch of training images."""
    model = config.model
    dataset = data.load(
        config.data,
        model.image_size,
        channels=model.channels,
        cache_dir=config.cache_dir or None,
        data_dir=config.data_dir or None,
        final_test=config.final_test,
        running_test=config.running_test,
        split_seed=config.split_seed,
        progress=progress,
    )
    if len(dataset.train) < config.batch_size:
        raise DataError(
            f"{config.data} has {len(dataset.train)} training images, fewer than one batch of {config.batch_size}"
        )
    return dataset


class Trainer:
    """One run: ``Trainer.open(config, workdir)`` checks the run directory, loads the data and restores (or
    initialises) the state; ``run()`` trains to ``config.iterations`` and returns a summary."""

    def __init__(self, config: TrainConfig, run_dir: RunDirectory, dataset: data.Dataset):
        self.config, self.run_dir, self.dataset = config, run_dir, dataset
        self.mesh = sharding.make_mesh()
        self.step_fn = make_train_step(config, self.mesh)
        self.generator = config.model.generator()
        self.sample_fn = generation.inference(config.model)
        self.checkpoints = checkpoint.Checkpoints(run_dir.path, keep_period=config.keep_every)
        self.metrics = metrics_lib.MetricsWriter(run_dir.path, enabled=run_dir.is_main)
        self.fixed_codes = run_dir.fixed_codes(config)
        record_codes = record_lib.record_codes(config.record_codes, config.model.code_size, config.seed)
        record = record_lib.RecordWriter(
            run_dir.path, record_codes, enabled=run_dir.is_main and config.record_codes > 0
        )
        end = config.iterations
        self.actions = [  # in the order they run after an iteration (wngan_jax/periodic.py)
            periodic.RunningTest(config.test_every, last=end),
            periodic.SampleQuality(config.fid_every, config, dataset),
            periodic.Checkpointing(config.test_every, config.keep_every, last=end),
            periodic.SampleGrids(config.sample_every, last=end),
            periodic.FixedCodeRecord(config.record_every if config.record_codes > 0 else 0, record),
        ]
        self.record = record
        self.meta = CheckpointMeta()
        # Host copies of the best iteration's generators (raw, and averaged with --ema_decay) once seen.
        self._best_generators: dict | None = None
        self.restore_or_init()
        self.rollbacks_at_checkpoint = self.meta.rollbacks  # consecutive rollbacks count from here

    @classmethod
    def open(cls, config: TrainConfig, workdir, *, overwrite: bool = False) -> Trainer:
        """Check ``workdir`` against ``config`` (docs/reliability.md), load the data, record the run's identity
        (only once the data is there: a failed start leaves nothing) and restore or initialise the state."""
        run_dir = RunDirectory(workdir)
        data_changed = run_dir.check_config(config, overwrite)
        dataset = load_data(config, progress=config.progress_bar and run_dir.is_main)
        if data_changed:
            run_dir.check_data(config, dataset.info, overwrite)
        run_dir.check_history(overwrite)
        run_dir.write_identity(config, dataset.info)
        return cls(config, run_dir, dataset)

    # State ----------------------------------------------------------------------------------------------
    def restore_or_init(self) -> None:
        """The state of the newest ``last`` checkpoint, or a fresh one (paper §5.1 init) from the seed and the
        number of rollbacks so far; then the batch iterator, the metrics and the record at that iteration."""
        rollbacks = self.meta.rollbacks
        if self.checkpoints.latest_step("last") is None:
            key = jax.random.fold_in(jax.random.key(self.config.seed), rollbacks)
            self.state = sharding.replicate(init_state(self.config, key), self.mesh)
            self.meta = CheckpointMeta(rollbacks=rollbacks)
        else:
            replicated = sharding.replicated(self.mesh)
            abstract = jax.tree.map(  # restored straight into the replicated layout, whatever saved it
                lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
                jax.eval_shape(functools.partial(init_state, self.config), jax.random.key(0)),
            )
            restored = self.checkpoints.restore(
                "last",
                models=_models(abstract),
                train={"g_opt": abstract["g_opt"], "d_opt": abstract["d_opt"]},
                with_train=True,
            )
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
            logging.warning(
                "%s: completing the best checkpoint of iteration %d from the last one", self.run_dir.path, best
            )
            self.checkpoints.save_best(best, models, self.meta.to_dict())

    def save(self, best: bool) -> None:
        """``last`` (with the optimizer states and the data position) and, with ``best``, ``best``."""
        self.meta.data = self.batches.state()
        models = _models(self.state)
        train = {"g_opt": self.state["g_opt"], "d_opt": self.state["d_opt"]}
        self.checkpoints.save(self.meta.iteration, models, self.meta.to_dict(), train=train, best=best)
        self.rollbacks_at_checkpoint = self.meta.rollbacks
        if best:
            self._best_generators = {
                k: jax.device_get(sharding.local_copy(v)) for k, v in models.items() if k != "discriminator"
            }

    def roll_back(self, iteration: int) -> None:
        """After a non-finite loss by ``iteration``: back to the last checkpoint, with a new random stream."""
        self.meta.rollbacks += 1
        consecutive = self.meta.rollbacks - self.rollbacks_at_checkpoint
        if consecutive > self.config.max_rollbacks:
            raise TrainingDiverged(
                f"the loss became non-finite {consecutive} times in a row (last at iteration {iteration}) "
                f"although every time the run went back to its last checkpoint. Lower --lr, try another "
                f"--seed, or another --norm.",
                iteration=iteration,
            )
        logging.warning(
            "non-finite loss by iteration %d: rolling back to the last checkpoint (%d rollbacks so far)",
            iteration,
            self.meta.rollbacks,
        )
        self.metrics.write(iteration, {"rollbacks": self.meta.rollbacks})
        self.batches.close()
        self.restore_or_init()

    def sample(self, codes) -> np.ndarray:
        """The current generator's images of ``codes`` (inference mode), on the host."""
        generator = sharding.local_copy(self.state["generator"])
        return np.asarray(jax.device_get(self.sample_fn(generator, codes)))

    def generators(self) -> dict:
        """The current generators: ``{"raw": variables}``, and ``"ema"`` (the average) with ``--ema_decay``."""
        out = {"raw": self.state["generator"]}
        if "generator_ema" in self.state:
            out["ema"] = self.state["generator_ema"]
        return out

    def best_generator(self, *, ema: bool = False):
        """The best iteration's generator (with ``ema`` and ``--ema_decay``, the average at the iteration the raw
        generator's running test chose; ``checkpoint.generator_variables``): kept in memory since it was saved,
        or read from ``checkpoints/best``."""
        if self._best_generators is None:
            self._best_generators = dict(self.checkpoints.restore("best")["models"])
        return checkpoint.generator_variables(self._best_generators, ema=ema)

    # Loop -----------------------------------------------------------------------------------------------
    def run(self) -> dict:
        """Train from the restored iteration to ``config.iterations`` (paper §5.1), then the final test.

        The host waits for the device only where something is due: every ``log_every`` iterations and where a
        periodic action runs. There the losses are checked (a non-finite one rolls back), averaged into the
        iteration's metrics row, the due actions run, and the row is written."""
        cfg = self.config
        bar = _progress_bar(cfg, self.meta.iteration, self.run_dir.is_main)
        pending, t0, key = [], time.perf_counter(), self._key()
        while self.meta.iteration < cfg.iterations:
            batch = sharding.shard_batch(next(self.batches), self.mesh)
            self.state, step_metrics = self.step_fn(self.state, batch, key)
            pending.append(step_metrics)
            iteration = self.meta.iteration + 1
            due = [action for action in self.actions if action.due(iteration)]
            if not due and iteration % cfg.log_every:
                self.meta.iteration = iteration
                continue
            fetched, pending = jax.device_get(pending), []
            if not all(m["finite"] for m in fetched):
                self.roll_back(iteration)
                key, bar.n = self._key(), self.meta.iteration
                continue
            self.meta.iteration = iteration
            scalars = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0] if k != "finite"}
            scalars["iterations_per_s"] = len(fetched) / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for action in due:
                action(self, scalars)
            self.metrics.write(iteration, scalars)
            bar.update(iteration - bar.n)
            bar.set_postfix(_postfix(scalars, self.meta), refresh=False)
        bar.close()
        self.batches.close()
        summary = self.meta.to_dict() | {"workdir": str(self.run_dir.path)}
        summary.pop("data")
        if cfg.final_test_samples > 0 and cfg.final_test_steps > 0:
            summary["final_test"] = self.final_test()
        self.checkpoints.close()
        self.metrics.close()
        return summary

    def _key(self):
        return run_key(self.config.seed, self.meta.rollbacks, self.mesh)

    def final_test(self) -> dict:
        """``evaluation.final_test`` of the best and the last generator on the first ``final_test_samples``
        final-test images, written to ``RUN/final_test/``; with ``--ema_decay`` also the averaged generator of
        the best iteration (``ema``) and of the last (``ema_last``)."""
        cfg = self.config
        best, last = self.meta.best_iteration, self.meta.iteration
        generators = {"best": (best, self.best_generator())}
        if best != last:
            generators["last"] = (last, self.state["generator"])
        if "generator_ema" in self.state:
            generators["ema"] = (best, self.best_generator(ema=True))
            if best != last:
                generators["ema_last"] = (last, self.state["generator_ema"])
        return evaluation.final_test(
            cfg.model,
            generators,
            self.dataset.final_test[: cfg.final_test_samples],
            self.run_dir.path / FINAL_TEST_DIR,
            steps=cfg.final_test_steps,
            batch_size=cfg.batch_size,
            targets_name=f"data:{cfg.data} final test",
            progress=cfg.progress_bar and self.run_dir.is_main,
            mesh=self.mesh,
            write=self.run_dir.is_main,
        )


def _models(state) -> dict:
    """The networks of a train state (``train_step.MODELS`` that it holds), as a checkpoint's ``models``."""
    return {k: state[k] for k in MODELS if k in state}


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
    with RunDirectory(workdir).lock():
        return Trainer.open(config, workdir, overwrite=overwrite).run()
