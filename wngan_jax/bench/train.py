"""Benchmark of the full training iteration (D step + G step), with FLOPs and the fraction of the roofline.

``python -m wngan_jax.bench --what=train [--size 64 --norm wn --batch 32 --json]``
"""
from __future__ import annotations

import time

import jax
import numpy as np

from wngan_jax.bench.common import compiled_flops, matmul_gflops, median_seconds
from wngan_jax.config import TrainConfig
from wngan_jax.data import shard_batch
from wngan_jax.train_step import init_state, make_mesh, make_train_step, replicate, run_key


def compiled_step(size: int, norm: str, batch: int, dtype: str = "float32"):
    """The compiled training iteration on one device, its initial state, its other arguments and its FLOPs."""
    config = TrainConfig(norm=norm, image_size=(size, size), batch_size=batch, dtype=dtype)
    mesh = make_mesh(jax.devices()[:1])
    step = make_train_step(config, mesh)
    state = replicate(init_state(config, jax.random.key(0)), mesh)
    real = shard_batch(np.random.default_rng(0).uniform(size=(batch, size, size, 3)).astype(np.float32), mesh)
    key = run_key(1, 0, mesh)
    compiled = step.lower(state, real, key).compile()
    return compiled, state, (real, key), compiled_flops(compiled)


def measure(size: int, norm: str, batch: int, roofline_gflops: float | None = None, *, repeats: int = 5,
            dtype: str = "float32") -> dict:
    """One configuration: compile time, median ms per iteration, GFLOP/s, fraction of the matmul roofline.

    Without ``roofline_gflops`` the matmul is measured right after the step, so that both see the same
    machine (on a shared machine the attainable GFLOP/s drift by 10% within minutes)."""
    start = time.perf_counter()
    compiled, state, args, flops = compiled_step(size, norm, batch, dtype)
    compile_s = time.perf_counter() - start
    holder = [state]

    def one_iteration():
        holder[0], metrics = compiled(holder[0], *args)
        return metrics

    seconds = median_seconds(one_iteration, repeats=repeats, warmup=3)
    roofline_gflops = roofline_gflops or matmul_gflops()
    gflops = flops / seconds / 1e9 if flops else None
    return dict(what="train", size=size, norm=norm, batch=batch, dtype=dtype, median_ms=seconds * 1e3,
                gflop_per_iteration=flops / 1e9 if flops else None, gflops=gflops,
                roofline_gflops=roofline_gflops, roofline_fraction=gflops / roofline_gflops if gflops else None,
                compile_s=compile_s)


def run(sizes=(32, 64, 160), norms=("vanilla", "bn", "wn"), batch: int = 32, repeats: int = 5,
        dtype: str = "float32", as_json: bool = False) -> list[dict]:
    """One row per (size, norm); printed as text unless ``as_json`` (then the caller prints)."""
    rows = []
    for size in sizes:
        for norm in norms:
            rows.append(measure(size, norm, batch, repeats=repeats, dtype=dtype))
            if not as_json:
                print(format_row(rows[-1]), flush=True)
    return rows


def format_row(r: dict) -> str:
    return (f"train {r['size']:>3}x{r['size']:<3} {r['norm']:<8} batch {r['batch']:<3} "
            f"{r['median_ms']:8.1f} ms/it  {r['gflop_per_iteration']:7.2f} GFLOP/it  {r['gflops']:6.1f} GFLOP/s  "
            f"{100 * r['roofline_fraction']:5.1f}% of matmul ({r['roofline_gflops']:.0f} GFLOP/s)  "
            f"compile {r['compile_s']:.1f} s")
