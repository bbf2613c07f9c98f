"""Training: the step's maths against hand computations, data parallelism, exact resume, NaN rollback."""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from wngan_jax import data, errors, ops, train, train_step
from wngan_jax.checkpoint import Checkpoints
from wngan_jax.config import TrainConfig
from wngan_jax.models import VARIANTS, alpha_clipped_modules
from wngan_jax.sharding import make_mesh, replicate, shard_batch
from wngan_jax.train_step import (
    discriminator_loss,
    generator_loss,
    init_state,
    make_train_step,
    rescaled_image_grads,
    rmsprop,
    run_key,
)


def tiny(**changes) -> TrainConfig:
    base = dict(
        norm="wn",
        data="digits",
        image_size=(16, 16),
        channels=1,
        nfeature=8,
        code_size=16,
        batch_size=8,
        final_test=40,
        running_test=20,
        iterations=6,
        test_every=3,
        test_steps=3,
        sample_every=3,
        keep_every=6,
        log_every=1,
        num_fixed_codes=4,
        final_test_samples=0,
        progress_bar=False,
    )
    return TrainConfig().replace(**(base | changes))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def _batches(config, n, seed=0):
    shape = (n, config.batch_size, *config.model.image_size, config.model.channels)
    return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def _run_steps(config, batches, devices):
    mesh = make_mesh(jax.devices()[:devices])
    step = make_train_step(config, mesh)
    state = replicate(init_state(config, jax.random.key(0)), mesh)
    history = []
    for batch in batches:
        state, metrics = step(state, shard_batch(batch, mesh), run_key(1, 0, mesh))
        history.append(jax.device_get(metrics))
    return jax.device_get(state), history


@pytest.mark.parametrize("norm", sorted(VARIANTS))
def test_every_variant_trains_and_clips(norm):
    """Two iterations of every variant with a large lr: finite losses; every slope in [0, 1] afterwards,
    and for wn_clip also alpha of G's first two TPReLU layers (paper §5.1, appendix C.2)."""
    config = tiny(norm=norm, lr=0.05)
    state, history = _run_steps(config, _batches(config, 2), devices=1)
    assert all(bool(m["finite"]) for m in history)
    clipped = alpha_clipped_modules(norm, config.model.image_size, config.model.nfeature)
    for net in ("generator", "discriminator"):
        for path, leaf in jax.tree_util.tree_leaves_with_path(state[net]["params"]):
            names = [p.key for p in path]
            if names[-1] == "slope" or (net == "generator" and names[-1] == "alpha" and names[0] in clipped):
                assert 0.0 <= leaf.min() and leaf.max() <= 1.0, (net, names)
    if clipped:  # the rule has something to do: with lr 0.05 unclipped alphas leave [0, 1]
        alphas = [state["generator"]["params"][m]["alpha"] for m in clipped]
        assert any(np.any((a == 0.0) | (a == 1.0)) for a in alphas)


def test_wasserstein_critic_trains():
    config = tiny(loss="wasserstein")
    state, history = _run_steps(config, _batches(config, 2), devices=1)
    assert "scale" not in state["discriminator"]["params"]["final_conv"]  # appendix D: strict last layer
    assert all(bool(m["finite"]) for m in history)


def test_discriminator_step_keeps_real_and_fake_statistics_apart():
    """With BN, D's output on the real batch in the step equals D applied to the real batch alone."""
    config = tiny(norm="bn")
    batch = _batches(config, 1)[0]
    state0 = init_state(config, jax.random.key(0))
    D = config.model.discriminator()
    alone, _ = D.apply(state0["discriminator"], batch, train=True, mutable=["batch_stats"])
    mixed_batch = np.concatenate([batch, np.zeros_like(batch)])
    mixed, _ = D.apply(state0["discriminator"], mixed_batch, train=True, mutable=["batch_stats"])
    _, history = _run_steps(config, [batch], devices=1)
    expected = float(jnp.mean(jax.nn.sigmoid(alone)))
    assert history[0]["d_real"] == pytest.approx(expected, rel=1e-5)
    assert abs(float(jnp.mean(jax.nn.sigmoid(mixed[:8]))) - expected) > 1e-4  # mixing would be visible


def test_rmsprop_matches_hand_computed_update():
    """x -= lr * g / (sqrt(m) + eps), m = 0.9 m + 0.1 g^2 from m = 0 (docs/authors.md §3)."""
    opt = rmsprop(tiny(lr=0.1))
    x = jnp.array([1.0, -2.0, 3.0])
    grads = [jnp.array([0.5, -1e-4, 2.0]), jnp.array([-0.3, 1e-4, 1.0])]
    state, m, expected = opt.init(x), np.zeros(3), np.asarray(x, np.float64)
    for g in grads:
        updates, state = opt.update(g, state, x)
        x = optax.apply_updates(x, updates)
        m = 0.9 * m + 0.1 * np.asarray(g, np.float64) ** 2
        expected = expected - 0.1 * np.asarray(g, np.float64) / (np.sqrt(m) + 1e-6)
    np.testing.assert_allclose(x, expected, rtol=1e-6)


def test_generator_ema_is_the_debiased_mean_of_the_generators():
    """With --ema_decay b the state's averaged generator after T iterations is, in float64 numpy,
    ``m_T / (1 - b**T)`` with ``m_t = b m_{t-1} + (1 - b) theta_t`` from 0 (the raw generators theta_t); BN
    running statistics are the raw generator's. With 0 the state holds no average."""
    assert "generator_ema" not in init_state(tiny(norm="bn"), jax.random.key(0))
    config = tiny(norm="bn", ema_decay=0.6)
    mesh = make_mesh(jax.devices()[:1])
    step = make_train_step(config, mesh)
    state = replicate(init_state(config, jax.random.key(0)), mesh)
    m = jax.tree.map(lambda a: np.zeros(a.shape), state["generator"]["params"])
    for batch in _batches(config, 3):
        state, _ = step(state, shard_batch(batch, mesh), run_key(1, 0, mesh))
        m = jax.tree.map(
            lambda m, theta: 0.6 * m + 0.4 * np.asarray(theta, np.float64), m, state["generator"]["params"]
        )
    expected = jax.tree.map(lambda m: m / (1 - 0.6**3), m)
    average = state["generator_ema"]
    for got, want in zip(jax.tree.leaves(average["params"]), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    raw = jax.tree.leaves(state["generator"]["params"])
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(average["params"]), raw))
    for a, b in zip(jax.tree.leaves(average["batch_stats"]), jax.tree.leaves(state["generator"]["batch_stats"])):
        np.testing.assert_array_equal(a, b)


def test_sample_and_eval_with_ema_read_the_averaged_generator(tmp_path, cache_dir, capsys):
    """``--ema`` reads a checkpoint's averaged generator. sample's images are the generator applied to the
    checkpoint's averaged parameters with the raw generator's BN statistics (the documented assembly, put
    together here from the restored arrays), and differ from the raw generator's. eval's loss equals what the
    trainer measured on the averaged generator with the same targets, steps and batch: the final test's ``ema``
    entry (best iteration) and an earlier iteration's running test (``ema_test_loss``), both on the first 8
    final-test images. A checkpoint without an average (a converted one; a run without --ema_decay holds the
    same two networks) is one error line naming --ema_decay, with nothing written."""
    from wngan_jax import checkpoint, sample
    from wngan_jax import eval as eval_cli

    config = tiny(norm="bn", lr=2e-3, ema_decay=0.6, keep_every=3, running_test=8, final_test_samples=8)
    config = config.replace(final_test_steps=3, cache_dir=cache_dir)
    run = tmp_path / "run"
    train.train_and_evaluate(config, run)
    final = json.loads((run / "final_test" / "report.json").read_text())
    rows = {r["iteration"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}
    measured = {  # --which: the trainer's loss of the averaged generator, of the raw one (the first 8 images)
        "best": (final["ema"]["mean_loss"], final["mean_loss"]),
        "3": (rows[3]["ema_test_loss"], rows[3]["test_loss"]),
    }
    assert final["iteration"] != 3
    ckpt = Checkpoints(run, read_only=True)
    codes = np.random.default_rng(0).standard_normal((5, config.model.code_size)).astype(np.float32)
    np.save(tmp_path / "codes.npy", codes)
    generator = config.model.generator()
    for which, (averaged_loss, raw_loss) in measured.items():
        models = ckpt.restore(which)["models"]
        averaged = {"params": models["generator_ema"]["params"], "batch_stats": models["generator"]["batch_stats"]}
        want = np.asarray(generator.apply(averaged, codes, train=False))
        raw = np.asarray(generator.apply(models["generator"], codes, train=False))
        assert np.abs(want - raw).max() > 1e-4  # 100 times the tolerance below
        for ema, expected in ((True, want), (False, raw)):
            out = tmp_path / f"{which}_{ema}.npy"
            argv = ["--checkpoint", str(run), f"--which={which}", f"--ema={ema}", f"--codes={tmp_path / 'codes.npy'}"]
            assert sample.main([*argv, "--out", str(out)]) == 0
            np.testing.assert_allclose(np.load(out), expected, rtol=1e-6, atol=1e-6)
            assert ("averaged generator, iteration" in capsys.readouterr().out) == ema

        argv = ["--checkpoint", str(run), f"--which={which}", "--ema", "--data=digits", f"--cache_dir={cache_dir}"]
        argv += ["--samples=8", "--steps=3", "--batch_size=8", f"--out={tmp_path / which}"]
        assert eval_cli.main(argv) == 0
        report = json.loads((tmp_path / which / "report.json").read_text())
        assert report["generator"] == "ema" and report["samples"] == 8
        assert report["mean_loss"] == pytest.approx(averaged_loss, rel=1e-6)
        assert report["mean_loss"] != pytest.approx(raw_loss, rel=1e-3)
    ckpt.close()

    networks = {k: models[k] for k in ("generator", "discriminator")}
    checkpoint.save_models(tmp_path / "converted", config.model, networks)
    capsys.readouterr()
    for main, rest in (
        (sample.main, ["--num=2", f"--out={tmp_path / 'x.npy'}"]),
        (eval_cli.main, ["--data=digits", f"--out={tmp_path / 'x'}"]),
    ):
        assert main(["--checkpoint", str(tmp_path / "converted"), "--ema", *rest]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--ema needs a run trained with --ema_decay > 0" in err[0], err
    assert not (tmp_path / "x.npy").exists() and not (tmp_path / "x").exists()


# Losses on D's logits. sigmoid(ln 3) = 3/4, sigmoid(0) = 1/2, sigmoid(-ln 3) = 1/4, so the hand values below
# are sums of logs of small fractions and of squares of quarters.
LN3 = float(np.log(3.0))
REAL_LOGITS = np.float32([LN3, 0.0, -LN3])  # D(x) = 3/4, 1/2, 1/4
FAKE_LOGITS = np.float32([-LN3, 0.0])  # D(G(z)) = 1/4, 1/2
HAND_LOSSES = {  # kind: (D's loss, G's loss)
    # Paper §5.1: D: -mean log D(x) - mean log(1 - D(G(z))); G, non-saturating: -mean log D(G(z)).
    # D: (ln 4/3 + ln 2 + ln 4) / 3 + (ln 4/3 + ln 2) / 2; G: (ln 4 + ln 2) / 2.
    "bce": (np.log(32 / 3) / 3 + np.log(8 / 3) / 2, 1.5 * np.log(2)),
    # Least squares on D's sigmoid output against 1 (real) and 0 (fake): D: mean (D(x) - 1)^2 + mean D(G(z))^2;
    # G: mean (D(G(z)) - 1)^2. D: (1/16 + 1/4 + 9/16) / 3 + (1/16 + 1/4) / 2 = 7/24 + 5/32; G: (9/16 + 1/4) / 2.
    "lsgan": (43 / 96, 13 / 32),
    # Appendix D: the critic's raw outputs C, no sigmoid. D: mean C(G(z)) - mean C(x); G: -mean C(G(z)).
    "wasserstein": (-LN3 / 2, LN3 / 2),
}


def np_losses(kind, real_logits, fake_logits):
    """(D's loss, G's loss) from the definitions above, in float64."""
    real, fake = np.asarray(real_logits, np.float64), np.asarray(fake_logits, np.float64)
    d_real, d_fake = 1 / (1 + np.exp(-real)), 1 / (1 + np.exp(-fake))
    if kind == "bce":  # -log s(x) = log(1 + e^-x), -log(1 - s(x)) = log(1 + e^x): exact in float64 at any x
        return np.mean(np.logaddexp(0, -real)) + np.mean(np.logaddexp(0, fake)), np.mean(np.logaddexp(0, -fake))
    if kind == "lsgan":
        return np.mean((d_real - 1) ** 2) + np.mean(d_fake**2), np.mean((d_fake - 1) ** 2)
    return np.mean(fake) - np.mean(real), -np.mean(fake)


@pytest.mark.parametrize("kind", sorted(HAND_LOSSES))
def test_losses_equal_hand_computed_values(kind):
    d_loss, g_loss = HAND_LOSSES[kind]
    assert float(discriminator_loss(kind, REAL_LOGITS, FAKE_LOGITS)) == pytest.approx(d_loss, rel=1e-6)
    assert float(generator_loss(kind, FAKE_LOGITS)) == pytest.approx(g_loss, rel=1e-6)
    assert np_losses(kind, REAL_LOGITS, FAKE_LOGITS) == (pytest.approx(d_loss), pytest.approx(g_loss))


@pytest.mark.parametrize("kind", sorted(HAND_LOSSES))
def test_losses_equal_their_definitions_on_random_and_extreme_logits(kind):
    """Random logits (batches of 5 real, 7 fake) in float64 definitions; BCE from logits stays exact where
    D's sigmoid output rounds to 0 or 1 in float32 (logits of +-40 and beyond)."""
    rng = np.random.default_rng(0)
    real, fake = rng.normal(0, 3, 5).astype(np.float32), rng.normal(0, 3, 7).astype(np.float32)
    for r, f in ((real, fake), (np.float32([-60.0, 40.0]), np.float32([45.0, -80.0, 0.5]))):
        d_loss, g_loss = np_losses(kind, r, f)
        assert float(discriminator_loss(kind, r, f)) == pytest.approx(d_loss, rel=1e-5)
        assert float(generator_loss(kind, f)) == pytest.approx(g_loss, rel=1e-5)


def test_unknown_loss_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="unknown loss 'hinge'"):
        discriminator_loss("hinge", REAL_LOGITS, FAKE_LOGITS)
    with pytest.raises(errors.ConfigError, match="unknown loss 'hinge'"):
        generator_loss("hinge", FAKE_LOGITS)


def test_lsgan_trains_end_to_end(tmp_path, cache_dir):
    """A short lsgan run: finite losses that change from row to row, and each row's D loss is a least-squares
    one. With s the sigmoid outputs in (0, 1), d_real = mean s(real) and d_fake = mean s(fake) (logged beside
    it), Jensen and s^2 <= s bound mean (s(real) - 1)^2 + mean s(fake)^2 between (1 - d_real)^2 + d_fake^2 and
    (1 - d_real) + d_fake; BCE's D loss, -mean log s(real) - mean log(1 - s(fake)), lies above that range."""
    summary = train.train_and_evaluate(tiny(loss="lsgan", cache_dir=cache_dir), tmp_path / "run")
    assert summary["iteration"] == 6 and summary["rollbacks"] == 0 and np.isfinite(summary["best_loss"])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == list(range(1, 7))
    for r in rows:
        low, high = (1 - r["d_real"]) ** 2 + r["d_fake"] ** 2, (1 - r["d_real"]) + r["d_fake"]
        assert low - 1e-6 <= r["d_loss"] <= high + 1e-6, r
        assert 0 <= r["g_loss"] <= 1 and np.isfinite(r["g_loss"]), r
    assert len({r["d_loss"] for r in rows}) == 6 and len({r["g_loss"] for r in rows}) == 6


RESNET = dict(arch="resnet", gen_features=(8, 16), gen_blocks=(1, 1), dis_features=(8, 16), dis_blocks=(1, 1))


@pytest.mark.parametrize("kind", ["bce", "lsgan", "wasserstein"])
def test_generators_image_gradient_is_the_discriminator_backward_rescaled(kind):
    """G's gradient at its images, rescaled per sample from the backward of D's fake loss, equals a backward
    of G's loss of its own (float rounding apart); the rescaled one is what runs, unless a sample's cotangent
    is under ``MIN_SHARED_COTANGENT``: then G's own backward runs."""
    config = tiny(**RESNET).model
    D = config.discriminator()
    images = jax.random.uniform(jax.random.key(1), (6, *config.image_size, config.channels))
    variables = D.init(jax.random.key(0), images)
    logits, pullback = jax.vjp(lambda x: D.apply(variables, x), images)
    logits = logits + jnp.linspace(-8.0, 8.0, 6)  # fake samples from confidently fake to confidently real
    d_cotangent = jax.grad(lambda f: discriminator_loss(kind, jnp.zeros(1), f))(logits)
    g_cotangent = jax.grad(functools.partial(generator_loss, kind))(logits)
    want = pullback(g_cotangent)[0]
    assert float(jnp.max(jnp.abs(want))) > 0

    def no_backward(cotangent):
        return jnp.zeros_like(images)

    got = jax.jit(rescaled_image_grads, static_argnums=3)(
        pullback(d_cotangent)[0], d_cotangent, g_cotangent, no_backward
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(want))))
    tiny_cotangent = d_cotangent.at[2].set(train_step.MIN_SHARED_COTANGENT / 2)
    own = rescaled_image_grads(pullback(tiny_cotangent)[0], tiny_cotangent, g_cotangent, no_backward)
    assert float(jnp.max(jnp.abs(own))) == 0


@pytest.mark.parametrize("norm", ["bn", "wn", "resnet"])
def test_four_devices_equal_one(norm):
    """Data parallel over 4 CPU devices gives the parameters of 1 device after three steps (for the ResNet
    follow-up, with G's gradient rescaled from D's backward: its cross-device condition and rescaling).

    Exceptions, where a gradient is exactly zero, so that RMSProp turns rounding noise, which differs with the
    reduction order, into steps of up to lr/sqrt(1 - decay) (eps 1e-8 for the ResNet): those parameters get
    that bound. BN models: a conv bias right before BN (BN removes any per-channel constant) and the running
    means that follow it. ResNet: a TPReLU's alpha, exactly zero in a channel whose inputs all lie above it.
    """
    config = tiny(**RESNET) if norm == "resnet" else tiny(norm=norm, batch_size=8)
    batches = _batches(config, 3)
    one, _ = _run_steps(config, batches, devices=1)
    four, _ = _run_steps(config, batches, devices=4)
    noise_bound = 3 * config.lr / np.sqrt(1 - config.rmsprop_decay)
    for net in ("generator", "discriminator"):
        _compare_models(one[net], four[net], noise_bound, config.model.arch == "resnet")


def _compare_models(one, four, noise_bound, resnet=False):
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(one), jax.tree_util.tree_leaves(four)):
        names = [key.key for key in path]
        layer = names[-2].rsplit("_", 1)[0]
        before_bn = layer != "initial" and f"{layer}_norm" in one["params"] and names[-1] in ("bias", "mean")
        if before_bn or (resnet and names[-1] == "alpha"):
            np.testing.assert_allclose(a, b, atol=noise_bound, err_msg=str(names))
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=str(names))


def _final_params(workdir):
    ckpt = Checkpoints(workdir, read_only=True)
    restored = ckpt.restore("last")
    ckpt.close()
    return restored["models"], restored["meta"]


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, cache_dir):
    config = tiny(norm="bn", cache_dir=cache_dir)
    straight = train.train_and_evaluate(config, tmp_path / "straight")
    train.train_and_evaluate(config.replace(iterations=3), tmp_path / "resumed")
    resumed = train.train_and_evaluate(config, tmp_path / "resumed")
    assert resumed["best_loss"] == straight["best_loss"]
    a, meta_a = _final_params(tmp_path / "straight")
    b, meta_b = _final_params(tmp_path / "resumed")
    assert set(a) == {"generator", "discriminator"}  # --ema_decay=0 adds no averaged generator
    assert meta_a["data"] == meta_b["data"] and meta_a["iteration"] == 6
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y)  # bitwise on CPU
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == list(range(1, 7))
    assert sorted(p.name for p in (tmp_path / "resumed" / "samples").iterdir()) == [
        "iter_0000003.png",
        "iter_0000006.png",
    ]


def test_nan_rolls_back_to_last_checkpoint(tmp_path, cache_dir, monkeypatch):
    """A NaN batch at iteration 5 makes the loss non-finite; the run goes back to iteration 3 and finishes."""
    calls = {"n": 0}
    original = data.BatchIterator.__next__

    def poisoned(self):
        calls["n"] += 1
        batch = original(self)
        return batch * np.nan if calls["n"] == 5 else batch

    monkeypatch.setattr(data.BatchIterator, "__next__", poisoned)
    summary = train.train_and_evaluate(tiny(cache_dir=cache_dir), tmp_path / "run")
    assert summary["iteration"] == 6 and summary["rollbacks"] == 1
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "d_loss" in r] == list(range(1, 7))
    assert all(np.isfinite(r["d_loss"]) for r in records if "d_loss" in r)


def test_persistent_nan_stops_with_a_clear_message(tmp_path, cache_dir, monkeypatch):
    original = data.BatchIterator.__next__
    monkeypatch.setattr(data.BatchIterator, "__next__", lambda self: original(self) * np.nan)
    with pytest.raises(errors.TrainingDiverged, match="non-finite"):
        train.train_and_evaluate(tiny(cache_dir=cache_dir, max_rollbacks=2), tmp_path / "run")


def test_workdir_with_another_config_is_refused(tmp_path, cache_dir):
    config = tiny(cache_dir=cache_dir, iterations=3)
    train.train_and_evaluate(config, tmp_path / "run")
    with pytest.raises(errors.WorkdirConflict, match="lr"):
        train.train_and_evaluate(config.replace(lr=1e-3), tmp_path / "run")
    summary = train.train_and_evaluate(config.replace(lr=1e-3), tmp_path / "run", overwrite=True)
    assert summary["iteration"] == 3


def test_bfloat16_compute_keeps_float32_parameters_and_tracks_float32():
    """--dtype=bfloat16 computes convolutions in bfloat16; parameters, norms and losses stay float32."""
    batches = _batches(tiny(), 2)
    f32_state, f32_history = _run_steps(tiny(), batches, devices=1)
    bf16_state, bf16_history = _run_steps(tiny(dtype="bfloat16"), batches, devices=1)
    assert all(leaf.dtype == np.float32 for leaf in jax.tree_util.tree_leaves(bf16_state["generator"]))
    for a, b in zip(f32_history, bf16_history):
        assert b["d_loss"].dtype == np.float32 and bool(b["finite"])
        assert float(b["d_loss"]) == pytest.approx(float(a["d_loss"]), rel=0.02)
        assert float(b["g_loss"]) == pytest.approx(float(a["g_loss"]), rel=0.02)
    assert float(bf16_history[0]["d_loss"]) != float(f32_history[0]["d_loss"])  # bfloat16 did run


KILL_AFTER = 50  # the iteration whose metrics row is the signal to kill (its checkpoint is written before it)


def _logged_iterations(workdir) -> list[int]:
    """Iterations of the complete rows of a run's metrics.jsonl (the last line may be half-written)."""
    path = workdir / "metrics.jsonl"
    lines = path.read_text().split("\n")[:-1] if path.exists() else []
    return [json.loads(line)["iteration"] for line in lines]


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, cache_dir):
    """SIGKILL a training process at a fixed point, as soon as it has logged iteration KILL_AFTER (checkpoints
    every 10): the checkpoints stay readable and the same command finishes the run from the last one, with
    each metrics row written once. The child's stderr goes to a file (it never waits on a full pipe) and is
    printed, so pytest shows it when the test fails."""
    import os
    import signal
    import subprocess
    import sys
    import time

    config = tiny(cache_dir=cache_dir, iterations=400, test_every=10, sample_every=200, keep_every=200, log_every=10)
    flags = [f"--{k}={v}" for k, v in config.to_dict().items() if k != "model"]
    flags += [f"--{k}={v}" for k, v in config.model.to_dict().items() if k not in ("image_size", "critic")]
    flags += ["--image_size=16", f"--workdir={tmp_path / 'run'}"]
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    stderr_path = tmp_path / "child_stderr.txt"
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "experiments.digits", *flags], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 300
        while KILL_AFTER not in _logged_iterations(tmp_path / "run"):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    print(f"stderr of the killed run:\n{stderr_path.read_text()}")
    assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
    assert KILL_AFTER in _logged_iterations(tmp_path / "run"), "the run was killed before its signal (timeout)"
    last = tmp_path / "run" / "checkpoints" / "last"
    killed_at = max(int(p.name) for p in last.iterdir() if p.name.isdigit())
    assert KILL_AFTER <= killed_at < 400
    summary = train.train_and_evaluate(config, tmp_path / "run")
    assert summary["iteration"] == 400
    _, meta = _final_params(tmp_path / "run")
    assert meta["iteration"] == 400
    assert _logged_iterations(tmp_path / "run") == list(range(10, 401, 10))


class _RecordingConfig:
    """A TrainConfig that records which of its fields are read."""

    def __init__(self, config):
        self._config, self.read = config, set()

    def __getattr__(self, name):
        self.read.add(name)
        return getattr(self._config, name)


def test_the_step_reads_exactly_the_fields_of_its_key():
    """The step is built and traced from a config that records what is read: every field read is in
    ``StepConfig`` (the cache key), and every ``StepConfig`` field is read (none keeps steps apart needlessly)."""
    config = tiny()
    recording = _RecordingConfig(config)
    mesh = make_mesh(jax.devices()[:1])
    step = train_step._build_step(recording, mesh, ops.SPLIT_PHASES_BELOW, None)
    state = jax.eval_shape(lambda: init_state(config, jax.random.key(0)))
    batch = jax.ShapeDtypeStruct((config.batch_size, *config.model.image_size, config.model.channels), jnp.float32)
    step.lower(state, batch, jax.ShapeDtypeStruct((2,), jnp.uint32))
    declared = {f.name for f in dataclasses.fields(train_step.StepConfig)}
    assert recording.read - declared == set(), "the step reads fields its cache key lacks"
    assert recording.read == declared


def test_configs_differing_outside_the_key_share_one_compiled_step():
    mesh = make_mesh(jax.devices()[:1])
    step = make_train_step(tiny(), mesh)
    assert make_train_step(tiny(seed=5, iterations=9, test_every=2, data="digits"), mesh) is step
    for change in (dict(lr=1e-3), dict(loss="lsgan"), dict(batch_size=4), dict(norm="bn")):
        assert make_train_step(tiny(**change), mesh) is not step, change
    assert make_train_step(tiny(), mesh, split_phases_below=0.0) is not step
