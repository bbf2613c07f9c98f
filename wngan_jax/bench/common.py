"""Timing helpers shared by the benchmarks: medians after warm-up, XLA's FLOP count, the matmul roofline."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np


def median_seconds(fn, *args, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn(*args)`` (results blocked on) over ``repeats`` runs after ``warmup``."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def interleaved_median_ms(iterations: dict, repeats: int) -> dict:
    """``{name: median ms}`` of the zero-argument functions ``iterations``, run in turn ``repeats`` times after
    one warm-up each, so that a noisy machine slows every variant alike (the ratios are what to read)."""
    for iterate in iterations.values():
        jax.block_until_ready(iterate())
    times = {name: [] for name in iterations}
    for _ in range(repeats):
        for name, iterate in iterations.items():
            start = time.perf_counter()
            jax.block_until_ready(iterate())
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) * 1e3 for name, t in times.items()}


def compiled_flops(compiled) -> float | None:
    """FLOPs XLA counts for a compiled computation (None when the backend does not say)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops else None


def matmul_gflops(n: int = 2048, repeats: int = 7) -> float:
    """GFLOP/s of a large float32 matmul on the default device: this machine's practical roofline."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    return 2 * n**3 / median_seconds(f, a, b, repeats=repeats, warmup=2) / 1e9


def rows_over(sizes, norms, measure, format_row, as_json: bool) -> list[dict]:
    """``measure(size, norm)`` for every size and norm; each row printed with ``format_row`` unless
    ``as_json`` (then the caller prints the returned rows)."""
    rows = []
    for size in sizes:
        for norm in norms:
            rows.append(measure(size, norm))
            if not as_json:
                print(format_row(rows[-1]), flush=True)
    return rows
