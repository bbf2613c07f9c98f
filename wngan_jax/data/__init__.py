"""Data pipeline: sources, preprocessed cache with the paper's split (§5.1), batch iterator.

    from wngan_jax import data
    ds = data.load("tfds:celeb_a", 64)            # ds.train, ds.final_test, ds.running_test, ds.info
    it = data.BatchIterator(ds.train, 32, seed=0)  # next(it): float32 (32, 64, 64, 3) in [0, 1]
    x = sharding.shard_batch(next(it), mesh)       # sharded over mesh axis 'data' (wngan_jax.sharding)

See docs/data.md for getting CelebA, CIFAR-10 and LSUN.
"""

from wngan_jax.data.cache import Dataset, default_cache_root, load
from wngan_jax.data.iterator import BatchIterator
from wngan_jax.data.sources import open_source

__all__ = [
    "BatchIterator",
    "Dataset",
    "default_cache_root",
    "load",
    "open_source",
]
