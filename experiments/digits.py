"""``python -m experiments.digits --norm=wn --workdir=runs/digits_wn``: the embedded default, no download.

``--demo`` trains the vanilla, BN and WN models one after the other (a study of one seed, under
``runs/demo/<model>/seed_0``), writes the report of ``experiments.report`` to ``runs/demo/report/`` and prints
the paper's Table 2 for them: what ``make demo`` runs.
"""

from __future__ import annotations

import pathlib

from absl import flags

from experiments import common, report, study

flags.DEFINE_bool("demo", False, "train vanilla, bn and wn and write the report of their tables and figures")
DEMO_MODELS = ("vanilla", "bn", "wn")


def demo() -> None:
    """A one-seed study of vanilla, BN and WN (``experiments.study``) and its report (``experiments.report``)."""
    root = pathlib.Path(common.FLAGS.workdir or "runs/demo")
    print(f"training the {', '.join(DEMO_MODELS)} models on the built-in digits (scikit-learn, 1797 images)")
    base = common.config_from_flags("digits")
    study.run_study(base, DEMO_MODELS, [0], root, overwrite=common.FLAGS.overwrite, command="make demo")
    index = report.write_report([root], root / "report")
    print("\nReconstruction loss of the best generator of each model (paper Table 2; lower is better):\n")
    print(report.summary_table([root]))
    print(f"\nreport (tables, loss curves, samples, reconstructions): {index}")


def main(argv) -> None:
    del argv
    if common.FLAGS.demo:
        demo()
    else:
        common.run_experiment("digits")


if __name__ == "__main__":
    common.main_for("digits", main)
