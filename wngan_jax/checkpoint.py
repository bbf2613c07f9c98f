"""The project's checkpoint format (orbax), shared by training, evaluation, sampling and import.

A run directory holds::

    RUN/model.json                       the ModelConfig (variant, image size, channels, nfeature, code size)
    RUN/checkpoints/last/<iteration>/    the newest checkpoint, plus every ``keep_period``-th (paper: 20k)
    RUN/checkpoints/best/<iteration>/    the generator with the best running-test loss so far

Each checkpoint has the items ``models`` (``{"generator": variables, "discriminator": variables}``, flax
variable dicts with ``params`` and, for BN models, ``batch_stats``; a run trained with ``--ema_decay`` adds
``"generator_ema"``, the averaged generator), ``meta`` (JSON: iteration, losses, data position, ...) and, in
``last`` only, ``train`` (optimizer states and random key for exact resume).
Orbax writes each checkpoint to a temporary directory and renames it when complete, so a killed process
never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pathlib
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from wngan_jax import files
from wngan_jax.errors import CheckpointError
from wngan_jax.models import ModelConfig

MODEL_FILE = "model.json"
WHICH = ("best", "last")


def write_model_config(run_dir, config: ModelConfig) -> None:
    run_dir = pathlib.Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    files.write_atomic(run_dir / MODEL_FILE, json.dumps(config.to_dict(), indent=2) + "\n")


def read_model_config(run_dir) -> ModelConfig:
    path = pathlib.Path(run_dir) / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir} is not a wngan_jax checkpoint directory (no {MODEL_FILE}); point --checkpoint at a "
            "training workdir or at the --out of `python -m wngan_jax.convert`"
        )
    try:
        return ModelConfig.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path} is not a valid model config: {e}") from e


class _HeldErrors(logging.Filter):
    """Holds back the tracebacks orbax logs when one of its writer threads fails (a full disk): the same
    exception then leaves ``save`` and becomes one ``CheckpointError`` line. ``release`` logs them after all."""

    def __init__(self, logger: logging.Logger):
        super().__init__()
        self.logger, self.held = logger, []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and "orbax" in record.pathname:
            self.held.append(record)
            return False
        return True

    def release(self) -> None:
        self.logger.removeFilter(self)
        for record in self.held:
            self.logger.handle(record)
        self.held = []


@contextlib.contextmanager
def _writer_thread_errors_held():
    logger = logging.getLogger("absl")  # orbax logs through absl.logging
    held = _HeldErrors(logger)
    logger.addFilter(held)
    try:
        yield held
    finally:
        logger.removeFilter(held)


class Checkpoints:
    """Best / last / every-N checkpoints of one run directory."""

    def __init__(self, run_dir, *, keep_period: int | None = 20_000, read_only: bool = False):
        """``read_only`` opens an existing run without creating directories (never pass it to ``save``)."""
        self.run_dir = pathlib.Path(run_dir).absolute()
        common = dict(create=not read_only, enable_async_checkpointing=False)
        handlers = dict(
            models=ocp.StandardCheckpointHandler(),
            meta=ocp.JsonCheckpointHandler(),
            train=ocp.StandardCheckpointHandler(),
        )
        self._managers = {
            "last": ocp.CheckpointManager(
                self.run_dir / "checkpoints" / "last",
                item_handlers=handlers,
                options=ocp.CheckpointManagerOptions(max_to_keep=1, keep_period=keep_period, **common),
            ),
            "best": ocp.CheckpointManager(
                self.run_dir / "checkpoints" / "best",
                item_handlers=dict(handlers),
                options=ocp.CheckpointManagerOptions(max_to_keep=1, **common),
            ),
        }

    def steps(self, which: str = "last") -> list[int]:
        return list(self._managers[which].all_steps())

    def latest_step(self, which: str = "last") -> int | None:
        return self._managers[which].latest_step()

    def save(self, step: int, models, meta: dict, *, train=None, best: bool = False) -> None:
        """Write ``last`` (with the training state) and, when ``best``, the ``best`` checkpoint too."""
        items = dict(models=ocp.args.StandardSave(models), meta=ocp.args.JsonSave(meta))
        if train is not None:
            items["train"] = ocp.args.StandardSave(train)
        self._write("last", step, items)
        if best:
            self.save_best(step, models, meta)

    def save_best(self, step: int, models, meta: dict) -> None:
        """Write the ``best`` checkpoint (models and meta; it replaces the previous best)."""
        self._write("best", step, dict(models=ocp.args.StandardSave(models), meta=ocp.args.JsonSave(meta)))

    def _write(self, name: str, step: int, items: dict) -> None:
        """One orbax save; a failed one (a full disk, most often) leaves no temporary directory and is one
        ``CheckpointError`` line: the checkpoints saved before it stay as they were."""
        manager = self._managers[name]
        try:
            with _writer_thread_errors_held() as held:
                manager.save(step, args=ocp.args.Composite(**items), force=True)
                held.release()  # the save went through: whatever its threads logged is shown
        except Exception as e:  # orbax and TensorStore raise many types for a failed write
            for tmp in manager.directory.glob("*.orbax-checkpoint-tmp*"):
                shutil.rmtree(tmp, ignore_errors=True)
            raise CheckpointError(
                f"could not write the {name} checkpoint of iteration {step} in {manager.directory} "
                f"({_first_line(e)}); free space there and run the same command again to resume from the last "
                "checkpoint"
            ) from e

    def resolve(self, which: str | int = "best") -> tuple[str, int]:
        """``'best'``, ``'last'`` or an iteration -> (manager name, step); clear errors when absent."""
        if isinstance(which, str) and which not in WHICH:
            if not which.isdigit():
                raise CheckpointError(f"--which must be best, last or an iteration number, got {which!r}")
            which = int(which)
        if isinstance(which, int):
            for name in ("last", "best"):
                if which in self.steps(name):
                    return name, which
            raise CheckpointError(
                f"no checkpoint at iteration {which} in {self.run_dir}; available: "
                f"last {self.steps('last')}, best {self.steps('best')}"
            )
        step = self.latest_step(which)
        if step is None and which == "best":
            step = self.latest_step("last")
            if step is not None:
                logging.info("%s has no 'best' checkpoint yet; using 'last' (iteration %d)", self.run_dir, step)
                return "last", step
        if step is None:
            raise CheckpointError(f"{self.run_dir} holds no checkpoint yet")
        return which, step

    def restore(
        self, which: str | int = "last", *, models=None, train=None, with_train: bool = False
    ) -> dict[str, Any]:
        """Restore ``models``, ``meta`` (and ``train`` when asked) of a checkpoint.

        ``models``/``train`` are optional targets (arrays or ``jax.ShapeDtypeStruct`` with shardings) that
        fix structure, dtypes and placement; without them the arrays come back as saved.
        """
        name, step = self.resolve(which)
        if models is None:  # as saved, but on this process's first device, whatever topology saved it
            models = self._local_abstract(name, step, "models")
        items = dict(models=ocp.args.StandardRestore(models), meta=ocp.args.JsonRestore())
        if with_train:
            items["train"] = ocp.args.StandardRestore(train)
        try:
            restored = self._managers[name].restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # orbax raises many types for unreadable or mismatched trees
            raise CheckpointError(
                f"could not read the {name} checkpoint at iteration {step} in {self.run_dir}: {_first_line(e)}"
            ) from e
        out = dict(restored.items()) | {"step": step, "which": name}
        return out

    def _local_abstract(self, name: str, step: int, item: str):
        try:
            metadata = self._managers[name].item_metadata(step)[item]
        except Exception as e:  # unreadable metadata: report it like an unreadable checkpoint
            raise CheckpointError(
                f"could not read the {name} checkpoint at iteration {step} in {self.run_dir}: {_first_line(e)}"
            ) from e
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)

    def close(self) -> None:
        for m in self._managers.values():
            m.wait_until_finished()
            m.close()


def save_models(run_dir, config: ModelConfig, models: dict, *, step: int = 0, meta: dict | None = None) -> None:
    """Write a stand-alone checkpoint (model config + variables), e.g. of converted networks."""
    write_model_config(run_dir, config)
    ckpt = Checkpoints(run_dir, keep_period=None)
    ckpt.save(step, models, dict(meta or {}, iteration=step), best=True)
    ckpt.close()


def check_variables(config: ModelConfig, which_net: str, variables) -> None:
    """Raise a CheckpointError naming every parameter whose shape differs from what ``config`` builds."""
    net = config.generator() if which_net == "generator" else config.discriminator()
    dummy = (
        jnp.zeros((1, config.code_size))
        if which_net == "generator"
        else jnp.zeros((1, *config.image_size, config.channels))
    )
    expected = jax.eval_shape(lambda: net.init(jax.random.key(0), dummy))
    want = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(expected)}
    got = {jax.tree_util.keystr(k): tuple(v.shape) for k, v in jax.tree_util.tree_leaves_with_path(variables)}
    problems = [f"missing {k}" for k in want.keys() - got.keys()]
    problems += [f"unexpected {k}" for k in got.keys() - want.keys()]
    problems += [f"{k}: shape {got[k]} != {want[k]}" for k in want.keys() & got.keys() if got[k] != want[k]]
    if problems:
        raise CheckpointError(f"{which_net} variables do not fit {config}: " + "; ".join(sorted(problems)))


def generator_variables(models: dict, *, ema: bool = False, where: str = "the checkpoint"):
    """The generator of a checkpoint's ``models``: the raw one, or with ``ema`` the averaged generator of a run
    trained with ``--ema_decay`` (Yazici et al. 2019), complete as the trainer measures it: the debiased average
    of the parameters with the raw generator's batch statistics (``train_step.average_generator`` assembles it
    in every iteration, and checkpoints hold it as ``generator_ema``). Without one, with ``ema``, a
    ``CheckpointError`` naming ``where``."""
    if not ema:
        return models["generator"]
    if "generator_ema" not in models:
        raise CheckpointError(f"--ema needs a run trained with --ema_decay > 0; {where} holds no averaged generator")
    return models["generator_ema"]


def load_generator(run_dir, which: str | int = "best", *, ema: bool = False):
    """(ModelConfig, generator variables, iteration) from a run or converted checkpoint directory; with ``ema``
    the averaged generator (``generator_variables``)."""
    config = read_model_config(run_dir)
    ckpt = Checkpoints(run_dir, read_only=True)
    try:
        restored = ckpt.restore(which)
    finally:
        ckpt.close()
    where = f"the {restored['which']} checkpoint at iteration {restored['step']} in {run_dir}"
    variables = generator_variables(restored["models"], ema=ema, where=where)
    check_variables(config, "generator", variables)
    return config, variables, restored["step"]


def _first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an error's message, shortened: TensorStore appends hundreds of lines of context."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= limit else text[:limit] + " ..."
