"""The paper's reconstruction metric (§4): ``L_rec(G, X) = mean_i min_z ||G(z) - x_i||^2`` per pixel.

Each code starts at zero and takes ``steps`` RMSProp steps (lr 0.01, decay 0.9, eps 1e-6 outside the
square root, no bias correction) on the squared error of its image, with the generator in inference mode
(docs/authors.md §4). The authors optimize batches of 32 codes against the batch-*mean* loss with a fresh
optimizer per batch. Per-pixel MSE and inference-mode BN make the samples independent and RMSProp is
elementwise, so this is one problem per sample whose loss is scaled by ``1/B``, ``B`` the size of the
authors' batch the sample falls in (32, and the remainder for the last batch). The scale matters: the
gradients are tiny and ``eps`` is not negligible next to them. Here all samples form one batched problem
(the sum over samples of the scaled losses, whose gradient for each code is that sample's own), sharded
over a ``('data',)`` mesh and split into chunks that fit memory, run one after another; the numbers equal the
authors' batch loop whatever the chunk size, device count or segment length.

The steps run in jitted segments of ``SEGMENT_STEPS`` steps, each segment unrolled into straight-line code:
XLA:CPU runs the body of a ``while`` loop (``lax.fori_loop``/``scan``) at about half the speed of the same
ops at the top level of a computation (docs/benchmarks.md), and one dispatch per segment costs nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.extend import core as jax_core
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from wngan_jax import ops, sharding
from wngan_jax.errors import ConfigError, DataError

AUTHORS_BATCH = 32  # the authors' test batch (their training batch; 12 for LSUN)
CPU_MEMORY_FRACTION = 0.25  # of the host's RAM, for activations, when the device does not report its memory
SEGMENT_STEPS = 5  # steps unrolled into one jitted call (see the module docstring)


@dataclasses.dataclass(frozen=True)
class ReconstructionResult:
    """Optimized codes ``(N, code)``, per-sample per-pixel losses ``(N,)``, their mean (the paper's number),
    the images of the codes ``(N, H, W, C)`` in [0, 1] when asked for, and the per-sample losses after each
    of the ``record_steps`` asked for (``{step: (N,)}``; appendix C.3's loss against reconstruction steps)."""

    codes: np.ndarray
    per_sample_loss: np.ndarray
    mean_loss: float
    reconstructions: np.ndarray | None = None
    losses_at_steps: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)

    def loss_curve(self) -> dict[int, float]:
        """``{step: mean loss}`` for the recorded steps and the final step."""
        curve = {k: float(np.mean(v, dtype=np.float64)) for k, v in self.losses_at_steps.items()}
        return dict(sorted(curve.items()))


@functools.partial(jax.tree_util.register_dataclass, data_fields=["variables"], meta_fields=["module"])
@dataclasses.dataclass(frozen=True)
class ModuleGenerator:
    """``z -> module.apply(variables, z, train=False)`` as a pytree: the variables are jit arguments, so
    repeated reconstructions (the running test during training) reuse one compiled loop."""

    module: Any
    variables: Any

    def __call__(self, z):
        return self.module.apply(self.variables, z, train=False)


def generator_fn(module, variables) -> ModuleGenerator:
    """The generator in inference mode (BN with running statistics) as a function of the codes."""
    return ModuleGenerator(module, variables)


def authors_loss_scale(num_samples: int, authors_batch: int = AUTHORS_BATCH) -> np.ndarray:
    """``1/B`` per sample, ``B`` the size of its batch in the authors' loop (docs/authors.md §4)."""
    if authors_batch < 1:
        raise ConfigError(f"authors_batch must be at least 1, got {authors_batch}")
    start = np.arange(num_samples) // authors_batch * authors_batch
    return (1.0 / np.minimum(authors_batch, num_samples - start)).astype(np.float32)


def per_sample_loss(images, targets):
    """Mean squared error per pixel (over H, W and C) of each sample."""
    return jnp.mean(jnp.square(images.astype(jnp.float32) - _as_float(targets)), axis=(1, 2, 3))


def _as_float(targets):
    """uint8 targets are divided by 255 (torchvision's ``ToTensor``); float targets are used as they are."""
    if targets.dtype == jnp.uint8:
        return targets.astype(jnp.float32) / 255.0
    return targets.astype(jnp.float32)


def reconstruct(
    generator: Callable,
    targets,
    *,
    steps: int,
    code_size: int | None = None,
    lr: float = 0.01,
    decay: float = 0.9,
    eps: float = 1e-6,
    authors_batch: int = AUTHORS_BATCH,
    chunk_size: int | None = None,
    memory_budget_bytes: int | None = None,
    mesh: Mesh | None = None,
    segment_steps: int | None = None,
    return_reconstructions: bool = False,
    record_steps=(),
    progress: bool = False,
) -> ReconstructionResult:
    """Reconstruct ``targets`` ``(N, H, W, C)`` (uint8, or float in [0, 1]) with ``steps`` RMSProp steps.

    ``generator(z) -> images`` in [0, 1]; prefer ``generator_fn(module, variables)`` (a pytree, so the
    compiled loop is reused and ``code_size`` is known). ``record_steps`` (each at most ``steps``) are the
    step counts after which the per-sample losses are also recorded, in the same pass: the result equals
    separate runs with those step counts. ``chunk_size`` is the number of samples per device
    in one forward/backward pass; by default the largest that fits ``memory_budget_bytes`` of activations
    per device (default: half the device's free memory, or a quarter of the host's RAM on a CPU).
    Samples are sharded over the ``'data'`` axis of ``mesh`` (default: ``sharding.local_mesh()``) and padded with
    dummy samples whose loss scale is zero. A ``mesh`` may span processes: every process then passes the same
    targets, computes its share and receives every result. The loop runs in jitted, unrolled segments of
    ``segment_steps`` steps (default ``SEGMENT_STEPS``); the progress bar moves per segment and the result
    does not depend on it.
    """
    plan = _Plan.make(generator, targets, steps, record_steps, code_size, chunk_size, memory_budget_bytes, mesh)
    hparams = (lr, decay, eps)
    segment = max(1, min(segment_steps or SEGMENT_STEPS, steps))
    num, rows, chunks = len(plan.targets), plan.rows, plan.chunks
    all_targets = np.concatenate(
        [plan.targets, np.zeros((chunks * rows - num, *plan.targets.shape[1:]), plan.targets.dtype)]
    )
    all_scales = np.pad(authors_loss_scale(num, authors_batch), (0, chunks * rows - num))
    init_state = _optimizer_init(_optimizer(*hparams), plan.data)
    run_steps, evaluate = _compiled_for(plan.platform)
    codes, images, at_steps = [], [], {k: [] for k in plan.record_steps}
    desc = f"reconstructing {num} samples" + (f" in {chunks} chunks" if chunks > 1 else "")
    with tqdm(total=steps * chunks, desc=desc, unit="step", disable=not progress) as bar:
        # Chunks run one after another from Python: a loop over them inside the computation would run its
        # body on one core (module docstring).
        for part in (slice(i * rows, (i + 1) * rows) for i in range(chunks)):
            x, w = sharding.put(all_targets[part], plan.data), sharding.put(all_scales[part], plan.data)
            z = sharding.put(np.zeros((rows, plan.code_size), np.float32), plan.data)
            carry = (z, init_state(z))
            for target, counts in _segments(plan.record_steps, segment):  # segments end at every recorded step
                for count in counts:
                    carry = run_steps(plan.gen, carry, x, w, num_steps=count, hparams=hparams, mesh=plan.mesh)
                    if progress:
                        jax.block_until_ready(carry)
                        bar.update(count)
                last = target == steps
                loss, image = evaluate(plan.gen, carry[0], x, mesh=plan.mesh, images=return_reconstructions and last)
                at_steps[target].append(sharding.to_host(loss))
            codes.append(sharding.to_host(carry[0]))
            images.append(sharding.to_host(image) if return_reconstructions else None)
    losses_at_steps = {k: np.concatenate(v)[:num] for k, v in at_steps.items()}
    per_sample = losses_at_steps[steps]
    return ReconstructionResult(
        codes=np.concatenate(codes)[:num],
        per_sample_loss=per_sample,
        mean_loss=float(np.mean(per_sample, dtype=np.float64)),
        reconstructions=np.concatenate(images)[:num] if return_reconstructions else None,
        losses_at_steps=losses_at_steps,
    )


def warm_up(
    generator: Callable,
    targets,
    *,
    steps: int,
    code_size: int | None = None,
    lr: float = 0.01,
    decay: float = 0.9,
    eps: float = 1e-6,
    chunk_size: int | None = None,
    memory_budget_bytes: int | None = None,
    mesh: Mesh | None = None,
    segment_steps: int | None = None,
    return_reconstructions: bool = False,
    record_steps=(),
) -> None:
    """Compile every computation that ``reconstruct`` with the same arguments runs (each segment length, the
    evaluation with and without images), running each once on one chunk, so that a timed ``reconstruct``
    afterwards compiles nothing (``python -m wngan_jax.eval --benchmark``). Costs about one segment of each
    length, not the reconstruction."""
    plan = _Plan.make(generator, targets, steps, record_steps, code_size, chunk_size, memory_budget_bytes, mesh)
    hparams = (lr, decay, eps)
    segment = max(1, min(segment_steps or SEGMENT_STEPS, steps))
    run_steps, evaluate = _compiled_for(plan.platform)
    x = sharding.put(np.zeros((plan.rows, *plan.targets.shape[1:]), plan.targets.dtype), plan.data)
    w = sharding.put(np.zeros(plan.rows, np.float32), plan.data)
    init_state = _optimizer_init(_optimizer(*hparams), plan.data)

    def codes():  # new ones for each call: run_steps donates its carry
        return sharding.put(np.zeros((plan.rows, plan.code_size), np.float32), plan.data)

    for count in sorted({c for _, counts in _segments(plan.record_steps, segment) for c in counts}):
        z = codes()
        jax.block_until_ready(
            run_steps(plan.gen, (z, init_state(z)), x, w, num_steps=count, hparams=hparams, mesh=plan.mesh)
        )
    for images in {False, return_reconstructions}:
        jax.block_until_ready(evaluate(plan.gen, codes(), x, mesh=plan.mesh, images=images))


def _segments(record_steps, segment: int) -> list[tuple[int, list[int]]]:
    """``[(recorded step, [segment lengths that reach it from the previous one])]``."""
    out, done = [], 0
    for target in record_steps:
        counts = [min(segment, target - start) for start in range(done, target, segment)]
        out.append((target, counts))
        done = target
    return out


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What ``reconstruct`` and ``warm_up`` derive from their arguments: checked targets, the generator
    replicated over the mesh, and the chunking (``chunks`` passes of ``rows`` samples over all devices)."""

    targets: np.ndarray
    gen: Any
    code_size: int
    mesh: Mesh
    record_steps: list[int]
    chunks: int
    rows: int

    @property
    def data(self):
        return sharding.batch_sharding(self.mesh)

    @property
    def platform(self) -> str:
        return self.mesh.devices.flat[0].platform

    @classmethod
    def make(cls, generator, targets, steps, record_steps, code_size, chunk_size, memory_budget_bytes, mesh):
        targets = _check_targets(targets)
        if steps < 0:
            raise ConfigError(f"steps must be >= 0, got {steps}")
        record_steps = sorted({int(k) for k in record_steps} | {steps})
        if record_steps[0] < 0 or record_steps[-1] > steps:
            raise ConfigError(f"record_steps must lie in [0, {steps}] (the number of steps), got {record_steps}")
        gen = _as_pytree(generator)
        code_size = code_size or getattr(getattr(gen, "module", None), "code_size", None)
        if not code_size:
            raise ConfigError(
                "pass code_size= (the generator's code length), or build the generator function "
                "with reconstruction.generator_fn(module, variables)"
            )
        mesh = mesh or sharding.local_mesh()
        devices = mesh.shape["data"]
        per_device = -(-len(targets) // devices)
        chunk = (
            chunk_for_budget(gen, code_size, targets, memory_budget_bytes, mesh) if chunk_size is None else chunk_size
        )
        if chunk < 1:
            raise ConfigError(f"chunk_size must be at least 1, got {chunk}")
        chunks = -(-per_device // min(chunk, per_device))
        chunk = -(-per_device // chunks)  # balance the chunks so that padding stays below one per chunk
        gen = jax.tree.map(lambda a: sharding.put(a, sharding.replicated(mesh)), gen)
        return cls(targets, gen, code_size, mesh, record_steps, chunks, devices * chunk)


class AuthorsLoop:
    """The authors' ``test()`` (docs/authors.md §4) as they run it: batches of ``batch``, a fresh RMSProp per
    batch on the batch-*mean* loss, one jitted step per call from Python. ``reconstruct`` computes the same
    numbers as one problem; this loop is its reference (tests) and its baseline (``bench --what=reconstruct``).
    """

    def __init__(
        self,
        module,
        variables,
        *,
        batch: int = AUTHORS_BATCH,
        lr: float = 0.01,
        decay: float = 0.9,
        eps: float = 1e-6,
        compiler_options=None,
    ):
        self.module, self.variables, self.batch = module, variables, batch
        self.optimizer = _optimizer(lr, decay, eps)
        self.step = jax.jit(self._step, compiler_options=compiler_options)
        self._per_sample = jax.jit(self._per_sample_loss, compiler_options=compiler_options)

    def _batch_loss(self, z, x):
        return jnp.mean(jnp.square(self.module.apply(self.variables, z, train=False) - x))

    def _step(self, z, state, x):
        updates, state = self.optimizer.update(jax.grad(self._batch_loss)(z, x), state)
        return optax.apply_updates(z, updates), state

    def _per_sample_loss(self, z, x):
        return per_sample_loss(self.module.apply(self.variables, z, train=False), x)

    def __call__(self, targets, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, per-sample losses)`` after ``steps`` steps for every batch of ``targets``."""
        targets = _check_targets(targets)
        codes, losses = [], []
        for start in range(0, len(targets), self.batch):
            x = _as_float(jnp.asarray(targets[start : start + self.batch]))
            z = jnp.zeros((len(x), self.module.code_size), jnp.float32)
            state = self.optimizer.init(z)
            for _ in range(steps):
                z, state = self.step(z, state, x)
            codes.append(np.asarray(z))
            losses.append(np.asarray(self._per_sample(z, x)))
        return np.concatenate(codes), np.concatenate(losses)


def _check_targets(targets) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.ndim != 4 or targets.shape[-1] not in (1, 3) or len(targets) == 0:
        raise DataError(f"targets must be a non-empty (N, H, W, C) array with C = 1 or 3, got shape {targets.shape}")
    if targets.dtype == np.uint8:
        return targets
    if not np.issubdtype(targets.dtype, np.floating):
        raise DataError(f"targets must be uint8 (0-255) or float in [0, 1], got dtype {targets.dtype}")
    lo, hi = float(np.min(targets)), float(np.max(targets))
    if not (0.0 <= lo and hi <= 1.0):
        raise DataError(
            f"float targets must lie in [0, 1] (the generator's sigmoid range), got values in "
            f"[{lo:g}, {hi:g}]; rescale them, e.g. from [-1, 1] with (x + 1) / 2"
        )
    return targets.astype(np.float32)


def _as_pytree(fn):
    """Plain functions become a leafless ``Partial`` (static in jit); pytree callables keep their leaves."""
    leaves, treedef = jax.tree_util.tree_flatten(fn)
    if treedef.num_leaves == 1 and treedef.num_nodes == 1 and leaves[0] is fn:
        return jax.tree_util.Partial(fn)
    return fn


@functools.lru_cache(maxsize=16)
def _optimizer_init(optimizer, sharding):
    """The optimizer's initial state for codes with ``sharding`` (jitted, so it can span processes)."""
    return jax.jit(optimizer.init, out_shardings=sharding)


@functools.cache
def _optimizer(lr, decay, eps):
    """The authors' ``torch.optim.RMSprop(lr, alpha=decay, eps)``: ``m`` from 0, eps outside the sqrt."""
    return optax.rmsprop(lr, decay=decay, eps=eps, eps_in_sqrt=False)


@functools.cache
def _compiled_for(platform: str):
    """``_run_steps`` and ``_evaluate`` jitted with ``platform``'s compiler options (``ops.compiler_options``)."""
    options = ops.compiler_options(platform)
    run_steps = jax.jit(
        _run_steps, static_argnames=("num_steps", "hparams", "mesh"), donate_argnums=(1,), compiler_options=options
    )
    evaluate = jax.jit(_evaluate, static_argnames=("mesh", "images"), compiler_options=options)
    return run_steps, evaluate


def _scaled_loss(gen, z, x, w):
    """``sum_i w_i L_i``: its gradient for code ``i`` is ``w_i dL_i/dz_i`` (samples do not interact)."""
    return jnp.sum(w * per_sample_loss(gen(z), x))


def _run_steps(gen, carry, x, w, *, num_steps, hparams, mesh):
    """``num_steps`` RMSProp steps for every sample of a chunk, unrolled."""
    opt = _optimizer(*hparams)

    def one_step(carry, x, w):
        z, state = carry
        grad = jax.grad(_scaled_loss, argnums=1)(gen, z, x, w)
        updates, state = opt.update(grad, state)
        return optax.apply_updates(z, updates), state

    def local(gen, carry, x, w):
        return jax.lax.scan(lambda c, _: (one_step(c, x, w), None), carry, None, length=num_steps, unroll=True)[0]

    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data"), P("data"), P("data")), out_specs=P("data"))(
        gen, carry, x, w
    )


def _evaluate(gen, z, x, *, mesh, images):
    """Per-sample losses (and images) of a chunk's final codes."""

    def local(gen, z, x):
        out = gen(z)
        return per_sample_loss(out, x), (out.astype(jnp.float32) if images else None)

    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data"), P("data")), out_specs=P("data"))(gen, z, x)


def chunk_for_budget(gen, code_size, targets, budget, mesh) -> int:
    """The most samples per device whose gradient activations fit ``budget`` bytes: the chunk size
    ``reconstruct`` uses when it is given none (``budget`` None: half the free memory of this process's first
    device of ``mesh``, or ``CPU_MEMORY_FRACTION`` of the host's RAM when the device does not report it).

    ``gen`` is a generator pytree (``generator_fn``); only the shape and dtype of a sample of ``targets`` are
    read. The bytes per sample are those of every value the traced gradient of the paper's L_rec (§4)
    computes, an upper bound of what it holds at once."""
    if budget is None:
        stats = next(d for d in mesh.devices.flat if d.process_index == jax.process_index()).memory_stats()
        budget = (
            (stats["bytes_limit"] - stats["bytes_in_use"]) // 2
            if stats
            else int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * CPU_MEMORY_FRACTION)
        )
    leaves, treedef = jax.tree.flatten(gen)
    shapes = tuple((tuple(a.shape), str(a.dtype)) for a in leaves)
    per_sample = _bytes_per_sample(treedef, shapes, code_size, tuple(targets.shape[1:]), str(targets.dtype))
    return max(1, int(budget // per_sample))


@functools.lru_cache(maxsize=32)
def _bytes_per_sample(treedef, shapes, code_size, image_shape, image_dtype) -> int:
    """Growth, from a batch of 1 to a batch of 2, of the bytes of every value the traced gradient computes
    (an upper bound: XLA fuses and frees many of them). Cached: tracing costs as much as a few steps."""
    gen = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in shapes])

    def traced_bytes(batch):
        z = jax.ShapeDtypeStruct((batch, code_size), jnp.float32)
        x = jax.ShapeDtypeStruct((batch, *image_shape), image_dtype)
        w = jax.ShapeDtypeStruct((batch,), jnp.float32)
        return _jaxpr_bytes(jax.make_jaxpr(jax.grad(_scaled_loss, argnums=1))(gen, z, x, w).jaxpr)

    return max(1, traced_bytes(2) - traced_bytes(1))


def _jaxpr_bytes(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        total += sum(v.aval.size * v.aval.dtype.itemsize for v in eqn.outvars if hasattr(v.aval, "dtype"))
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if isinstance(sub, jax_core.ClosedJaxpr):
                    total += _jaxpr_bytes(sub.jaxpr)
                elif isinstance(sub, jax_core.Jaxpr):
                    total += _jaxpr_bytes(sub)
    return total
