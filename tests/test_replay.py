"""Replaying training iterations against the authors' loop (docs/authors.md §3, "Replaying a run elsewhere").

The project's jitted iteration (``train_step.make_train_step``) and the authors' PyTorch iteration
(``authors_torch.train_iteration``, their ``main.py``) start from the same networks (``authors_torch`` randomized,
imported with ``convert.authors_to_variables``) and are fed the same real batches and the codes of
``train_step.iteration_codes``. The PyTorch loop runs in float64 (the reference) and in float32. After one
iteration every parameter and BN running statistic of ours must lie within 3x the float32 loop's distance from
the reference, as norms of whole tensors: where the real and fake gradients cancel, float32 gradients of either
implementation carry relative errors far above float32's epsilon, and RMSProp's first step (about
``±3.16 lr sign(g)``) flips with rounding on near-zero gradient entries, so elementwise tolerances would measure
luck. Biases that feed a batch norm are skipped: their true gradient is zero, so their step is rounding. The
losses of three consecutive iterations must agree to 1e-3 relative.
"""

import copy

import jax
import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="the replay runs the authors' training loop in PyTorch: pip install 'wngan_jax[torch]'"
)

from wngan_jax import authors_resnet_torch, authors_torch, convert, sharding, train_step  # noqa: E402
from wngan_jax.config import TrainConfig  # noqa: E402
from wngan_jax.models import ModelConfig  # noqa: E402

SIZE, NF, CODE, BATCH, SEED, ITERATIONS = 16, 8, 16, 8, 0, 3
RATIO = 3.0  # ours may be this many times farther from the float64 reference than PyTorch's float32 run
LOSS_RTOL = 1e-3


def authors_nets(norm):
    """The authors' networks, randomized, with every PReLU/TPReLU slope inside (0, 1).

    ``randomize_`` draws slopes outside [0, 1]; there the authors' TPReLU clamps in its forward pass (zero
    gradient) and their PReLU is not clipped at all, while the project clips slopes after each update
    (docs/design.md, "departs" table), so the two loops would differ by design. Inside (0, 1), and after one
    small step, both compute the same maths.
    """
    g = authors_torch.randomize_(authors_torch.Generator(norm, SIZE, NF, CODE), SEED)
    d = authors_torch.randomize_(authors_torch.Discriminator(norm, SIZE, NF), SEED + 1)
    with torch.no_grad():
        for net in (g, d):
            for m in net.modules():
                if isinstance(m, (authors_torch.TPReLU, torch.nn.PReLU)):
                    m.weight.clamp_(0.1, 0.9)
    return g.train(), d.train()


class AuthorsLoop:
    """The authors' loop on copies of the networks in ``dtype``."""

    def __init__(self, nets, dtype, lr):
        self.dtype = dtype
        self.g, self.d = (copy.deepcopy(n).to(dtype) for n in nets)
        self.g_opt, self.d_opt = authors_torch.rmsprop(self.g, lr), authors_torch.rmsprop(self.d, lr)

    def iteration(self, real_nhwc, d_codes, g_codes):
        real, dz, gz = (torch.from_numpy(np.array(a)).to(self.dtype) for a in (real_nhwc, d_codes, g_codes))
        losses = authors_torch.train_iteration(self.g, self.d, self.g_opt, self.d_opt, real.permute(0, 3, 1, 2), dz, gz)
        return tuple(float(x) for x in losses)

    def variables(self, model_config):
        """Both networks as the project's variables (its layouts, dense units (h, w, c)) in numpy, exactly."""
        out = {}
        dtype = np.float64 if self.dtype == torch.float64 else np.float32
        with jax.enable_x64(True):
            for name, net in (("generator", self.g), ("discriminator", self.d)):
                variables = convert.authors_to_variables(net.state_dict(), model_config, name, dtype=dtype)
                out[name] = jax.tree.map(np.asarray, variables)
        return out


def leaves(tree):
    """``{(collection, module, name): array}``."""
    return {tuple(k.key for k in path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def feeds_batch_norm(net_params, path):
    """A dense/conv bias right before a batch norm: its true gradient is zero, so its step is rounding."""
    collection, module, name = path
    prefix, kind = module.rsplit("_", 1)
    return collection == "params" and kind in ("conv", "linear") and name == "bias" and f"{prefix}_norm" in net_params


def start_state(nets, model, config) -> dict:
    """Our train state from the authors' generator and discriminator (their weights, fresh RMSProp states)."""
    start = {
        name: convert.authors_to_variables(net.state_dict(), model, name)
        for name, net in zip(("generator", "discriminator"), nets)
    }
    opt = train_step.rmsprop(config)
    return dict(
        generator=start["generator"],
        discriminator=start["discriminator"],
        g_opt=opt.init(start["generator"]["params"]),
        d_opt=opt.init(start["discriminator"]["params"]),
        step=np.zeros((), np.int32),
    )


@pytest.mark.parametrize("norm", authors_torch.NORMS)
def test_one_iteration_matches_the_authors_loop_in_float64(norm):
    model = convert.authors_config(norm, SIZE, nfeature=NF, code_size=CODE)
    config = TrainConfig(model=model, batch_size=BATCH, seed=SEED)
    mesh = sharding.make_mesh(jax.devices()[:1])
    key_data = jax.random.key_data(jax.random.fold_in(jax.random.key(config.seed), 0))
    run_key = train_step.run_key(config.seed, 0, mesh)
    np.testing.assert_array_equal(np.asarray(run_key), np.asarray(key_data))

    nets = authors_nets(norm)
    t64, t32 = AuthorsLoop(nets, torch.float64, config.lr), AuthorsLoop(nets, torch.float32, config.lr)
    state = start_state(nets, model, config)
    step_fn = train_step.make_train_step(config, mesh)
    reals = np.random.default_rng(SEED).random((ITERATIONS, BATCH, SIZE, SIZE, 3), dtype=np.float32)

    for t in range(ITERATIONS):
        d_codes, g_codes = (np.asarray(z) for z in train_step.iteration_codes(config, key_data, t))
        state, metrics = step_fn(state, sharding.shard_batch(reals[t], mesh), run_key)
        want = t64.iteration(reals[t], d_codes, g_codes)
        t32.iteration(reals[t], d_codes, g_codes)
        got = (float(metrics["d_loss"]), float(metrics["g_loss"]))
        np.testing.assert_allclose(got, want, rtol=LOSS_RTOL, err_msg=f"{norm}: (D, G) losses of iteration {t}")
        if t == 0:
            check_tensors(norm, state, t64.variables(model), t32.variables(model), skip=feeds_batch_norm)


class ResnetLoop(AuthorsLoop):
    """The follow-up's loop (their ``main.py``) on copies of the networks in ``dtype``."""

    def __init__(self, nets, dtype, lr):
        self.dtype = dtype
        self.g, self.d = (copy.deepcopy(n).to(dtype) for n in nets)
        self.g_opt, self.d_opt = authors_resnet_torch.rmsprop(self.g, lr), authors_resnet_torch.rmsprop(self.d, lr)

    def iteration(self, real_nhwc, codes):
        real, z = (torch.from_numpy(np.array(a)).to(self.dtype) for a in (real_nhwc, codes))
        losses = authors_resnet_torch.train_iteration(
            self.g, self.d, self.g_opt, self.d_opt, real.permute(0, 3, 1, 2), z
        )
        return tuple(float(x) for x in losses)


def test_resnet_iterations_match_the_authors_loop_in_float64():
    """Their loop on a non-square model with the pad-2-mod-4 path (10 -> 6 -> 3) and two blocks in a level."""
    size, features = (10, 12), (4, 6)
    model = ModelConfig(
        arch="resnet", image_size=size, channels=3, code_size=CODE, gen_features=features, gen_blocks=(1, 2),
        dis_features=features, dis_blocks=(2, 1),
    )  # fmt: skip
    config = TrainConfig(model=model, batch_size=BATCH, seed=SEED, lr=2e-5, rmsprop_eps=1e-8)
    mesh = sharding.make_mesh(jax.devices()[:1])
    run_key = train_step.run_key(config.seed, 0, mesh)
    nets = (
        authors_resnet_torch.randomize_(authors_resnet_torch.Generator(size, features, (1, 2), CODE), SEED),
        authors_resnet_torch.randomize_(authors_resnet_torch.Discriminator(size, features, (2, 1)), SEED + 1),
    )
    t64, t32 = ResnetLoop(nets, torch.float64, config.lr), ResnetLoop(nets, torch.float32, config.lr)
    state = start_state(nets, model, config)
    step_fn = train_step.make_train_step(config, mesh)
    reals = np.random.default_rng(SEED).random((ITERATIONS, BATCH, *size, 3), dtype=np.float32)
    for t in range(ITERATIONS):
        d_codes, g_codes = (np.asarray(z) for z in train_step.iteration_codes(config, np.asarray(run_key), t))
        np.testing.assert_array_equal(d_codes, g_codes)  # their loop draws one batch
        state, metrics = step_fn(state, sharding.shard_batch(reals[t], mesh), run_key)
        want = t64.iteration(reals[t], d_codes)
        t32.iteration(reals[t], d_codes)
        got = (float(metrics["d_loss"]), float(metrics["g_loss"]))
        np.testing.assert_allclose(got, want, rtol=LOSS_RTOL, err_msg=f"resnet: (D, G) losses of iteration {t}")
        if t == 0:
            check_tensors("resnet", state, t64.variables(model), t32.variables(model))


def check_tensors(norm, state, ref64, ref32, skip=lambda params, path: False):
    """Per tensor, ``||ours - t64|| <= RATIO * ||t32 - t64||`` (Frobenius norms of whole tensors)."""
    failures, compared = [], 0
    for net in ("generator", "discriminator"):
        ours, want, f32 = leaves(state[net]), leaves(ref64[net]), leaves(ref32[net])
        assert ours.keys() == want.keys() == f32.keys()
        for path, a in ours.items():
            if skip(ref64[net]["params"], path):
                continue
            assert a.shape == want[path].shape, path
            ours_err = np.linalg.norm(a.astype(np.float64) - want[path])
            f32_err = np.linalg.norm(f32[path].astype(np.float64) - want[path])
            # No absolute floor: every tensor moves in the iteration, so storing it in float32 already rounds it.
            assert f32_err > 0, f"{net}/{'/'.join(path)}: float32 equals float64 exactly"
            compared += 1
            if ours_err > RATIO * f32_err:
                failures.append(f"{net}/{'/'.join(path)}: ours {ours_err:.3g} vs float32 {f32_err:.3g}")
    assert compared > 0
    assert not failures, f"{norm}: farther from the float64 reference than {RATIO}x float32:\n" + "\n".join(failures)
