"""``python -m experiments.digits --norm=wn --workdir=runs/digits_wn``: the embedded default, no download.

``--demo`` trains the vanilla, BN and WN models one after the other and prints the paper's Table 2 for them
with a plot of the running-test loss (paper Fig. 1): what ``make demo`` runs.
"""

from __future__ import annotations

import pathlib
import sys

from absl import flags

from experiments import common, report

DEMO_MODELS = ("vanilla", "bn", "wn")


def demo(fv: flags.FlagValues) -> None:
    root = pathlib.Path(fv.workdir or "runs/demo")
    runs = []
    for i, norm in enumerate(DEMO_MODELS):
        print(
            f"\n[{i + 1}/{len(DEMO_MODELS)}] training the {norm} model on the built-in digits "
            "(scikit-learn, 1797 images)"
        )
        common.run_experiment(fv, "digits", str(root / norm), norm=norm)
        runs.append(root / norm)
    print("\nReconstruction loss of the best generator of each model (paper Table 2; lower is better):\n")
    print(report.table(runs))
    curves = report.plot(runs, root / "reconstruction_loss.png")
    print(f"\nRunning-test loss against iterations (paper Fig. 1): {curves}")
    print(f"Sample grids: {root}/<model>/samples/, checkpoints: {root}/<model>/checkpoints/")


def define(fv: flags.FlagValues) -> None:
    flags.DEFINE_bool(
        "demo", False, "train vanilla, bn and wn and compare them as the paper's Table 2 / Fig. 1", flag_values=fv
    )


def entry(fv: flags.FlagValues) -> None:
    if fv.demo:
        demo(fv)
    else:
        common.run_experiment(fv, "digits")


def main(argv=None) -> int:
    return common.main_for("digits", __doc__, argv, define=define, entry=entry)


if __name__ == "__main__":
    sys.exit(main())
