"""Benchmark of the full training iteration (D step + G step), with FLOPs and the fraction of the roofline.

``python -m wngan_jax.bench --what=train [--image_size 64 --norm wn --batch_size 32 --json]``
``python -m wngan_jax.bench --what=train --arch=resnet [--image_size 64 --gen_features 64,128,256,512 ...]``

The model is the paper's (``--arch=dcgan``, code 256 unless ``--code_size``) or the ResNet follow-up
(``--arch=resnet``, code 128; ``family_changes`` gives its default features and blocks per size).
"""

from __future__ import annotations

import time

import jax
import numpy as np

from wngan_jax import ops
from wngan_jax.bench.common import compiled_flops, matmul_gflops, median_seconds, rows_over
from wngan_jax.config import RESNET_PRESETS, TrainConfig
from wngan_jax.sharding import make_mesh, replicate, shard_batch
from wngan_jax.train_step import PLATFORM_DEFAULT, init_state, make_train_step, run_key


def family_changes(size: int, family: dict | None = None) -> dict:
    """The model fields besides norm and image size for the model family ``family`` (the flags ``arch``,
    ``code_size``, ``gen_features``, ``gen_blocks``, ``dis_features``, ``dis_blocks``; None or absent: the
    default). For ``arch="resnet"``: code 128 and, without the lists, their README's model at 160x160
    (features 64,128,256,384,512, one block per level) and otherwise features doubling from 64 up to 512,
    one level per halving down to a 4x4 map, one block per level (64x64: 64,128,256,512); the discriminator's
    lists default to the generator's."""
    family = {k: v for k, v in (family or {}).items() if v is not None}
    if family.get("arch", "dcgan") != "resnet":
        return family
    if "gen_features" not in family:
        if size == 160:
            features = RESNET_PRESETS["celeba"]["gen_features"]
        else:
            features, side = [], size
            while side // 2 >= 4:
                features, side = features + [min(64 * 2 ** len(features), 512)], side // 2
        family["gen_features"] = tuple(features)
    family.setdefault("gen_blocks", (1,) * len(family["gen_features"]))
    family.setdefault("dis_features", family["gen_features"])
    family.setdefault("dis_blocks", (1,) * len(family["dis_features"]))
    return {"code_size": 128} | family


def bench_config(size: int, norm: str, batch: int, dtype: str = "float32", family: dict | None = None) -> TrainConfig:
    """The config of a benchmarked iteration: ``size``x``size`` RGB images, the family's model (``family_changes``)."""
    changes = family_changes(size, family)
    return TrainConfig().replace(norm=norm, image_size=(size, size), batch_size=batch, dtype=dtype, **changes)


def iteration_fn(
    size: int,
    norm: str,
    batch: int,
    dtype: str = "float32",
    *,
    family: dict | None = None,
    split_phases_below: float = ops.SPLIT_PHASES_BELOW,
    compiler_options=PLATFORM_DEFAULT,
    ema_decay: float = 0.0,
):
    """``(iterate, flops)``: ``iterate()`` runs one compiled training iteration on one device (returning its
    metrics, not waited for), advancing its own state; ``flops`` is XLA's count for the iteration. ``family``
    is the model family's flags (``family_changes``); the keywords ``split_phases_below`` and
    ``compiler_options`` are ``make_train_step``'s (the benchmark of each speed decision undoes one of them);
    ``ema_decay`` is the config's (a generator EMA in the step)."""
    config = bench_config(size, norm, batch, dtype, family).replace(ema_decay=ema_decay)
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
    size: int,
    norm: str,
    batch: int,
    *,
    repeats: int = 5,
    dtype: str = "float32",
    profile_dir: str | None = None,
    family: dict | None = None,
) -> dict:
    """One configuration: compile time, median ms per iteration, GFLOP/s, fraction of the matmul roofline.

    The matmul is measured right after the step, so that both see the same machine (on a shared machine
    the attainable GFLOP/s drift by 10% within minutes). With ``profile_dir``, three more iterations are
    traced there with ``jax.profiler`` (open it in TensorBoard's profile plugin or Perfetto)."""
    start = time.perf_counter()
    iterate, flops = iteration_fn(size, norm, batch, dtype, family=family)
    compile_s = time.perf_counter() - start
    seconds = median_seconds(iterate, repeats=repeats, warmup=3)
    roofline_gflops = matmul_gflops()
    if profile_dir:
        with jax.profiler.trace(
            f"{profile_dir}/{size}x{size}_{model_name(size, norm, family)}", create_perfetto_trace=True
        ):
            for _ in range(3):
                jax.block_until_ready(iterate())
    gflops = flops / seconds / 1e9 if flops else None
    return dict(
        what="train",
        size=size,
        norm=norm,
        model=model_name(size, norm, family),
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
    family: dict | None = None,
) -> list[dict]:
    """One row per (size, norm); printed as text unless ``as_json`` (then the caller prints)."""
    return rows_over(
        sizes,
        norms,
        lambda size, norm: measure(
            size, norm, batch, repeats=repeats, dtype=dtype, profile_dir=profile_dir, family=family
        ),
        format_row,
        as_json,
    )


def model_name(size: int, norm: str, family: dict | None = None) -> str:
    """The benchmarked model's name in rows (``ModelConfig.name``: ``wn``, ``resnet_wn``)."""
    return bench_config(size, norm, 1, family=family).model.name


def format_row(r: dict) -> str:
    return (
        f"train {r['size']:>3}x{r['size']:<3} {r['model']:<9} batch {r['batch']:<3} "
        f"{r['median_ms']:8.1f} ms/it  {r['gflop_per_iteration']:7.2f} GFLOP/it  {r['gflops']:6.1f} GFLOP/s  "
        f"{100 * r['roofline_fraction']:5.1f}% of matmul ({r['roofline_gflops']:.0f} GFLOP/s)  "
        f"compile {r['compile_s']:.1f} s"
    )
