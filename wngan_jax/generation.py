"""Images from a generator in inference mode (paper Figs. 3-4: samples from codes).

``inference(config)`` is the generator's one jitted inference function per model config, shared by the
trainer's sample grids and fixed-code record, ``python -m wngan_jax.sample``, FID and the report.
``generate``/``generate_batches`` run it over any number of codes in one compiled shape; ``normal_codes``
draws codes from the prior of paper §5.1 and ``load_codes`` reads a user's.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from wngan_jax import files
from wngan_jax.errors import CheckpointError, ConfigError, DataError
from wngan_jax.models import ModelConfig

NON_FINITE = (
    "the generator made non-finite images: its variables hold NaN or inf (a diverged or damaged checkpoint); "
    "use another --which"
)


def normal_codes(num: int, code_size: int, seed: int = 0) -> np.ndarray:
    """``(num, code_size)`` standard normal codes (the prior of paper §5.1), reproducible from ``seed``."""
    if num < 1:
        raise ConfigError(f"--num must be positive, got {num}")
    return np.random.default_rng(seed).standard_normal((num, code_size), dtype=np.float32)


def load_codes(path, code_size: int) -> np.ndarray:
    """Codes ``(N, code_size)`` from a ``.npy`` file, checked against the generator's code size."""
    codes = files.load_npy(path, "--codes")
    if codes.ndim != 2 or codes.shape[1] != code_size or codes.shape[0] == 0:
        raise DataError(
            f"{path} holds an array of shape {codes.shape}; this generator needs codes of shape (N, {code_size})"
        )
    if not np.issubdtype(codes.dtype, np.number) or not np.isfinite(codes).all():
        raise DataError(f"{path} holds non-numeric, NaN or infinite codes; codes must be finite numbers")
    return codes.astype(np.float32)


@functools.lru_cache(maxsize=16)
def inference(config: ModelConfig):
    """``apply(variables, codes) -> images`` in [0, 1]: the generator of ``config`` in inference mode (BN with
    its running statistics), jitted once per model config."""
    model = config.generator()
    return jax.jit(lambda variables, z: model.apply(variables, z, train=False))


def generate_batches(
    config: ModelConfig, variables, codes, batch_size: int = 64, *, on_device: bool = False
) -> Iterator[np.ndarray | jax.Array]:
    """Images ``(n, H, W, C)`` in [0, 1] for ``codes``, batch after batch, in one compiled shape (the last batch
    padded, then cut), so that a large set never has to fit in memory at once.

    Batches are NumPy arrays, each checked to be finite; with ``on_device`` they are the device arrays, never
    waited for (a consumer such as the Inception network keeps the device busy), and their finiteness is
    checked once after the last one. Non-finite images are a ``CheckpointError``.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch_size must be positive, got {batch_size}")
    codes = np.asarray(codes, np.float32)
    apply = inference(config)
    batch = min(batch_size, len(codes))
    finite = []
    for start in range(0, len(codes), batch):
        chunk = codes[start : start + batch]
        padded = np.pad(chunk, ((0, batch - len(chunk)), (0, 0)))
        images = apply(variables, jnp.asarray(padded))[: len(chunk)]
        if on_device:
            finite.append(jnp.isfinite(images).all())
            yield images
            continue
        images = np.asarray(images)
        if not np.isfinite(images).all():
            raise CheckpointError(NON_FINITE)
        yield images
    if finite and not all(jax.device_get(finite)):
        raise CheckpointError(NON_FINITE)


def generate(config: ModelConfig, variables, codes, batch_size: int = 64) -> np.ndarray:
    """Images ``(N, H, W, C)`` in [0, 1] for ``codes`` (``generate_batches``, concatenated)."""
    return np.concatenate(list(generate_batches(config, variables, codes, batch_size)))
