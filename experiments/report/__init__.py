"""The paper's tables and figures from training runs: ``python -m experiments.report`` (docs/study.md).

One module per job, in the order a report is made:

- ``loading``: find run and study directories, read each run once into an ``Instance``; the ``Study`` of them
  is what the tables and figures share (``STUDY_FILE`` and ``run_dir``: the layout ``experiments.study``
  writes);
- ``tables``: paper Table 2, Tables 3-5 and the paired comparison, with their prose (``Table``);
- ``figures``: Figs. 1-5, 9, 12-14, appendices B and C.3, the interpolation of §2 (``Figure``);
- ``render``: ``index.html``, ``tables.md`` and the repository's Markdown page;
- ``command``: the command's flags and ``main``.
"""

from experiments.report.command import body, define, main
from experiments.report.figures import Figure, all_figures, diversity_curve, plot, plot_curves
from experiments.report.loading import (
    STUDY_FILE,
    Instance,
    Study,
    by_model,
    find_runs,
    load,
    load_instance,
    representative,
    run_dir,
)
from experiments.report.render import markdown_table, summary_table, write, write_markdown, write_report
from experiments.report.tables import (
    Table,
    all_tables,
    collapse_rule,
    instance_rows,
    mean_std,
    paired_rows,
    summary,
    summary_rows,
)

__all__ = [
    "STUDY_FILE",
    "Figure",
    "Instance",
    "Study",
    "Table",
    "all_figures",
    "all_tables",
    "body",
    "by_model",
    "collapse_rule",
    "define",
    "diversity_curve",
    "find_runs",
    "instance_rows",
    "load",
    "load_instance",
    "main",
    "markdown_table",
    "mean_std",
    "paired_rows",
    "plot",
    "plot_curves",
    "representative",
    "run_dir",
    "summary",
    "summary_rows",
    "summary_table",
    "write",
    "write_markdown",
    "write_report",
]
