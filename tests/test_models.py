"""Models against the paper (Table 1, §5.1, appendices C.2 and D) and the authors' parameter counts."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wngan_jax import layers, models

CODE = jax.ShapeDtypeStruct((2, 256), jnp.float32)


def images(hw, batch=2):
    return jax.ShapeDtypeStruct((batch, *hw, 3), jnp.float32)


def count(tree):
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def abstract_init(module, x):
    return jax.eval_shape(module.init, jax.random.key(0), x)


# ---------------------------------------------------------------------------------------------------------
# Parameter counts: docs/authors.md §9, the authors' PyTorch models (BN running statistics not counted).

PARAM_COUNTS = [
    # size, nf, author norm name, G params, D params
    (32, 64, "none", 1_711_747, 663_425),
    (32, 64, "batch", 1_712_643, 664_193),
    (32, 64, "weight", 1_707_910, 663_426),
    (32, 64, "weight-affine", 1_716_038, 663_874),
    (64, 64, "weight", 4_854_662, 2_765_698),
    (160, 64, "none", 17_726_339, 11_173_761),
    (160, 64, "batch", 17_730_307, 11_177_601),
    (160, 64, "weight", 17_701_766, 11_173_762),
    (160, 64, "weight-affine", 17_752_902, 11_175_746),
    (32, 96, "weight", 3_053_382, 1_486_658),
]


@pytest.mark.parametrize("size,nf,norm,g_count,d_count", PARAM_COUNTS)
def test_trainable_parameter_counts_match_the_authors_models(size, nf, norm, g_count, d_count):
    """Trainable parameters of G and D equal the authors' PyTorch models (abstract init, no arrays allocated)."""
    config = models.ModelConfig(norm, size, nfeature=nf)
    g = abstract_init(config.generator(), CODE)
    d = abstract_init(config.discriminator(), images(config.image_size))
    assert count(g["params"]) == g_count
    assert count(d["params"]) == d_count
    # Running statistics exist exactly for BN and are not parameters.
    assert ("batch_stats" in g) == (norm == "batch") and ("batch_stats" in d) == (norm == "batch")


# ---------------------------------------------------------------------------------------------------------
# Output shapes

SIZES = [16, 32, 64, 96, 108, 160, 256, (64, 96)]
# Top feature map (docs/authors.md §2: count halvings while the side is >= 8; pad 2 on levels whose side is 2 mod 4).
TOP = {16: (4, 4), 32: (4, 4), 64: (4, 4), 96: (6, 6), 108: (7, 7), 160: (5, 5), 256: (4, 4), (64, 96): (4, 6)}
LEVELS = {16: 2, 32: 3, 64: 4, 96: 4, 108: 4, 160: 5, 256: 6, (64, 96): 4}


@pytest.mark.parametrize("variant", ["wn", "bn"])
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_output_shapes(size, variant):
    """G: (B, 256) -> (B, H, W, 3) float32; D: (B, H, W, 3) -> (B,) logits; top map, kernel: docs/authors.md §2."""
    config = models.ModelConfig(variant, size)
    hw = config.image_size
    g, d = config.generator(), config.discriminator()
    gv = abstract_init(g, CODE)
    out = jax.eval_shape(lambda v, z: g.apply(v, z), gv, CODE)
    assert out.shape == (2, *hw, 3) and out.dtype == jnp.float32
    dv = abstract_init(d, images(hw))
    logits = jax.eval_shape(lambda v, x: d.apply(v, x), dv, images(hw))
    assert logits.shape == (2,) and logits.dtype == jnp.float32
    top, n = TOP[size], LEVELS[size]
    c_top = 64 * 2 ** (n - 1)
    assert dv["params"]["final_conv"]["kernel"].shape == (*top, c_top, 1)
    assert gv["params"]["initial_linear"]["kernel"].shape == (256, top[0] * top[1] * c_top)
    assert f"level_{n - 1}_conv" in dv["params"] and f"level_{n}_conv" not in dv["params"]


@pytest.mark.parametrize("variant", list(models.VARIANTS))
def test_every_variant_builds_non_square(variant):
    """Every variant builds at 64x96 with the right output shapes."""
    config = models.ModelConfig(variant, (64, 96))
    g, d = config.generator(), config.discriminator()
    assert jax.eval_shape(lambda v, z: g.apply(v, z), abstract_init(g, CODE), CODE).shape == (2, 64, 96, 3)
    x = images((64, 96))
    assert jax.eval_shape(lambda v, x: d.apply(v, x), abstract_init(d, x), x).shape == (2,)


# ---------------------------------------------------------------------------------------------------------
# Paper Table 1 (160x160), transcribed: D types for vanilla, BN, WN, D spec, G types for vanilla, BN, WN, G spec.

TABLE_1 = [
    ("Conv", "Conv", "SWNConv", "4, 2, 1, 64", "Deconv", "Deconv", "SWNDeconv", "5, 1, 0, 1024"),
    ("-", "-", "-", "", "-", "BN", "-", ""),
    ("PReLU", "PReLU", "TPReLU", "", "PReLU", "PReLU", "TPReLU", ""),
    ("Conv", "Conv", "SWNConv", "4, 2, 1, 128", "Deconv", "Deconv", "SWNDeconv", "4, 2, 1, 512"),
    ("-", "BN", "-", "", "-", "BN", "-", ""),
    ("PReLU", "PReLU", "TPReLU", "", "PReLU", "PReLU", "TPReLU", ""),
    ("Conv", "Conv", "SWNConv", "4, 2, 1, 256", "Deconv", "Deconv", "SWNDeconv", "4, 2, 1, 256"),
    ("-", "BN", "-", "", "-", "BN", "-", ""),
    ("PReLU", "PReLU", "TPReLU", "", "PReLU", "PReLU", "TPReLU", ""),
    ("Conv", "Conv", "SWNConv", "4, 2, 1, 512", "Deconv", "Deconv", "SWNDeconv", "4, 2, 1, 128"),
    ("-", "BN", "-", "", "-", "BN", "-", ""),
    ("PReLU", "PReLU", "TPReLU", "", "PReLU", "PReLU", "TPReLU", ""),
    ("Conv", "Conv", "SWNConv", "4, 2, 1, 1024", "Deconv", "Deconv", "SWNDeconv", "4, 2, 1, 64"),
    ("-", "BN", "-", "", "-", "BN", "-", ""),
    ("PReLU", "PReLU", "TPReLU", "", "PReLU", "PReLU", "TPReLU", ""),
    ("Conv", "Conv", "AWNConv", "5, 1, 0, 1", "Deconv", "Deconv", "AWNDeconv", "4, 2, 1, 3"),
    ("Sigmoid", "Sigmoid", "Sigmoid", "", "Sigmoid", "Sigmoid", "Sigmoid", ""),
]


def table_column(column):
    """One network of one Table 1 column as a list of "<type> <spec>" strings, '-' rows dropped."""
    net, col = ("D", "G").index(column[0]), ("vanilla", "bn", "wn").index(column[1])
    out = []
    for row in TABLE_1:
        kind, spec = row[4 * net + col], row[4 * net + 3]
        if kind != "-":
            out.append(f"{kind} {spec}" if kind.endswith("Conv") or kind.endswith("Deconv") else kind)
    return out


def c2_column(net, variant):
    """Appendix C.2 variants derived from Table 1's columns.

    affine_wn: the WN column with every SWN layer made AWN and every TPReLU a PReLU; wn_meanbn: that, plus
    mean-only BN wherever the BN column has BN; wn_clip: the WN layers unchanged.
    """
    wn = table_column((net, "wn"))
    if variant == "wn_clip":
        return wn
    affine = [s.replace("SWN", "AWN") if "WN" in s else ("PReLU" if s == "TPReLU" else s) for s in wn]
    if variant == "affine_wn":
        return affine
    out, it = [], iter(affine)
    for kind in table_column((net, "bn")):
        out.append("MeanOnlyBN" if kind == "BN" else next(it))
    return out


EXPECTED_160 = {v: {n: table_column((n, v)) for n in "DG"} for v in ("vanilla", "bn", "wn")}
EXPECTED_160 |= {v: {n: c2_column(n, v) for n in "DG"} for v in ("affine_wn", "wn_meanbn", "wn_clip")}
# sn (not in the paper): the vanilla column with every D convolution spectrally normalized, G vanilla.
EXPECTED_160["sn"] = {
    "D": [("SN" + s if s.startswith("Conv") else s) for s in EXPECTED_160["vanilla"]["D"]],
    "G": EXPECTED_160["vanilla"]["G"],
}


def test_table_1_transcription_sanity():
    """The transcription has the paper's structure: 6 D convs, 6 G (de)convs, BN on 4 of D's and 5 of G's layers."""
    assert sum(s.startswith("Conv") for s in EXPECTED_160["vanilla"]["D"]) == 6
    assert sum(s.startswith("Deconv") for s in EXPECTED_160["vanilla"]["G"]) == 6
    assert EXPECTED_160["bn"]["D"].count("BN") == 4 and EXPECTED_160["bn"]["G"].count("BN") == 5
    assert EXPECTED_160["wn_meanbn"]["G"].count("MeanOnlyBN") == 5
    assert EXPECTED_160["affine_wn"]["G"][0] == "AWNDeconv 5, 1, 0, 1024"


@pytest.mark.parametrize("variant", list(models.VARIANTS))
def test_layer_table_matches_paper_table_1_at_160(variant):
    """layer_table(variant, 160) equals the transcribed Table 1 column (and its C.2 substitutions)."""
    d, g = models.layer_table(variant, 160)
    assert d == EXPECTED_160[variant]["D"]
    assert g == EXPECTED_160[variant]["G"]


def is_root(module):
    return isinstance(module, (models.Generator, models.Discriminator))


def traced_layers(module, x):
    """The layers the model actually calls, in order, written like Table 1 (intercepting submodule calls)."""
    calls = []

    def record(next_fun, args, kwargs, context):
        m = context.module
        if context.method_name == "__call__" and not is_root(m):
            calls.append((m, args[0].shape))
        return next_fun(*args, **kwargs)

    variables = abstract_init(module, x)
    with nn.intercept_methods(record):
        jax.eval_shape(lambda v, x: module.apply(v, x), variables, x)
    prefix = {"none": "", "strict": "SWN", "affine": "AWN"}
    rows, spectral = [], False
    for i, (m, _shape) in enumerate(calls):
        if isinstance(m, nn.SpectralNorm):  # wraps the convolution called next
            spectral = True
        elif isinstance(m, layers.Dense):  # G's first layer, written as a deconv from a 1x1 code
            h, w, c = calls[i + 1][1][1:]
            k = str(h) if h == w else f"{h}x{w}"
            rows.append(f"{prefix[m.norm]}Deconv {k}, 1, 0, {c}")
        elif isinstance(m, layers.Conv):
            kind = ("SN" if spectral else "") + prefix[m.norm] + ("Deconv" if m.transpose else "Conv")
            spectral = False
            k = m.kernel_size
            ks = str(k[0]) if k[0] == k[1] else f"{k[0]}x{k[1]}"
            pad = str(m.padding[0]) if m.padding[0] == m.padding[1] else f"{m.padding[0]}x{m.padding[1]}"
            assert m.strides[0] == m.strides[1]
            rows.append(f"{kind} {ks}, {m.strides[0]}, {pad}, {m.features}")
        elif isinstance(m, layers.BatchNorm):
            rows.append("MeanOnlyBN" if m.mean_only else "BN")
        elif isinstance(m, layers.PReLU):
            rows.append("TPReLU" if m.translated else "PReLU")
        else:
            raise AssertionError(f"unexpected layer {m}")
    return rows + ["Sigmoid"]


@pytest.mark.parametrize("variant", list(models.VARIANTS))
def test_built_models_match_paper_table_1_at_160(variant):
    """The layers the 160 models really call (types, kernels, strides, paddings, channels) equal Table 1 / C.2."""
    config = models.ModelConfig(variant, 160)
    assert traced_layers(config.discriminator(), images((160, 160), 1)) == EXPECTED_160[variant]["D"]
    assert traced_layers(config.generator(), CODE) == EXPECTED_160[variant]["G"]


def test_layer_table_108_uses_padding_2():
    """108: 108 -> 54 -> 28 (padding 2) -> 14 -> 7, final 7x7; G mirrors it (docs/authors.md §2), built too."""
    d, g = models.layer_table("wn", 108)
    assert [s for s in d if "Conv" in s] == [
        "SWNConv 4, 2, 1, 64",
        "SWNConv 4, 2, 2, 128",
        "SWNConv 4, 2, 1, 256",
        "SWNConv 4, 2, 1, 512",
        "AWNConv 7, 1, 0, 1",
    ]
    assert [s for s in g if "Deconv" in s] == [
        "SWNDeconv 7, 1, 0, 512",
        "SWNDeconv 4, 2, 1, 256",
        "SWNDeconv 4, 2, 1, 128",
        "SWNDeconv 4, 2, 2, 64",
        "AWNDeconv 4, 2, 1, 3",
    ]
    config = models.ModelConfig("wn", 108)
    assert traced_layers(config.discriminator(), images((108, 108), 1)) == d
    assert traced_layers(config.generator(), CODE) == g


# ---------------------------------------------------------------------------------------------------------
# Variants, aliases, clipping, errors


def test_author_aliases():
    """The authors' --norm names map to the project names, in get_variant and ModelConfig."""
    for author, ours in [("none", "vanilla"), ("batch", "bn"), ("weight", "wn"), ("weight-affine", "affine_wn")]:
        assert models.get_variant(author).name == ours
        assert models.get_variant(ours).name == ours
        assert models.ModelConfig(author, 32).norm == ours


@pytest.mark.parametrize("variant", list(models.VARIANTS))
def test_alpha_clipped_modules_are_gs_first_two_tprelus(variant):
    """wn_clip names G's first two TPReLU layers in call order (paper C.2); every other variant names none."""
    names = models.alpha_clipped_modules(variant, 64)
    if variant != "wn_clip":
        assert names == ()
        return
    g = models.ModelConfig(variant, 64).generator()
    calls = []

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, layers.PReLU) and context.method_name == "__call__":
            calls.append(context.module.name)
        return next_fun(*args, **kwargs)

    variables = abstract_init(g, CODE)
    with nn.intercept_methods(record):
        jax.eval_shape(lambda v, z: g.apply(v, z), variables, CODE)
    assert len(calls) == 4 and all("alpha" in variables["params"][n] for n in calls)
    assert tuple(names) == tuple(calls[:2])


def test_clip_slopes_on_a_wn_clip_generator():
    """With the names above, clip_slopes clips alpha of exactly G's first two TPReLU layers."""
    config = models.ModelConfig("wn_clip", 32)
    params = jax.jit(config.generator().init)(jax.random.key(0), jnp.zeros((1, 256)))["params"]
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.full_like(x, 3.0) if path[-1].key in ("alpha", "slope") else x, params
    )
    out = layers.clip_slopes(params, clip_alpha_of=models.alpha_clipped_modules("wn_clip", 32))
    acts = [n for n in out if n.endswith("_act")]
    assert len(acts) == 3
    clipped = {n for n in acts if float(out[n]["alpha"].max()) == 1.0}
    assert clipped == {"initial_act", "level_2_act"}
    assert all(float(out[n]["slope"].max()) == 1.0 for n in acts)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(norm="wn", image_size=63), "even"),
        (dict(norm="wn", image_size=(64, 33)), "even"),
        (dict(norm="wn", image_size=6), "too small"),
        (dict(norm="spectral", image_size=64), "unknown norm variant"),
        (dict(norm="wn", image_size=64, channels=2), "channels"),
    ],
)
def test_invalid_configs_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.ModelConfig(**kwargs)


def test_critic_requires_strict_variant():
    """Appendix D's critic is defined for the strict WN discriminator only."""
    d = models.ModelConfig("bn", 32, critic=True).discriminator()
    with pytest.raises(ValueError, match="critic"):
        abstract_init(d, images((32, 32)))


# ---------------------------------------------------------------------------------------------------------
# Appendix D critic: Lemma 2 per layer


def test_critic_last_layer_is_strict_and_lemma_2_holds_per_layer():
    """Critic D: last layer strict (kernel only). Per strict layer, sum|dL/dx| <= sqrt(c_in k_h k_w) sum|dL/dy|;
    per TPReLU (slopes in [0, 1]) sum|dL/dx| <= sum|dL/dy| (Lemma 3); hence the whole-network bound (Claim 1)."""
    config = models.ModelConfig("wn", 32, critic=True)
    d = config.discriminator()
    x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
    variables = jax.jit(d.init)(jax.random.key(0), x)
    assert set(variables["params"]["final_conv"]) == {"kernel"}
    plain = models.ModelConfig("wn", 32).discriminator()
    assert set(abstract_init(plain, x)["params"]["final_conv"]) == {"kernel", "scale", "bias"}
    # Make the TPReLUs non-trivial: random slopes in [0, 1], random alpha.
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map_with_path(
        lambda p, v: (
            jnp.asarray(rng.uniform(0, 1, v.shape), v.dtype)
            if p[-1].key == "slope"
            else jnp.asarray(rng.normal(0, 0.3, v.shape), v.dtype)
            if p[-1].key == "alpha"
            else v
        ),
        variables["params"],
    )

    # Probes added to every layer's input and output: their gradients are dL/dx and dL/dy of that layer.
    shapes = []

    def record(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and not is_root(context.module):
            shapes.append((context.module, args[0].shape))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        y_shape = jax.eval_shape(lambda p: d.apply({"params": p}, x), params).shape
    modules = [m for m, _ in shapes]

    def loss(probes, c):
        i = iter(range(len(modules)))

        def perturb(next_fun, args, kwargs, context):
            if context.method_name != "__call__" or is_root(context.module):
                return next_fun(*args, **kwargs)
            k = next(i)
            return next_fun(args[0] + probes[k][0], *args[1:], **kwargs) + probes[k][1]

        with nn.intercept_methods(perturb):
            return jnp.sum(c * d.apply({"params": params}, x))

    out_shapes = []
    for k, (_, in_shape) in enumerate(shapes):
        nxt = shapes[k + 1][1] if k + 1 < len(shapes) else (2, 1, 1, 1)
        out_shapes.append((in_shape, nxt))
    zeros = [(jnp.zeros(a), jnp.zeros(b)) for a, b in out_shapes]
    for c in (jnp.ones(y_shape), jnp.asarray(rng.standard_normal(y_shape), jnp.float32)):
        grads = jax.jit(jax.grad(loss))(zeros, c)
        total_factor = 1.0
        for m, (gx, gy) in zip(modules, grads):
            mass_x, mass_y = float(jnp.sum(jnp.abs(gx))), float(jnp.sum(jnp.abs(gy)))
            assert mass_y > 0
            if isinstance(m, layers.Conv):
                assert m.norm == "strict" and not m.use_bias
                c_in = gx.shape[-1]
                factor = math.sqrt(c_in * m.kernel_size[0] * m.kernel_size[1])
            else:
                assert isinstance(m, layers.PReLU) and m.translated
                factor = 1.0
            assert mass_x <= factor * mass_y * (1 + 1e-5), (m.name, mass_x, factor * mass_y)
            total_factor *= factor
        # Claim 1: the input-gradient mass of the whole critic is bounded by the product of the factors.
        mass_in = float(jnp.sum(jnp.abs(grads[0][0])))
        assert mass_in <= total_factor * float(jnp.sum(jnp.abs(c))) * (1 + 1e-5)


def test_critic_is_invariant_to_kernel_scale():
    """Every layer of the critic is strict WN: multiplying all kernels by 7 leaves the output unchanged."""
    d = models.ModelConfig("wn", 16, nfeature=8, critic=True).discriminator()
    x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
    params = jax.jit(d.init)(jax.random.key(0), x)["params"]
    scaled = jax.tree_util.tree_map_with_path(lambda p, v: v * 7 if p[-1].key == "kernel" else v, params)
    apply = jax.jit(d.apply)
    np.testing.assert_allclose(apply({"params": scaled}, x), apply({"params": params}, x), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Forward passes of small models


@pytest.mark.parametrize("variant", list(models.VARIANTS))
def test_generator_range_and_discriminator_logits(variant):
    """G maps codes to images in [0, 1]; D returns finite float32 logits of shape (B,)."""
    config = models.ModelConfig(variant, 16, nfeature=8)
    g, d = config.generator(), config.discriminator()
    z = jax.random.normal(jax.random.key(0), (3, 256)) * 3
    gv = g.init(jax.random.key(1), z)
    img = g.apply(gv, z)
    assert img.shape == (3, 16, 16, 3) and img.dtype == jnp.float32
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    assert float(img.max() - img.min()) > 0
    dv = d.init(jax.random.key(2), img)
    logits = d.apply(dv, img)
    assert logits.shape == (3,) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(logits)))


def test_generator_first_layer_init_scale():
    """Paper §5.1: G's first (dense) layer uses t = 0.01, i.e. |v| <= 0.01 / sqrt(256); the next one t = 1."""
    g = models.ModelConfig("wn", 16, nfeature=8).generator()
    params = g.init(jax.random.key(0), jnp.zeros((1, 256)))["params"]
    v = np.abs(np.asarray(params["initial_linear"]["kernel"]))
    assert v.max() <= 0.01 / 16 and v.max() > 0.95 * 0.01 / 16
    w = np.abs(np.asarray(params["level_1_conv"]["kernel"]))  # c_in = 16 channels, 4x4 kernel
    assert w.max() <= 1 / 16 and w.max() > 0.95 / 16


@pytest.mark.parametrize("variant", ["bn", "wn_meanbn"])
def test_batch_stats_update_in_train_mode_only(variant):
    """BN variants: train=True changes batch_stats (G and D); train=False leaves them bit-identical."""
    config = models.ModelConfig(variant, 16, nfeature=8)
    g, d = config.generator(), config.discriminator()
    z = jax.random.normal(jax.random.key(0), (4, 256))
    x = jax.random.uniform(jax.random.key(1), (4, 16, 16, 3))
    for net, inp in ((g, z), (d, x)):
        variables = net.init(jax.random.key(2), inp)
        stats = variables["batch_stats"]
        assert len(jax.tree.leaves(stats)) > 0
        _, trained = net.apply(variables, inp, train=True, mutable=["batch_stats"])
        changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), stats, trained["batch_stats"])
        assert all(jax.tree.leaves(changed))
        _, evaluated = net.apply(variables, inp, train=False, mutable=["batch_stats"])
        same = jax.tree.map(lambda a, b: bool(jnp.all(a == b)), stats, evaluated["batch_stats"])
        assert all(jax.tree.leaves(same))
        # Eval mode uses the running statistics: the output does not depend on the rest of the batch.
        single = net.apply(variables, inp[:1], train=False)
        np.testing.assert_allclose(net.apply(variables, inp, train=False)[:1], single, rtol=1e-5, atol=1e-6)


def test_model_config_round_trip():
    """to_dict / from_dict keep every field; non-square sizes survive."""
    config = models.ModelConfig("weight", (64, 96), critic=True)
    assert models.ModelConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["image_size"] == [64, 96]
    with pytest.raises(ValueError, match="unknown model config fields"):
        models.ModelConfig.from_dict({"variant": "wn", "colour": 3})


# ---------------------------------------------------------------------------------------------------------
# Spectral normalization (the sn variant): flax's nn.SpectralNorm on the project's convolutions


def _spectral_stats(variables):
    """{layer: (u, sigma)} of an sn discriminator's ``batch_stats``."""
    out = {}
    for wrapper, stats in variables["batch_stats"].items():
        layer = wrapper.removesuffix("_sn")
        out[layer] = (np.asarray(stats[f"{layer}/kernel/u"]), float(stats[f"{layer}/kernel/sigma"]))
    return out


def test_spectral_norm_divides_every_kernel_by_its_largest_singular_value():
    """After 500 stored power iterations each layer's sigma is the float64 SVD's largest singular value of its
    kernel as a (kh*kw*c_in, c_out) matrix, and the sn discriminator is the vanilla one with every kernel
    divided by it: the normalized kernels' largest singular value is 1."""
    config = models.ModelConfig("sn", 16, channels=1, nfeature=8)
    d = config.discriminator()
    x = jax.random.uniform(jax.random.key(1), (4, 16, 16, 1))
    variables = d.init(jax.random.key(0), x)
    assert set(variables["batch_stats"]) == {f"{n}_sn" for n in variables["params"] if n.endswith("conv")}
    iterate = jax.jit(lambda v: {**v, **d.apply(v, x, train=True, update_spectral=True, mutable=["batch_stats"])[1]})
    for _ in range(500):  # close top singular values of a random kernel make the iteration slow
        variables = iterate(variables)
    normalized = {}
    for name, layer in variables["params"].items():
        if "kernel" not in layer:
            continue
        kernel = np.asarray(layer["kernel"], np.float64)
        top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
        assert _spectral_stats(variables)[name][1] == pytest.approx(top, rel=1e-5), name
        normalized[name] = {**layer, "kernel": kernel / top}
        matrix = normalized[name]["kernel"].reshape(-1, kernel.shape[-1])
        assert np.linalg.svd(matrix, compute_uv=False)[0] == pytest.approx(1.0, abs=1e-12)
    vanilla = models.ModelConfig("vanilla", 16, channels=1, nfeature=8).discriminator()
    params = {**variables["params"], **jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), normalized)}
    np.testing.assert_allclose(d.apply(variables, x), vanilla.apply({"params": params}, x), rtol=1e-4, atol=1e-5)


def test_spectral_norm_stores_its_vector_only_when_asked():
    """Only a forward with ``update_spectral=True`` changes the stored vectors (of the layers with more than one
    output channel: the final layer's is a sign); other variants ignore it."""
    d = models.ModelConfig("sn", 16, channels=1, nfeature=8).discriminator()
    x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 1))
    variables = d.init(jax.random.key(0), x)
    for update, train in ((False, True), (False, False), (True, True)):
        _, out = d.apply(variables, x, train=train, update_spectral=update, mutable=["batch_stats"])
        before, after = _spectral_stats(variables), _spectral_stats(out)
        changed = [bool(np.any(before[n][0] != after[n][0])) for n in before if n != "final_conv"]
        assert len(changed) == 2 and (all(changed) if update else not any(changed))
    vanilla = models.ModelConfig("vanilla", 16, channels=1, nfeature=8).discriminator()
    v = vanilla.init(jax.random.key(0), x)
    np.testing.assert_array_equal(vanilla.apply(v, x, update_spectral=True), vanilla.apply(v, x))


def test_spectral_norm_matches_torch_from_the_same_vector():
    """One training-mode forward of ``torch.nn.utils.spectral_norm(Conv2d)`` from our stored vector ``u``:
    the same output and the same new ``u`` as the sn discriminator's first layer."""
    torch = pytest.importorskip("torch", reason="needs torch (pip install 'wngan_jax[dev]')")

    class FirstLayer(nn.Module):
        @nn.compact
        def __call__(self, x, update):
            conv = layers.Conv(6, (4, 4), (2, 2), (1, 1), name="level_0_conv")
            return models._linear(models.get_variant("sn"), conv, x, update)

    module = FirstLayer()
    x = np.asarray(jax.random.uniform(jax.random.key(2), (3, 8, 8, 2)), np.float32)
    variables = module.init(jax.random.key(3), x, False)
    variables["params"]["level_0_conv"]["bias"] = jax.random.normal(jax.random.key(4), (6,))
    u0, _ = _spectral_stats(variables)["level_0_conv"]
    y, updates = module.apply(variables, x, True, mutable=["batch_stats"])
    u1, sigma = _spectral_stats(updates)["level_0_conv"]

    conv = torch.nn.Conv2d(2, 6, 4, stride=2, padding=1)
    with torch.no_grad():
        conv.weight.copy_(
            torch.from_numpy(np.asarray(variables["params"]["level_0_conv"]["kernel"]).transpose(3, 2, 0, 1).copy())
        )
        conv.bias.copy_(torch.from_numpy(np.array(variables["params"]["level_0_conv"]["bias"])))
    conv = torch.nn.utils.spectral_norm(conv)
    with torch.no_grad():
        conv.weight_u.copy_(torch.from_numpy(u0.reshape(-1).copy()))
        conv.train()
        y_torch = conv(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(y, y_torch, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(u1.reshape(-1), conv.weight_u.numpy(), rtol=1e-5, atol=1e-6)
    w = conv.weight_orig.detach().numpy().reshape(6, -1)
    assert sigma == pytest.approx(float(conv.weight_u.numpy() @ w @ conv.weight_v.numpy()), rel=1e-5)
