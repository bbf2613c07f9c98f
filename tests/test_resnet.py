"""The ResNet follow-up (``wngan_jax.resnet``) against an independent PyTorch re-implementation of the authors'
modules (``wngan_jax.authors_resnet_torch``) run in float64: every layer and both networks, forward and gradients;
the initialisation; the config's validation."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wngan_jax import layers, models, resnet

torch = pytest.importorskip("torch", reason="the reference is PyTorch: pip install 'wngan_jax[torch]'")

from wngan_jax import authors_resnet_torch as ref  # noqa: E402
from wngan_jax import convert  # noqa: E402

RTOL = 2e-5  # ours in float32 against the float64 reference, relative to the largest entry


def close(got, want, what="", floor=0.0):
    """Max error relative to the largest entry of ``want`` (or ``floor`` where that is smaller)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = max(np.max(np.abs(want)), floor)
    assert scale > 0, what
    err = np.max(np.abs(got - want)) / scale
    assert err < RTOL, f"{what}: relative error {err:.3g}"


def t64(a):
    return torch.from_numpy(np.asarray(a, np.float64)).requires_grad_(True)


def nchw(a):
    return np.asarray(a).transpose(0, 3, 1, 2)


def nhwc(a):
    return np.asarray(a).transpose(0, 2, 3, 1)


# ---------------------------------------------------------------------------------------------------------
# Layers, forward and every gradient, against the reference modules


CONV_CASES = [  # (c_in, c_out, kernel, stride, padding, transposed, affine, input (h, w))
    (3, 5, 4, 2, (2, 1), False, False, (10, 8)),  # the pad-2-mod-4 path
    (4, 4, 3, 1, (1, 1), False, False, (5, 6)),
    (6, 1, (3, 2), 1, (0, 0), False, True, (3, 2)),  # the discriminator's final conv
    (4, 4, 3, 1, (1, 1), True, False, (5, 6)),
    (5, 3, 4, 2, (2, 1), True, False, (4, 5)),
    (4, 6, 1, 1, (0, 0), True, False, (3, 4)),
]


@pytest.mark.parametrize("c_in,c_out,kernel,stride,padding,transposed,affine,hw", CONV_CASES)
def test_conv_layers_match_the_reference(c_in, c_out, kernel, stride, padding, transposed, affine, hw):
    """Forward, input gradient and every parameter gradient of a WN (transposed) conv, norm + 1e-8 after the root."""
    m = ref.WNConv(c_in, c_out, kernel, stride, padding, transposed, affine).double()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(rng.standard_normal(m.weight.shape)))
        if affine:
            m.scale.copy_(torch.from_numpy(rng.uniform(-2, 2, c_out)))
            m.bias.copy_(torch.from_numpy(rng.standard_normal(c_out)))
    x = rng.standard_normal((2, *hw, c_in))
    xt = t64(nchw(x))
    y = m(xt)
    c = rng.standard_normal(y.shape)
    (y * torch.from_numpy(c)).sum().backward()

    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    layer = layers.Conv(
        c_out, k, (stride, stride), padding, transpose=transposed, norm="affine" if affine else "strict",
        use_bias=False, eps_after_root=True,
    )  # fmt: skip
    params = {"kernel": m.weight.detach().numpy().transpose(2, 3, 1, 0).astype(np.float32)}
    if affine:
        params |= {"scale": np.float32(m.scale.detach().numpy()), "bias": np.float32(m.bias.detach().numpy())}
    x32, c32 = x.astype(np.float32), nhwc(c).astype(np.float32)
    out, (dparams, dx) = jax.jit(lambda p, x, c: _forward_backward(layer, p, x, c))(params, x32, c32)
    close(out, nhwc(y.detach().numpy()), "output")
    close(dx, nhwc(xt.grad.numpy()), "input gradient")
    close(dparams["kernel"], m.weight.grad.numpy().transpose(2, 3, 1, 0), "kernel gradient")
    if affine:
        close(dparams["scale"], m.scale.grad.numpy(), "scale gradient")
        close(dparams["bias"], m.bias.grad.numpy(), "bias gradient")


def _forward_backward(layer, params, x, cotangent):
    out, pullback = jax.vjp(lambda p, x: layer.apply({"params": p}, x), params, x)
    return out, pullback(cotangent)


def test_dense_layer_matches_the_reference():
    m = ref.WNLinear(7, 5).double()
    ref.randomize_(m, 0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 7))
    xt = t64(x)
    y = m(xt)
    c = rng.standard_normal(y.shape)
    (y * torch.from_numpy(c)).sum().backward()
    layer = layers.Dense(5, norm="affine", eps_after_root=True)
    params = {
        "kernel": np.float32(m.weight.detach().numpy().T),
        "scale": np.float32(m.scale.detach().numpy()),
        "bias": np.float32(m.bias.detach().numpy()),
    }
    out, pullback = jax.vjp(lambda p, x: layer.apply({"params": p}, x), params, x.astype(np.float32))
    close(out, y.detach().numpy(), "output")
    dparams, dx = pullback(c.astype(np.float32))
    close(dx, xt.grad.numpy(), "input gradient")
    close(dparams["kernel"], m.weight.grad.numpy().T, "kernel gradient")
    close(dparams["scale"], m.scale.grad.numpy(), "scale gradient")
    close(dparams["bias"], m.bias.grad.numpy(), "bias gradient")


def test_tprelu_clamps_its_slope_in_the_forward_pass():
    """Slopes outside [0, 1] act clamped and get no gradient, inside they act and learn as they are."""
    m = ref.TPReLU(4).double()
    with torch.no_grad():
        m.weight.copy_(torch.tensor([-0.5, 0.3, 1.7, 0.8]))
        m.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 5, 4, 4))
    xt = t64(nchw(x))
    y = m(xt)
    c = rng.standard_normal(y.shape)
    (y * torch.from_numpy(c)).sum().backward()
    layer = layers.PReLU(translated=True, clamp=True)
    params = {"slope": np.float32(m.weight.detach().numpy()), "alpha": np.float32(m.bias.detach().numpy())}
    out, pullback = jax.vjp(lambda p, x: layer.apply({"params": p}, x), params, x.astype(np.float32))
    close(out, nhwc(y.detach().numpy()), "output")
    dparams, dx = pullback(nhwc(c).astype(np.float32))
    close(dx, nhwc(xt.grad.numpy()), "input gradient")
    close(dparams["slope"], m.weight.grad.numpy(), "slope gradient")
    close(dparams["alpha"], m.bias.grad.numpy(), "alpha gradient")
    slope_grad = np.asarray(dparams["slope"])
    assert slope_grad[0] == 0 and slope_grad[2] == 0 and np.all(slope_grad[[1, 3]] != 0)


def test_addition_affine_and_upscale_match_the_reference():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 2, 3, 3, 5))
    add, aff = ref.WNAddition(5).double(), ref.Affine(5).double()
    ref.randomize_(add, 0)
    ref.randomize_(aff, 1)
    at, bt = t64(nchw(a)), t64(nchw(b))
    y = aff(add(at, bt))
    c = rng.standard_normal(y.shape)
    (y * torch.from_numpy(c)).sum().backward()

    def ours(p, a, b):
        s = layers.WeightNormalizedAddition((0.0, 1.0)).apply({"params": p["add"]}, a, b)
        return layers.Affine().apply({"params": p["affine"]}, s)

    params = {
        "add": {"weight": np.float32(add.weight.detach().numpy())},
        "affine": {"scale": np.float32(aff.scale.detach().numpy()), "bias": np.float32(aff.bias.detach().numpy())},
    }
    out, pullback = jax.vjp(ours, params, np.float32(a), np.float32(b))
    close(out, nhwc(y.detach().numpy()), "output")
    dp, da, db = pullback(nhwc(c).astype(np.float32))
    close(da, nhwc(at.grad.numpy()), "first input gradient")
    close(db, nhwc(bt.grad.numpy()), "second input gradient")
    close(dp["add"]["weight"], add.weight.grad.numpy(), "addition weight gradient")
    close(dp["affine"]["scale"], aff.scale.grad.numpy(), "affine scale gradient")
    x = rng.standard_normal((2, 3, 4, 2)).astype(np.float32)
    np.testing.assert_array_equal(
        layers.NearestNeighbourUpscale().apply({}, x), nhwc(ref.upscale2x(torch.from_numpy(nchw(x))).numpy())
    )


def test_addition_weights_are_normalized_over_the_branches():
    """Scaling a channel's weights leaves the sum unchanged; the init (0, 1) returns the second input."""
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((2, 2, 3, 3, 4)).astype(np.float32)
    add = layers.WeightNormalizedAddition((0.0, 1.0))
    params = add.init(jax.random.key(0), a, b)["params"]
    np.testing.assert_array_equal(params["weight"], np.tile([[0.0], [1.0]], (1, 4)))
    np.testing.assert_allclose(add.apply({"params": params}, a, b), b, rtol=1e-7)
    w = rng.standard_normal((2, 4)).astype(np.float32)
    scaled = w * np.float32([1.0, 3.0, 0.5, 7.0])
    np.testing.assert_allclose(
        add.apply({"params": {"weight": w}}, a, b), add.apply({"params": {"weight": scaled}}, a, b), rtol=1e-5
    )


# ---------------------------------------------------------------------------------------------------------
# Both networks, through the import of the reference's state dicts

# (image_size, channels, features, blocks): non-square with the pad-2-mod-4 path (10 -> 6 -> 3) and several
# blocks per level; a one-channel model with its top map 1 x 2.
NET_CASES = [((10, 16), 3, (4, 6), (2, 1), (1, 2)), ((8, 12), 1, (4, 4, 6), (1, 1, 1), (1, 2, 1))]
CODE, BATCH = 8, 3


def model_config(size, channels, features, dis_blocks, gen_blocks):
    return models.ModelConfig(
        arch="resnet", image_size=size, channels=channels, code_size=CODE, gen_features=features,
        gen_blocks=gen_blocks, dis_features=features, dis_blocks=dis_blocks,
    )  # fmt: skip


def torch_grads(net):
    return {k: p.grad.numpy() for k, p in net.named_parameters()}


@pytest.mark.parametrize("case", NET_CASES)
def test_networks_match_the_reference(case):
    """Generator and discriminator outputs and every parameter gradient, the reference's state dicts imported."""
    size, channels, features, dis_blocks, gen_blocks = case
    config = model_config(*case)
    g = ref.randomize_(ref.Generator(size, features, gen_blocks, CODE, channels).double(), 0)
    d = ref.randomize_(ref.Discriminator(size, features, dis_blocks, channels).double(), 1)
    rng = np.random.default_rng(5)
    z, x = rng.standard_normal((BATCH, CODE)), rng.random((BATCH, *size, channels))
    images, logits = g(torch.from_numpy(z)), d(torch.from_numpy(nchw(x)) * 2 - 1)
    cg, cd = rng.standard_normal(images.shape), rng.standard_normal(logits.shape)
    (images * torch.from_numpy(cg)).sum().backward()
    (logits * torch.from_numpy(cd)).sum().backward()

    for net, module, inputs, want, cot in (
        ("generator", g, z, images, nhwc(cg)),
        ("discriminator", d, x, logits, cd),
    ):
        state = {k: v.numpy() for k, v in module.state_dict().items()}
        variables = convert.authors_to_variables(state, config, net)
        flax_net = config.generator() if net == "generator" else config.discriminator()

        @jax.jit
        def forward_backward(params, inputs, cot, flax_net=flax_net):
            out, pullback = jax.vjp(lambda p: flax_net.apply({"params": p}, inputs), params)
            return out, pullback(cot)[0]

        out, grads = forward_backward(variables["params"], np.float32(inputs), np.float32(cot))
        close(out, nhwc(want.detach().numpy()) if net == "generator" else want.detach().numpy(), f"{net} output")
        want_grads = convert.authors_to_variables(torch_grads(module), config, net)["params"]
        # A 1x1 conv from one channel normalizes single numbers: its true gradient is zero, the reference's
        # rounding; such tensors are measured against the network's largest gradient.
        floor = 1e-3 * max(float(np.max(np.abs(g))) for g in jax.tree.leaves(want_grads))
        for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
            close(leaf, _at(want_grads, path), f"{net} gradient {jax.tree_util.keystr(path)}", floor)


def _at(tree, path):
    for k in path:
        tree = tree[k.key]
    return tree


def test_shapes_and_names_follow_the_levels():
    """(10, 16): level 0 pads the 10-row side (2 mod 4), the 16 side not; the top map is 3 x 4."""
    config = model_config(*NET_CASES[0])
    assert resnet.geometry((10, 16), 2).pads == ((1, 0), (0, 0))
    assert resnet.geometry((10, 16), 2).top_hw == (3, 4)
    g = jax.eval_shape(config.generator().init, jax.random.key(0), jnp.zeros((1, CODE)))["params"]
    assert sorted(g) == ["initial_fc", "initial_prelu", "level_0_block_0", "level_1_block_0", "level_1_block_1"]
    assert g["initial_fc"]["kernel"].shape == (CODE, 3 * 4 * 6)
    assert set(g["level_0_block_0"]["post"]) == {"scale", "bias"}  # Affine in the last block
    assert set(g["level_1_block_1"]["post"]) == {"slope", "alpha"}
    d = jax.eval_shape(config.discriminator().init, jax.random.key(0), jnp.zeros((1, 10, 16, 3)))["params"]
    assert d["final"]["kernel"].shape == (3, 4, 6, 1)
    assert "shortcut_conv" not in d["level_0_block_1"] and "shortcut_conv" in d["level_1_block_0"]


def test_initialisation_follows_their_code():
    """Kernels in ±1/sqrt(c_in k_h k_w), the dense weight and bias in ±0.01/sqrt(code); a fresh block is its
    shortcut followed by its TPReLU (additions start at (0, 1)); WN scales start at 1."""
    config = models.ModelConfig(
        arch="resnet", image_size=(16, 16), channels=3, code_size=64, gen_features=(32, 64), gen_blocks=(1, 1),
        dis_features=(32, 64), dis_blocks=(1, 1),
    )  # fmt: skip
    gp = jax.jit(config.generator().init)(jax.random.key(0), jnp.zeros((1, 64)))["params"]
    dense_bound = 0.01 / 8
    for name in ("kernel", "bias"):
        v = np.asarray(gp["initial_fc"][name])
        assert np.abs(v).max() <= dense_bound and np.abs(v).max() > 0.95 * dense_bound, name
    np.testing.assert_array_equal(gp["initial_fc"]["scale"], 1.0)
    kernel = np.asarray(gp["level_1_block_0"]["conv_2"]["kernel"])  # transposed 64 -> 32, kernel 4
    assert np.abs(kernel).max() <= 1 / np.sqrt(64 * 16) and np.abs(kernel).max() > 0.95 / np.sqrt(64 * 16)
    block = resnet.ResidualBlock(8, 2, (1, 0))
    x = np.random.default_rng(6).standard_normal((2, 6, 4, 3)).astype(np.float32)
    v = block.init(jax.random.key(1), x)
    shortcut = np.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0))).reshape(2, 4, 2, 2, 2, 3).mean(axis=(2, 4))
    w = np.asarray(v["params"]["shortcut_conv"]["kernel"])[0, 0]
    shortcut = shortcut @ (w / (np.sqrt((w**2).sum(0)) + 1e-8))
    want = np.where(shortcut >= 0, shortcut, 0.25 * shortcut)
    np.testing.assert_allclose(block.apply(v, x), want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize(
    "changes,match",
    [
        (dict(norm="bn"), "--norm must be wn"),
        (dict(gen_blocks=(1,)), "--gen_features has 2 levels and --gen_blocks 1"),
        (dict(dis_features=()), "needs --dis_features"),
        (dict(dis_features=(4, 8, 8, 8, 8), dis_blocks=(1,) * 5), "discriminator has 5 levels, more than a 16x16"),
        (dict(gen_blocks=(1, 0)), "entries must be integers from 1 to"),
        (dict(image_size=(16, 15)), "even"),
        (dict(channels=2), "channels"),
        (dict(arch="unet"), "--arch must be one of dcgan, resnet"),
        (dict(gen_features="4,x"), "comma list of integers"),
    ],
)
def test_invalid_resnet_configs_are_refused(changes, match):
    base = dict(
        arch="resnet", image_size=16, gen_features=(4, 8), gen_blocks=(1, 1), dis_features=(4, 8), dis_blocks=(1, 1)
    )
    with pytest.raises(ValueError, match=match):
        models.ModelConfig(**(base | changes))


def test_levels_down_to_a_one_pixel_map_are_allowed():
    """16 -> 8 -> 4 -> 2 -> 1: the last level may halve a 2-pixel side; a fifth level could not halve."""
    assert resnet.geometry((16, 16), 4).top_hw == (1, 1)
    with pytest.raises(ValueError, match="level 3 would see a 2x2 map"):
        resnet.geometry((16, 16), 5)


def test_dcgan_configs_refuse_resnet_lists_and_old_model_json_loads():
    with pytest.raises(ValueError, match="--gen_features apply to --arch=resnet only"):
        models.ModelConfig(gen_features=(4, 8))
    old = {"norm": "wn", "image_size": [32, 32], "channels": 3, "nfeature": 64, "code_size": 256, "critic": False}
    assert models.ModelConfig.from_dict(old) == models.ModelConfig(image_size=32)
    config = model_config(*NET_CASES[0])
    assert models.ModelConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["gen_features"] == [4, 6] and config.name == "resnet_wn"


def test_convert_command_and_authors_network(tmp_path, capsys):
    """Their ``net_archive`` files -> a checkpoint that ``sample`` reads; ``authors_network`` gives their
    generator's images and their ``dis(2x - 1)`` logits."""
    from wngan_jax import sample
    from wngan_jax.convert import __main__ as convert_cli

    size, channels, features, dis_blocks, gen_blocks = NET_CASES[0]
    g = ref.randomize_(ref.Generator(size, features, gen_blocks, CODE), 0)
    d = ref.randomize_(ref.Discriminator(size, features, dis_blocks), 1)
    torch.save(g.state_dict(), tmp_path / "best_gen.pt")
    torch.save(d.state_dict(), tmp_path / "best_dis.pt")
    rng = np.random.default_rng(7)
    codes, x = rng.standard_normal((BATCH, CODE), np.float32), rng.random((BATCH, *size, 3), np.float32)
    with torch.no_grad():
        want_images = nhwc(g(torch.from_numpy(codes)).numpy())
        want_logits = d(torch.from_numpy(nchw(x)) * 2 - 1).numpy()

    lists = dict(arch="resnet", image_size=size, code_size=CODE)
    gen = convert.authors_network(
        tmp_path / "best_gen.pt", net="generator", features=features, blocks=gen_blocks, **lists
    )
    dis = convert.authors_network(
        tmp_path / "best_dis.pt", net="discriminator", features=features, blocks=dis_blocks, **lists
    )
    np.testing.assert_allclose(gen(codes), want_images, rtol=0, atol=1e-5)
    np.testing.assert_allclose(dis(x), want_logits, rtol=0, atol=1e-5)

    out = tmp_path / "converted"
    args = [
        "--arch=resnet", f"--gen={tmp_path / 'best_gen.pt'}", f"--dis={tmp_path / 'best_dis.pt'}", "--image_size=10x16",
        "--gen_features=4,6", "--gen_blocks=1,2", "--dis_blocks=2,1", f"--code_size={CODE}", f"--out={out}",
    ]  # fmt: skip
    assert convert_cli.main(args) == 0
    np.save(tmp_path / "codes.npy", codes)
    assert (
        sample.main(
            ["--checkpoint", str(out), "--codes", str(tmp_path / "codes.npy"), "--out", str(tmp_path / "s.npy")]
        )
        == 0
    )
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), want_images, rtol=0, atol=1e-5)
    capsys.readouterr()
    assert convert_cli.main([*args[:-1], "--dis_blocks=1,1", f"--out={tmp_path / 'other'}"]) == 1
    err = capsys.readouterr().err
    assert "unexpected net.level_0_block_1.residue.conv_1.weight" in err and "--dis_blocks 1,1" in err


def test_an_imported_run_continues_their_training(tmp_path, capsys):
    """Their ``net_archive`` after two iterations (networks, ``torch.optim.RMSprop`` states, ``current_iter``) ->
    a run directory that the trainer resumes at iteration 2; its next iteration moves every parameter as their
    loop's third iteration does in float64, which a fresh optimizer state would not (its first RMSProp step is
    about ``3.16 lr`` per entry, not ``lr g / sqrt(mean g^2)``)."""
    from wngan_jax import sharding, train, train_step
    from wngan_jax.config import TrainConfig
    from wngan_jax.convert import __main__ as convert_cli

    size, features, gen_blocks, dis_blocks, batch = (8, 8), (4, 6), (1, 2), (2, 1), 4
    g = ref.randomize_(ref.Generator(size, features, gen_blocks, CODE), 0)
    d = ref.randomize_(ref.Discriminator(size, features, dis_blocks), 1)
    with torch.no_grad():  # slopes inside (0, 1), where their clamp passes gradients
        for net in (g, d):
            for name, p in net.named_parameters():
                if name.endswith("tprelu.weight") or name.endswith("post.weight"):
                    p.clamp_(0.1, 0.9)
    g_opt, d_opt = ref.rmsprop(g), ref.rmsprop(d)
    rng = np.random.default_rng(3)
    for _ in range(2):
        real = torch.from_numpy(rng.random((batch, 3, *size), np.float32))
        ref.train_iteration(g, d, g_opt, d_opt, real, torch.from_numpy(rng.standard_normal((batch, CODE), np.float32)))
    files = {
        "gen": g.state_dict(), "dis": d.state_dict(), "gen_opt": g_opt.state_dict(), "dis_opt": d_opt.state_dict(),
        "state": {"current_iter": 2, "best_iter": 0, "min_loss": 1e100, "current_sample": 2 * batch,
                  "index_shuffle": torch.randperm(10)},
    }  # fmt: skip
    for name, value in files.items():
        torch.save(value, tmp_path / f"last_{name}.pt")
    out = tmp_path / "run"
    args = [f"--{name}={tmp_path / f'last_{name}.pt'}" for name in files]
    args += ["--arch=resnet", "--image_size=8", "--gen_features=4,6", "--gen_blocks=1,2", "--dis_blocks=2,1"]
    assert convert_cli.main([*args, f"--code_size={CODE}", f"--out={out}"]) == 0
    printed = capsys.readouterr().out
    assert "iteration 2" in printed and "--lr=2e-05 --rmsprop_decay=0.9 --rmsprop_eps=1e-08" in printed
    partial = [a for a in args if not a.startswith("--state")]
    assert convert_cli.main([*partial, f"--code_size={CODE}", f"--out={tmp_path / 'x'}"]) == 1
    assert "missing --state" in capsys.readouterr().err

    model = convert.resnet_config(
        size, gen_features=features, gen_blocks=gen_blocks, dis_blocks=dis_blocks, code_size=CODE
    )
    config = TrainConfig(
        model=model, data="digits", cache_dir=str(tmp_path / "cache"), batch_size=batch, lr=2e-5, rmsprop_eps=1e-8,
        iterations=3, final_test=8, running_test=4, final_test_samples=0, record_codes=0, progress_bar=False,
    )  # fmt: skip
    trainer = train.Trainer.open(config, out)
    assert trainer.meta.iteration == 2 and int(trainer.state["step"]) == 2 and trainer.meta.best_loss is None
    real = next(trainer.batches)
    key = train_step.run_key(config.seed, 0, trainer.mesh)
    codes, _ = train_step.iteration_codes(config, np.asarray(key), 2)
    before = jax.tree.map(np.asarray, {n: trainer.state[n]["params"] for n in ("generator", "discriminator")})
    state, _ = trainer.step_fn(trainer.state, sharding.shard_batch(real, trainer.mesh), key)
    trainer.checkpoints.close()

    def their_third_iteration(with_saved_optimizers: bool) -> dict:
        """Their loop's next iteration in float64 on the same batch and codes: the parameters' steps."""
        g64, d64 = copy.deepcopy(g).double(), copy.deepcopy(d).double()
        g_opt64, d_opt64 = ref.rmsprop(g64), ref.rmsprop(d64)
        if with_saved_optimizers:
            g_opt64.load_state_dict(files["gen_opt"])
            d_opt64.load_state_dict(files["dis_opt"])
        real64 = torch.from_numpy(nchw(real).astype(np.float64))
        ref.train_iteration(g64, d64, g_opt64, d_opt64, real64, torch.from_numpy(np.asarray(codes, np.float64)))
        with jax.enable_x64(True):
            after = {
                net: jax.tree.map(
                    np.asarray, convert.authors_to_variables(n.state_dict(), model, net, dtype=np.float64)
                )
                for net, n in (("generator", g64), ("discriminator", d64))
            }
        return {net: jax.tree.map(lambda a, b: a - b, after[net]["params"], before[net]) for net in after}

    def distance(steps, want) -> tuple[float, dict]:
        """Over both networks, and per tensor: ``|steps - want| / |want|``."""
        pairs = [(np.ravel(a), np.ravel(b)) for a, b in zip(jax.tree.leaves(steps), jax.tree.leaves(want))]
        each = {i: np.linalg.norm(a - b) / np.linalg.norm(b) for i, (a, b) in enumerate(pairs)}
        a, b = (np.concatenate(x) for x in zip(*pairs))
        return np.linalg.norm(a - b) / np.linalg.norm(b), each

    ours = {
        net: jax.tree.map(lambda a, b: np.asarray(a, np.float64) - b, state[net]["params"], before[net])
        for net in before
    }
    want = their_third_iteration(with_saved_optimizers=True)
    total, each = distance(ours, want)
    assert total < 1e-2 and max(each.values()) < 0.2, (total, each)  # near-cancelling gradients: a few percent
    fresh, _ = distance(their_third_iteration(with_saved_optimizers=False), want)
    assert fresh > 0.3  # the comparison tells imported optimizer states from fresh ones
