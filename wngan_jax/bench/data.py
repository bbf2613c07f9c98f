"""Throughput of the batch iterator: float32 images/s delivered from the memory-mapped cache.

A synthetic folder of smooth random 160x160 JPEGs is cached with ``wngan_jax.data.load`` (the real
cache path) at each size; the iterator then serves shuffled batches with background prefetch and
the consumer only takes them, so the figure is the most the input pipeline can feed a training step.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from wngan_jax import data

SOURCE_SIZE = 160


def _write_images(folder: Path, count: int, seed: int = 0) -> None:
    """Smooth random images (bicubic upscaled 12x12 noise), saved as JPEG."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        small = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
        small.resize((SOURCE_SIZE, SOURCE_SIZE), Image.Resampling.BICUBIC).save(folder / f"{index:05d}.jpg", quality=90)


def _images_per_s(images: np.ndarray, batch: int, batches: int, repeats: int) -> float:
    """Median images/s over ``repeats`` runs of ``batches`` batches (after one warm-up batch)."""
    rates = []
    for repeat in range(repeats):
        iterator = data.BatchIterator(images, batch, seed=repeat, prefetch=2)
        next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        rates.append(batches * batch / (time.perf_counter() - start))
        iterator.close()
    return float(np.median(rates))


def run(
    sizes=(64, 160), batch: int = 32, as_json: bool = False, count: int = 4000, batches: int = 300, repeats: int = 3
) -> list[dict]:
    """Measures ``{"what": "data", "size", "batch", "images_per_s"}`` for each size."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        _write_images(folder, count)
        for size in sizes:
            dataset = data.load(
                f"folder:{folder}",
                size,
                cache_dir=Path(tmp) / "cache",
                final_test=200,
                running_test=100,
                progress=False,
            )
            rate = _images_per_s(dataset.train, batch, batches, repeats)
            results.append(
                {"what": "data", "size": size, "batch": batch, "images_per_s": rate, "median_ms": batch / rate * 1e3}
            )
            if not as_json:
                print(
                    f"data {size}x{size}: {rate:.0f} images/s (batch {batch}, float32, shuffled, "
                    f"{len(dataset.train)} cached images)"
                )
    return results
