"""The accelerator check's own measuring parts: each prints its rows as JSON lines (``tools/accelerator_check.py``
runs them in their own process, with a time limit)::

    python tools/accelerator_parts.py device --matmul=8192
    python tools/accelerator_parts.py final_test --size=160 --nfeature=64 --code_size=256 \\
        --samples=200 --steps=200 --final_samples=2000

* ``device``: platform, device kind, memory, versions; the peak matmul throughput (n^3) in bfloat16, float32
  at the default precision (TensorFloat-32 on NVIDIA GPUs) and float32 at ``highest``: the peaks that every
  other figure is a fraction of.
* ``final_test``: reconstruction (paper §4) of ``samples`` x ``steps`` with the chunk size the memory budget
  picks, then the paper's final test's chunking (``final_samples``) for a few steps: its peak memory and
  throughput, and the 2000 x 2000 final test's time extrapolated from it.

Run from the repository root with it on ``PYTHONPATH`` (the check does both). The other parts of the check
are the project's own commands (``pytest``, ``wngan_jax.bench``, ``experiments.digits``).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import platform as host_platform
import sys
import time

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from jax import lax
from jax.sharding import Mesh

from wngan_jax import reconstruction
from wngan_jax.bench.common import compiled_flops, median_seconds
from wngan_jax.models import ModelConfig

CPU_MATMUL = 256  # the device part's matmul size on a CPU, which would take minutes at a GPU's size
FINAL_TEST = (2000, 2000)  # the paper's final test: samples x steps (§5.1)
FINAL_TEST_MEASURED_STEPS = 10  # steps timed at the final test's chunking (after one compiling segment)

# Module the training run imports that a bare GPU image may lack (tools/accelerator_check.sh --fetch-wheels).
NEEDED_MODULES = ("tensorboardX",)


def device_rows(n: int):
    """The device and the peak matmul throughput in each compute precision (median of 10 after warm-up)."""
    device = jax.devices()[0]
    n = n if device.platform != "cpu" else min(n, CPU_MATMUL)
    stats = device.memory_stats() or {}
    torch_version = torch_cuda = None
    if importlib.util.find_spec("torch"):
        import torch

        torch_version, torch_cuda = torch.__version__, torch.cuda.is_available()
    yield dict(
        what="device",
        platform=device.platform,
        device_kind=device.device_kind,
        device_count=jax.device_count(),
        memory_bytes_limit=stats.get("bytes_limit"),
        python=host_platform.python_version(),
        jax=jax.__version__,
        jaxlib=jaxlib.__version__,
        torch=torch_version,
        torch_cuda=torch_cuda,
        missing_modules=[m for m in NEEDED_MODULES if importlib.util.find_spec(m) is None],
    )
    for dtype, precision in (("bfloat16", "default"), ("float32", "default"), ("float32", "highest")):
        a = jax.random.normal(jax.random.key(0), (n, n), dtype)
        b = jax.random.normal(jax.random.key(1), (n, n), dtype)
        matmul = jax.jit(functools.partial(jnp.matmul, precision=lax.Precision[precision.upper()]))
        seconds = median_seconds(matmul, a, b, repeats=10, warmup=2)
        yield dict(what="peak", dtype=dtype, precision=precision, n=n, gflops=2 * n**3 / seconds / 1e9)


def final_test_rows(size, nfeature, code_size, samples, steps, final_samples):
    """Reconstruction throughput at ``samples`` x ``steps`` and at the final test's chunking, and the paper's
    final test (2000 x 2000) extrapolated from it, with the chunk size the memory budget picks."""
    config = ModelConfig("wn", size, nfeature=nfeature, code_size=code_size)
    module = config.generator()
    variables = module.init(jax.random.key(0), jnp.zeros((1, code_size)))
    gen = reconstruction.generator_fn(module, variables)
    rng = np.random.default_rng(0)
    device = jax.devices()[0]
    mesh = Mesh(np.asarray(jax.local_devices()), ("data",))

    # FLOPs of one sample-step: the gradient of the per-sample losses wrt the codes (RMSProp's are negligible).
    x = jnp.zeros((32, size, size, 3), jnp.uint8)
    z = jnp.zeros((32, code_size))
    grad = jax.jit(jax.grad(lambda z, x: jnp.sum(reconstruction.per_sample_loss(gen(z), x))))
    flops = compiled_flops(grad.lower(z, x).compile())
    flops_per_sample_step = flops / 32 if flops else None

    def timed(n, run_steps):
        targets = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        chunk = reconstruction.chunk_for_budget(gen, code_size, targets, None, mesh)
        start = time.perf_counter()
        reconstruction.reconstruct(gen, targets, steps=reconstruction.SEGMENT_STEPS)  # compiles for the chunk
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        result = reconstruction.reconstruct(gen, targets, steps=run_steps)
        seconds = time.perf_counter() - start
        rate = n * run_steps / seconds
        stats = device.memory_stats() or {}
        return dict(
            what="final_test",
            size=size,
            norm="wn",
            samples=n,
            steps=run_steps,
            chunk=min(chunk, n),
            chunks=-(-n // min(chunk, n)),
            compile_s=compile_s,
            seconds=seconds,
            sample_steps_per_s=rate,
            gflops=rate * flops_per_sample_step / 1e9 if flops_per_sample_step else None,
            mean_loss=result.mean_loss,
            peak_bytes_in_use=stats.get("peak_bytes_in_use"),
            bytes_limit=stats.get("bytes_limit"),
            extrapolated_final_test_s=FINAL_TEST[0] * FINAL_TEST[1] / rate,
        )

    yield timed(samples, steps)
    yield timed(final_samples, FINAL_TEST_MEASURED_STEPS)


def parser() -> argparse.ArgumentParser:
    """The command line: a part's name, then its sizes."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="part", required=True, metavar="PART")
    device = commands.add_parser("device", help="device, versions, peak matmul")
    device.add_argument("--matmul", type=int, required=True, help=f"matrix size n (at most {CPU_MATMUL} on a CPU)")
    final = commands.add_parser("final_test", help="reconstruction throughput and the final test")
    for key in ("size", "nfeature", "code_size", "samples", "steps", "final_samples"):
        final.add_argument(f"--{key}", type=int, required=True)
    return parser


def main(argv=None) -> int:
    args = vars(parser().parse_args(argv))
    part = args.pop("part")
    rows = device_rows(args["matmul"]) if part == "device" else final_test_rows(**args)
    for row in rows:
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
