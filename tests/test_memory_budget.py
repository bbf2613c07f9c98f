"""The paper's 160x160 model fits one 80 GB GPU without flags: the reconstruction's chunk sizing on a GPU
(``reconstruction.chunk_for_budget`` with a faked ``memory_stats()``) and the training step at batch 32.

JAX's GPU allocator reserves ``XLA_PYTHON_CLIENT_MEM_FRACTION`` = 75% of the card for itself and reports it as
``bytes_limit`` (an H100 80GB has 81559 MiB: about 59.7 GiB).
"""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wngan_jax import models, reconstruction
from wngan_jax.config import TrainConfig
from wngan_jax.train_step import init_state, make_train_step

GPU_BYTES_LIMIT = int(0.75 * 81559 * 2**20)
IN_USE = 2 * 2**30  # parameters, optimizer states and whatever else the process holds


class FakeGpu:
    """A device as ``chunk_for_budget`` sees it: a process index and the allocator's statistics."""

    platform = "gpu"
    process_index = 0

    def memory_stats(self):
        return {"bytes_limit": GPU_BYTES_LIMIT, "bytes_in_use": IN_USE, "peak_bytes_in_use": IN_USE}


@pytest.fixture(scope="module")
def wn160():
    config = models.ModelConfig("wn", 160, nfeature=64, code_size=256)
    module = config.generator()
    variables = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 256))))
    gen = reconstruction.generator_fn(module, variables)
    leaves, treedef = jax.tree.flatten(gen)
    shapes = tuple((tuple(a.shape), str(a.dtype)) for a in leaves)
    per_sample = reconstruction._bytes_per_sample(treedef, shapes, 256, (160, 160, 3), "uint8")
    return gen, per_sample


def planned_bytes(gen, batch: int) -> int:
    """The temporary memory XLA plans for the reconstruction's gradient of ``batch`` 160x160 samples."""
    z = jax.ShapeDtypeStruct((batch, 256), jnp.float32)
    x = jax.ShapeDtypeStruct((batch, 160, 160, 3), jnp.uint8)
    w = jax.ShapeDtypeStruct((batch,), jnp.float32)
    grad = jax.jit(jax.grad(reconstruction._scaled_loss, argnums=1))
    return grad.lower(gen, z, x, w).compile().memory_analysis().temp_size_in_bytes


def test_per_sample_bytes_bound_what_the_gradient_holds(wn160):
    """The estimate is at least every layer output of G and its cotangent (counted from Table 1's shapes), and
    at least the growth per sample of the memory XLA plans for the compiled gradient (batch 1 -> 8)."""
    gen, per_sample = wn160
    arch = models.architecture(160, 3, 64)
    outputs = math.prod(arch.top_hw) * arch.top_channels + sum(
        math.prod(level.in_hw) * level.image_side_channels for level in arch.levels
    )
    assert outputs == 5 * 5 * 1024 + 10 * 10 * 512 + 20 * 20 * 256 + 40 * 40 * 128 + 80 * 80 * 64 + 160 * 160 * 3
    assert per_sample >= 2 * 4 * outputs

    assert (planned_bytes(gen, 8) - planned_bytes(gen, 1)) / 7 <= per_sample


def test_gpu_budget_is_half_the_free_device_memory(wn160):
    """On a GPU the chunk is the most samples whose estimated bytes fit half of (limit - in use), and XLA's own
    plan for the gradient of that many samples fits there too: the final test (2000 samples) runs in chunks
    that use at most half of the free memory, the other half left to XLA's workspace."""
    gen, per_sample = wn160
    mesh = types.SimpleNamespace(devices=np.asarray([FakeGpu()]))
    targets = np.zeros((1, 160, 160, 3), np.uint8)  # only the shape of a sample is read
    chunk = reconstruction.chunk_for_budget(gen, 256, targets, None, mesh)
    budget = (GPU_BYTES_LIMIT - IN_USE) // 2
    assert chunk * per_sample <= budget < (chunk + 1) * per_sample
    assert planned_bytes(gen, chunk) <= budget
    # 160x160 WN: about 80 MB per sample, so 388 samples per chunk and the final test in 6 chunks.
    assert 32 <= chunk < 2000 and math.ceil(2000 / chunk) <= 8


def test_training_step_at_160_batch_32_fits_an_80_gb_gpu():
    """Every value the traced iteration computes (an upper bound of what it holds at once: about 15 GB), plus
    the state, fits in half of the allocator's 75% of an 80 GB card; the rest is left to cuDNN's workspace
    and the running test."""
    config = TrainConfig().replace(norm="wn", image_size=(160, 160), batch_size=32)
    state = jax.eval_shape(lambda: init_state(config, jax.random.key(0)))
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
    real = jax.ShapeDtypeStruct((32, 160, 160, 3), jnp.float32)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    traced = reconstruction._jaxpr_bytes(make_train_step(config, mesh).trace(state, real, key).jaxpr.jaxpr)
    state_bytes = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(state))
    assert 100 * 2**20 < state_bytes < 2**30  # G and D and their RMSProp moments: some 230 MB
    assert traced + state_bytes < GPU_BYTES_LIMIT / 2
