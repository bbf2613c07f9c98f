"""Where arrays live: the one-axis device mesh and moving data onto and off it, for one or several processes.

Training, the reconstruction metric and the data pipeline all run data-parallel over the ``DATA_AXIS``
(``'data'``) axis of a mesh (the successor of ``pmap``): batches and samples are split along their leading
dimension, parameters are replicated, and XLA inserts the cross-device reductions. With several processes
(``jax.distributed``) a mesh spans them; every helper here works for both cases.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A ``('data',)`` mesh over ``devices`` (default: every device of every process, process by process)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def local_mesh() -> Mesh:
    """A ``('data',)`` mesh over this process's devices."""
    return make_mesh(jax.local_devices())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading dimension split over the ``data`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """The whole array on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def put(value, sharding: NamedSharding) -> jax.Array:
    """``value`` (the same on every process) as an array with ``sharding``, which may span processes."""
    if sharding.is_fully_addressable:
        return jax.device_put(value, sharding)
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        return jax.device_put(value, sharding)  # already global: reshard
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def replicate(tree: Any, mesh: Mesh):
    """Place a pytree on every device of ``mesh`` (works across processes: every process holds it all)."""
    sharding = replicated(mesh)
    return jax.tree_util.tree_map(lambda x: jax.make_array_from_process_local_data(sharding, jnp.asarray(x)), tree)


def to_host(array) -> np.ndarray:
    """The whole of ``array`` on this host, gathered from the other processes when it spans them."""
    if array.is_fully_addressable:
        return np.asarray(array)
    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def local_copy(tree: Any):
    """A replicated pytree as arrays on this process's first device (for small host-side work)."""
    if jax.process_count() == 1:
        return tree
    return jax.tree.map(lambda a: a.addressable_data(0), tree)


def process_slice(global_batch_size: int, process_index: int | None = None, process_count: int | None = None) -> slice:
    """Rows of the global batch read by this process (contiguous blocks in process order).

    This matches ``shard_batch`` for meshes whose ``data`` axis lists the devices process by process, as
    ``make_mesh`` does.
    """
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if global_batch_size % count:
        raise ValueError(f"batch size {global_batch_size} is not divisible by the {count} processes")
    local = global_batch_size // count
    return slice(index * local, (index + 1) * local)


def shard_batch(batch: np.ndarray, mesh: Mesh) -> jax.Array:
    """A host batch on ``mesh``, split along its leading dimension over the ``data`` axis.

    With one process ``batch`` is the global batch. With several, it is this process's rows
    (``process_slice``) and the global array is assembled with ``jax.make_array_from_process_local_data``.
    """
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    global_shape = (batch.shape[0] * jax.process_count(),) + batch.shape[1:]
    return jax.make_array_from_process_local_data(sharding, batch, global_shape)


def device_description() -> str:
    """``platform:kind xN`` of this process's devices, as reports and benchmarks print it."""
    devices = jax.local_devices()
    return f"{devices[0].platform}:{devices[0].device_kind} x{len(devices)}"
