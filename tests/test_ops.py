"""The hand-written convolution backward passes against independent computations.

* XLA's own derivative of the plain formulation (``reference_conv`` / ``reference_conv_transpose``, the
  input-dilated transposed convolution) at every layer shape of the 32, 64, 108 and 160 models;
* finite differences in float64 (``jax.test_util.check_grads``);
* the adjoint identity ``<conv(a, k), b> = <a, conv_transpose(b, k)>`` computed with plain sums.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from wngan_jax import models, ops


def rel_err(a, b):
    """max|a - b| / max|b|, in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def value_and_grads(op, x, kernel, cotangent, strides, padding):
    """Forward output and the pullback of ``cotangent`` wrt both the input and the kernel."""
    y, pullback = jax.vjp(lambda a, k: op(a, k, strides, padding), x, kernel)
    return (y,) + pullback(cotangent)


def random_case(seed, x_shape, kernel_shape, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    bound = 1 / np.sqrt(np.prod(kernel_shape[:2]) * kernel_shape[3])
    kernel = rng.uniform(-bound, bound, kernel_shape).astype(dtype)
    return rng, x, kernel


def compare_with_reference(
    transpose, x_shape, kernel_shape, strides, padding, tol=1e-5, seed=0, split_phases_below=ops.SPLIT_PHASES_BELOW
):
    """Forward, input gradient and kernel gradient of the custom op vs XLA's derivative of the plain op."""
    rng, x, kernel = random_case(seed, x_shape, kernel_shape)
    op, reference = (ops.conv_transpose, ops.reference_conv_transpose) if transpose else (ops.conv, ops.reference_conv)

    def custom(a, k, s, p):
        with ops.conv_form(split_phases_below):
            return op(a, k, s, p)

    y_ref = jax.eval_shape(lambda a, k: reference(a, k, strides, padding), x, kernel)
    cotangent = rng.standard_normal(y_ref.shape).astype(np.float32)
    got = value_and_grads(custom, x, kernel, cotangent, strides, padding)
    want = value_and_grads(reference, x, kernel, cotangent, strides, padding)
    for name, g, w in zip(("forward", "input grad", "kernel grad"), got, want):
        assert g.shape == w.shape, name
        assert rel_err(g, w) < tol, (name, rel_err(g, w))
    return got


def model_layer_shapes(size, batch):
    """(transpose, input shape, kernel shape, strides, padding, output hw) for every conv layer of G and D."""
    arch = models.architecture(size, 3, 64)
    shapes = []
    for level in arch.levels:
        kernel = (4, 4, level.image_side_channels, level.code_side_channels)
        # D: image side -> code side, strided conv.
        shapes.append(
            (False, (batch, *level.in_hw, level.image_side_channels), kernel, (2, 2), level.padding, level.out_hw)
        )
        # G: code side -> image side, transposed conv with the same kernel layout.
        shapes.append(
            (True, (batch, *level.out_hw, level.code_side_channels), kernel, (2, 2), level.padding, level.in_hw)
        )
    # D's final conv: kernel covering the whole top map, stride 1, no padding, one output.
    shapes.append(
        (False, (batch, *arch.top_hw, arch.top_channels), (*arch.top_hw, arch.top_channels, 1), (1, 1), (0, 0), (1, 1))
    )
    return shapes


def all_model_layer_shapes():
    seen = {}
    for size in (32, 64, 108, 160):
        batch = 1 if size == 160 else 2
        for case in model_layer_shapes(size, batch):
            key = (case[0],) + tuple(case[1][1:]) + case[2:]
            seen.setdefault(key, (size,) + case)
    return list(seen.values())


@pytest.mark.parametrize(
    "case",
    all_model_layer_shapes(),
    ids=lambda c: (
        f"{c[0]}-{'T' if c[1] else 'C'}-{'x'.join(map(str, c[2][1:]))}"
        f"-k{c[3][0]}x{c[3][1]}x{c[3][2]}x{c[3][3]}-p{c[5][0]}"
    ),
)
def test_model_layers_match_xla_derivative(case):
    """At every layer of the 32/64/108/160 models: forward and both gradients equal XLA's to 1e-5 relative."""
    _, transpose, x_shape, kernel_shape, strides, padding, out_hw = case
    y, _, _ = compare_with_reference(transpose, x_shape, kernel_shape, strides, padding)
    # The layer produces the map the architecture says (e.g. 54 -> 108 with padding 2 at size 108).
    assert y.shape[1:3] == out_hw


def test_model_layer_list_covers_the_paper_shapes():
    """The shape list above really contains Table 1's 160 layers (10x10x512 -> 5x5x1024, 5x5 final conv)."""
    cases = {(c[1], c[2][1:], c[3]) for c in all_model_layer_shapes() if c[0] == 160}
    assert (False, (10, 10, 512), (4, 4, 512, 1024)) in cases
    assert (True, (5, 5, 1024), (4, 4, 512, 1024)) in cases
    assert (False, (5, 5, 1024), (5, 5, 1024, 1)) in cases
    assert (True, (80, 80, 64), (4, 4, 3, 64)) in cases
    # The 108 model's padding-2 level (54 <-> 28).
    assert any(c[2][1:3] == (54, 54) and c[5] == (2, 2) for c in all_model_layer_shapes() if c[0] == 108)


# Odd cases: non-square, mixed strides and paddings, inputs whose last rows a strided conv drops, stride 1,
# and kernels not divisible by the stride (the exact-adjoint fallback).
CONV_CASES = [
    ((2, 9, 9, 3), (4, 4, 3, 5), (2, 2), (1, 1)),
    ((2, 11, 7, 3), (4, 4, 3, 5), (2, 2), (0, 0)),  # last input row/col unused by the strided conv
    ((2, 10, 6, 2), (4, 4, 2, 3), (2, 1), (2, 1)),  # mixed strides and paddings
    ((2, 7, 5, 3), (3, 3, 3, 4), (1, 1), (1, 1)),  # stride 1
    ((2, 7, 6, 3), (5, 5, 3, 2), (1, 1), (0, 0)),
    ((1, 8, 12, 3), (3, 3, 3, 4), (2, 2), (1, 1)),  # 3 % 2 != 0: fallback
    ((1, 9, 9, 2), (5, 4, 2, 3), (2, 2), (2, 1)),  # fallback along h only
    ((1, 12, 9, 2), (6, 4, 2, 3), (3, 2), (1, 1)),  # stride 3
]
TRANSPOSE_CASES = [
    ((2, 5, 3, 4), (4, 4, 3, 4), (2, 2), (1, 1)),
    ((2, 4, 4, 3), (4, 4, 2, 3), (2, 2), (0, 0)),
    ((2, 5, 4, 3), (4, 4, 2, 3), (2, 1), (2, 0)),
    ((2, 6, 5, 3), (3, 3, 4, 3), (1, 1), (1, 1)),
    ((1, 4, 6, 3), (3, 3, 2, 3), (2, 2), (1, 1)),  # fallback
    ((1, 5, 5, 2), (5, 4, 3, 2), (2, 2), (2, 1)),  # fallback along h only
    ((1, 4, 5, 2), (6, 4, 3, 2), (3, 2), (1, 1)),  # stride 3
]
ALL_CASES = [(False,) + c for c in CONV_CASES] + [(True,) + c for c in TRANSPOSE_CASES]
CASE_IDS = [
    f"{'T' if t else 'C'}-x{'x'.join(map(str, x))}-k{'x'.join(map(str, k))}-s{s[0]}{s[1]}-p{p[0]}{p[1]}"
    for t, x, k, s, p in ALL_CASES
]


@pytest.mark.parametrize("transpose,x_shape,kernel_shape,strides,padding", ALL_CASES, ids=CASE_IDS)
def test_odd_shapes_match_xla_derivative(transpose, x_shape, kernel_shape, strides, padding):
    """Odd shapes, strides and paddings: forward and both gradients equal XLA's derivative of the plain op."""
    compare_with_reference(transpose, x_shape, kernel_shape, strides, padding, seed=1)


@pytest.mark.parametrize("x_shape,kernel_shape,strides,padding", CONV_CASES)
def test_conv_transpose_is_the_adjoint_of_conv(x_shape, kernel_shape, strides, padding):
    """<conv(a, k), b> = <a, conv_transpose(b, k)>, both sides summed in float64 numpy.

    ``a`` has the size PyTorch's rule gives the transposed output, so both maps are between the same spaces.
    """
    rng, _, kernel = random_case(2, x_shape, kernel_shape)
    m = [(n + 2 * p - k) // s + 1 for n, k, s, p in zip(x_shape[1:3], kernel_shape[:2], strides, padding)]
    n = [ops.transposed_output_size(q, k, s, p) for q, k, s, p in zip(m, kernel_shape[:2], strides, padding)]
    a = rng.standard_normal((x_shape[0], *n, x_shape[3])).astype(np.float32)
    b = rng.standard_normal((x_shape[0], *m, kernel_shape[3])).astype(np.float32)
    y = np.asarray(ops.conv(a, kernel, strides, padding), np.float64)
    t = np.asarray(ops.conv_transpose(b, kernel, strides, padding), np.float64)
    assert y.shape == b.shape and t.shape == a.shape
    lhs, rhs = np.sum(y * b), np.sum(a * t)
    assert abs(lhs - rhs) <= 1e-5 * np.sum(np.abs(y * b))


@pytest.mark.parametrize(
    "transpose,x_shape,kernel_shape,strides,padding",
    [ALL_CASES[i] for i in (0, 1, 2, 5, 6, 8, 10, 12)],
    ids=[CASE_IDS[i] for i in (0, 1, 2, 5, 6, 8, 10, 12)],
)
def test_finite_differences_float64(transpose, x_shape, kernel_shape, strides, padding):
    """The custom VJPs pass jax.test_util.check_grads (reverse mode, order 1) in float64."""
    op = ops.conv_transpose if transpose else ops.conv
    with jax.enable_x64(True):
        _, x, kernel = random_case(3, x_shape, kernel_shape, np.float64)
        x, kernel = jnp.asarray(x), jnp.asarray(kernel)
        assert x.dtype == jnp.float64
        check_grads(lambda a, k: op(a, k, strides, padding), (x, kernel), order=1, modes=["rev"])
        # And the custom gradient is not merely close: it equals XLA's derivative to float64 precision.
        y = jax.eval_shape(lambda a, k: op(a, k, strides, padding), x, kernel)
        ct = jnp.asarray(np.random.default_rng(4).standard_normal(y.shape))
        reference = ops.reference_conv_transpose if transpose else ops.reference_conv
        got = jax.vjp(lambda a, k: op(a, k, strides, padding), x, kernel)[1](ct)
        want = jax.vjp(lambda a, k: reference(a, k, strides, padding), x, kernel)[1](ct)
        for g, w in zip(got, want):
            assert g.dtype == jnp.float64
            assert rel_err(g, w) < 1e-12


@pytest.mark.parametrize(
    "transpose,x_shape,kernel_shape,strides,padding",
    [
        (False, (2, 16, 12, 8), (4, 4, 8, 16), (2, 2), (1, 1)),
        (True, (2, 8, 6, 16), (4, 4, 8, 16), (2, 2), (1, 1)),
        (True, (2, 7, 7, 16), (4, 4, 8, 16), (2, 2), (2, 2)),
        (True, (1, 4, 6, 3), (3, 3, 2, 3), (2, 2), (1, 1)),
    ],
)
def test_bfloat16_runs_and_stays_close_to_float32(transpose, x_shape, kernel_shape, strides, padding):
    """bfloat16 inputs: outputs and gradients are bfloat16 and within 3% (of the max) of float32 on the same values."""
    rng, x, kernel = random_case(5, x_shape, kernel_shape)
    op = ops.conv_transpose if transpose else ops.conv
    x16, k16 = jnp.asarray(x, jnp.bfloat16), jnp.asarray(kernel, jnp.bfloat16)
    y = jax.eval_shape(lambda a, k: op(a, k, strides, padding), x16, k16)
    ct = rng.standard_normal(y.shape).astype(np.float32)
    got = value_and_grads(op, x16, k16, jnp.asarray(ct, jnp.bfloat16), strides, padding)
    want = value_and_grads(
        op,
        x16.astype(jnp.float32),
        k16.astype(jnp.float32),
        jnp.asarray(ct, jnp.bfloat16).astype(jnp.float32),
        strides,
        padding,
    )
    for g, w in zip(got, want):
        assert g.dtype == jnp.bfloat16
        assert np.all(np.isfinite(np.asarray(g, np.float32)))
        assert rel_err(g, w) < 3e-2


@pytest.mark.parametrize(
    "size,kernel,stride,padding,expected",
    [(4, 4, 2, 1, 8), (5, 5, 1, 0, 9), (28, 4, 2, 2, 54), (1, 4, 2, 0, 4), (7, 3, 2, 1, 13)],
)
def test_transposed_output_size(size, kernel, stride, padding, expected):
    """PyTorch's rule (n - 1) * s - 2p + k, with hand-computed values."""
    assert ops.transposed_output_size(size, kernel, stride, padding) == expected


@pytest.mark.parametrize("split", [False, True], ids=["packed", "split"])
@pytest.mark.parametrize(
    "x_shape,kernel_shape,padding",
    [
        ((2, 4, 4, 16), (4, 4, 8, 16), (1, 1)),  # the 64 model's top level
        ((2, 5, 5, 16), (4, 4, 8, 16), (2, 2)),  # the 160 model's padding-2 level
        ((2, 6, 3, 4), (4, 4, 3, 4), (1, 0)),  # non-square, mixed paddings
    ],
)
def test_packed_and_split_phases_both_match(split, x_shape, kernel_shape, padding):
    """Both sub-pixel forms (one packed convolution, or one per phase) equal XLA's derivative."""
    below = 2.0 if split else 0.0
    with ops.conv_form(below):
        jaxpr = jax.make_jaxpr(lambda a, k: ops.conv_transpose(a, k, (2, 2), padding))(
            jnp.zeros(x_shape), jnp.zeros(kernel_shape)
        )
    assert str(jaxpr).count("conv_general_dilated") == (4 if split else 1)
    compare_with_reference(True, x_shape, kernel_shape, (2, 2), padding, seed=2, split_phases_below=below)
    compare_with_reference(
        False,
        (x_shape[0], 2 * x_shape[1] - 2 * padding[0] + 2, 2 * x_shape[2] - 2 * padding[1] + 2, kernel_shape[2]),
        kernel_shape,
        (2, 2),
        padding,
        seed=3,
        split_phases_below=below,
    )


@pytest.mark.parametrize(
    "x_shape,kernel_shape,padding", [((2, 8, 6, 4), (3, 3, 6, 4), (1, 1)), ((2, 5, 5, 8), (1, 1, 3, 8), (0, 0))]
)
def test_stride_one_transposed_convolution_is_one_exact_convolution(x_shape, kernel_shape, padding):
    """Stride 1 has one phase: even where ``conv_form`` packs every input, it runs as one convolution over
    exactly its output (no border computed and cropped), in both directions, and equals XLA's derivative."""
    out_shape = (*x_shape[:3], kernel_shape[2])
    with ops.conv_form(0.0):
        jaxpr = jax.make_jaxpr(lambda a, k: ops.conv_transpose(a, k, (1, 1), padding))(
            jnp.zeros(x_shape), jnp.zeros(kernel_shape)
        )
    convs = [line for line in str(jaxpr).splitlines() if "conv_general_dilated[" in line]
    assert len(convs) == 1 and f"f32[{','.join(map(str, out_shape))}]" in convs[0], convs
    compare_with_reference(True, x_shape, kernel_shape, (1, 1), padding, seed=4, split_phases_below=0.0)
    compare_with_reference(False, out_shape, kernel_shape, (1, 1), padding, seed=5, split_phases_below=0.0)


def test_cpu_compiler_options_are_accepted_and_keep_the_numbers():
    """The CPU options compile (this XLA knows them) and change no result beyond float rounding."""
    options = ops.compiler_options("cpu")
    assert options is not None and ops.compiler_options("gpu") is None
    _, x, kernel = random_case(4, (4, 8, 8, 16), (4, 4, 16, 32))

    def loss(a, k):
        return jnp.sum(jnp.sin(ops.conv(a, k, (2, 2), (1, 1))))

    grads = jax.grad(loss, (0, 1))
    default = jax.jit(grads)(x, kernel)
    tuned = jax.jit(grads, compiler_options=options)(x, kernel)
    for d, t in zip(default, tuned):
        assert rel_err(t, d) < 1e-5
