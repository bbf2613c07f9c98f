"""The GAN train state and one jitted, data-parallel training iteration (paper §5.1, docs/authors.md §3).

The model family's loop: ``arch="dcgan"`` runs the paper's loop below; ``arch="resnet"`` runs the loop of the
authors' follow-up (their ``main.py``): one batch of codes, one forward of the generated batch through D,
which gives G's loss (its gradient reaches G through D *before* D's update) and D's fake loss, then D's real
loss; both networks step from the same state, and nothing is clipped (its TPReLUs clamp in the forward pass).
G's gradient at its images comes from the backward of D's fake loss, rescaled per sample
(``rescaled_image_grads``), so the iteration runs two backward passes through D, not three.

The paper's loop, one iteration: a D step on a real batch and a generated batch, forwarded **separately** so
batch norm never mixes real and fake statistics; then a G step on **fresh** codes against the updated D; then
the clipping rules (slopes to [0, 1]; for ``wn_clip`` also alpha of G's first two TPReLU layers). Both networks run in
training mode in both steps, as in the authors' code, so BN running statistics move with every forward.

Data parallel (``wngan_jax.sharding``): the global batch is sharded over the ``data`` axis of a mesh of all
devices and the state is replicated. The step is written for the global batch, so XLA inserts the
cross-device reductions: batch-norm statistics and gradients are those of the global batch, and the result
equals one device on the same batch.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from wngan_jax import ops, sharding
from wngan_jax.config import TrainConfig
from wngan_jax.errors import ConfigError
from wngan_jax.layers import clip_slopes
from wngan_jax.models import ModelConfig, alpha_clipped_modules

PLATFORM_DEFAULT = "platform default"  # make_train_step's compiler_options: ops.compiler_options(platform)
# {"generator", "discriminator": flax variables; "g_opt", "d_opt": optax states; "step"; with --ema_decay, also
# "generator_ema": the averaged generator's variables}
TrainState = dict
MODELS = ("generator", "discriminator", "generator_ema")  # the state's networks, as checkpoints hold them


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """The fields of a ``TrainConfig`` that the train step reads, declared once: the step is built from a
    ``StepConfig`` alone, and compiled steps are cached under it, so runs whose configs differ only in other
    fields (the seed, the data, the schedule of tests and checkpoints: the seeds of a study, a resumed run)
    share one compiled step, and a field the step reads can never be left out of the cache key."""

    model: ModelConfig
    batch_size: int
    lr: float
    rmsprop_decay: float
    rmsprop_eps: float
    loss: str
    dtype: str
    ema_decay: float

    @classmethod
    def of(cls, config: TrainConfig) -> StepConfig:
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})


def rmsprop(config: TrainConfig | StepConfig) -> optax.GradientTransformation:
    """The authors' RMSProp: ``m = decay*m + (1-decay)*g^2; x -= lr * g / (sqrt(m) + eps)``, m starting at 0."""
    return optax.rmsprop(config.lr, decay=config.rmsprop_decay, eps=config.rmsprop_eps, eps_in_sqrt=False)


def rmsprop_state(square_avg) -> optax.OptState:
    """The state of ``rmsprop`` whose running mean of squared gradients is ``square_avg`` (a params tree):
    how a run imported from ``torch.optim.RMSprop`` continues (its ``square_avg``; its ``step`` counts only)."""
    return optax.tree_utils.tree_set(rmsprop(TrainConfig()).init(square_avg), nu=square_avg)


def _dtype(config: TrainConfig | StepConfig):
    return jnp.bfloat16 if config.dtype == "bfloat16" else None


def init_state(config: TrainConfig, key) -> TrainState:
    """Fresh parameters (paper §5.1 init) and optimizer states."""
    model = config.model
    g_key, d_key = jax.random.split(key)
    gvars = model.generator().init(g_key, jnp.zeros((1, model.code_size)))
    dvars = model.discriminator().init(d_key, jnp.zeros((1, *model.image_size, model.channels)))
    opt = rmsprop(config)
    state = dict(
        generator=gvars,
        discriminator=dvars,
        g_opt=opt.init(gvars["params"]),
        d_opt=opt.init(dvars["params"]),
        step=jnp.zeros((), jnp.int32),
    )
    if config.ema_decay > 0:
        state["generator_ema"] = jax.tree.map(jnp.copy, gvars)  # the first iteration replaces it (average_generator)
    return state


def average_generator(average, generator, decay: float, count):
    """The generator EMA (Yazici et al. 2019) after its ``count``-th generator, debiased like Adam's moments:
    ``m_t = decay * m_{t-1} + (1 - decay) * theta_t`` from ``m_0 = 0``, kept as ``m_t / (1 - decay**t)``, the
    weighted mean of the generators so far (not pulled towards the initialization). As a recurrence on the
    debiased mean: ``optax.incremental_update`` with step size ``(1 - decay) / (1 - decay**t)`` (1 at t = 1).

    Only the parameters are averaged; the other collections (BN running statistics) are the raw generator's,
    the statistics its training forwards collected."""
    d = jnp.float32(decay)
    step_size = (1 - d) / (1 - d ** jnp.asarray(count, jnp.float32))
    return {**generator, "params": optax.incremental_update(generator["params"], average["params"], step_size)}


def _forward(module, variables, x, **kwargs):
    """Training-mode forward; returns (output, variables with updated batch statistics)."""
    if "batch_stats" not in variables:
        return module.apply(variables, x, train=True, **kwargs), variables
    out, updates = module.apply(variables, x, train=True, mutable=["batch_stats"], **kwargs)
    return out, {**variables, **updates}


def _check_loss(kind: str) -> None:
    if kind not in ("bce", "lsgan", "wasserstein"):
        raise ConfigError(f"unknown loss {kind!r}: use bce, lsgan or wasserstein")


def discriminator_loss(kind: str, real_logits, fake_logits):
    """D's loss on its logits for the real and the generated batch (``kind``: bce, lsgan, wasserstein)."""
    _check_loss(kind)
    if kind == "bce":  # -log D(x) - log(1 - D(G(z))), from logits for stability
        return (
            optax.sigmoid_binary_cross_entropy(real_logits, 1.0).mean()
            + optax.sigmoid_binary_cross_entropy(fake_logits, 0.0).mean()
        )
    if kind == "lsgan":
        return jnp.mean(jnp.square(jax.nn.sigmoid(real_logits) - 1)) + jnp.mean(jnp.square(jax.nn.sigmoid(fake_logits)))
    return jnp.mean(fake_logits) - jnp.mean(real_logits)  # wasserstein critic (appendix D)


def generator_loss(kind: str, fake_logits):
    """G's loss on D's logits for its images (``kind``: bce, lsgan, wasserstein)."""
    _check_loss(kind)
    if kind == "bce":  # non-saturating: -log D(G(z))
        return optax.sigmoid_binary_cross_entropy(fake_logits, 1.0).mean()
    if kind == "lsgan":
        return jnp.mean(jnp.square(jax.nn.sigmoid(fake_logits) - 1))
    return -jnp.mean(fake_logits)


def iteration_codes(config: TrainConfig | StepConfig, key_data, step):
    """``(d_codes, g_codes)``, each ``(batch_size, code_size)``: the codes iteration ``step`` draws.

    ``key_data`` is the run's base key as ``jax.random.key_data`` (``run_key``). The D step generates its
    fake batch from ``d_codes`` and the G step trains on ``g_codes``; the ResNet follow-up's loop draws one
    batch for both, so there the two are the same array. The train step calls this very
    function, so replaying a run elsewhere (another implementation, fed these codes and the same real
    batches) sees exactly what the run saw.
    """
    key = jax.random.wrap_key_data(key_data)
    d_key, g_key = jax.random.split(jax.random.fold_in(key, step))
    shape = (config.batch_size, config.model.code_size)
    d_codes = jax.random.normal(d_key, shape, jnp.float32)
    if config.model.arch == "resnet":
        return d_codes, d_codes
    return d_codes, jax.random.normal(g_key, shape, jnp.float32)


def make_train_step(
    config: TrainConfig,
    mesh: Mesh,
    *,
    split_phases_below: float = ops.SPLIT_PHASES_BELOW,
    compiler_options: dict | None | str = PLATFORM_DEFAULT,
):
    """``step(state, real_batch, key_data) -> (state, metrics)``, jitted over ``mesh``.

    ``real_batch`` is float32 ``(batch, H, W, C)`` in [0, 1], sharded over ``data``; ``key_data`` is the
    run's base key as ``jax.random.key_data`` (plain integers, so every process can provide it): the
    iteration's randomness is ``iteration_codes(config, key_data, state['step'])``, so a resumed run draws the
    same codes as an uninterrupted one.

    How the same maths is compiled is chosen here, never in the model: ``split_phases_below`` (the form of
    the transposed convolutions, ``ops.conv_form``) and ``compiler_options`` (default: ``ops.compiler_options``
    of the mesh's platform; ``None``: XLA's defaults). Steps are cached under ``StepConfig.of(config)`` and
    these choices.
    """
    if compiler_options == PLATFORM_DEFAULT:
        compiler_options = ops.compiler_options(mesh.devices.flat[0].platform)
    options = tuple(sorted(compiler_options.items())) if compiler_options is not None else None
    return _cached_step(StepConfig.of(config), mesh, float(split_phases_below), options)


def _build_step(config: StepConfig, mesh: Mesh, split_phases_below: float, compiler_options: tuple | None):
    """The jitted step of ``make_train_step``, built from ``config`` alone (uncached)."""
    model = config.model
    dtype = _dtype(config)
    G = model.generator(dtype)
    D = model.discriminator(dtype)
    opt = rmsprop(config)
    batch_sharding, replicated = sharding.batch_sharding(mesh), sharding.replicated(mesh)

    def step(state: TrainState, real, key_data):
        with ops.conv_form(split_phases_below):  # entered while the step is traced
            new_state, metrics = (resnet_iteration if model.arch == "resnet" else iteration)(state, real, key_data)
        if config.ema_decay > 0:
            new_state["generator_ema"] = average_generator(
                state["generator_ema"], new_state["generator"], config.ema_decay, new_state["step"]
            )
        return new_state, metrics

    def codes(state, key_data):
        return tuple(
            jax.lax.with_sharding_constraint(z, batch_sharding)
            for z in iteration_codes(config, key_data, state["step"])
        )

    def iteration(state: TrainState, real, key_data):
        """The paper's loop (module docstring)."""
        g_alpha_clipped = alpha_clipped_modules(model.norm, model.image_size, model.nfeature)
        d_codes, g_codes = codes(state, key_data)
        gvars, dvars = state["generator"], state["discriminator"]

        # D step: real and generated batches forwarded separately.
        fake, gvars = _forward(G, gvars, d_codes)
        fake = jax.lax.stop_gradient(fake)

        def d_loss_fn(params):
            # The real batch's forward stores its power iteration (sn: one per D update); the fake batch's
            # and the G step's forwards iterate from the stored vector without storing (models.Discriminator).
            real_logits, v = _forward(D, {**dvars, "params": params}, real, update_spectral=True)
            fake_logits, v = _forward(D, v, fake)
            loss = discriminator_loss(config.loss, real_logits, fake_logits)
            return loss, (v, real_logits, fake_logits)

        (d_loss, (dvars, real_logits, fake_logits)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
            dvars["params"]
        )
        d_updates, d_opt = opt.update(d_grads, state["d_opt"], dvars["params"])
        dvars = {**dvars, "params": clip_slopes(optax.apply_updates(dvars["params"], d_updates))}

        # G step: fresh codes against the updated D.
        def g_loss_fn(params):
            images, gv = _forward(G, {**gvars, "params": params}, g_codes)
            logits, dv = _forward(D, dvars, images)
            return generator_loss(config.loss, logits), (gv, dv)

        (g_loss, (gvars, dvars)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(gvars["params"])
        g_updates, g_opt = opt.update(g_grads, state["g_opt"], gvars["params"])
        g_params = clip_slopes(optax.apply_updates(gvars["params"], g_updates), clip_alpha_of=g_alpha_clipped)
        gvars = {**gvars, "params": g_params}

        new_state = dict(generator=gvars, discriminator=dvars, g_opt=g_opt, d_opt=d_opt, step=state["step"] + 1)
        return new_state, _metrics(d_loss, g_loss, real_logits, fake_logits)

    def resnet_iteration(state: TrainState, real, key_data):
        """The follow-up's loop (module docstring): G's and D's gradients both from the iteration's start."""
        z, _ = codes(state, key_data)
        gvars, dvars = state["generator"], state["discriminator"]

        def discriminate(params, images):
            return D.apply({**dvars, "params": params}, images)

        images, g_pullback = jax.vjp(lambda p: G.apply({**gvars, "params": p}, z), gvars["params"])
        fake_logits, d_pullback = jax.vjp(discriminate, dvars["params"], images)
        g_loss, g_loss_logits = jax.value_and_grad(functools.partial(generator_loss, config.loss))(fake_logits)

        def d_loss_fn(params, fake_logits):
            real_logits = discriminate(params, real)
            return discriminator_loss(config.loss, real_logits, fake_logits), real_logits

        (d_loss, real_logits), (d_grads, d_loss_logits) = jax.value_and_grad(d_loss_fn, (0, 1), has_aux=True)(
            dvars["params"], fake_logits
        )
        d_fake_grads, d_image_grads = d_pullback(d_loss_logits)
        d_grads = jax.tree.map(jnp.add, d_grads, d_fake_grads)
        image_grads = rescaled_image_grads(d_image_grads, d_loss_logits, g_loss_logits, lambda c: d_pullback(c)[1])
        (g_grads,) = g_pullback(image_grads)

        g_updates, g_opt = opt.update(g_grads, state["g_opt"], gvars["params"])
        d_updates, d_opt = opt.update(d_grads, state["d_opt"], dvars["params"])
        new_state = dict(
            generator={**gvars, "params": optax.apply_updates(gvars["params"], g_updates)},
            discriminator={**dvars, "params": optax.apply_updates(dvars["params"], d_updates)},
            g_opt=g_opt,
            d_opt=d_opt,
            step=state["step"] + 1,
        )
        return new_state, _metrics(d_loss, g_loss, real_logits, fake_logits)

    # Donating the state saves a copy of it on accelerators; on XLA:CPU it makes XLA copy parameters that are
    # read after their update is scheduled, and measured 6% slower (docs/benchmarks.md), so CPU keeps both.
    donate = () if mesh.devices.flat[0].platform == "cpu" else (0,)
    return jax.jit(
        step,
        in_shardings=(replicated, batch_sharding, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=donate,
        compiler_options=dict(compiler_options) if compiler_options is not None else None,
    )


# Below this, a per-sample cotangent could take D's backward into float32's subnormal range (BCE, batch 32: a
# fake logit under about -43); rescaling the backward of D's loss then gives way to a backward of G's own.
MIN_SHARED_COTANGENT = 1e-20


def rescaled_image_grads(image_grads, cotangent, target_cotangent, pullback):
    """The gradient at D's input images for ``target_cotangent`` at its logits, from ``image_grads``, those of
    the backward D already ran with ``cotangent``; ``pullback(c)`` runs a backward of its own instead.

    Without batch statistics (the ResNet follow-up), D's logit ``l_i`` depends on image ``i`` alone, so a
    backward with per-sample cotangents ``c`` gives ``c_i * dl_i/dx_i``: G's gradient (cotangent ``g``) is
    D's fake-loss gradient times ``g_i / c_i``. That saves the iteration a whole backward through D (the
    same maths; float rounding differs). Where some ``|c_i|`` is below ``MIN_SHARED_COTANGENT`` (or zero),
    ``pullback(target_cotangent)`` runs, chosen at run time (``lax.cond``)."""

    def rescaled():
        scale = (target_cotangent / cotangent).reshape(-1, *(1,) * (image_grads.ndim - 1))
        return image_grads * scale.astype(image_grads.dtype)

    shared = jnp.all(jnp.abs(cotangent) >= MIN_SHARED_COTANGENT)
    return jax.lax.cond(shared, rescaled, lambda: pullback(target_cotangent))


def _metrics(d_loss, g_loss, real_logits, fake_logits) -> dict:
    return dict(
        d_loss=d_loss,
        g_loss=g_loss,
        d_real=jnp.mean(jax.nn.sigmoid(real_logits)),
        d_fake=jnp.mean(jax.nn.sigmoid(fake_logits)),
        finite=jnp.isfinite(d_loss) & jnp.isfinite(g_loss),
    )


_cached_step = functools.lru_cache(maxsize=16)(_build_step)


def run_key(seed: int, rollbacks: int, mesh: Mesh):
    """The base key of a run after ``rollbacks`` rollbacks, replicated over ``mesh`` as key data."""
    key = jax.random.fold_in(jax.random.key(seed), rollbacks)
    return sharding.replicate(jax.random.key_data(key), mesh)
