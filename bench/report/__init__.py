"""Reports from records only: the paper's main table (methods x tasks), a cost table, the runs
left out, and plots.

Reads a folder of run records, never a model or a data file; the task registry (``tasks``)
gives metric directions of records that do not carry them, display names and orders. Smoke
runs (``--limit`` / ``--preset smoke``) and runs that did not finish are kept out of the
tables and plots and listed separately.

``python -m bench report --records DIR --out DIR`` calls :func:`write_report`, which writes
``tables/`` (``results.md|tex|csv``, ``wins_ties_losses.md|tex|csv``, ``cost.md|tex|csv``,
``excluded.md``, ``runs.csv``, ``report.md``) and ``plots/`` under the out folder and returns the Markdown it prints;
``bench run`` prints :func:`summary_table`.

What lives where (imports go down this list, never up; submodules never import this ``__init__``):

- ``frame``: records -> one row per record, from one column table (``FIELDS``: where each
  value lives in a record, its heading, format and the tables that show it). A new column
  is one ``Field`` there.
- ``significance``: per task, intervals and paired tests (:mod:`bench.stats`) on the per-item
  results, and the win/tie/loss matrix.
- ``table``: the tables as data: the main table (averages, intervals, bold for "not
  significantly worse than the best", marks against ``base``, caption, warnings, notes), the
  cost table's means, row and column orders.
- ``render``: Markdown, LaTeX and CSV text of those tables, and the end-of-sweep summary.
- ``plots``: PNG and PDF figures (matplotlib, imported only when plots are written).
- ``reference``: ``--reference paper``: our runs beside the published numbers of
  ``references.json`` (each table with its source), with the difference and a tolerance.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench import records
from bench.report.frame import CSV_COLUMNS, frame_of, load_frame
from bench.report.reference import reference_frame, reference_markdown
from bench.report.render import (
    cost_latex,
    cost_markdown,
    excluded_markdown,
    results_frame,
    results_latex,
    results_markdown,
    summary_table,
    tuning_markdown,
    wtl_frame,
    wtl_latex,
    wtl_markdown,
)
from bench.report.table import cost_frame, main_table, tuning_frame


def markdown_of(df: pd.DataFrame) -> str:
    """Everything ``bench report`` prints: results, cost, and the runs left out."""
    if df.empty:
        return "_no records_\n"
    parts = [results_markdown(main_table(df))]
    for part in (tuning_markdown(df), cost_markdown(df), excluded_markdown(df)):
        if part:
            parts.append(part)
    return "\n".join(parts)


def write_report(
    records_dir: str | Path,
    out_dir: str | Path = "results",
    *,
    plots: bool = True,
    reference: str | None = None,
    tolerance: float | None = None,
) -> tuple[str, list[Path]]:
    """Write ``tables/`` and ``plots/`` under ``out_dir``; returns (Markdown, written paths).

    ``reference`` (``paper``): add our runs beside the published numbers (:mod:`.reference`),
    printed and written to ``tables/reference.md|csv``. Every file is written atomically
    (:func:`bench.records.write_atomic`).
    """
    df = load_frame(records_dir)
    text = markdown_of(df) if not df.empty else f"_no records in {records_dir}_\n"
    if reference is not None:
        ref_text = reference_markdown(df, reference, tolerance)
        text = text + "\n" + ref_text
    tables = Path(out_dir) / "tables"
    written: list[Path] = []

    def put(name: str, content: str) -> None:
        path = tables / name
        records.write_atomic(path, content)
        written.append(path)

    put("report.md", text)
    if reference is not None:
        put("reference.md", ref_text)
        put("reference.csv", reference_frame(df, reference, tolerance).to_csv(index=False))
    if df.empty:
        return text, written
    table = main_table(df)
    put("results.md", results_markdown(table))
    put("results.tex", results_latex(table))
    put("results.csv", results_frame(table).to_csv(index=False))
    if len(table.methods) > 1 and table.stats:
        put("wins_ties_losses.md", wtl_markdown(table) + "\n")
        put("wins_ties_losses.tex", wtl_latex(table))
        put("wins_ties_losses.csv", wtl_frame(table).to_csv(index=False))
    if tuning_markdown(df):
        put("learning_rates.md", tuning_markdown(df))
        put("learning_rates.csv", tuning_frame(df).to_csv(index=False))
    cost = cost_frame(df)
    if not cost.empty:
        put("cost.md", cost_markdown(df))
        put("cost.tex", cost_latex(df))
        put("cost.csv", cost.to_csv(index=False))
    put("excluded.md", excluded_markdown(df) or "_no runs excluded_\n")
    put("runs.csv", df[CSV_COLUMNS].to_csv(index=False))
    if plots:
        from bench.report import plots as plotting  # matplotlib: only when plots are written

        written += plotting.write_all(df, Path(out_dir) / "plots")
    return text, written


__all__ = ["frame_of", "load_frame", "markdown_of", "summary_table", "write_report"]
