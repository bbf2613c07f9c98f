"""``python -m experiments.digits --norm=wn --workdir=runs/digits_wn``: the embedded default, no download.

``--demo`` trains the vanilla, BN and WN models one after the other (a study of one seed, under
``runs/demo/<model>/seed_0``), writes the report of ``experiments.report`` to ``runs/demo/report/`` and prints
the paper's Table 2 for them: what ``make demo`` runs.
"""

from __future__ import annotations

import pathlib
import sys

from absl import flags

from experiments import common, report, study

DEMO_MODELS = ("vanilla", "bn", "wn")


def demo(fv: flags.FlagValues) -> None:
    """A one-seed study of vanilla, BN and WN (``experiments.study``) and its report (``experiments.report``)."""
    root = pathlib.Path(fv.workdir or "runs/demo")
    print(f"training the {', '.join(DEMO_MODELS)} models on the built-in digits (scikit-learn, 1797 images)")
    models = {model: common.config_for_model(fv, "digits", model) for model in DEMO_MODELS}
    study.run_study(models, [0], root, overwrite=fv.overwrite, command="make demo")
    runs = report.load([root])
    index = report.write(runs, root / "report")
    print("\nReconstruction loss of the best generator of each model (paper Table 2; lower is better):\n")
    print(report.markdown_table(report.summary(runs)))
    print(f"\nreport (tables, loss curves, samples, reconstructions): {index}")


def define(fv: flags.FlagValues) -> None:
    flags.DEFINE_bool(
        "demo", False, "train vanilla, bn and wn and write the report of their tables and figures", flag_values=fv
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
