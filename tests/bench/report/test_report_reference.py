"""``bench report --reference paper``: fixture records beside the published numbers of
``bench/report/references.json``; the Markdown is compared with ``tests/golden/reference.md``
(regenerate with ``BENCH_REGEN_GOLDEN=1``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.errors import UsageError
from bench.report import frame_of, write_report
from bench.report.reference import DATA, load, matches, names, reference_frame, reference_markdown

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "reference.md"
LLAMA = "yahma/llama-7b-hf"
K1 = {"boolq": 69.6, "piqa": 83.6, "siqa": 80.5}  # NeuroAda k=1's published commonsense numbers


@pytest.fixture
def records(rec):
    """neuroada@k=1 on three commonsense tasks (2 seeds, LLaMA-7B, loreft), lora r=32 on boolq
    under the harness protocol, and runs that match no table (another model; k=4)."""
    out = []
    for seed, shift in ((0, 0.5), (1, -1.5)):  # means: paper - 0.5 on each task
        for task, paper in K1.items():
            out.append(
                rec(
                    "neuroada@k=1",
                    task,
                    seed,
                    paper + shift,
                    model=LLAMA,
                    method_config={"k": 1},
                    budget={"protocol": "loreft"},
                )
            )
    out.append(rec("lora", "boolq", 0, 65.0, model=LLAMA, method_config={"r": 32}, budget={"protocol": "harness"}))
    out.append(rec("neuroada@k=4", "boolq", 0, 70.0, model=LLAMA, method_config={"k": 4}))
    out.append(rec("neuroada", "boolq", 0, 70.0, model="tiny-llama", method_config={"k": 1}))
    return out


def test_the_data_file_names_a_source_for_every_table():
    data = json.loads(DATA.read_text(encoding="utf-8"))
    assert names() == ["paper"]
    for table in data["paper"]["tables"]:
        assert table["source"] and table["scores"] and table["protocol"] in ("harness", "loreft")
        # the published average is the mean of the published tasks (to the paper's rounding), or
        # the table says why not (NeuroAda k=1 commonsense: 80.0 printed, 80.4 the mean)
        mean = sum(table["scores"].values()) / len(table["scores"])
        assert abs(mean - table["average"]) < 0.06 or "average" in table.get("note", "")


def test_unknown_reference_is_a_usage_error():
    with pytest.raises(UsageError, match=r"unknown reference 'papr'; did you mean 'paper'\? available: paper"):
        load("papr")


def test_matches_by_method_config_and_model(records):
    found = matches(frame_of(records), load("paper"))
    assert [(m.label, m.table["label"]) for m in found] == [
        ("neuroada@k=1", "NeuroAda k=1 (0.020%)"),
        ("lora", "LoRA r=32"),
    ]
    k1 = found[0]
    assert k1.ours == {task: pytest.approx(paper - 0.5) for task, paper in K1.items()}
    assert k1.protocols == ["loreft"]


def test_reference_frame_differences_and_tolerance(records):
    frame = reference_frame(frame_of(records), "paper")
    k1 = frame[frame["method"] == "neuroada@k=1"]
    assert list(k1["task"]) == ["boolq", "piqa", "siqa", "average"]
    assert list(k1["delta"].round(6)) == [-0.5, -0.5, -0.5, -0.5]
    assert k1["within_tolerance"].all()
    lora = frame[frame["method"] == "lora"].set_index("task")
    assert lora.loc["boolq", "delta"] == pytest.approx(65.0 - 67.5)
    assert not lora.loc["boolq", "within_tolerance"]
    tight = reference_frame(frame_of(records), "paper", tolerance=0.4)
    assert not tight["within_tolerance"].any()


def test_reference_markdown_matches_golden(records):
    text = reference_markdown(frame_of(records), "paper")
    if os.environ.get("BENCH_REGEN_GOLDEN") == "1":
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), "reference.md changed; if intended, BENCH_REGEN_GOLDEN=1"


def test_markdown_rows_columns_and_notes(records):
    text = reference_markdown(frame_of(records), "paper")
    assert "| neuroada@k=1 | 69.1 (−0.5) | 83.1 (−0.5) | 80.0 (−0.5) | – |" in text
    assert "| paper: NeuroAda k=1 (0.020%) | 69.6 | 83.6 | 80.5 | 92.3 |" in text
    assert "Δ vs paper (±1)" in text
    assert "| −0.5 ✓ |" in text  # average over the three shared tasks
    assert "| 65.0 (−2.5 ✗) |" in text and "| −2.5 ✗ |" in text
    assert "no run of HellaS., WinoG., ARC-e, ARC-c, OBQA" in text
    assert "lora (Commonsense reasoning): our runs used protocol harness" not in text  # the LoRA row is harness
    assert "neuroada@k=4" not in text and "tiny-llama" not in text.split("_no run")[0]


def test_no_match_says_so(rec):
    text = reference_markdown(frame_of([rec("lora", "boolq", 0, 60.0)]), "paper")
    assert "_no run matches a published table (method, config and a model among: yahma/llama-7b-hf, llama-7b)_" in text


def test_write_report_adds_the_reference(tmp_path, records):
    from bench.records import save

    folder = tmp_path / "runs"
    for _, record in records:
        save(record, folder)
    text, written = write_report(folder, tmp_path / "out", plots=False, reference="paper")
    assert "## Against the paper reference" in text
    names_written = {p.name for p in written}
    assert {"reference.md", "reference.csv"} <= names_written
    csv = (tmp_path / "out" / "tables" / "reference.csv").read_text()
    assert csv.splitlines()[0] == "method,reference,suite,task,ours,paper,delta,within_tolerance"
