"""The training loop's periodic work (paper §5.1), one action per job, each owning its schedule.

The loop (``wngan_jax/train.py``) runs the actions that are due after an iteration, in this order, once the
iteration's losses were fetched and found finite:

* ``RunningTest`` (every ``test_every`` and at the end): the 50-step reconstruction loss of the running test set
  (paper §4), which picks the best generator;
* ``SampleQuality`` (every ``fid_every``): FID of generated images (docs/metrics.md);

these two measure the averaged generator too when the run keeps one (``--ema_decay``: ``ema_test_loss``,
``ema_fid``), which never picks the best iteration (the paper's selection stays the raw generator's);
* ``Checkpointing`` (with every running test, and every ``keep_every``): ``last``, and ``best`` when the test just
  run is the best so far; the checkpoint carries this iteration's metrics row;
* ``SampleGrids`` (every ``sample_every`` and at the end): the fixed codes' samples as a PNG and in TensorBoard;
* ``FixedCodeRecord`` (every ``record_every``): the dense record of docs/study.md (``wngan_jax/record.py``).

An action reads the run it serves (``Trainer``: config, state, meta, data, writers) and adds what it measured
to the iteration's metrics row (``scalars``).
"""

from __future__ import annotations

import abc

from wngan_jax import evaluation, fid, reconstruction, sharding, visualize
from wngan_jax import record as record_lib
from wngan_jax.rundir import SAMPLES_DIR

TENSORBOARD_PAIRS = 16  # running-test (target | reconstruction) pairs shown in TensorBoard


class PeriodicAction(abc.ABC):
    """Runs every ``every`` iterations (never when 0) and, when ``last`` is given, at that iteration."""

    def __init__(self, every: int, *, last: int | None = None):
        self.every, self.last = every, last

    def due(self, iteration: int) -> bool:
        return (self.every > 0 and iteration % self.every == 0) or iteration == self.last

    @abc.abstractmethod
    def __call__(self, trainer, scalars: dict) -> None:
        """Do the work of iteration ``trainer.meta.iteration``; add what was measured to ``scalars``."""


class RunningTest(PeriodicAction):
    """The running test (paper §4, §5.1): ``test_steps`` reconstruction steps on the running test set; the
    lowest loss so far marks the best generator (``meta.best_iteration``)."""

    def __call__(self, trainer, scalars: dict) -> None:
        targets = trainer.dataset.running_test
        for name, variables in trainer.generators().items():
            # Over the run's mesh: with several processes each evaluates its share of the samples.
            result = reconstruction.reconstruct(
                reconstruction.generator_fn(trainer.generator, variables),
                targets,
                steps=trainer.config.test_steps,
                authors_batch=trainer.config.batch_size,
                mesh=trainer.mesh,
                return_reconstructions=name == "raw",
            )
            scalars[_scalar("test_loss", name)] = float(result.mean_loss)
            if name == "raw":
                shown = slice(TENSORBOARD_PAIRS)
                pairs = visualize.grid(visualize.pairs(targets[shown], result.reconstructions[shown]))
                trainer.metrics.image("running_test_pairs", pairs, trainer.meta.iteration)
        meta, loss = trainer.meta, scalars["test_loss"]
        meta.last_test_loss = loss
        if meta.best_loss is None or loss < meta.best_loss:
            meta.best_loss, meta.best_iteration = loss, meta.iteration


class SampleQuality(PeriodicAction):
    """FID of ``fid_samples`` images from the run's seed against the training images; the Inception network
    and the reference features are prepared once, before the first iteration."""

    def __init__(self, every: int, config, dataset):
        super().__init__(every)
        self.extractor = fid.extractor(config.inception_weights or None) if every else None
        self.reference = fid.dataset_reference(dataset, self.extractor, num=config.fid_reference) if every else None

    def __call__(self, trainer, scalars: dict) -> None:
        config = trainer.config
        for name, variables in trainer.generators().items():
            quality = evaluation.sample_quality(
                config.model,
                sharding.local_copy(variables),
                self.reference,
                self.extractor,
                ("fid",),
                samples=config.fid_samples,
                seed=config.seed,
            )
            scalars[_scalar("fid", name)] = quality["fid"]


class Checkpointing(PeriodicAction):
    """``last`` with every running test and every ``keep_every`` iterations; ``best`` too when this
    iteration's running test is the best so far. The metrics row rides in the checkpoint (``resume_at``)."""

    def __init__(self, test_every: int, keep_every: int, *, last: int):
        super().__init__(test_every, last=last)
        self.keep_every = keep_every

    def due(self, iteration: int) -> bool:
        return super().due(iteration) or iteration % self.keep_every == 0

    def __call__(self, trainer, scalars: dict) -> None:
        trainer.meta.row = scalars
        trainer.save(best=trainer.meta.best_iteration == trainer.meta.iteration)


class SampleGrids(PeriodicAction):
    """The generator's images of the run's fixed codes: ``RUN/samples/iter_<n>.png`` and TensorBoard."""

    def __call__(self, trainer, scalars: dict) -> None:
        images = trainer.sample(trainer.fixed_codes)
        if trainer.run_dir.is_main:
            grid = visualize.grid(images)
            iteration = trainer.meta.iteration
            visualize.save_png(grid, trainer.run_dir.path / SAMPLES_DIR / f"iter_{iteration:07d}.png")
            trainer.metrics.image("samples", grid, iteration)


class FixedCodeRecord(PeriodicAction):
    """The dense fixed-code record (``wngan_jax/record.py``)."""

    def __init__(self, every: int, writer: record_lib.RecordWriter):
        super().__init__(every)
        self.writer = writer

    def __call__(self, trainer, scalars: dict) -> None:
        self.writer.write(trainer.meta.iteration, trainer.sample(self.writer.codes))


def _scalar(key: str, generator: str) -> str:
    """The metrics name of ``key`` measured on ``generator`` (``raw``: ``key``; ``ema``: ``ema_<key>``)."""
    return key if generator == "raw" else f"{generator}_{key}"
