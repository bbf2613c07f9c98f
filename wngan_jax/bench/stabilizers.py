"""What the stabilizers the field adopted after the paper cost per training iteration, against plain WN.

``python -m wngan_jax.bench --what=stabilizers [--image_size 32 --repeats 20]``

Variants (each compiled in this process; then one iteration of each in turn, ``repeats`` rounds, so that the
machine's drift hits all alike; medians): ``wn`` (the paper's model), ``wn + EMA`` (the same with
``--ema_decay=0.999``: one more pass over G's parameters), ``sn`` (spectral normalization of every D layer,
G vanilla: a power iteration per layer and forward) and ``vanilla`` (the model ``sn`` normalizes, to tell
the cost of the normalization from that of the architecture).
"""

from __future__ import annotations

from wngan_jax.bench.common import interleaved_median_ms, rows_over
from wngan_jax.bench.train import iteration_fn

# Variant -> (norm, iteration_fn keywords).
VARIANTS = {
    "wn": ("wn", {}),
    "wn + EMA": ("wn", {"ema_decay": 0.999}),
    "sn": ("sn", {}),
    "vanilla": ("vanilla", {}),
}


def measure(size: int, batch: int, *, repeats: int = 20) -> dict:
    """Median ms per iteration of every variant, each one's ratio to plain WN, and XLA's GFLOP per iteration."""
    built = {name: iteration_fn(size, norm, batch, **kw) for name, (norm, kw) in VARIANTS.items()}
    ms = interleaved_median_ms({name: iterate for name, (iterate, _) in built.items()}, repeats)
    return dict(
        what="stabilizers",
        size=size,
        norm="wn",
        batch=batch,
        median_ms=ms["wn"],
        variants_ms=ms,
        ratio_to_wn={name: ms[name] / ms["wn"] for name in VARIANTS if name != "wn"},
        gflop_per_iteration={name: flops / 1e9 if flops else None for name, (_, flops) in built.items()},
    )


def run(sizes=(32,), batch: int = 32, repeats: int = 20, as_json: bool = False) -> list[dict]:
    """One row per size; printed as text unless ``as_json`` (then the caller prints)."""
    return rows_over(sizes, ("wn",), lambda size, _: measure(size, batch, repeats=repeats), format_row, as_json)


def format_row(r: dict) -> str:
    others = "  ".join(f"{n} {r['variants_ms'][n]:.2f} ms ({r['ratio_to_wn'][n]:.3f}x)" for n in r["ratio_to_wn"])
    return f"stabilizers {r['size']:>3}x{r['size']:<3} batch {r['batch']:<3} wn {r['median_ms']:.2f} ms/it; {others}"
