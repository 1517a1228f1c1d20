"""The task registry and every task against the real offline data (``../shared/data``).

The data tests skip, with the reason, only when the data folder is absent. Known defects of the
staged data are listed here as constants, so that a new one (or a fix) fails a test.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

import tasks
from bench import models
from bench.errors import UsageError
from bench.registry import TASKS as REGISTRY
from tasks import _base, arithmetic, commonsense, glue
from tasks._base import HubSource, read_jsonl

COMMONSENSE = ["boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa"]
ARITHMETIC = ["multiarith", "gsm8k", "addsub", "aqua", "singleeq", "svamp", "mawps"]  # NeuroAda's columns
GLUE = ["glue_cola", "glue_sst2", "glue_mrpc", "glue_qqp", "glue_stsb", "glue_mnli", "glue_qnli", "glue_rte"]
PAPER_ORDER = COMMONSENSE + ARITHMETIC + GLUE
COMMONSENSE_MC = ["boolq_mc", "piqa_mc", "winogrande_mc", "arc_easy_mc", "arc_challenge_mc", "openbookqa_mc"]
ALL_TASKS = PAPER_ORDER + COMMONSENSE_MC
CONTAMINATED = {"addsub", "multiarith", "singleeq", "mawps"}

# math_10k rows (1-based lines of math_10k/train.jsonl) whose rationale contradicts the row's
# letter answer: the data is wrong, not the extractor (e.g. line 11 ends "The answer is 0% or
# option F." for answer C; line 197 ends "The correct answer is A) ..." for answer B).
MATH10K_BAD_REFERENCES = {11, 50, 197, 799, 897}
# llm-foundry ARC rows (0-based) whose gold is one option after LLM-Adapters' (correct) answer,
# and rows with a repeated option; why the ARC loglik variants read LLM-Adapters' eval file.
FOUNDRY_ARC_GOLD_OFF = {"arc_easy": {14, 26, 63, 91, 92, 151, 174, 292}, "arc_challenge": {44, 135}}
FOUNDRY_ARC_REPEATED_OPTION = {"arc_easy": {93}, "arc_challenge": {121}}


# ---------------------------------------------------------------------------------------------
# Registry and selection
# ---------------------------------------------------------------------------------------------
def test_all_is_the_23_paper_tasks_in_paper_order():
    assert [t.name for t in tasks.select("all")] == PAPER_ORDER
    assert len(PAPER_ORDER) == 23


def test_suites():
    assert [t.name for t in tasks.select("commonsense")] == COMMONSENSE
    assert [t.name for t in tasks.select("arithmetic")] == ARITHMETIC
    assert [t.name for t in tasks.select("glue")] == GLUE
    assert [t.name for t in tasks.select("commonsense_mc")] == COMMONSENSE_MC
    assert {t.suite for t in tasks.select("toy")} == {"toy"}
    assert set(tasks.NOT_IN_ALL) == {"toy", "commonsense_mc"}
    # module lists (STYLE: a TASKS list per suite file) match the registry
    assert [t.name for t in commonsense.TASKS] == COMMONSENSE
    assert [t.name for t in commonsense.MC_TASKS] == COMMONSENSE_MC
    assert [t.name for t in arithmetic.TASKS] == ARITHMETIC
    assert [t.name for t in glue.TASKS] == GLUE


def test_select_combines_without_duplicates():
    assert [t.name for t in tasks.select("gsm8k,all")] == ["gsm8k", *[n for n in PAPER_ORDER if n != "gsm8k"]]
    assert [t.name for t in tasks.select("all,commonsense_mc")] == ALL_TASKS
    assert [t.name for t in tasks.select("glue_rte,arc_easy_mc,glue_rte")] == ["glue_rte", "arc_easy_mc"]


def test_select_unknown_name_suggests():
    with pytest.raises(UsageError, match="did you mean 'arc_easy'"):
        tasks.select("arc_esay")


@pytest.mark.parametrize("name", ALL_TASKS)
def test_task_config_is_complete(name):
    task = tasks.get(name)
    assert task.version >= 1
    assert task.description and "\n" not in task.description
    assert task.protocol and task.metrics
    assert all(task.higher_is_better.get(m) is True for m in task.metrics)
    assert task.default_model in models.ALIASES
    assert task.eval_file and task.train_file and task.required_fields and task.train_required_fields
    assert isinstance(task.hub, HubSource)
    assert task.hub.convert is None or callable(task.hub.convert)
    assert task.contaminated_by == (("math_10k/train.jsonl",) if name in CONTAMINATED else ())
    if task.suite in ("commonsense", "commonsense_mc"):
        assert task.default_model == "smollm2-135m"
    if task.suite == "commonsense":
        assert (task.kind, task.max_new_tokens, task.train_file) == ("generate", 32, "commonsense_mix/train.jsonl")
        assert task.protocol.startswith("generate-greedy")
    if task.suite == "commonsense_mc":
        assert (task.kind, task.train_file) == ("multiple_choice", f"{name[:-3]}/train.jsonl")
        assert task.protocol.startswith("loglik")
    if task.suite == "arithmetic":
        assert (task.kind, task.max_new_tokens, task.train_file) == ("generate", 256, "math_10k/train.jsonl")
        assert task.default_model == "smollm2-135m"
    if task.suite == "glue":
        assert task.default_model == "minilm-l6"
        assert task.kind == ("regress" if name == "glue_stsb" else "classify")
        assert task.num_labels == {"glue_stsb": 1, "glue_mnli": 3}.get(name, 2)
        assert task.hub.path == "nyu-mll/glue"
        assert task.hub.eval_split == ("validation_matched" if name == "glue_mnli" else "validation")


# The papers' column labels (bench/report.py's TASK_TEX before it read them from the tasks).
DISPLAY_NAMES = {
    **{"boolq": "BoolQ", "piqa": "PIQA", "siqa": "SIQA", "hellaswag": "HellaS.", "winogrande": "WinoG."},
    **{"arc_easy": "ARC-e", "arc_challenge": "ARC-c", "openbookqa": "OBQA"},
    **{"gsm8k": "GSM8K", "svamp": "SVAMP", "aqua": "AQuA", "mawps": "MAWPS", "addsub": "AddSub"},
    **{"multiarith": "MultiArith", "singleeq": "SingleEq"},
    **{"glue_cola": "CoLA", "glue_sst2": "SST-2", "glue_mrpc": "MRPC", "glue_qqp": "QQP", "glue_stsb": "STS-B"},
    **{"glue_mnli": "MNLI", "glue_qnli": "QNLI", "glue_rte": "RTE"},
}


@pytest.mark.parametrize("name", REGISTRY.names())
def test_every_task_has_a_display_name_and_metric_directions(name):
    task = tasks.get(name)
    assert task.display_name == DISPLAY_NAMES.get(name, name)
    assert tasks.display_name(name) == task.display_name
    assert set(task.metrics) <= set(task.higher_is_better)


def test_metric_directions():
    assert tasks.get("glue_cola").higher_is_better == {"matthews_corr": True, "accuracy": True}
    assert tasks.get("glue_stsb").higher_is_better == {"pearson": True, "spearman": True}
    assert tasks.get("glue_mrpc").higher_is_better == {"f1": True, "accuracy": True}
    assert tasks.get("toy_sum").higher_is_better == {"accuracy": True}


def test_suite_titles_and_order():
    assert tasks.SUITE_TITLES == {
        "commonsense": "Commonsense reasoning",
        "arithmetic": "Arithmetic reasoning",
        "glue": "GLUE",
    }
    assert tasks.suite_order() == ["commonsense", "arithmetic", "glue", "toy", "commonsense_mc"]
    assert [tasks.suite_title(s) for s in ("glue", "toy")] == ["GLUE", "toy"]
    assert tasks.display_name("not_a_task") == "not_a_task"


def test_paper_order():
    # LoReFT's arithmetic columns; the registry (and --tasks all) keeps NeuroAda's
    arithmetic_paper = ["gsm8k", "svamp", "aqua", "mawps", "addsub", "multiarith", "singleeq"]
    assert tasks.paper_order() == COMMONSENSE + arithmetic_paper + GLUE
    assert sorted(tasks.paper_order()) == sorted(PAPER_ORDER)


def test_per_task_train_options():
    arc = commonsense.per_task_train(tasks.get("arc_easy"))
    assert (arc.train_file, arc.train_hub) == ("arc_easy/train.jsonl", None)
    assert set(commonsense.PER_TASK_TRAIN) == set(COMMONSENSE)
    gsm = arithmetic.per_task_train(tasks.get("gsm8k"))
    assert (gsm.train_file, gsm.train_required_fields) == ("gsm8k/train_orig.jsonl", ("question", "answer"))
    assert gsm.train_hub.path == "openai/gsm8k"
    with pytest.raises(UsageError, match="no per-task train file"):
        arithmetic.per_task_train(tasks.get("svamp"))


# ---------------------------------------------------------------------------------------------
# Hub path (no network: load_hub is replaced by a fake that applies the source's convert)
# ---------------------------------------------------------------------------------------------
def test_hub_loading_picks_train_hub_and_checks_fields(monkeypatch):
    calls = []

    def fake_load_hub(hub, split):
        calls.append((hub.path, hub.name, hub.train_split if split == "train" else hub.eval_split))
        row = {
            "question": "Which gas do plants take in?",
            "choices": {"text": ["oxygen", "carbon dioxide", "helium"], "label": ["A", "B", "C"]},
            "answerKey": "B",
        }
        if hub.path == "json":  # the LLM-Adapters mixture already has the local field names
            return [{"instruction": "x", "input": "", "output": "the correct answer is answer1", "answer": "answer1"}]
        return [hub.convert(row)]

    monkeypatch.setattr(_base, "load_hub", fake_load_hub)
    task = tasks.get("arc_easy")
    (eval_row,) = task.load("eval", None)
    assert eval_row["answer"] == "answer2"
    assert eval_row["instruction"].endswith("Answer3: helium\n\nAnswer format: answer1/answer2/answer3")
    task.load("train", None)
    assert calls == [("allenai/ai2_arc", "ARC-Easy", "test"), ("json", None, "train")]
    assert tasks.get("arc_easy_mc").load("eval", None)[0]["answer"] == "answer2"

    monkeypatch.setattr(_base, "load_hub", lambda hub, split: [{"instruction": "no answer"}])
    with pytest.raises(UsageError, match="missing field"):
        task.load("eval", None)


def test_hub_converters_reproduce_local_rows(raw_rows):
    """Hub rows rebuilt from the llm-foundry/GSM8K files convert to the LLM-Adapters rows."""
    arc_mc, arc = raw_rows("arc_easy/eval_mc.jsonl")[0], raw_rows("arc_easy/eval.jsonl")[0]
    hub_arc = {
        "question": arc_mc["query"].removeprefix("Question: "),
        "choices": {"text": arc_mc["choices"], "label": ["A", "B", "C", "D"]},
        "answerKey": "ABCD"[arc_mc["gold"]],
    }
    assert commonsense.to_llm_adapters_arc(hub_arc) == arc

    obqa_mc, obqa = raw_rows("openbookqa/eval_mc.jsonl")[0], raw_rows("openbookqa/eval.jsonl")[0]
    hub_obqa = {
        "question_stem": obqa_mc["query"],
        "choices": {"text": obqa_mc["choices"], "label": ["A", "B", "C", "D"]},
        "answerKey": "ABCD"[obqa_mc["gold"]],
    }
    assert commonsense.to_llm_adapters_openbookqa(hub_obqa) == obqa
    assert commonsense.to_llm_foundry_openbookqa(hub_obqa) == obqa_mc

    boolq_mc, boolq = raw_rows("boolq/eval_mc.jsonl")[0], raw_rows("boolq/eval.jsonl")[0]
    passage, question = boolq_mc["query"].removeprefix("Passage: ").split("\nQuestion: ")
    hub_boolq = {"question": question.removesuffix("?"), "passage": passage, "answer": bool(boolq_mc["gold"])}
    assert commonsense.to_llm_adapters_boolq(hub_boolq) == boolq
    assert commonsense.to_llm_foundry_boolq(hub_boolq) == boolq_mc

    piqa_mc, piqa = raw_rows("piqa/eval_mc.jsonl")[0], raw_rows("piqa/eval.jsonl")[0]
    goal = piqa_mc["query"].removeprefix("Question: ").removesuffix("\n")
    hub_piqa = {"goal": goal, "sol1": piqa_mc["choices"][0], "sol2": piqa_mc["choices"][1], "label": piqa_mc["gold"]}
    assert commonsense.to_llm_adapters_piqa(hub_piqa) == piqa
    assert commonsense.to_llm_foundry_piqa(hub_piqa) == piqa_mc

    wino_mc, wino = raw_rows("winogrande/eval_mc.jsonl")[0], raw_rows("winogrande/eval.jsonl")[0]
    hub_wino = {
        "sentence": "Sarah was a much better surgeon than Maria so _ always got the easier cases.",
        "option1": "Sarah",
        "option2": "Maria",
        "answer": "2",
    }
    assert commonsense.to_llm_adapters_winogrande(hub_wino) == wino
    assert commonsense.to_llm_foundry_winogrande(hub_wino) == wino_mc

    hub_siqa = {
        "context": "Tracy didn't go home that evening and resisted Riley's attacks.",
        "question": "What does Tracy need to do before this?",
        "answerA": "make a new plan",
        "answerB": "Go home and see Riley",
        "answerC": "Find somewhere to go",
        "label": "3",
    }
    assert commonsense.to_llm_adapters_siqa(hub_siqa) == raw_rows("siqa/eval.jsonl")[0]

    hella = raw_rows("hellaswag/eval.jsonl")[0]
    endings = re.split(r"(?:^| )Ending\d: ", hella["instruction"].split("\n\n")[1])[1:]
    head = hella["instruction"].split("sentence: ", 1)[1].split("\n\n")[0]
    activity, ctx = head.split(": ", 1)
    hub_hella = {"activity_label": activity, "ctx": ctx, "endings": endings, "label": "2"}
    assert commonsense.to_llm_adapters_hellaswag(hub_hella) == hella

    gsm = raw_rows("gsm8k/eval_orig.jsonl")[0]
    converted = arithmetic.gsm8k_to_llm_adapters(gsm)
    assert (converted["instruction"], converted["answer"]) == (gsm["question"], "18")
    assert tasks.get("gsm8k").to_eval(converted)["reference"] == 18.0

    aqua = raw_rows("aqua/eval.jsonl")[0]
    hub_aqua = {
        "question": aqua["instruction"].split(" Answer Choices: ")[0],
        "options": ["A)23.65", "B)1000", "C)35.62", "D)2.65", "E)1023.65"],
        "rationale": "...",
        "correct": "A",
    }
    assert arithmetic.aqua_to_llm_adapters(hub_aqua)["instruction"] == aqua["instruction"]


# ---------------------------------------------------------------------------------------------
# Every task on the real data
# ---------------------------------------------------------------------------------------------
def _check_item(task, item, split):
    if split == "train" and task.kind in ("generate", "multiple_choice"):
        assert set(item) == {"prompt", "target"}
        assert isinstance(item["prompt"], str) and item["prompt"].strip()
        assert isinstance(item["target"], str) and item["target"].strip()
        if task.kind == "multiple_choice":
            assert item["target"].startswith(" ") and not item["prompt"].endswith(" ")
    elif task.kind == "generate":
        assert set(item) == {"prompt", "reference"}
        assert item["prompt"].endswith("### Response:\n")
        if task.suite == "commonsense":
            assert item["reference"] in commonsense.LABELS[task.name]
        elif task.name == "aqua":
            assert item["reference"] in ("A", "B", "C", "D", "E")
        else:
            assert isinstance(item["reference"], float)
    elif task.kind == "multiple_choice":
        if "contexts" in item:
            assert set(item) == {"contexts", "continuation", "gold"}
            options, continuation = item["contexts"], item["continuation"]
            assert continuation.startswith(" ") and continuation.strip()
        else:
            assert set(item) == {"context", "choices", "gold"}
            options = item["choices"]
            assert isinstance(item["context"], str) and item["context"].strip()
            assert all(c.startswith(" ") and c.strip() for c in options)
        assert len(options) >= 2 and all(isinstance(o, str) for o in options)
        assert isinstance(item["gold"], int) and 0 <= item["gold"] < len(options)
    else:
        assert set(item) == {"text", "text_pair", "label"}
        assert isinstance(item["text"], str) and item["text"].strip()
        assert item["text_pair"] is None or isinstance(item["text_pair"], str)
        if task.kind == "regress":
            assert isinstance(item["label"], float) and 0.0 <= item["label"] <= 5.0
        else:
            assert isinstance(item["label"], int) and 0 <= item["label"] < task.num_labels


@pytest.mark.parametrize("split", ["eval", "train"])
@pytest.mark.parametrize("name", ALL_TASKS)
def test_every_row_loads_and_formats(name, split, data_dir):
    task = tasks.get(name)
    rows = task.load(split, data_dir)
    assert len(rows) >= 200
    to_item = task.to_eval if split == "eval" else task.to_train
    for i, row in enumerate(rows, 1):
        try:
            _check_item(task, to_item(row), split)
        except Exception as err:
            raise AssertionError(f"{name} {split} row {i}: {err!r}") from err


@pytest.mark.parametrize("name", ["gsm8k"])
def test_per_task_train_rows_format(name, data_dir):
    task = arithmetic.per_task_train(tasks.get(name))
    for row in task.load("train", data_dir):
        item = task.to_train(row)
        assert item["prompt"].endswith("### Response:\n")
        assert arithmetic.extract_number(item["target"]) == arithmetic.parse_reference(row["answer"])
    for cs_name in COMMONSENSE:
        cs_task = commonsense.per_task_train(tasks.get(cs_name))
        rows = cs_task.load("train", data_dir)
        assert all(cs_task.extract(r["output"]) == r["answer"] for r in rows)


@pytest.mark.parametrize("name", COMMONSENSE)
def test_commonsense_gold_extracts_from_output(name, raw_rows):
    """``extract(row["output"]) == row["answer"]`` on every eval and per-task train row."""
    task = tasks.get(name)
    for rel in (task.eval_file, commonsense.PER_TASK_TRAIN[name]):
        bad = [i for i, r in enumerate(raw_rows(rel), 1) if task.extract(r["output"]) != r["answer"]]
        assert not bad, f"{rel}: lines {bad[:20]} do not extract to their answer"


def test_mixture_rows_extract_with_their_task(raw_rows):
    """Every mixture row belongs to exactly one label set, and its output extracts to its answer."""
    label_sets = {labels for labels in commonsense.LABELS.values()}
    for i, row in enumerate(raw_rows("commonsense_mix/train.jsonl"), 1):
        owners = [labels for labels in label_sets if row["answer"] in labels]
        assert len(owners) == 1, f"line {i}: answer {row['answer']!r}"
        assert commonsense.extract_label(row["output"], owners[0]) == row["answer"], f"line {i}"


def test_math10k_outputs_extract_to_their_answer(raw_rows):
    bad = set()
    for i, row in enumerate(raw_rows("math_10k/train.jsonl"), 1):
        if row["answer"].strip() in ("A", "B", "C", "D", "E"):
            ok = arithmetic.extract_option_letter(row["output"]) == row["answer"].strip()
        else:
            ok = arithmetic.numbers_match(
                arithmetic.extract_number(row["output"]), arithmetic.parse_reference(row["answer"])
            )
        if not ok:
            bad.add(i)
    assert bad == MATH10K_BAD_REFERENCES


@pytest.mark.parametrize("name", ARITHMETIC)
def test_arithmetic_references_are_extractable(name, data_dir):
    """The eval rows' ``output`` is a model-written rationale, not a reference (MAWPS has none),
    so check instead that every reference survives the extractor in a typical answer sentence."""
    task = tasks.get(name)
    for i, row in enumerate(task.load("eval", data_dir), 1):
        reference = task.to_eval(row)["reference"]
        if name == "aqua":
            assert task.extract(f"The answer is ({reference}).") == reference, f"line {i}"
        else:
            answer = row["answer"]
            assert arithmetic.numbers_match(task.extract(f"The answer is {answer}."), reference), f"line {i}"
            assert arithmetic.numbers_match(task.extract(f"So it is {reference:,}"), reference), f"line {i}"


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text).strip().lower()


@pytest.mark.parametrize("name", ARITHMETIC + COMMONSENSE)
def test_contamination_is_flagged(name, raw_rows):
    """An eval problem found verbatim in the train file must be flagged (the local train files
    are samples, so a flagged task may show no overlap here)."""
    task = tasks.get(name)
    train = {_norm(r["instruction"]) for r in raw_rows(task.train_file)}
    overlap = sum(_norm(r["instruction"]) in train for r in raw_rows(task.eval_file))
    if overlap:
        assert task.train_file in task.contaminated_by, f"{name}: {overlap} eval problems in {task.train_file}"


MC_FAMILY = {"boolq": "boolq", "piqa": "piqa", "arc_easy": "qa", "arc_challenge": "qa", "openbookqa": "qa"}


def _question_key(context: str) -> str:
    return context.rsplit("Question: ", 1)[-1]  # BoolQ: without llm-foundry's passage


@pytest.mark.parametrize("name", MC_FAMILY)
def test_mc_training_format_matches_llm_foundry(name, raw_rows):
    """LLM-Adapters rows parsed the way the loglik variants train (and the ARC ones evaluate)
    give llm-foundry's items for the same questions, gold included, but for known defects."""
    stem_only = name == "openbookqa"
    foundry = [commonsense.mc_to_eval(r, stem_only=stem_only) for r in raw_rows(f"{name}/eval_mc.jsonl")]
    gold_off, repeated = set(), set()
    for i, row in enumerate(raw_rows(f"{name}/eval.jsonl")):
        item = commonsense.mc_item(row, family=MC_FAMILY[name], stem_only=stem_only)
        assert tasks.get(f"{name}_mc").to_train(row) == {
            "prompt": item["context"],
            "target": item["choices"][item["gold"]],
        }
        key = _question_key(item["context"])
        same = [f for f in foundry if _question_key(f["context"]) == key and f["choices"] == item["choices"]]
        if not same:
            repeated.add(i)
        elif any(f["gold"] != item["gold"] for f in same):
            gold_off.add(i)
            assert all(f["gold"] == item["gold"] + 1 for f in same)
    assert gold_off == FOUNDRY_ARC_GOLD_OFF.get(name, set())
    assert repeated == FOUNDRY_ARC_REPEATED_OPTION.get(name, set())


def test_winogrande_mc_training_matches_llm_foundry(raw_rows):
    task = tasks.get("winogrande_mc")
    foundry = [task.to_eval(r) for r in raw_rows("winogrande/eval_mc.jsonl")]
    for i, row in enumerate(raw_rows("winogrande/eval.jsonl"), 1):
        trained = task.to_train(row)
        assert any(
            f["contexts"][f["gold"]] == trained["prompt"] and f["continuation"] == trained["target"] for f in foundry
        ), f"winogrande/eval.jsonl line {i}"


# ---------------------------------------------------------------------------------------------
# Errors name the file and the line
# ---------------------------------------------------------------------------------------------
def test_read_jsonl_broken_line(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text('{"instruction": "a", "answer": "true"}\n{"instruction": "b", \n')
    with pytest.raises(UsageError, match=rf"{re.escape(str(path))}:2: not valid JSON"):
        read_jsonl(path)


def test_read_jsonl_not_an_object(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text('{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(UsageError, match=rf"{re.escape(str(path))}:3: expected a JSON object"):
        read_jsonl(path)


def test_task_load_missing_field_names_file_and_line(tmp_path, raw_rows):
    rows = raw_rows("gsm8k/eval.jsonl")[:3]
    broken = dict(rows[1])
    del broken["answer"]
    (tmp_path / "gsm8k").mkdir()
    path = tmp_path / "gsm8k" / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (rows[0], broken, rows[2])))
    with pytest.raises(UsageError, match=rf"{re.escape(str(path))}:2: missing field\(s\) answer"):
        tasks.get("gsm8k").load("eval", tmp_path)
    with pytest.raises(UsageError, match="not found"):
        tasks.get("gsm8k").load("train", tmp_path)


def test_non_empty_input_is_refused():
    row = {"instruction": "2+2?", "input": "context", "output": "4", "answer": "4"}
    with pytest.raises(UsageError, match="non-empty 'input'"):
        tasks.get("gsm8k").to_eval(row)
    with pytest.raises(UsageError, match="non-empty 'input'"):
        tasks.get("boolq").to_train(row)


def test_unparseable_mc_training_row_names_the_format():
    with pytest.raises(UsageError, match="LLM-Adapters' qa format"):
        tasks.get("arc_easy_mc").to_train({"instruction": "What?", "answer": "answer1"})
    row = {
        "instruction": "Please choose the correct answer to the question: Q?\n\nAnswer1: a Answer2: b\n\n"
        "Answer format: answer1/answer2",
        "answer": "answer7",
    }
    with pytest.raises(UsageError, match="names none of the 2 options"):
        tasks.get("arc_easy_mc").to_train(row)
    assert tasks.get("arc_easy_mc").to_train({**row, "answer": "answer2"}) == {
        "prompt": "Question: Q?\nAnswer:",
        "target": " b",
    }


def test_task_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        tasks.get("gsm8k").version = 2  # type: ignore[misc]
    assert REGISTRY.get("glue_cola") is glue.GLUE_COLA


def test_a_metric_without_direction_is_refused():
    cola = tasks.get("glue_cola")
    with pytest.raises(ValueError, match=r"task glue_cola: metric 'matthews_corr' has no direction; add higher_is_b"):
        dataclasses.replace(cola, higher_is_better={"accuracy": True})
    assert dataclasses.replace(cola, display_name="").display_name == "glue_cola"
