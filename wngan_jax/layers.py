"""Layers of the paper: weight-normalized dense/conv/conv-transpose, TPReLU, PReLU and batch norms.

Weight normalization (paper §3, eq. 3): output channel ``i`` of a layer with kernel ``v`` is
``y_i = (v_i . x) / n_i`` ("strict") or ``y_i = (v_i . x) / n_i * g_i + b_i`` ("affine"), where
``n_i = sqrt(sum(v_i**2) / (s_h * s_w) + 1e-6)``: the sum runs over input channels and kernel taps, and the
stride factor ``1 / (s_h * s_w)`` applies to transposed convolutions only (each output pixel of a stride-2
transposed convolution sees a quarter of the taps). The kernel is normalized rather than the output: the
same maths, computed on the small tensor.

The authors' follow-up, the weight-normalized ResNet (``wngan_jax.resnet``, docs/design.md "The ResNet
follow-up"), adds the root's epsilon after it instead, ``n_i = sqrt(sum(v_i**2) / (s_h * s_w)) + 1e-8``
(``eps_after_root=True``), and brings three more layers: ``WeightNormalizedAddition`` (branches summed with
per-channel weights normalized over the branches), ``NearestNeighbourUpscale`` and ``Affine``; its TPReLU
clamps the slope inside the forward pass (``PReLU(clamp=True)``).

Initialization (paper §5.1): kernels uniform in ``±t / sqrt(c_in * k_h * k_w)`` with ``c_in`` the layer's
input channels; ``t = 0.01`` for the generator's first layer, 1 elsewhere. Plain layers use the same rule
with ``t = 1`` and zero biases.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from wngan_jax import ops

WeightNorm = Literal["none", "strict", "affine"]
NORM_EPS = 1e-6
NORM_EPS_AFTER_ROOT = 1e-8  # the ResNet follow-up's rule: sqrt(sum(v**2)) + 1e-8
BATCH_NORM_EPS = 1e-5
BATCH_NORM_MOMENTUM = 0.1  # PyTorch's convention: new = (1 - m) * old + m * batch


def paper_uniform_init(scale: float, fan_in: int):
    """U(-t/sqrt(fan_in), t/sqrt(fan_in)) of paper §5.1, ``fan_in = c_in * k_h * k_w``."""
    return uniform_init(scale / math.sqrt(fan_in))


def uniform_init(bound: float):
    """U(-bound, bound)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def weight_norm_scale(
    v: jax.Array, reduce_axes: Sequence[int], stride_factor: float = 1.0, eps_after_root: bool = False
) -> jax.Array:
    """``1 / n_i``, one value per output channel: ``n_i = sqrt(sum(v_i**2) * stride_factor + 1e-6)`` (the paper),
    or ``sqrt(sum(v_i**2) * stride_factor) + 1e-8`` with ``eps_after_root`` (the ResNet follow-up)."""
    sum_sq = jnp.sum(jnp.square(v.astype(jnp.float32)), axis=tuple(reduce_axes))
    if eps_after_root:
        return 1.0 / (jnp.sqrt(sum_sq * stride_factor) + NORM_EPS_AFTER_ROOT)
    return jax.lax.rsqrt(sum_sq * stride_factor + NORM_EPS)


class _WeightNormParams(nn.Module):
    """Shared parameter logic: kernel ``v`` with the paper's init, the WN scale, the optional affine/bias."""

    def normalized(
        self,
        shape,
        fan_in,
        out_axis,
        norm: WeightNorm,
        init_scale,
        stride_factor,
        out_elements,
        linear_op,
        eps_after_root,
    ):
        """``linear_op(kernel)`` with the kernel's per-output-channel WN multiplier ``g_i / n_i`` applied.

        The multiplier goes on the kernel or on the output, whichever holds fewer numbers (docs/authors.md §1:
        the same maths); on the output it fuses with the activation that follows.
        """
        v = self.param("kernel", paper_uniform_init(init_scale, fan_in), shape)
        if norm == "none":
            return linear_op(v)
        if norm not in ("strict", "affine"):
            raise ValueError(f"weight norm must be 'none', 'strict' or 'affine', got {norm!r}")
        multiplier = weight_norm_scale(v, [a for a in range(v.ndim) if a != out_axis], stride_factor, eps_after_root)
        if norm == "affine":
            multiplier = multiplier * self.param("scale", nn.initializers.ones, (shape[out_axis],))
        if out_elements < v.size:
            y = linear_op(v)
            return y * multiplier.astype(y.dtype)
        broadcast = [1] * v.ndim
        broadcast[out_axis] = shape[out_axis]
        return linear_op(v * multiplier.reshape(broadcast))

    def add_bias(self, y, norm: WeightNorm, use_bias: bool, features: int, bias_init=nn.initializers.zeros):
        if norm == "affine" or (norm == "none" and use_bias):
            y = y + self.param("bias", bias_init, (features,)).astype(y.dtype)
        return y


class Dense(_WeightNormParams):
    """Dense layer, plain (``norm='none'``) or weight-normalized per output unit (strict or affine).

    ``eps_after_root`` selects the ResNet follow-up's norm (module docstring); ``bias_init`` the bias's
    initializer (zeros; the follow-up's first layer draws it like its kernel).
    """

    features: int
    norm: WeightNorm = "none"
    use_bias: bool = True
    init_scale: float = 1.0
    eps_after_root: bool = False
    bias_init: Any = nn.initializers.zeros
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        c_in = x.shape[-1]
        dtype = self.dtype or x.dtype
        y = self.normalized(
            (c_in, self.features),
            c_in,
            1,
            self.norm,
            self.init_scale,
            1.0,
            math.prod(x.shape[:-1]) * self.features,
            lambda w: jnp.dot(x.astype(dtype), w.astype(dtype)),
            self.eps_after_root,
        )
        return self.add_bias(y, self.norm, self.use_bias, self.features, self.bias_init)


class Conv(_WeightNormParams):
    """2-D convolution or transposed convolution (NHWC), plain or weight-normalized, on the custom kernels.

    ``padding`` is symmetric ``(pad_h, pad_w)`` with PyTorch's meaning for both directions. The kernel is
    ``(kh, kw, c_in, c_out)`` for a convolution and ``(kh, kw, c_out, c_in)`` (the kernel of the strided
    convolution it transposes) for a transposed convolution. ``eps_after_root`` selects the ResNet follow-up's
    norm (module docstring).
    """

    features: int
    kernel_size: tuple[int, int] = (4, 4)
    strides: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    transpose: bool = False
    norm: WeightNorm = "none"
    use_bias: bool = True
    init_scale: float = 1.0
    eps_after_root: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        kh, kw = self.kernel_size
        c_in = x.shape[-1]
        fan_in = c_in * kh * kw
        if self.transpose:
            shape, out_axis = (kh, kw, self.features, c_in), 2
            stride_factor = 1.0 / (self.strides[0] * self.strides[1])
        else:
            shape, out_axis, stride_factor = (kh, kw, c_in, self.features), 3, 1.0
        dtype = self.dtype or x.dtype
        op = ops.conv_transpose if self.transpose else ops.conv
        stride_area = self.strides[0] * self.strides[1]
        positions = math.prod(x.shape[:-1])  # batch x height x width, about that of the output:
        positions = positions * stride_area if self.transpose else positions // stride_area
        y = self.normalized(
            shape,
            fan_in,
            out_axis,
            self.norm,
            self.init_scale,
            stride_factor,
            positions * self.features,
            lambda w: op(x.astype(dtype), w.astype(dtype), tuple(self.strides), tuple(self.padding)),
            self.eps_after_root,
        )
        return self.add_bias(y, self.norm, self.use_bias, self.features)


StrictWNDense = functools.partial(Dense, norm="strict", use_bias=False)
AffineWNDense = functools.partial(Dense, norm="affine")
StrictWNConv = functools.partial(Conv, norm="strict", use_bias=False)
AffineWNConv = functools.partial(Conv, norm="affine")
StrictWNConvTranspose = functools.partial(Conv, transpose=True, norm="strict", use_bias=False)
AffineWNConvTranspose = functools.partial(Conv, transpose=True, norm="affine")


class PReLU(nn.Module):
    """Parametric ReLU with one slope per channel (last axis), init 0.25; ``translated`` adds TPReLU's alpha.

    TPReLU (paper §3, eq. 7 with a parametric slope): ``PReLU_a(x - alpha) + alpha``, alpha init 0.
    ``clamp`` uses the slope clamped to [0, 1] in the forward pass, as the ResNet follow-up's TPReLU does
    (PyTorch's ``clamp``: gradient 1 inside the closed interval, 0 outside); the paper's models clip the
    stored slope after each update instead (``clip_slopes``).
    """

    translated: bool = False
    clamp: bool = False

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        slope = self.param("slope", nn.initializers.constant(0.25), (channels,))
        if self.clamp:
            slope = jnp.where((slope >= 0) & (slope <= 1), slope, jnp.clip(slope, 0.0, 1.0))
        slope = slope.astype(x.dtype)
        if not self.translated:
            return jnp.where(x >= 0, x, slope * x)
        alpha = self.param("alpha", nn.initializers.zeros, (channels,)).astype(x.dtype)
        shifted = x - alpha
        return jnp.where(shifted >= 0, shifted, slope * shifted) + alpha


TPReLU = functools.partial(PReLU, translated=True)


class Affine(nn.Module):
    """Per-channel ``x * scale + bias`` (last axis), scale init 1, bias init 0: the follow-up's generator output."""

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,)).astype(x.dtype)
        return x * scale + self.param("bias", nn.initializers.zeros, (channels,)).astype(x.dtype)


class WeightNormalizedAddition(nn.Module):
    """``sum_k x_k * w_kc / (sqrt(sum_k w_kc**2) + 1e-8)`` over inputs ``x_k`` of the same shape, per channel ``c``
    (last axis): the branches of a residual block summed with weights of unit norm over the branches.

    ``weight`` has shape ``(inputs, channels)``; ``initial`` gives its per-input starting values (default
    ``1 / sqrt(inputs)`` each). The follow-up's blocks start at ``(0, 1)``: the block begins as its shortcut.
    """

    initial: tuple[float, ...] | None = None

    @nn.compact
    def __call__(self, *inputs):
        n, channels = len(inputs), inputs[0].shape[-1]
        initial = self.initial or (1.0 / math.sqrt(n),) * n
        if len(initial) != n:
            raise ValueError(f"WeightNormalizedAddition has {len(initial)} initial weights for {n} inputs")

        def init(key, shape, dtype=jnp.float32):
            return jnp.broadcast_to(jnp.asarray(initial, dtype)[:, None], shape)

        weight = self.param("weight", init, (n, channels))
        weight = weight / (jnp.sqrt(jnp.sum(jnp.square(weight), axis=0)) + NORM_EPS_AFTER_ROOT)
        out = inputs[0] * weight[0].astype(inputs[0].dtype)
        for x, w in zip(inputs[1:], weight[1:]):
            out = out + x * w.astype(x.dtype)
        return out


class NearestNeighbourUpscale(nn.Module):
    """Each pixel repeated ``factor`` times along height and width (NHWC); no parameters."""

    factor: tuple[int, int] = (2, 2)

    def __call__(self, x):
        return jnp.repeat(jnp.repeat(x, self.factor[0], axis=1), self.factor[1], axis=2)


class BatchNorm(nn.Module):
    """Batch norm over all axes but the last, with PyTorch's numerics (the authors' ``BatchNorm2d``).

    Training mode normalizes with the biased batch variance and updates the running variance with the
    unbiased one; eps 1e-5, momentum 0.1. ``mean_only`` gives the mean-only BN of Salimans & Kingma
    (paper appendix C.2): ``x - mean + bias``, no variance, no scale. Statistics are over the global
    batch even when it is sharded over devices.
    """

    mean_only: bool = False
    use_running_average: bool | None = None

    @nn.compact
    def __call__(self, x, use_running_average: bool | None = None):
        use_running_average = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
        channels = x.shape[-1]
        axes = tuple(range(x.ndim - 1))
        mean_stat = self.variable("batch_stats", "mean", jnp.zeros, (channels,), jnp.float32)
        var_stat = None if self.mean_only else self.variable("batch_stats", "var", jnp.ones, (channels,), jnp.float32)
        x32 = x.astype(jnp.float32)
        if use_running_average:
            mean = mean_stat.value
            var = None if self.mean_only else var_stat.value
        else:
            mean = jnp.mean(x32, axis=axes)
            var = None if self.mean_only else jnp.mean(jnp.square(x32 - mean), axis=axes)
            if not self.is_initializing():
                m = BATCH_NORM_MOMENTUM
                mean_stat.value = (1 - m) * mean_stat.value + m * mean
                if not self.mean_only:
                    count = math.prod(x.shape[:-1])
                    unbiased = var * (count / max(count - 1, 1))
                    var_stat.value = (1 - m) * var_stat.value + m * unbiased
        bias = self.param("bias", nn.initializers.zeros, (channels,))
        if self.mean_only:
            return (x32 - mean + bias).astype(x.dtype)
        scale = self.param("scale", nn.initializers.ones, (channels,))
        y = (x32 - mean) * jax.lax.rsqrt(var + BATCH_NORM_EPS) * scale + bias
        return y.astype(x.dtype)


def clip_slopes(params, *, clip_alpha_of: Sequence[str] = ()):
    """Clip every PReLU/TPReLU slope to [0, 1] (paper §5.1, after each update).

    ``clip_alpha_of`` names modules (path components) whose TPReLU ``alpha`` is also clipped to [0, 1]
    ("WN + clipping", paper appendix C.2: the generator's first two TPReLU layers).
    """

    def clip(path, leaf):
        names = [getattr(k, "key", str(k)) for k in path]
        if names[-1] == "slope" or (names[-1] == "alpha" and any(n in clip_alpha_of for n in names)):
            return jnp.clip(leaf, 0.0, 1.0)
        return leaf

    return jax.tree_util.tree_map_with_path(clip, params)
