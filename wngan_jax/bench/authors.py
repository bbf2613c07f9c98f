"""Side by side: the training iteration here and the authors' PyTorch iteration, interleaved in one process.

``python -m wngan_jax.bench --what=authors [--image_size 64 --norm wn]`` (needs ``pip install 'wngan_jax[torch]'``)
``python -m wngan_jax.bench --what=authors --arch=resnet [--image_size 64 --image_size 160]``

The PyTorch side is the authors' iteration (paper §5.1 and their ``main.py``) on the re-implementation of
their networks in ``wngan_jax.authors_torch`` (``train_iteration``): ``BCELoss`` on the sigmoid outputs, a D
step on a real batch then on ``G(z).detach()``, a G step on fresh codes, ``RMSprop(lr, alpha=0.9, eps=1e-6)``.
With ``--arch=resnet`` it is the loop of their follow-up's ``main.py`` on ``wngan_jax.authors_resnet_torch``
(one batch of codes, one D forward of it for both losses, ``RMSprop(2e-5, alpha=0.9, eps=1e-8)``), on the
model of ``bench.train.family_changes`` (64x64: features 64,128,256,512; 160x160: their README's). Both
sides run the same configuration on the same machine, one iteration each in turn, so that the machine's
drift hits both alike; the speedup is the ratio of the medians. The two sides alternate in blocks of a few
iterations whose first one is not timed: each library's thread pool spins on after its own work, and
timing a side straight after the other would charge it for that. Both sides' GFLOP/s use the FLOPs XLA counts
for the step here (the same arithmetic).
"""

from __future__ import annotations

import time

import jax
import numpy as np

from wngan_jax.bench.common import matmul_gflops, rows_over
from wngan_jax.bench.train import bench_config, iteration_fn, model_name
from wngan_jax.errors import ConfigError, MissingDependency
from wngan_jax.models import AUTHOR_NAMES

# Variants here -> the authors' ``--norm`` values (mean-only BN and alpha clipping have no counterpart there).
AUTHORS_NORM = {ours: theirs for theirs, ours in AUTHOR_NAMES.items()}


def torch_device() -> str:
    """PyTorch's device for the comparison: the kind JAX computes on (``cuda`` on a GPU), so like for like."""
    import torch

    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def authors_iteration(
    norm: str, size: int, batch: int, *, nfeature: int = 64, code_size: int = 256, lr: float = 1e-4, seed: int = 0
):
    """``(iteration, (generator, discriminator))``: ``iteration()`` runs one of the authors' training
    iterations (D step, then G step) in PyTorch on the two networks."""
    try:
        import torch
    except ImportError as e:
        raise MissingDependency(
            "--what=authors runs the authors' PyTorch iteration: pip install 'wngan_jax[torch]'"
        ) from e
    from wngan_jax import authors_torch

    device = torch.device(torch_device())
    torch.manual_seed(seed)
    g = authors_torch.Generator(AUTHORS_NORM[norm], size, nfeature, code_size).to(device)
    d = authors_torch.Discriminator(AUTHORS_NORM[norm], size, nfeature).to(device)
    g_opt, d_opt = authors_torch.rmsprop(g, lr), authors_torch.rmsprop(d, lr)
    real = torch.rand(batch, 3, size, size, device=device)

    def iteration():
        codes = (torch.randn(batch, code_size, device=device) for _ in range(2))
        authors_torch.train_iteration(g, d, g_opt, d_opt, real, *codes)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return iteration, (g, d)


def authors_resnet_iteration(config, *, seed: int = 0):
    """``(iteration, (generator, discriminator))``: ``iteration()`` runs one iteration of the follow-up's
    ``main.py`` in PyTorch on the networks of ``config`` (a ``TrainConfig`` with ``arch="resnet"``)."""
    try:
        import torch
    except ImportError as e:
        raise MissingDependency(
            "--what=authors runs the authors' PyTorch iteration: pip install 'wngan_jax[torch]'"
        ) from e
    from wngan_jax import authors_resnet_torch as ref

    model, batch, device = config.model, config.batch_size, torch.device(torch_device())
    torch.manual_seed(seed)
    g = ref.Generator(model.image_size, model.gen_features, model.gen_blocks, model.code_size).to(device)
    d = ref.Discriminator(model.image_size, model.dis_features, model.dis_blocks).to(device)
    g_opt, d_opt = ref.rmsprop(g, config.lr), ref.rmsprop(d, config.lr)
    real = torch.rand(batch, 3, *model.image_size, device=device)

    def iteration():
        ref.train_iteration(g, d, g_opt, d_opt, real, torch.randn(batch, model.code_size, device=device))
        if device.type == "cuda":
            torch.cuda.synchronize()

    return iteration, (g, d)


BLOCK = 3  # timed iterations per side in each round


def measure(size: int, norm: str, batch: int, *, repeats: int = 5, family: dict | None = None) -> dict:
    """Median ms per iteration of both sides over ``repeats`` rounds, and the speedup here over theirs."""
    import torch

    iterate, flops = iteration_fn(size, norm, batch, family=family)

    def ours():
        jax.block_until_ready(iterate())

    config = bench_config(size, norm, batch, family=family)
    if config.model.arch == "resnet":
        theirs, _ = authors_resnet_iteration(config.replace(lr=2e-5))
    else:
        theirs, _ = authors_iteration(norm, size, batch)
    times = {"ours": [], "authors": []}
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("authors", theirs)):
            fn()
            for _ in range(BLOCK):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    roofline = matmul_gflops()
    ours_s, authors_s = (float(np.median(times[k])) for k in ("ours", "authors"))
    return dict(
        what="authors",
        size=size,
        norm=norm,
        model=model_name(size, norm, family),
        batch=batch,
        median_ms=ours_s * 1e3,
        authors_median_ms=authors_s * 1e3,
        speedup=authors_s / ours_s,
        gflop_per_iteration=flops / 1e9,
        gflops=flops / ours_s / 1e9,
        authors_gflops=flops / authors_s / 1e9,
        roofline_gflops=roofline,
        roofline_fraction=flops / ours_s / 1e9 / roofline,
        authors_roofline_fraction=flops / authors_s / 1e9 / roofline,
        torch_version=torch.__version__,
        torch_threads=torch.get_num_threads(),
        torch_device=torch_device(),
    )


def run(
    sizes=(32, 64),
    norms=("vanilla", "bn", "wn"),
    batch: int = 32,
    repeats: int = 5,
    as_json: bool = False,
    family: dict | None = None,
) -> list[dict]:
    """One row per (size, norm); printed as text unless ``as_json`` (then the caller prints)."""
    unknown = [n for n in norms if n not in AUTHORS_NORM]
    if unknown:
        raise ConfigError(
            f"--what=authors: the authors' code has no {unknown[0]!r} variant; use one of {', '.join(AUTHORS_NORM)}"
        )
    return rows_over(
        sizes,
        norms,
        lambda size, norm: measure(size, norm, batch, repeats=repeats, family=family),
        format_row,
        as_json,
    )


def format_row(r: dict) -> str:
    return (
        f"authors {r['size']:>3}x{r['size']:<3} {r['model']:<9} batch {r['batch']:<3} "
        f"here {r['median_ms']:8.1f} ms/it ({100 * r['roofline_fraction']:4.1f}% of matmul)  "
        f"authors' PyTorch {r['authors_median_ms']:8.1f} ms/it ({100 * r['authors_roofline_fraction']:4.1f}%)  "
        f"speedup {r['speedup']:.2f}x"
    )
