"""Per-layer benchmark: the custom-VJP convolutions of ``wngan_jax.ops`` against XLA's own derivative.

For every stride-2 transposed convolution of the WN generator and every stride-2 convolution of the
discriminator (nf 64), times one jitted forward + backward (output, gradient wrt the input and wrt the
kernel) with ``ops.conv_transpose`` / ``ops.conv`` and with ``ops.reference_conv_transpose`` /
``ops.reference_conv`` (the plain formulation, differentiated by XLA), and, when PyTorch is installed,
with ``F.conv_transpose2d`` / ``F.conv2d`` and ``torch.autograd.grad``. Medians over ``repeats`` runs after
one warm-up run (which includes compilation).

``python -m wngan_jax.bench --what=layers [--image_size 64 --batch_size 32 --repeats 5]``
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np

from wngan_jax import models, ops
from wngan_jax.bench.common import median_seconds


def layer_shapes(size: int = 64, nfeature: int = 64):
    """(label, transpose, input hwc, kernel shape, padding) for G's transposed convs, then D's strided convs."""
    arch = models.architecture(size, 3, nfeature)
    rows = []
    for level in reversed(arch.levels):  # generator order: code side first
        (ih, iw), (oh, ow) = level.out_hw, level.in_hw
        c_in, c_out = level.code_side_channels, level.image_side_channels
        rows.append(
            (
                f"G deconv {ih}x{iw}x{c_in} -> {oh}x{ow}x{c_out}",
                True,
                (ih, iw, c_in),
                (4, 4, c_out, c_in),
                level.padding,
            )
        )
    for level in arch.levels:
        (ih, iw), (oh, ow) = level.in_hw, level.out_hw
        c_in, c_out = level.image_side_channels, level.code_side_channels
        rows.append(
            (f"D conv {ih}x{iw}x{c_in} -> {oh}x{ow}x{c_out}", False, (ih, iw, c_in), (4, 4, c_in, c_out), level.padding)
        )
    return rows


def _forward_backward(op, strides, padding):
    def step(x, kernel, cotangent):
        y, pullback = jax.vjp(lambda a, k: op(a, k, strides, padding), x, kernel)
        dx, dk = pullback(cotangent)
        return y, dx, dk

    return jax.jit(step, compiler_options=ops.compiler_options(jax.default_backend()))


def measure(label, transpose, in_hwc, kernel_shape, padding, *, size=64, batch=32, repeats=5) -> dict:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *in_hwc)).astype(np.float32)
    kernel = (0.05 * rng.standard_normal(kernel_shape)).astype(np.float32)
    custom, reference = (
        (ops.conv_transpose, ops.reference_conv_transpose) if transpose else (ops.conv, ops.reference_conv)
    )
    strides = (2, 2)
    y = jax.eval_shape(lambda a, k: custom(a, k, strides, padding), x, kernel)
    cotangent = rng.standard_normal(y.shape).astype(np.float32)
    times = {}
    for name, op in (("custom", custom), ("xla", reference)):
        times[name] = median_seconds(
            _forward_backward(op, strides, padding), x, kernel, cotangent, repeats=repeats, warmup=1
        )
    torch_s = _torch_seconds(transpose, x, kernel, strides, padding, cotangent, repeats)
    return {
        "what": "layers",
        "layer": label,
        "size": size,
        "batch": batch,
        "custom_ms": times["custom"] * 1e3,
        "xla_ms": times["xla"] * 1e3,
        "speedup": times["xla"] / times["custom"],
        "torch_ms": torch_s * 1e3 if torch_s else None,
    }


def _torch_seconds(transpose, x, kernel, strides, padding, cotangent, repeats):
    """The same layer's forward + backward in PyTorch (``F.conv2d``/``F.conv_transpose2d``, NCHW), median
    seconds; None without PyTorch."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    # (kh, kw, c_in, c_out) -> Conv2d's (out, in, kh, kw); the transposed conv's (kh, kw, c_out, c_in) ->
    # ConvTranspose2d's (in, out, kh, kw): the same permutation.
    tk = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()).requires_grad_()
    op = F.conv_transpose2d if transpose else F.conv2d
    tct = torch.from_numpy(cotangent.transpose(0, 3, 1, 2).copy())

    def step():
        torch.autograd.grad(op(tx, tk, None, strides, padding), (tx, tk), tct)

    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def format_table(rows) -> str:
    lines = [f"{'layer':<34} {'custom ms':>10} {'XLA ms':>10} {'speedup':>8} {'PyTorch ms':>11}"]
    lines += [
        f"{r['layer']:<34} {r['custom_ms']:10.1f} {r['xla_ms']:10.1f} {r['speedup']:7.1f}x "
        f"{r['torch_ms'] or float('nan'):11.1f}"
        for r in rows
    ]
    return "\n".join(lines)


def run(size: int = 64, batch: int = 32, as_json: bool = False, repeats: int = 5) -> list[dict]:
    """Forward + backward median times per layer, custom kernels vs XLA's derivative; prints a table
    (or nothing when ``as_json``, the caller printing the returned rows)."""
    rows = [measure(*shape, size=size, batch=batch, repeats=repeats) for shape in layer_shapes(size)]
    if not as_json:
        print(f"layers of the {size}x{size} models (nf 64), batch {batch}, forward + backward, median of {repeats}")
        print(format_table(rows))
    return rows


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
