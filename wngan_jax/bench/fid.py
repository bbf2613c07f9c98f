"""Throughput of the Inception features behind FID, KID and precision/recall (docs/metrics.md).

``python -m wngan_jax.bench --what=fid [--size 32 --size 64] [--batch 32] [--dtype bfloat16]``

One jitted call per batch of uint8 images of each size (resize to 299x299 and the whole network), as
``fid.inception_features`` runs it but on one device, like the matmul it is compared with (more devices
split each batch), with random weights (the speed does not depend on them). Reported: features/s on the
device and end to end (host images in, numpy features out), and the GFLOP/s XLA counts next to the float32
matmul roofline measured in the same process.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from wngan_jax import inception
from wngan_jax.bench.common import compiled_flops, matmul_gflops, median_seconds, rows_over


def measure(size: int, batch: int = 32, dtype: str = "float32", repeats: int = 5) -> dict:
    """Features/s of one device on a ``batch`` of ``size`` x ``size`` RGB uint8 images."""
    extract = inception.random_weights().extractor(dtype, devices=jax.devices()[:1])
    images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    x = jax.device_put(images, NamedSharding(extract.mesh, P("data")))

    def device():
        return inception._forward(extract.params, x, dtype=extract.dtype)

    start = time.perf_counter()
    jax.block_until_ready(device())
    compile_s = time.perf_counter() - start
    seconds = median_seconds(device, repeats=repeats)
    end_to_end = median_seconds(lambda: extract(images), repeats=repeats)
    flops = compiled_flops(inception._forward.lower(extract.params, x, dtype=extract.dtype).compile())
    roofline = matmul_gflops()
    gflops = flops / seconds / 1e9 if flops else None
    return {
        "what": "fid",
        "size": size,
        "norm": None,
        "batch": batch,
        "dtype": dtype,
        "features_per_s": batch / seconds,
        "end_to_end_features_per_s": batch / end_to_end,
        "median_ms": seconds * 1e3,
        "compile_s": compile_s,
        "gflops_per_image": flops / batch / 1e9 if flops else None,
        "gflops": gflops,
        "roofline_gflops": roofline,
        "roofline_fraction": gflops / roofline if gflops else None,
    }


def _format(row: dict) -> str:
    fraction = f"{100 * row['roofline_fraction']:.1f}%" if row["roofline_fraction"] else "?"
    return (
        f"fid {row['size']}x{row['size']} {row['dtype']} batch {row['batch']}: {row['features_per_s']:.1f} "
        f"features/s on device, {row['end_to_end_features_per_s']:.1f} end to end; {row['median_ms']:.0f} ms per "
        f"batch; {fraction} of matmul ({row['roofline_gflops']:.0f} GFLOP/s); compile {row['compile_s']:.1f} s"
    )


def run(sizes=(32, 64), batch: int = 32, dtype: str = "float32", repeats: int = 5, as_json: bool = False) -> list[dict]:
    """One ``measure`` row per image size; printed as text unless ``as_json`` (then the caller prints)."""
    return rows_over(sizes, (None,), lambda size, _: measure(size, batch, dtype, repeats), _format, as_json)
