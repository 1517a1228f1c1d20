"""Tables as text: golden Markdown and LaTeX of the golden records (a real toy run, see
``tests/golden/README.md``), formatting, escaping, the runs left out and the end-of-sweep summary.

Regenerate the golden files after an intended change with ``BENCH_REGEN_GOLDEN=1 pytest
tests/bench/report/test_report_render.py`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench import records
from bench.report import frame_of
from bench.report.render import (
    cost_markdown,
    excluded_markdown,
    md_table,
    results_latex,
    results_markdown,
    summary_table,
)
from bench.report.table import main_table

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
RECORDS = GOLDEN / "records"
REGEN = os.environ.get("BENCH_REGEN_GOLDEN") == "1"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing; create it with BENCH_REGEN_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; if intended, rerun with BENCH_REGEN_GOLDEN=1"


# ---------------------------------------------------------------------------------------------
# Golden files
# ---------------------------------------------------------------------------------------------
def test_results_markdown_matches_golden(golden_frame):
    check_golden("results.md", results_markdown(main_table(golden_frame)))


def test_results_latex_matches_golden(golden_frame):
    check_golden("results.tex", results_latex(main_table(golden_frame)))


def test_cost_markdown_matches_golden(golden_frame):
    check_golden("cost.md", cost_markdown(golden_frame))


def test_runs_left_out_are_listed(golden_frame):
    listed = excluded_markdown(golden_frame)
    smoke = records.load(RECORDS / "full_ft--boolq--seed7.json")
    assert smoke.run["smoke"] and smoke.result["status"] == "ok"
    assert f"| full_ft | boolq | 7 | accuracy | {smoke.result['metrics']['accuracy']:.1f} |" in listed
    for name, status, reason in (
        ("lora--gsm8k--seed1.json", "failed", "timed out after 1s (--job-timeout)"),
        ("neuroada@k=4--svamp--seed1.json", "diverged", "loss became nan at step 1"),
    ):
        result = records.load(RECORDS / name).result
        assert result["status"] == status and result["error"].startswith(reason)
        assert f"| {name} | {status} | no | {result['error']} |" in listed


# ---------------------------------------------------------------------------------------------
# Formatting on records built in code
# ---------------------------------------------------------------------------------------------
def test_pipe_tables_are_not_padded():
    text = md_table([["a|b", "1"], ["longer name", "100.00"]], ["x", "score"], ["left", "right"])
    assert text == "| x | score |\n|---|---:|\n| a|b | 1 |\n| longer name | 100.00 |"


def test_lower_is_better_metric_is_marked_in_the_header(rec):
    items = [rec(m, "t", 0, s, metric="loss", higher=False) for m, s in (("a", 3.0), ("b", 1.0), ("c", 2.0))]
    md = results_markdown(main_table(frame_of(items)))
    assert "| t (loss) ↓ |" in md
    assert "| b | 50.00 | 1.0 | 1 |" in md and "| c | 50.00 | 2.0 | 1 |" in md  # no items: no test, no bold


def test_mean_and_seed_count_without_items(rec):
    items = [rec("a", "t", s, v) for s, v in enumerate((70.0, 72.0, 74.0))]
    table = main_table(frame_of(items))
    md = results_markdown(table)
    assert "| a | 50.00 | 72.0 | 3 |" in md
    assert "t: a has runs without per-item results: no interval or test for it." in table.notes


def test_latex_escapes_names(rec):
    table = main_table(frame_of([rec("my_method", "new_task", 0, 10.0)]))
    tex = results_latex(table)
    assert r"my\_method & 50.00 & 10.0 & 1 \\" in tex  # one entry: no best, no underline
    assert r"new\_task" in tex


def test_latex_bold_display_names_and_suite_titles(rec):
    good = [True] * 160 + [False] * 40
    one_off = [False] + good[1:]  # one item worse: not significantly
    worse = [False] * 60 + good[60:]  # 30 points worse
    items = [
        rec(m, "glue_sst2", 0, 100.0 * sum(c) / len(c), suite="glue", items={"correct": c})
        for m, c in (("a", good), ("b", one_off), ("c", worse))
    ]
    table = main_table(frame_of(items))
    tex = results_latex(table)
    assert (
        "\n" + r"\multicolumn{2}{c}{} & GLUE &  \\" + "\n" + r"\cmidrule(lr){3-3}" + "\n" in tex
    )  # one task: no multicolumn
    assert r"Method & Params (\%) & SST-2 & Seeds \\" in tex
    a, b, c = (table.cells[(m, "glue_sst2")] for m in "abc")
    assert rf"a & 50.00 & \textbf{{80.0 [{a.low:.1f}, {a.high:.1f}]}} & 1 \\" in tex
    assert rf"b & 50.00 & \textbf{{79.5 [{b.low:.1f}, {b.high:.1f}]}} & 1 \\" in tex
    assert rf"c & 50.00 & 50.0 [{c.low:.1f}, {c.high:.1f}] & 1 \\" in tex
    assert r"McNemar's exact test" in tex


def test_summary_of_a_failed_run(rec):
    path, failed = rec("a", "t", 0, 1.0)
    failed.result = {"status": "failed", "error": "ValueError: x", "metrics": {}}
    assert "| a | t | 0 | failed | ValueError: x |" in summary_table(frame_of([(path, failed)]))


def test_summary_columns(rec):
    text = summary_table(frame_of([rec("a", "t", 0, 71.25)]))
    assert text.splitlines()[:2] == [
        "| method | task | seed | status | metric | trainable % | peak MiB | train tok/s | train s | eval s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    assert text.splitlines()[2] == "| a | t | 0 | ok | accuracy 71.2 | 50.0000 | 100 | 10 | – | – |"
