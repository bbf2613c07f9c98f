"""``python -m experiments.digits --norm=wn --workdir=runs/digits_wn``: the embedded default, no download.

``--demo`` trains the vanilla, BN and WN models one after the other and prints the paper's Table 2 for them
with a plot of the running-test loss (paper Fig. 1): what ``make demo`` runs.
"""

from __future__ import annotations

import pathlib

from absl import flags

from experiments import common, report

flags.DEFINE_bool("demo", False, "train vanilla, bn and wn and compare them as the paper's Table 2 / Fig. 1")
DEMO_MODELS = ("vanilla", "bn", "wn")


def demo() -> None:
    root = pathlib.Path(common.FLAGS.workdir or "runs/demo")
    runs = []
    for i, norm in enumerate(DEMO_MODELS):
        print(
            f"\n[{i + 1}/{len(DEMO_MODELS)}] training the {norm} model on the built-in digits "
            f"(scikit-learn, 1797 images)"
        )
        common.run_experiment("digits", str(root / norm), norm=norm)
        runs.append(root / norm)
    print("\nReconstruction loss of the best generator of each model (paper Table 2; lower is better):\n")
    print(report.table(runs))
    print(
        f"\nRunning-test loss against iterations (paper Fig. 1): {report.plot(runs, root / 'reconstruction_loss.png')}"
    )
    print(f"Sample grids: {root}/<model>/samples/, checkpoints: {root}/<model>/checkpoints/")


def main(argv) -> None:
    del argv
    if common.FLAGS.demo:
        demo()
    else:
        common.run_experiment("digits")


if __name__ == "__main__":
    common.main_for("digits", main)
