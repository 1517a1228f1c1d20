"""``python -m bench ls``: each section lists what the registries and tables hold; ``ls tasks``
counts eval sizes in a data dir."""

from __future__ import annotations

import argparse

import pytest

import methods
import tasks
from bench.cli import main
from bench.commands import ls
from bench.config import PRESETS
from bench.models import ALIASES

FIVE_METHODS = {"neuroada", "lora", "dora", "masked_sparse", "full_ft"}
TASK_HEADER = ["task", "suite", "kind", "metric", "protocol", "train set", "eval size"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse exits on its own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def body(out: str) -> list[str]:
    """The lines of one section, without its title and the blank line after it."""
    return [line for line in out.splitlines()[1:] if line.strip()]


def method_sections(out: str) -> tuple[list[str], list[str]]:
    """The built-in methods' lines, and the peft presets' lines after their heading."""
    lines = body(out)
    heading = next(i for i, line in enumerate(lines) if line.strip().startswith("peft presets"))
    return lines[:heading], lines[heading + 1 :]


def test_ls_lists_the_five_methods(capsys):
    code, out, _ = run_cli(capsys, "ls", "methods")
    assert code == 0
    builtins, _ = method_sections(out)
    listed = {line.split()[0] for line in builtins}
    assert FIVE_METHODS <= listed
    assert set(methods.builtins()) == listed  # peft_config comes through its presets


def test_ls_lists_the_peft_presets_with_rate_description_and_formula(capsys):
    from methods.peft_config import preset_info

    _, out, _ = run_cli(capsys, "ls", "methods")
    _, presets = method_sections(out)
    assert "--methods peft:PATH" in body(out)[len(methods.builtins())]
    assert [line.split()[0] for line in presets[::2]] == methods.presets()
    for name, line, formula in zip(methods.presets(), presets[::2], presets[1::2], strict=True):
        info = preset_info(name)
        assert f"lr={info['lr']:g}" in line and line.rstrip().endswith(info["description"])
        assert formula.split() == ["trainable:", *info["formula"].split()]
    shira = presets[2 * methods.presets().index("shira") + 1]
    assert "r * sum(d_in + d_out)" in shira


def test_ls_all_sections(capsys):
    code, out, _ = run_cli(capsys, "ls")
    assert code == 0
    for section in ("methods:", "tasks:", "suites:", "presets:", "models:"):
        assert section in out
    assert "toy_sum" in out and "smoke" in out and "smollm2-135m" in out


def test_ls_all_prints_the_sections_in_order(capsys):
    code, out, _ = run_cli(capsys, "ls")
    titles = [line for line in out.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert code == 0 and titles == [f"{s}:" for s in ls.SECTIONS]
    assert ls.SECTIONS == ["methods", "tasks", "suites", "presets", "models"]


def test_ls_methods_shows_each_default_learning_rate_and_first_sentence(capsys):
    _, out, _ = run_cli(capsys, "ls", "methods")
    lines, _ = method_sections(out)
    assert [line.split()[0] for line in lines] == methods.builtins()  # registration order
    lora = next(line for line in lines if line.split()[0] == "lora")
    assert f"lr={methods.get('lora').config_cls().lr:g}" in lora
    assert lora.rstrip().endswith(".") and "\n" not in lora


def test_ls_tasks_is_one_table_row_per_task(capsys):
    _, out, _ = run_cli(capsys, "ls", "tasks")
    lines = body(out)
    assert lines[0].split() == ["task", "suite", "kind", "metric", "protocol", "train", "set", "eval", "size"]
    assert [line.split()[0] for line in lines[1:]] == tasks.names()
    assert lines[1].split() == ["toy_sum", "toy", "generate", "accuracy", "generate-greedy", "in", "code", "32"]


def test_ls_suites_presets_and_models(capsys):
    _, out, _ = run_cli(capsys, "ls", "suites")
    assert body(out) == [f"  {s:<16} {', '.join(n)}" for s, n in tasks.suites().items()]
    assert "  toy              toy_sum, toy_mc, toy_cls" in body(out)
    _, out, _ = run_cli(capsys, "ls", "presets")
    assert [line.split()[0] for line in body(out)] == list(PRESETS) == ["smoke", "demo", "study", "default", "paper"]
    _, out, _ = run_cli(capsys, "ls", "models")
    lines = body(out)
    assert [line.split()[0] for line in lines] == list(ALIASES)
    assert lines[0].endswith("[hub: HuggingFaceTB/SmolLM2-135M-Instruct]")
    assert "[hub:" not in lines[2] and "tiny-llama" in lines[2]


def test_ls_an_unknown_section_is_a_usage_error(capsys):
    code, out, err = run_cli(capsys, "ls", "method")
    assert code == 2 and out == ""
    assert "invalid choice: 'method'" in err and err.count("\n") == 1


def test_task_rows_count_eval_sizes_in_a_data_dir(tmp_path):
    rows = {r[0]: r for r in ls.task_rows(None)}
    assert ls.task_rows(None)[0] == TASK_HEADER
    assert rows["toy_cls"] == ["toy_cls", "toy", "classify", "accuracy", "classify", "in code", "32"]
    assert rows["glue_sst2"][-2:] == ["glue_sst2/train.jsonl", "?"]  # eval size unknown without data
    (tmp_path / "glue_sst2").mkdir()
    (tmp_path / "glue_sst2" / "eval.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3}\n')  # blank lines skipped
    rows = {r[0]: r for r in ls.task_rows(str(tmp_path))}
    assert rows["glue_sst2"][-1] == "3"
    assert rows["glue_cola"][-1] == "?"  # no file for it in this data dir
    assert rows["toy_sum"][-1] == "32"  # generated: never read from the data dir


def test_ls_tasks_reads_the_data_dir_flag_and_env(tmp_path, monkeypatch, capsys):
    (tmp_path / "glue_rte").mkdir()
    (tmp_path / "glue_rte" / "eval.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    _, out, _ = run_cli(capsys, "ls", "tasks", "--data-dir", str(tmp_path))
    assert next(line for line in out.splitlines() if line.split()[:1] == ["glue_rte"]).split()[-1] == "2"
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    parser = argparse.ArgumentParser()
    ls.add_arguments(parser)
    assert parser.parse_args([]).data_dir == str(tmp_path) and parser.parse_args([]).what == "all"


def test_columns_pads_each_column_to_its_widest_cell():
    assert ls.columns([["a", "bbb", "c"], ["dddd", "e", "f"]], indent="> ") == "> a     bbb  c\n> dddd  e    f"
    assert ls.columns([["x", ""], ["yy", ""]]) == "x\nyy"  # trailing spaces stripped


@pytest.mark.parametrize("section", ls.SECTIONS)
def test_every_section_alone_exits_0(capsys, section):
    code, out, _ = run_cli(capsys, "ls", section)
    assert code == 0 and out.splitlines()[0] == f"{section}:" and out.endswith("\n\n")
