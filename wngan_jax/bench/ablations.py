"""What each speed decision buys: the training iteration as shipped against variants with one decision undone.

``python -m wngan_jax.bench --what=ablations [--image_size 64 --norm wn --repeats 8]``

Variants (each compiled in this process; then one iteration of each in turn, ``repeats`` rounds, so that
the machine's drift hits all alike; medians):

* ``packed sub-pixel``: every transposed convolution as one packed convolution whose border is cropped,
  also for the small inputs that ``ops`` splits into one exact convolution per phase;
* ``XLA default options``: compiled without ``ops.compiler_options`` (on a CPU: YNNPACK convolutions).
"""

from __future__ import annotations

from wngan_jax.bench.common import interleaved_median_ms, rows_over
from wngan_jax.bench.train import iteration_fn

# Variant -> the ``make_train_step`` keywords that undo its decision.
UNDONE = {
    "as shipped": {},
    "packed sub-pixel": {"split_phases_below": 0.0},
    "XLA default options": {"compiler_options": None},
}
VARIANTS = tuple(UNDONE)


def measure(size: int, norm: str, batch: int, *, repeats: int = 8) -> dict:
    """Median ms per iteration of every variant, and the speedup of the shipped step over each."""
    iterations, flops = {}, {}
    for name, undone in UNDONE.items():
        iterations[name], flops[name] = iteration_fn(size, norm, batch, **undone)
    ms = interleaved_median_ms(iterations, repeats)
    shipped = ms["as shipped"]
    return dict(
        what="ablations",
        size=size,
        norm=norm,
        batch=batch,
        median_ms=shipped,
        variants_ms=ms,
        speedup_over={n: ms[n] / shipped for n in VARIANTS[1:]},
        gflop_per_iteration={n: f / 1e9 if f else None for n, f in flops.items()},
    )


def run(sizes=(32, 64), norms=("wn",), batch: int = 32, repeats: int = 8, as_json: bool = False) -> list[dict]:
    """One row per (size, norm); printed as text unless ``as_json`` (then the caller prints)."""
    return rows_over(sizes, norms, lambda size, norm: measure(size, norm, batch, repeats=repeats), format_row, as_json)


def format_row(r: dict) -> str:
    others = "  ".join(f"{n} {r['variants_ms'][n]:.1f} ms ({r['speedup_over'][n]:.3f}x)" for n in VARIANTS[1:])
    return (
        f"ablations {r['size']:>3}x{r['size']:<3} {r['norm']:<8} batch {r['batch']:<3} "
        f"as shipped {r['median_ms']:.1f} ms/it; undone: {others}"
    )
