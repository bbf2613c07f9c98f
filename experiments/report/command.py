"""The paper's tables and figures from training runs (docs/study.md).

``python -m experiments.report runs/study --out report/`` reads every run under ``runs/study`` (a study of
``python -m experiments.study``, or any run directories) and writes ``report/index.html`` (one page, images
embedded, opens offline), ``report/tables.md`` and one PNG per figure: Table 2 and Tables 3-5 (per model and
per instance), Figs. 1/13-14 (running-test loss, collapses marked), Figs. 2/12 (the same test images
reconstructed by each model), Figs. 3-4 (samples of fixed codes across training), Figs. 5/9 (samples around
each collapse), the sample diversity of every instance (appendix B), code interpolations (§2), the time to
collapse (Kaplan-Meier) and, for a study that sweeps a flag, Table 2 per value and the collapses against it.

``--markdown docs/results.md`` also writes that page (provenance, tables, figures copied to ``docs/results/``)
for the repository. ``python -m experiments.report RUN... [--plot FILE]`` prints Table 2 for the runs (one
row per model) and plots Fig. 1.
"""

from __future__ import annotations

import math
import sys

from absl import flags

from experiments.report import figures, loading, render, tables
from wngan_jax import cli, diagnostics, files, visualize
from wngan_jax.errors import ConfigError, MissingDataError


def define(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("out", None, "write index.html, tables.md and the figures' PNGs here", flag_values=fv)
    flags.DEFINE_string(
        "markdown",
        None,
        "with --out: also this Markdown page (figures copied to a folder named after it)",
        flag_values=fv,
    )
    flags.DEFINE_string("plot", None, "write the running-test loss curves (Fig. 1) to this PNG", flag_values=fv)
    flags.DEFINE_float(
        "collapse_factor", diagnostics.COLLAPSE_FACTOR, "collapse: loss above this times the best", flag_values=fv
    )
    flags.DEFINE_integer(
        "collapse_tests", diagnostics.COLLAPSE_TESTS, "collapse: for this many running tests in a row", flag_values=fv
    )
    flags.DEFINE_float(
        "collapse_diversity",
        diagnostics.DIVERSITY_FRACTION,
        "collapse also: sample diversity below this times its highest before, for "
        f"{diagnostics.DIVERSITY_RECORDS} records in a row (0: loss rule only)",
        flag_values=fv,
    )


def check_flags(fv: flags.FlagValues, args: list[str]) -> None:
    """Every flag and output path, before any run is read."""
    if not args:
        raise MissingDataError("name the run directories or study directories to report on")
    if fv.markdown and not fv.out:
        raise ConfigError("--markdown needs --out (the report it is made from)")
    if not (math.isfinite(fv.collapse_factor) and fv.collapse_factor > 1):
        raise ConfigError(f"--collapse_factor must be a number above 1 (times the best loss), got {fv.collapse_factor}")
    if fv.collapse_tests < 1:
        raise ConfigError(f"--collapse_tests must be 1 or more (running tests in a row), got {fv.collapse_tests}")
    if not 0 <= fv.collapse_diversity < 1:
        raise ConfigError(f"--collapse_diversity must lie in [0, 1) (0: loss rule only), got {fv.collapse_diversity}")
    if fv.out:
        files.check_output(fv.out, "--out", directory=True)
    if fv.markdown:
        files.check_output(fv.markdown, "--markdown", directory=False)
    if fv.plot:
        visualize.check_figure_path(fv.plot, "--plot")
        files.check_output(fv.plot, "--plot", directory=False)


def body(fv: flags.FlagValues, args: list[str]) -> int:
    check_flags(fv, args)
    diversity = fv.collapse_diversity or None
    study = loading.load(args, factor=fv.collapse_factor, tests=fv.collapse_tests, diversity=diversity)
    if fv.out:
        index = render.write(study, fv.out, markdown=fv.markdown)
        print(render.markdown_table(tables.summary(study)))
        print(f"\nreport: {index}\ntables: {index.parent / 'tables.md'}")
    else:
        print(render.markdown_table(tables.summary(study)))
        if fv.plot:
            print(f"plot: {figures.plot_curves(study.instances, fv.plot)}")
    for note in study.left_out:
        print(f"left out: {note}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return cli.run("experiments.report", __doc__, define, body, argv)
