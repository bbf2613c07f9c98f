"""Benchmark of the full training iteration (D step + G step), with FLOPs and the fraction of the roofline.

``python -m wngan_jax.bench --what=train [--image_size 64 --norm wn --batch_size 32 --json]``
"""

from __future__ import annotations

import time

import jax
import numpy as np

from wngan_jax import ops
from wngan_jax.bench.common import compiled_flops, matmul_gflops, median_seconds, rows_over
from wngan_jax.config import TrainConfig
from wngan_jax.sharding import make_mesh, replicate, shard_batch
from wngan_jax.train_step import PLATFORM_DEFAULT, init_state, make_train_step, run_key


def iteration_fn(
    size: int,
    norm: str,
    batch: int,
    dtype: str = "float32",
    *,
    split_phases_below: float = ops.SPLIT_PHASES_BELOW,
    compiler_options=PLATFORM_DEFAULT,
    ema_decay: float = 0.0,
):
    """``(iterate, flops)``: ``iterate()`` runs one compiled training iteration on one device (returning its
    metrics, not waited for), advancing its own state; ``flops`` is XLA's count for the iteration. The
    keywords ``split_phases_below`` and ``compiler_options`` are ``make_train_step``'s (the benchmark of each
    speed decision undoes one of them); ``ema_decay`` is the config's (a generator EMA in the step)."""
    config = TrainConfig().replace(
        norm=norm, image_size=(size, size), batch_size=batch, dtype=dtype, ema_decay=ema_decay
    )
    mesh = make_mesh(jax.devices()[:1])
    step = make_train_step(config, mesh, split_phases_below=split_phases_below, compiler_options=compiler_options)
    state = replicate(init_state(config, jax.random.key(0)), mesh)
    real = shard_batch(np.random.default_rng(0).uniform(size=(batch, size, size, 3)).astype(np.float32), mesh)
    key = run_key(1, 0, mesh)
    compiled = step.lower(state, real, key).compile()
    holder = [state]

    def iterate():
        holder[0], metrics = compiled(holder[0], real, key)
        return metrics

    return iterate, compiled_flops(compiled)


def measure(
    size: int, norm: str, batch: int, *, repeats: int = 5, dtype: str = "float32", profile_dir: str | None = None
) -> dict:
    """One configuration: compile time, median ms per iteration, GFLOP/s, fraction of the matmul roofline.

    The matmul is measured right after the step, so that both see the same machine (on a shared machine
    the attainable GFLOP/s drift by 10% within minutes). With ``profile_dir``, three more iterations are
    traced there with ``jax.profiler`` (open it in TensorBoard's profile plugin or Perfetto)."""
    start = time.perf_counter()
    iterate, flops = iteration_fn(size, norm, batch, dtype)
    compile_s = time.perf_counter() - start
    seconds = median_seconds(iterate, repeats=repeats, warmup=3)
    roofline_gflops = matmul_gflops()
    if profile_dir:
        with jax.profiler.trace(f"{profile_dir}/{size}x{size}_{norm}", create_perfetto_trace=True):
            for _ in range(3):
                jax.block_until_ready(iterate())
    gflops = flops / seconds / 1e9 if flops else None
    return dict(
        what="train",
        size=size,
        norm=norm,
        batch=batch,
        dtype=dtype,
        median_ms=seconds * 1e3,
        gflop_per_iteration=flops / 1e9 if flops else None,
        gflops=gflops,
        roofline_gflops=roofline_gflops,
        roofline_fraction=gflops / roofline_gflops if gflops else None,
        compile_s=compile_s,
    )


def run(
    sizes=(32, 64, 160),
    norms=("vanilla", "bn", "wn"),
    batch: int = 32,
    repeats: int = 5,
    dtype: str = "float32",
    profile_dir: str | None = None,
    as_json: bool = False,
) -> list[dict]:
    """One row per (size, norm); printed as text unless ``as_json`` (then the caller prints)."""
    return rows_over(
        sizes,
        norms,
        lambda size, norm: measure(size, norm, batch, repeats=repeats, dtype=dtype, profile_dir=profile_dir),
        format_row,
        as_json,
    )


def format_row(r: dict) -> str:
    return (
        f"train {r['size']:>3}x{r['size']:<3} {r['norm']:<8} batch {r['batch']:<3} "
        f"{r['median_ms']:8.1f} ms/it  {r['gflop_per_iteration']:7.2f} GFLOP/it  {r['gflops']:6.1f} GFLOP/s  "
        f"{100 * r['roofline_fraction']:5.1f}% of matmul ({r['roofline_gflops']:.0f} GFLOP/s)  "
        f"compile {r['compile_s']:.1f} s"
    )
