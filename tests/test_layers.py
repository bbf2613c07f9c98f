"""Layers against hand computations: numpy convolutions, the paper's equations and hand-worked numbers."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wngan_jax import layers

EPS = 1e-6  # docs/authors.md §1: inside the sqrt


# ---------------------------------------------------------------------------------------------------------
# Plain numpy formulations (float64), PyTorch's semantics.


def np_conv(x, k, strides, padding):
    """Conv2d: y[b, i, j, o] = sum x_pad[b, i*s + a, j*s + c, ci] * k[a, c, ci, o], loop over kernel taps."""
    (sh, sw), (ph, pw) = strides, padding
    kh, kw, _, c_out = k.shape
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    oh, ow = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    y = np.zeros((x.shape[0], oh, ow, c_out))
    for a, c in itertools.product(range(kh), range(kw)):
        y += np.einsum("bijc,co->bijo", xp[:, a : a + sh * (oh - 1) + 1 : sh, c : c + sw * (ow - 1) + 1 : sw], k[a, c])
    return y


def np_conv_transpose(x, k, strides, padding):
    """ConvTranspose2d (kernel ``(kh, kw, c_out, c_in)``): scatter x[b, i, j] * k[a, c] to (i*s-p+a, j*s-p+c)."""
    (sh, sw), (ph, pw) = strides, padding
    kh, kw, c_out, _ = k.shape
    b, h, w, _ = x.shape
    full = np.zeros((b, (h - 1) * sh + kh, (w - 1) * sw + kw, c_out))
    for a, c in itertools.product(range(kh), range(kw)):
        full[:, a : a + sh * (h - 1) + 1 : sh, c : c + sw * (w - 1) + 1 : sw] += np.einsum("bijc,oc->bijo", x, k[a, c])
    return full[:, ph : full.shape[1] - ph, pw : full.shape[2] - pw]


def np_norm(v, out_axis, stride_factor=1.0):
    """n_i = sqrt(sum(v_i**2) * stride_factor + 1e-6) per output channel (docs/authors.md §1)."""
    axes = tuple(a for a in range(v.ndim) if a != out_axis)
    return np.sqrt(np.sum(np.asarray(v, np.float64) ** 2, axis=axes) * stride_factor + EPS)


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# Layer configurations: (constructor, input shape, output axis of the kernel, stride factor of the norm).
LAYER_CASES = {
    "dense": (lambda norm, **kw: layers.Dense(6, norm=norm, use_bias=norm != "strict", **kw), (3, 10), 1, 1.0),
    "conv_s2": (
        lambda norm, **kw: layers.Conv(5, (4, 4), (2, 2), (1, 1), norm=norm, use_bias=norm != "strict", **kw),
        (2, 8, 6, 3),
        3,
        1.0,
    ),
    "conv_final": (
        lambda norm, **kw: layers.Conv(2, (3, 3), norm=norm, use_bias=norm != "strict", **kw),
        (2, 3, 3, 4),
        3,
        1.0,
    ),
    "deconv_s2": (
        lambda norm, **kw: layers.Conv(
            5, (4, 4), (2, 2), (1, 1), transpose=True, norm=norm, use_bias=norm != "strict", **kw
        ),
        (2, 4, 3, 6),
        2,
        0.25,
    ),
    "deconv_s2_p2": (
        lambda norm, **kw: layers.Conv(
            3, (4, 4), (2, 2), (2, 2), transpose=True, norm=norm, use_bias=norm != "strict", **kw
        ),
        (2, 5, 5, 4),
        2,
        0.25,
    ),
    "deconv_s21": (
        lambda norm, **kw: layers.Conv(
            3, (4, 4), (2, 1), (1, 1), transpose=True, norm=norm, use_bias=norm != "strict", **kw
        ),
        (2, 3, 4, 4),
        2,
        0.5,
    ),
}


def init_layer(name, norm, seed=0, **kw):
    make, x_shape, out_axis, stride_factor = LAYER_CASES[name]
    layer = make(norm, **kw)
    x = np.random.default_rng(seed).standard_normal(x_shape).astype(np.float32)
    params = layer.init(jax.random.key(seed), x)["params"]
    if norm == "affine":  # non-trivial scale (including negative) and bias instead of the init 1 / 0
        rng = np.random.default_rng(seed + 100)
        params = dict(
            params,
            scale=jnp.asarray(rng.uniform(-2, 2, params["scale"].shape), jnp.float32),
            bias=jnp.asarray(rng.standard_normal(params["bias"].shape), jnp.float32),
        )
    return layer, params, x, out_axis, stride_factor


def numpy_forward(name, params, x, norm):
    """The layer computed by hand: plain linear map with the raw kernel, OUTPUT divided by the norm, then g, b."""
    layer = LAYER_CASES[name][0](norm)
    v = np.asarray(params["kernel"], np.float64)
    x = np.asarray(x, np.float64)
    out_axis, stride_factor = LAYER_CASES[name][2:]
    if name == "dense":
        y = x @ v
    elif layer.transpose:
        y = np_conv_transpose(x, v, layer.strides, layer.padding)
    else:
        y = np_conv(x, v, layer.strides, layer.padding)
    if norm != "none":
        y = y / np_norm(v, out_axis, stride_factor)
    if norm == "affine":
        y = y * np.asarray(params["scale"]) + np.asarray(params["bias"])
    elif "bias" in params:
        y = y + np.asarray(params["bias"])
    return y


def effective_kernel(name, norm, params, c_in):
    """Recover the kernel the layer actually applies from its responses to one-hot inputs (bias removed).

    Returned in the layout of the layer's ``kernel`` parameter.
    """
    make, _, _, _ = LAYER_CASES[name]
    if name == "dense":
        layer = make(norm)
        probe = np.eye(c_in, dtype=np.float32)
        return np.asarray(layer.apply({"params": params}, probe) - layer.apply({"params": params}, 0 * probe))
    template = make(norm)
    kh, kw = template.kernel_size
    # Same kernel, no padding: a conv over a kh x kw one-hot gives one output pixel = one kernel row;
    # a transposed conv of a 1x1 one-hot gives a kh x kw map = one kernel slice.
    layer = template.clone(padding=(0, 0))
    if template.transpose:
        probe = np.eye(c_in, dtype=np.float32).reshape(c_in, 1, 1, c_in)
        y = layer.apply({"params": params}, probe) - layer.apply({"params": params}, 0 * probe)
        return np.asarray(y).transpose(1, 2, 3, 0)  # (kh, kw, c_out, c_in)
    probe = np.eye(kh * kw * c_in, dtype=np.float32).reshape(-1, kh, kw, c_in)
    y = layer.apply({"params": params}, probe) - layer.apply({"params": params}, 0 * probe)
    return np.asarray(y).reshape(kh, kw, c_in, -1)  # (kh, kw, c_in, c_out)


# ---------------------------------------------------------------------------------------------------------
# Weight normalization


@pytest.mark.parametrize("name", list(LAYER_CASES))
def test_strict_effective_kernel_has_unit_norm(name):
    """Strict WN: the applied kernel has norm 1 per output channel, sum(w**2) / (s_h s_w) for transposed convs.

    Exactly, sum(w**2) * f = S / (S + 1e-6) with S = sum(v**2) * f: the epsilon sits inside the sqrt.
    """
    _, params, x, out_axis, f = init_layer(name, "strict")
    assert set(params) == {"kernel"}
    w = effective_kernel(name, "strict", params, x.shape[-1])
    v = np.asarray(params["kernel"], np.float64)
    axes = tuple(a for a in range(w.ndim) if a != out_axis)
    norm_sq = np.sum(w.astype(np.float64) ** 2, axis=axes) * f
    s = np.sum(v**2, axis=axes) * f
    np.testing.assert_allclose(norm_sq, s / (s + EPS), rtol=2e-6)
    np.testing.assert_allclose(norm_sq, 1.0, atol=1e-4)
    # And it is the raw kernel rescaled, direction unchanged.
    np.testing.assert_allclose(w, v / np.expand_dims(np.sqrt(s + EPS), axes), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", list(LAYER_CASES))
def test_affine_effective_kernel_has_norm_abs_g(name):
    """Affine WN: the applied kernel (bias removed) has norm |g_i| per output channel, stride factor included."""
    _, params, x, out_axis, f = init_layer(name, "affine", seed=1)
    assert set(params) == {"kernel", "scale", "bias"}
    w = effective_kernel(name, "affine", params, x.shape[-1])
    axes = tuple(a for a in range(w.ndim) if a != out_axis)
    norm = np.sqrt(np.sum(w.astype(np.float64) ** 2, axis=axes) * f)
    np.testing.assert_allclose(norm, np.abs(np.asarray(params["scale"])), rtol=1e-4)


def test_epsilon_inside_sqrt_matters_for_the_tiny_first_layer():
    """G's first layer (t = 0.01, 256 inputs): sum(v**2) ~ 3e-5, so eps inside the sqrt shrinks the norm ~3%."""
    layer = layers.StrictWNDense(64, init_scale=0.01)
    params = layer.init(jax.random.key(0), jnp.zeros((1, 256)))["params"]
    w = np.asarray(layer.apply({"params": params}, np.eye(256, dtype=np.float32)), np.float64)
    s = np.sum(np.asarray(params["kernel"], np.float64) ** 2, axis=0)
    norm_sq = np.sum(w**2, axis=0)
    np.testing.assert_allclose(norm_sq, s / (s + EPS), rtol=1e-5)
    assert np.all(norm_sq < 0.99)  # eps outside the sqrt would give > 0.9996


@pytest.mark.parametrize("norm", ["none", "strict", "affine"])
@pytest.mark.parametrize("name", list(LAYER_CASES))
def test_forward_equals_numpy_output_normalization(name, norm):
    """Layer output == numpy conv / conv-transpose / matmul with the raw kernel, OUTPUT divided by n_i (x g + b)."""
    layer, params, x, _, _ = init_layer(name, norm, seed=2)
    y = layer.apply({"params": params}, x)
    want = numpy_forward(name, params, x, norm)
    assert y.shape == want.shape
    assert rel_err(y, want) < 1e-5


def test_numpy_conv_transpose_is_the_adjoint_of_numpy_conv():
    """Sanity of the hand-written formulations the tests above rely on: <conv(a), b> = <a, conv_T(b)>."""
    rng = np.random.default_rng(0)
    k = rng.standard_normal((4, 4, 3, 5))
    a = rng.standard_normal((2, 10, 8, 3))
    y = np_conv(a, k, (2, 2), (1, 1))
    assert y.shape == (2, 5, 4, 5)
    b = rng.standard_normal(y.shape)
    t = np_conv_transpose(b, k, (2, 2), (1, 1))
    assert t.shape == a.shape
    np.testing.assert_allclose(np.sum(y * b), np.sum(a * t), rtol=1e-10)


@pytest.mark.parametrize("norm", ["strict", "affine"])
@pytest.mark.parametrize("name", list(LAYER_CASES))
def test_kernel_gradient_is_orthogonal_to_kernel(name, norm):
    """d loss / d v is orthogonal to v per output channel (up to the 1e-6 epsilon), for two different losses."""
    layer, params, x, out_axis, _ = init_layer(name, norm, seed=3)
    axes = tuple(a for a in range(params["kernel"].ndim) if a != out_axis)
    rng = np.random.default_rng(3)
    y_shape = jax.eval_shape(lambda p: layer.apply({"params": p}, x), params).shape
    c = rng.standard_normal(y_shape).astype(np.float32)
    losses = [lambda y: jnp.sum(jnp.sin(y) * c), lambda y: jnp.sum((y - c) ** 2) + jnp.sum(y[..., 0] ** 3)]
    v = np.asarray(params["kernel"], np.float64)
    for loss in losses:
        g = jax.grad(lambda p, loss=loss: loss(layer.apply({"params": p}, x)))(params)["kernel"]
        g = np.asarray(g, np.float64)
        dot = np.sum(g * v, axis=axes)
        scale = np.sqrt(np.sum(g**2, axis=axes) * np.sum(v**2, axis=axes))
        assert np.all(scale > 0)
        assert np.all(np.abs(dot) <= 1e-4 * scale), np.max(np.abs(dot) / scale)


@pytest.mark.parametrize(
    "name,c_in,fan_in",
    [("dense", 10, 10), ("conv_s2", 3, 48), ("conv_final", 4, 36), ("deconv_s2", 6, 96), ("deconv_s2_p2", 4, 64)],
)
@pytest.mark.parametrize("t", [1.0, 0.01])
def test_init_bounds(name, c_in, fan_in, t):
    """Kernels are uniform in ±t / sqrt(c_in k_h k_w), c_in the layer's input channels (paper §5.1)."""
    make, x_shape, _, _ = LAYER_CASES[name]
    layer = make("strict", init_scale=t)
    # Many output channels so the sample fills the interval.
    layer = layer.clone(features=64)
    params = layer.init(jax.random.key(4), jnp.zeros(x_shape))["params"]
    v = np.asarray(params["kernel"])
    bound = t / np.sqrt(fan_in)
    assert np.all(np.abs(v) <= bound)
    assert np.max(np.abs(v)) > 0.97 * bound
    assert abs(np.mean(v)) < 0.1 * bound
    np.testing.assert_allclose(np.std(v), bound / np.sqrt(3), rtol=0.1)


def test_weight_norm_scale_hand_numbers():
    """1 / sqrt(sum(v**2) * f + 1e-6) on a 3-4-5 triangle."""
    v = jnp.array([[3.0, 0.0], [4.0, 1.0]])
    np.testing.assert_allclose(
        layers.weight_norm_scale(v, [0]), [1 / np.sqrt(25 + EPS), 1 / np.sqrt(1 + EPS)], rtol=1e-6
    )
    np.testing.assert_allclose(
        layers.weight_norm_scale(v, [0], 0.25), [1 / np.sqrt(6.25 + EPS), 1 / np.sqrt(0.25 + EPS)], rtol=1e-6
    )


def test_invalid_norm_is_rejected():
    with pytest.raises(ValueError, match="weight norm"):
        layers.Dense(3, norm="spectral").init(jax.random.key(0), jnp.zeros((1, 2)))


def test_bfloat16_layer_runs_close_to_float32():
    """A strict WN transposed conv computing in bfloat16 stays within 3% (of the max) of float32."""
    layer, params, x, _, _ = init_layer("deconv_s2", "strict", seed=5)
    y32 = layer.apply({"params": params}, x)
    y16 = layer.clone(dtype=jnp.bfloat16).apply({"params": params}, x)
    assert y16.dtype == jnp.bfloat16
    assert rel_err(y16, y32) < 3e-2


# ---------------------------------------------------------------------------------------------------------
# PReLU / TPReLU


def test_prelu_hand_numbers():
    """PReLU with per-channel slopes 0.25 and 0.5: negatives scaled, zero and positives unchanged."""
    x = jnp.array([[-2.0, -2.0], [0.0, 0.0], [3.0, 1.5]])
    params = {"slope": jnp.array([0.25, 0.5])}
    y = layers.PReLU().apply({"params": params}, x)
    np.testing.assert_allclose(y, [[-0.5, -1.0], [0.0, 0.0], [3.0, 1.5]])


def test_tprelu_hand_numbers():
    """TPReLU = PReLU_a(x - alpha) + alpha: slope 0.25, alpha 0.5 / slope 0.5, alpha -1, worked by hand."""
    x = jnp.array([[-2.0, -2.0], [-0.5, -1.0], [0.5, 0.0], [3.0, 1.0]])
    params = {"slope": jnp.array([0.25, 0.5]), "alpha": jnp.array([0.5, -1.0])}
    y = layers.TPReLU().apply({"params": params}, x)
    # channel 0: x - 0.5 = -2.5, -1, 0, 2.5 -> -0.625, -0.25, 0, 2.5 -> +0.5
    # channel 1: x + 1 = -1, 0, 1, 2 -> -0.5, 0, 1, 2 -> -1
    np.testing.assert_allclose(y, [[-0.125, -1.5], [0.25, -1.0], [0.5, 0.0], [3.0, 1.0]])


def test_prelu_tprelu_params_and_init():
    """PReLU: slope 0.25 per channel; TPReLU adds alpha 0 per channel; NHWC channels last."""
    x = jnp.zeros((2, 3, 3, 7))
    p = layers.PReLU().init(jax.random.key(0), x)["params"]
    t = layers.TPReLU().init(jax.random.key(0), x)["params"]
    assert set(p) == {"slope"} and set(t) == {"slope", "alpha"}
    np.testing.assert_array_equal(p["slope"], np.full(7, 0.25))
    np.testing.assert_array_equal(t["alpha"], np.zeros(7))


# ---------------------------------------------------------------------------------------------------------
# Batch norm (PyTorch numerics)


def test_batch_norm_hand_numbers():
    """One channel, x = 1, 2, 3, 6: mean 3, biased var 3.5 (normalization), unbiased 14/3 (running var)."""
    x = jnp.array([1.0, 2.0, 3.0, 6.0]).reshape(4, 1)
    bn = layers.BatchNorm()
    variables = bn.init(jax.random.key(0), x, use_running_average=False)
    np.testing.assert_array_equal(variables["batch_stats"]["mean"], [0.0])
    np.testing.assert_array_equal(variables["batch_stats"]["var"], [1.0])
    y, updates = bn.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    np.testing.assert_allclose(y[:, 0], (np.array([1, 2, 3, 6]) - 3) / np.sqrt(3.5 + 1e-5), rtol=1e-6)
    np.testing.assert_allclose(updates["batch_stats"]["mean"], [0.3], rtol=1e-6)
    np.testing.assert_allclose(updates["batch_stats"]["var"], [0.9 + 0.1 * 14 / 3], rtol=1e-6)


def test_batch_norm_matches_torch_style_numpy():
    """NHWC, 3 channels, learned scale/bias, two training steps then inference, against numpy."""
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((4, 3, 2, 3)) * [1.0, 3.0, 0.5] + [0.0, 2.0, -1.0] for _ in range(2)]
    x_test = rng.standard_normal((2, 3, 2, 3))
    bn = layers.BatchNorm()
    variables = bn.init(jax.random.key(0), jnp.asarray(xs[0], jnp.float32), use_running_average=False)
    params = {"scale": jnp.array([1.5, -0.5, 2.0]), "bias": jnp.array([0.1, 0.2, -0.3])}
    stats = variables["batch_stats"]
    run_mean, run_var = np.zeros(3), np.ones(3)
    for x in xs:
        y, upd = bn.apply(
            {"params": params, "batch_stats": stats},
            jnp.asarray(x, jnp.float32),
            use_running_average=False,
            mutable=["batch_stats"],
        )
        stats = upd["batch_stats"]
        mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
        n = 4 * 3 * 2
        want = (x - mean) / np.sqrt(var + 1e-5) * np.asarray(params["scale"]) + np.asarray(params["bias"])
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
        run_mean = 0.9 * run_mean + 0.1 * mean
        run_var = 0.9 * run_var + 0.1 * var * n / (n - 1)
        np.testing.assert_allclose(stats["mean"], run_mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stats["var"], run_var, rtol=1e-5)
    # Inference: running statistics, and no update even when mutable.
    y, upd = bn.apply(
        {"params": params, "batch_stats": stats},
        jnp.asarray(x_test, jnp.float32),
        use_running_average=True,
        mutable=["batch_stats"],
    )
    want = (x_test - run_mean) / np.sqrt(run_var + 1e-5) * np.asarray(params["scale"]) + np.asarray(params["bias"])
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(upd["batch_stats"]["mean"], stats["mean"])
    np.testing.assert_array_equal(upd["batch_stats"]["var"], stats["var"])


def test_mean_only_batch_norm():
    """Mean-only BN: x - batch mean + bias in training, x - running mean + bias at inference; no var, no scale."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 2, 2, 2)) + [3.0, -1.0]
    bn = layers.BatchNorm(mean_only=True)
    variables = bn.init(jax.random.key(0), jnp.asarray(x, jnp.float32), use_running_average=False)
    assert set(variables["params"]) == {"bias"}
    assert set(variables["batch_stats"]) == {"mean"}
    params = {"bias": jnp.array([0.5, -0.25])}
    y, upd = bn.apply(
        {"params": params, "batch_stats": variables["batch_stats"]},
        jnp.asarray(x, jnp.float32),
        use_running_average=False,
        mutable=["batch_stats"],
    )
    mean = x.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(y, x - mean + [0.5, -0.25], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(upd["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5)
    y = bn.apply(
        {"params": params, "batch_stats": upd["batch_stats"]}, jnp.asarray(x, jnp.float32), use_running_average=True
    )
    np.testing.assert_allclose(y, x - 0.1 * mean + [0.5, -0.25], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Slope clipping


def test_clip_slopes():
    """Slopes of every (T)PReLU go to [0, 1]; alpha only in the named modules; nothing else changes."""
    slope = jnp.array([-0.5, 0.3, 1.7])
    alpha = jnp.array([-1.0, 0.5, 2.0])
    kernel = jnp.array([[-3.0, 2.0]])
    params = {
        "initial_act": {"slope": slope, "alpha": alpha},
        "level_3_act": {"slope": slope, "alpha": alpha},
        "level_2_act": {"slope": slope, "alpha": alpha},
        "level_2_conv": {"kernel": kernel, "scale": alpha, "bias": alpha},
        "prelu": {"slope": slope},
    }
    out = layers.clip_slopes(params, clip_alpha_of=("initial_act", "level_3_act"))
    for name in ("initial_act", "level_3_act", "level_2_act", "prelu"):
        np.testing.assert_array_equal(out[name]["slope"], np.float32([0.0, 0.3, 1.0]))
    np.testing.assert_array_equal(out["initial_act"]["alpha"], np.float32([0.0, 0.5, 1.0]))
    np.testing.assert_array_equal(out["level_3_act"]["alpha"], np.float32([0.0, 0.5, 1.0]))
    np.testing.assert_array_equal(out["level_2_act"]["alpha"], alpha)
    np.testing.assert_array_equal(out["level_2_conv"]["kernel"], kernel)
    np.testing.assert_array_equal(out["level_2_conv"]["scale"], alpha)
    np.testing.assert_array_equal(out["level_2_conv"]["bias"], alpha)
    # Default: no alpha clipped at all.
    out = layers.clip_slopes(params)
    np.testing.assert_array_equal(out["initial_act"]["alpha"], alpha)
    np.testing.assert_array_equal(out["initial_act"]["slope"], np.float32([0.0, 0.3, 1.0]))


@pytest.mark.parametrize("transpose", [False, True])
def test_multiplier_on_kernel_or_output_gives_the_same_layer(transpose):
    """The WN multiplier goes on the kernel or on the output, whichever is smaller: a sample's output must
    not depend on which (a batch of 1 scales the output here, a batch of 128 the kernel)."""
    layer = layers.Conv(16, (4, 4), (2, 2), (1, 1), transpose=transpose, norm="affine")
    x = jax.random.normal(jax.random.key(0), (128, 4, 4, 16))
    variables = layer.init(jax.random.key(1), x[:1])
    variables = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(jax.random.key(2), a.shape), variables)
    together = layer.apply(variables, x)
    alone = layer.apply(variables, x[:1])
    kernel_elements = 4 * 4 * 16 * 16
    assert alone.size < kernel_elements < together.size
    np.testing.assert_allclose(alone, together[:1], rtol=1e-5, atol=1e-6)
