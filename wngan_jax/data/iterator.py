"""Shuffled, resumable float32 batches (placed on a device mesh by ``wngan_jax.sharding.shard_batch``).

Epoch ``e`` visits the images in the order ``np.random.default_rng([seed, e]).permutation(N)``, in
consecutive batches; the incomplete last batch of each epoch is dropped, so an epoch has
``N // batch_size`` batches. The resume state (seed, epoch, position) is the data permutation and
position that the authors' code keeps in its checkpoints (paper §5.1).
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from wngan_jax.errors import ConfigError
from wngan_jax.sharding import process_slice


def _gather(images: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``images[indices] / 255`` as float32, reading the (memory-mapped) rows in increasing order."""
    order = np.argsort(indices)
    batch = np.empty((len(indices),) + images.shape[1:], np.uint8)
    batch[order] = images[indices[order]]
    return np.divide(batch, np.float32(255), dtype=np.float32)


def _batches(images: np.ndarray, batch_size: int, rows: slice, state: dict):
    """Yields ``(batch, state after it)`` forever, starting at ``state``."""
    seed, epoch, position = state["seed"], state["epoch"], state["position"]
    count = len(images)
    while True:
        if position + batch_size > count:
            epoch, position = epoch + 1, 0
        permutation = np.random.default_rng([seed, epoch]).permutation(count)
        while position + batch_size <= count:
            indices = permutation[position : position + batch_size][rows]
            position += batch_size
            yield _gather(images, indices), {"seed": seed, "epoch": epoch, "position": position}


def _produce(batches, out: queue.Queue, stop: threading.Event) -> None:
    """Prefetch thread: moves ``batches`` into ``out`` until ``stop`` is set; errors are forwarded."""
    try:
        for item in batches:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
    except Exception as err:  # re-raised by BatchIterator.__next__ in the consumer thread
        out.put((err, None))


class BatchIterator:
    """Endless iterator of shuffled float32 batches in [0, 1] from a uint8 ``(N, H, W, C)`` array.

    ``batch_size`` is the global batch size; each process receives its ``process_slice`` of it.
    ``state()`` describes the batch that the next ``next()`` returns, so `BatchIterator(images,
    batch_size, state=it.state())` continues with exactly the same batches (the state's seed
    is used). Up to ``prefetch`` batches are prepared on a background thread (0: none).
    """

    def __init__(
        self,
        images: np.ndarray,
        batch_size: int,
        seed: int = 0,
        state: dict | None = None,
        prefetch: int = 2,
        process_index: int | None = None,
        process_count: int | None = None,
    ):
        if not 0 < batch_size <= len(images):
            raise ConfigError(f"batch size {batch_size} must be in [1, {len(images)}] (the number of images)")
        if state is None:
            state = {"seed": seed, "epoch": 0, "position": 0}
        self._state = {key: int(state[key]) for key in ("seed", "epoch", "position")}
        rows = process_slice(batch_size, process_index, process_count)
        self._batches = _batches(images, batch_size, rows, dict(self._state))
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()
        if prefetch > 0:
            self._queue = queue.Queue(maxsize=prefetch)
            self._thread = threading.Thread(target=_produce, args=(self._batches, self._queue, self._stop), daemon=True)
            self._thread.start()

    def state(self) -> dict:
        """JSON-serializable ``{"seed", "epoch", "position"}`` of the next batch."""
        return dict(self._state)

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> np.ndarray:
        if self._queue is None:
            batch, state = next(self._batches)
        else:
            batch, state = self._queue.get()
            if state is None:
                raise batch
        self._state = state
        return batch

    def close(self) -> None:
        """Stops the prefetch thread."""
        self._stop.set()
        if self._queue is not None:
            self._thread.join()

    def __del__(self) -> None:
        self._stop.set()
