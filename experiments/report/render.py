"""The report's pages from a ``Study``'s tables and figures: ``index.html`` (one page, images embedded, opens
offline), ``tables.md``, and a Markdown page for the repository (e.g. docs/results.md)."""

from __future__ import annotations

import base64
import datetime
import html
import pathlib
import shutil

from experiments.report import figures as figures_lib
from experiments.report import tables as tables_lib
from experiments.report.figures import Figure
from experiments.report.loading import Study, load
from experiments.report.tables import Table
from wngan_jax import diagnostics


def markdown_table(table: Table) -> str:
    """The table's rows as a Markdown table (no title, no prose)."""
    lines = ["| " + " | ".join(table.headings[c] for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in table.columns) + " |" for r in table.rows]
    return "\n".join(lines)


def tables_markdown(tables: list[Table]) -> str:
    """Each table as a section: its title, the prose above it, the table, the prose below it."""
    sections = [
        "\n\n".join(part for part in (f"## {t.title}", t.intro, markdown_table(t), t.note) if part) + "\n"
        for t in tables
    ]
    return "\n".join(sections)


def html_table(table: Table) -> str:
    """The table with its title and prose as HTML."""
    head = "".join(f"<th>{html.escape(table.headings[c])}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in table.columns) + "</tr>" for r in table.rows
    )
    parts = [f"<h2>{html.escape(table.title)}</h2>"]
    parts += [f"<p>{html.escape(table.intro)}</p>"] if table.intro else []
    parts.append(f"<table><tr>{head}</tr>{body}</table>")
    parts += [f"<p>{html.escape(table.note)}</p>"] if table.note else []
    return "\n".join(parts)


def left_out_markdown(study: Study) -> str:
    """What the report leaves out and why (damaged files), as a Markdown section; empty when nothing is."""
    if not study.left_out:
        return ""
    return "## Left out\n\n" + "\n".join(f"- {note}" for note in study.left_out) + "\n"


def html_page(study: Study, tables: list[Table], figures: list[Figure]) -> str:
    """``index.html``: provenance, the tables, and every figure (its PNG embedded) or why it is missing."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>wngan_jax study report</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
        "img{max-width:100%;image-rendering:pixelated}figure{margin:2em 0}figcaption{color:#444}"
        "</style></head><body>",
        "<h1>Study report</h1>",
        f"<p>{len(study.instances)} runs from {html.escape(', '.join(map(str, study.sources)))}; written "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}.</p>",
    ]
    if study.command:
        parts.append(f"<p>Study command: <code>{html.escape(study.command)}</code></p>")
    if study.left_out:
        notes = "".join(f"<li>{html.escape(note)}</li>" for note in study.left_out)
        parts.append(f"<h2>Left out</h2><ul>{notes}</ul>")
    parts += [html_table(t) for t in tables]
    for fig in figures:
        parts.append(f"<figure><h2>{html.escape(fig.title)}</h2>")
        if fig.path is not None:
            data = base64.b64encode(fig.path.read_bytes()).decode()
            parts.append(f"<img src='data:image/png;base64,{data}' alt='{html.escape(fig.path.name)}'>")
        parts.append(f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


# Sections of a --markdown page written by hand from other studies, kept when the page is regenerated.
KEPT_SECTIONS = ("The WN ResNet follow-up", "Stability under stress")


def kept_sections(text: str) -> str:
    """The ``## `` sections of ``text`` titled as in ``KEPT_SECTIONS``, each to the next ``## `` heading."""
    kept, keeping = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            keeping = line[3:].strip() in KEPT_SECTIONS
        if keeping:
            kept.append(line)
    return "".join(kept)


def write_markdown(path: pathlib.Path, study: Study, tables: str, figures: list[Figure]) -> None:
    """A Markdown page of the study (e.g. docs/results.md): provenance, ``tables`` (Markdown), and the figures,
    copied to a folder named after the page. The page's ``KEPT_SECTIONS`` (results of other studies, written
    by hand) are kept, at its end."""
    kept = kept_sections(path.read_text()) if path.exists() else ""
    folder = path.parent / path.stem
    folder.mkdir(parents=True, exist_ok=True)
    instances = study.instances
    devices = sorted({i.final["device"] for i in instances if "device" in i.final})
    trained_to = sorted({tables_lib.iteration_text(i.iterations[-1]) for i in instances if i.iterations})
    lines = [
        "# Results\n",
        f"- Command: `{study.command}`" if study.command else f"- Runs: {', '.join(map(str, study.sources))}",
        f"- Report written: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}; "
        f"{len(instances)} runs, trained to iterations {', '.join(trained_to)}",
        f"- Final tests ran on: {', '.join(devices) or '-'}\n",
        tables,
    ]
    for fig in figures:
        lines.append(f"## {fig.title}\n")
        if fig.path is not None:
            shutil.copy(fig.path, folder / fig.path.name)
            lines.append(f"![{fig.title}]({folder.name}/{fig.path.name})\n")
        lines.append(f"{fig.caption}\n")
    if kept:
        lines.append(kept.rstrip("\n") + "\n")
    path.write_text("\n".join(lines))


def write(study: Study, out, *, markdown=None) -> pathlib.Path:
    """Write ``out/index.html``, ``out/tables.md`` and the figures' PNGs for ``study``; with ``markdown``, also
    that Markdown page with copies of the figures in a folder named after it. Returns ``out/index.html``."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = tables_lib.all_tables(study)
    figures = figures_lib.all_figures(study, out)  # after it, ``study.left_out`` holds what the figures lacked
    tables_md = "\n".join(part for part in (left_out_markdown(study), tables_markdown(tables)) if part)
    (out / "tables.md").write_text(tables_md)
    index = out / "index.html"
    index.write_text(html_page(study, tables, figures))
    if markdown is not None:
        write_markdown(pathlib.Path(markdown), study, tables_md, figures)
    return index


def write_report(
    paths,
    out,
    *,
    factor: float = diagnostics.COLLAPSE_FACTOR,
    tests: int = diagnostics.COLLAPSE_TESTS,
    markdown=None,
) -> pathlib.Path:
    """``write`` the report of the runs in ``paths`` (run or study directories, ``loading.find_runs``)."""
    return write(load(paths, factor=factor, tests=tests), out, markdown=markdown)


def summary_table(
    paths, *, factor: float = diagnostics.COLLAPSE_FACTOR, tests: int = diagnostics.COLLAPSE_TESTS
) -> str:
    """Paper Table 2 (Markdown) for the runs in ``paths``."""
    return markdown_table(tables_lib.summary(load(paths, factor=factor, tests=tests)))
