"""Benchmark of the reconstruction metric (paper §4) against the authors' way of running it.

``python -m wngan_jax.bench --what=reconstruct [--image_size 32 --image_size 64 --norm wn]``

``reconstruct`` (all samples one sharded, chunked problem; the steps a loop inside one jit) is compared with
the authors' loop: batches of 32, each step one jitted call dispatched from Python. Both compute the same
numbers (tests/test_reconstruction.py); throughput is in sample-steps per second.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from wngan_jax import ops, reconstruction
from wngan_jax.bench.common import compiled_flops, matmul_gflops
from wngan_jax.models import ModelConfig


def _authors_loop(config: ModelConfig, variables, targets, steps: int, batch: int):
    """``(run, FLOPs per sample-step)``: ``run()`` is ``reconstruction.AuthorsLoop`` on ``targets``, compiled
    with the same XLA options as ``reconstruct``, so that the comparison is of the loops alone."""
    loop = reconstruction.AuthorsLoop(
        config.generator(), variables, batch=batch, compiler_options=ops.compiler_options(jax.default_backend())
    )
    x = jnp.zeros((batch,) + targets.shape[1:], jnp.float32)
    z = jnp.zeros((batch, config.code_size))
    flops = compiled_flops(loop.step.lower(z, loop.optimizer.init(z), x).compile())
    return (lambda: loop(targets, steps)), (flops / batch if flops else None)


def _median_seconds(fns, repeats: int) -> list[float]:
    """Median wall time of each function, the runs interleaved so that a busy machine slows all alike."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t in zip(fns, times):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def measure(
    size: int,
    norm: str = "wn",
    samples: int = 64,
    steps: int = 20,
    batch: int = 32,
    chunk_size: int | None = None,
    repeats: int = 5,
) -> dict:
    """Sample-steps/s of ``reconstruct`` and of the authors' loop for one generator (nf 64, code 256)."""
    config = ModelConfig(norm, size, nfeature=64, code_size=256)
    variables = config.generator().init(jax.random.key(0), jnp.zeros((1, config.code_size)))
    targets = np.random.default_rng(0).integers(0, 256, (samples, size, size, 3), dtype=np.uint8)
    gen = reconstruction.generator_fn(config.generator(), variables)

    def ours():
        return reconstruction.reconstruct(gen, targets, steps=steps, authors_batch=batch, chunk_size=chunk_size)

    start = time.perf_counter()
    ours()  # compiles the unrolled segment (first call, compile included)
    compile_s = time.perf_counter() - start
    baseline, flops_per_sample_step = _authors_loop(config, variables, targets, steps, batch)
    baseline()
    seconds, baseline_seconds = _median_seconds([ours, baseline], repeats)
    rate, baseline_rate = samples * steps / seconds, samples * steps / baseline_seconds
    roofline = matmul_gflops()
    gflops = rate * flops_per_sample_step / 1e9 if flops_per_sample_step else None
    baseline_gflops = baseline_rate * flops_per_sample_step / 1e9 if flops_per_sample_step else None
    return {
        "what": "reconstruct",
        "size": size,
        "norm": norm,
        "batch": batch,
        "samples": samples,
        "steps": steps,
        "chunk_size": chunk_size,
        "sample_steps_per_s": rate,
        "baseline_sample_steps_per_s": baseline_rate,
        "speedup": rate / baseline_rate,
        "median_ms": seconds / steps * 1e3,
        "compile_s": compile_s,
        "gflops": gflops,
        "roofline_gflops": roofline,
        "roofline_fraction": gflops / roofline if gflops else None,
        "baseline_roofline_fraction": baseline_gflops / roofline if baseline_gflops else None,
    }


def run(
    sizes=(32, 64),
    norm: str = "wn",
    samples: int = 64,
    steps: int = 20,
    chunk_size: int | None = None,
    as_json: bool = False,
) -> list[dict]:
    """One ``measure`` row per image size; printed as text unless ``as_json`` (then the caller prints)."""
    rows = []
    for size in sizes:
        row = measure(size, norm, samples, steps, chunk_size=chunk_size)
        rows.append(row)
        if not as_json:
            print(
                f"reconstruct {size}x{size} {norm}: {row['sample_steps_per_s']:.0f} sample-steps/s vs "
                f"{row['baseline_sample_steps_per_s']:.0f} for the authors' loop (x{row['speedup']:.2f}); "
                f"{row['median_ms']:.1f} ms per step of {samples} samples; "
                f"{100 * row['roofline_fraction']:.1f}% vs {100 * row['baseline_roofline_fraction']:.1f}% of "
                f"matmul ({row['roofline_gflops']:.0f} GFLOP/s); compile {row['compile_s']:.1f} s"
            )
    return rows
