"""Strided convolutions and their transposes with hand-written backward passes.

XLA:CPU derives the kernel gradient of a transposed convolution (a convolution with input dilation) 40-100x
slower than the same FLOPs as a strided convolution, and it spends 4x the FLOPs of a stride-2 transposed
convolution on the zeros that input dilation inserts. Here both directions avoid dilation altogether:

* ``conv_transpose`` runs forward as ``stride**2`` small stride-1 convolutions, one per output phase, packed
  into a single convolution or run one by one, then interleaved (sub-pixel form); its input gradient is the
  strided convolution and its kernel gradient the kernel gradient of that strided convolution.
* ``conv`` (strided) runs forward as XLA's convolution; its input gradient is ``conv_transpose`` above.

How a transposed convolution is laid out (packed or split phases) is chosen where a step is traced, with
``conv_form(split_phases_below=...)``; the model code never carries it.

``compiler_options(platform)`` gives the XLA options the project's jitted steps compile with: on XLA:CPU
the convolutions run on XLA's own (Eigen) kernels rather than YNNPACK's, which are slower at these shapes.

Layouts: activations NHWC. ``conv`` takes an HWIO kernel ``(kh, kw, c_in, c_out)``. ``conv_transpose`` takes
the kernel of the strided convolution it transposes, ``(kh, kw, c_out, c_in)`` — the layout of PyTorch's
``ConvTranspose2d.weight.permute(2, 3, 1, 0)`` and of Flax ``ConvTranspose(transpose_kernel=True)``.
Padding is symmetric, ``(pad_h, pad_w)``, with PyTorch's meaning for both functions.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging

import jax
import jax.numpy as jnp
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")

# XLA:CPU hands dots, reductions and convolutions to YNNPACK by default. Its strided convolutions and
# kernel gradients are slower than XLA's Eigen ones at the paper's shapes; keeping YNNPACK for dots and
# reductions only makes the training iteration 1.05-1.07x faster (``python -m wngan_jax.bench --what=ablations``).
_CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
}


@functools.cache
def compiler_options(platform: str) -> dict | None:
    """XLA compiler options for jitting the project's convolutional steps on ``platform`` (None: defaults).

    An XLA that does not know the CPU option (another JAX version) gets its defaults.
    """
    if platform != "cpu":
        return None
    try:
        jax.jit(jnp.negative, compiler_options=_CPU_COMPILER_OPTIONS).lower(
            jax.ShapeDtypeStruct((1,), jnp.float32)
        ).compile()
    except Exception as e:  # XLA rejects unknown options and enum values with several error types
        logging.getLogger(__name__).info(
            "XLA does not take %s (%s); compiling with its defaults", _CPU_COMPILER_OPTIONS, e
        )
        return None
    return _CPU_COMPILER_OPTIONS


def _xla_conv(x, kernel, strides, padding):
    return lax.conv_general_dilated(
        x, kernel, window_strides=strides, padding=[(p, p) for p in padding], dimension_numbers=_DIMS
    )


def transposed_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output size of a transposed convolution (PyTorch's rule with ``output_padding=0``)."""
    return (size - 1) * stride - 2 * padding + kernel


# The packed sub-pixel form computes ``size + taps - 1`` rows per phase where ``out / stride`` are needed.
# Below this fraction of useful work (inputs of 8x8 and smaller in the paper's models) one exact
# convolution per phase is faster on XLA:CPU: the iteration 1.09-1.11x (``--what=ablations``); at 16x16
# inputs the split was slower. ``split_phases_below=0`` packs every input.
SPLIT_PHASES_BELOW = 0.8
_split_phases_below = contextvars.ContextVar("split_phases_below", default=SPLIT_PHASES_BELOW)


@contextlib.contextmanager
def conv_form(split_phases_below: float = SPLIT_PHASES_BELOW):
    """Within this context, ``conv``/``conv_transpose`` traced run their transposed convolutions as one exact
    convolution per phase where less than ``split_phases_below`` of the packed work is useful (0 packs every
    input). Only the compiled form changes, never the result. Enter it inside the function being traced (a
    jitted function's cache does not see the context): ``make_train_step(split_phases_below=...)`` does."""
    token = _split_phases_below.set(float(split_phases_below))
    try:
        yield
    finally:
        _split_phases_below.reset(token)


def _phases(size: int, out: int, kernel: int, stride: int, padding: int):
    """Per output phase ``r`` along one axis: (first output row, rows, (pad_lo, pad_hi)) of its stride-1 conv.

    Output row ``j`` belongs to phase ``r`` when ``j + padding = stride*q + r``; the phase's rows are
    ``q = q_lo .. q_hi``, and each reads inputs ``q - taps + 1 .. q``.
    """
    taps = kernel // stride
    result = []
    for r in range(stride):
        q_lo, q_hi = -((r - padding) // stride), (out - 1 + padding - r) // stride
        result.append((stride * q_lo + r - padding, q_hi - q_lo + 1, (taps - 1 - q_lo, q_hi - size + 1)))
    return result


def _subpixel_conv_transpose(x, kernel, strides, padding, out_hw, split_phases_below):
    """Transposed convolution as stride-1 convolutions over the output phases, interleaved (depth-to-space).

    For stride ``s`` and kernel ``k`` (``k % s == 0``, ``n = k // s`` taps per phase), output row ``j`` with
    ``j + pad = s*q + r`` is ``sum_u x[q - u] * kernel[r + s*u]``: a stride-1 correlation of ``x`` with an
    ``n``-tap kernel per phase ``r``. Either all phases are packed into one convolution over ``x`` padded by
    ``n - 1`` (its border rows are then cropped), or, where that border is a large share of the work, each
    phase is its own convolution padded to exactly its rows (when less than ``split_phases_below`` of the
    packed work is useful, and always for stride 1: one phase).
    """
    kh, kw, c_out, c_in = kernel.shape
    (sh, sw), (ph, pw) = strides, padding
    nh, nw = kh // sh, kw // sw
    # kernel[r + s*u] for window tap w = n - 1 - u: taps (tap_h, phase_h, tap_w, phase_w, c_out, c_in).
    k = kernel.reshape(nh, sh, nw, sw, c_out, c_in)[::-1, :, ::-1]
    (h, w), (oh, ow) = x.shape[1:3], out_hw
    rows, cols = _phases(h, oh, kh, sh, ph), _phases(w, ow, kw, sw, pw)
    exact = all(
        n * s == o and lo >= 0 and hi >= 0
        for phases, s, o in ((rows, sh, oh), (cols, sw, ow))
        for _, n, (lo, hi) in phases
    )
    useful = (oh * ow) / (sh * sw * (h + nh - 1) * (w + nw - 1))
    # With stride 1 there is one phase: its exact convolution has nothing to pack and no border to crop.
    if exact and (useful < split_phases_below or sh * sw == 1):
        # One convolution per phase, stacked in output order: (B, oh/sh, sh, ow/sw, sw, c_out). Its kernel is
        # HWOI, (tap_h, tap_w, c_out, c_in), and HWIO for stride 1: XLA:CPU moves HWOI kernels to HWIO in the
        # entry computation only, and inside a conditional (train_step.rescaled_image_grads) ran such a 3x3
        # convolution 4-5x slower; for strided ones HWOI is the faster form of the DCGAN iteration (3-4%).
        def phase(r, t):
            kernel, dims = k[:, r, :, t], ("NHWC", "HWOI", "NHWC")
            if sh * sw == 1:
                kernel, dims = kernel.transpose(0, 1, 3, 2), _DIMS
            return lax.conv_general_dilated(x, kernel, (1, 1), [rows[r][2], cols[t][2]], dimension_numbers=dims)

        order_h = sorted(range(sh), key=lambda r: rows[r][0])
        order_w = sorted(range(sw), key=lambda t: cols[t][0])
        z = jnp.stack([jnp.stack([phase(r, t) for t in order_w], axis=3) for r in order_h], axis=2)
        return z.reshape(x.shape[0], oh, ow, c_out)
    # Packed: an HWOI kernel (tap_h, tap_w, (phase_h, phase_w, c_out), c_in), so that each (c_out, c_in)
    # block is copied whole and never transposed.
    k = k.transpose(0, 2, 1, 3, 4, 5).reshape(nh, nw, sh * sw * c_out, c_in)
    z = lax.conv_general_dilated(
        x, k, (1, 1), [(nh - 1, nh - 1), (nw - 1, nw - 1)], dimension_numbers=("NHWC", "HWOI", "NHWC")
    )
    b, qh, qw, _ = z.shape
    z = z.reshape(b, qh, qw, sh, sw, c_out).transpose(0, 1, 3, 2, 4, 5).reshape(b, qh * sh, qw * sw, c_out)
    z = z[:, ph : ph + oh, pw : pw + ow]
    # Rows the phases never reach (only when the strided conv drops input rows) are zero.
    return jnp.pad(z, ((0, 0), (0, oh - z.shape[1]), (0, ow - z.shape[2]), (0, 0)))


def _transpose_any(x, kernel, strides, padding, out_hw, split_phases_below):
    kh, kw = kernel.shape[:2]
    if kh % strides[0] == 0 and kw % strides[1] == 0:
        return _subpixel_conv_transpose(x, kernel, strides, padding, out_hw, split_phases_below)
    # General case: the exact adjoint of the strided convolution, as XLA derives it.
    zeros = jnp.zeros(x.shape[:1] + tuple(out_hw) + kernel.shape[2:3], x.dtype)
    _, adjoint = jax.vjp(lambda a: _xla_conv(a, kernel, strides, padding), zeros)
    return adjoint(x)[0]


def _kernel_grad(inputs, kernel, strides, padding, cotangent):
    """Gradient wrt ``kernel`` of ``<conv(inputs, kernel), cotangent>``: XLA's fast strided-conv kernel grad."""
    _, pullback = jax.vjp(lambda k: _xla_conv(inputs, k, strides, padding), kernel)
    return pullback(cotangent)[0]


def conv(x, kernel, strides=(1, 1), padding=(0, 0)):
    """Cross-correlation ``y = conv(x, kernel)`` with stride and symmetric zero padding (PyTorch ``Conv2d``).

    Its input gradient is a transposed convolution (``conv_transpose``, in the form ``conv_form`` selects).
    """
    return _conv(x, kernel, tuple(strides), tuple(padding), _split_phases_below.get())


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, kernel, strides, padding, split_phases_below):
    return _xla_conv(x, kernel, strides, padding)


def _conv_fwd(x, kernel, strides, padding, split_phases_below):
    return _xla_conv(x, kernel, strides, padding), (x, kernel)


def _conv_bwd(strides, padding, split_phases_below, residuals, dy):
    x, kernel = residuals
    dx = _transpose_any(dy, kernel, strides, padding, x.shape[1:3], split_phases_below)
    return dx, _kernel_grad(x, kernel, strides, padding, dy)


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_transpose(x, kernel, strides=(1, 1), padding=(0, 0)):
    """Transposed convolution (PyTorch ``ConvTranspose2d`` with ``output_padding=0``): the adjoint of ``conv``.

    Runs as one packed sub-pixel convolution, or one exact convolution per output phase where less than
    ``split_phases_below`` of the packed work is useful (``conv_form``; default ``SPLIT_PHASES_BELOW``).
    """
    return _conv_transpose(x, kernel, tuple(strides), tuple(padding), _split_phases_below.get())


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_transpose(x, kernel, strides, padding, split_phases_below):
    out_hw = tuple(
        transposed_output_size(n, k, s, p) for n, k, s, p in zip(x.shape[1:3], kernel.shape[:2], strides, padding)
    )
    return _transpose_any(x, kernel, strides, padding, out_hw, split_phases_below)


def _conv_transpose_fwd(x, kernel, strides, padding, split_phases_below):
    return _conv_transpose(x, kernel, strides, padding, split_phases_below), (x, kernel)


def _conv_transpose_bwd(strides, padding, split_phases_below, residuals, dy):
    x, kernel = residuals
    # y = S^T x for the strided conv S = conv(., kernel): dx = S dy, and <y, dy> = <x, conv(dy, kernel)>.
    dx = _xla_conv(dy, kernel, strides, padding)
    return dx, _kernel_grad(dy, kernel, strides, padding, x)


_conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


def reference_conv_transpose(x, kernel, strides=(1, 1), padding=(0, 0)):
    """The textbook formulation (input dilation), differentiated by XLA: the baseline for tests and benches."""
    kh, kw = kernel.shape[:2]
    return lax.conv_transpose(
        x,
        kernel,
        strides,
        [(kh - 1 - padding[0],) * 2, (kw - 1 - padding[1],) * 2],
        dimension_numbers=_DIMS,
        transpose_kernel=True,
    )


def reference_conv(x, kernel, strides=(1, 1), padding=(0, 0)):
    """``conv`` with XLA's own derivative: the baseline for tests and benches."""
    return _xla_conv(x, kernel, strides, padding)
