"""Compare runs as the paper does: Table 2 rows and the Figure 1 curves.

``python -m experiments.report runs/digits_vanilla runs/digits_bn runs/digits_wn [--plot out.png]``
"""

from __future__ import annotations

import json
import pathlib
import sys

from absl import flags

from wngan_jax import cli
from wngan_jax.config import TrainConfig
from wngan_jax.errors import ConfigError, MissingDataError
from wngan_jax.metrics import read_metrics
from wngan_jax.visualize import plot_curves


def run_row(run_dir) -> dict:
    """Model, best iteration, best running-test loss and final-test loss of one run directory."""
    run_dir = pathlib.Path(run_dir)
    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    iterations, losses = read_metrics(run_dir, "test_loss")
    best = min(range(len(losses)), key=losses.__getitem__) if losses else None
    final_path = run_dir / "final_test" / "report.json"
    final = json.loads(final_path.read_text()) if final_path.exists() else {}
    return dict(
        model=config.norm,
        best_iteration=iterations[best] if losses else None,
        best_loss=losses[best] if losses else None,
        final_loss=final.get("mean_loss"),
        test_steps=config.test_steps,
        final_steps=final.get("steps"),
    )


def table(run_dirs) -> str:
    """Paper Table 2 for these runs, as text."""
    rows = [run_row(d) for d in run_dirs]
    steps = rows[0]["test_steps"] if rows else 50
    final_steps = next((r["final_steps"] for r in rows if r["final_steps"]), "final")
    final_head = f"{final_steps:,}-step loss" if isinstance(final_steps, int) else "final loss"
    head = f"{'Model':<10} {'Iteration':>10} {f'{steps}-step loss':>14} {final_head:>16}"
    lines = [head, "-" * len(head)]
    for r in rows:

        def fmt(v):
            return "-" if v is None else f"{v:.6f}"

        lines.append(
            f"{r['model']:<10} {r['best_iteration'] if r['best_iteration'] is not None else '-':>10} "
            f"{fmt(r['best_loss']):>14} {fmt(r['final_loss']):>16}"
        )
    return "\n".join(lines)


def plot(run_dirs, path) -> pathlib.Path:
    """Paper Figure 1: running-test reconstruction loss against iterations, one line per run."""
    curves = {}
    for d in run_dirs:
        name = TrainConfig.from_dict(json.loads((pathlib.Path(d) / "config.json").read_text())).norm
        curves[name] = read_metrics(d, "test_loss")
    return plot_curves(curves, path)


def define(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("plot", None, "write the loss curves to this PNG", flag_values=fv)


def body(fv: flags.FlagValues, runs: list[str]) -> int:
    if not runs:
        raise ConfigError("name one or more run directories")
    missing = [r for r in runs if not (pathlib.Path(r) / "config.json").exists()]
    if missing:
        raise MissingDataError(f"not run directories (no config.json): {', '.join(missing)}")
    print(table(runs))
    if fv.plot:
        print(f"plot: {plot(runs, fv.plot)}")
    return 0


def main(argv=None) -> int:
    return cli.run("experiments.report", __doc__, define, body, argv)


if __name__ == "__main__":
    sys.exit(main())
