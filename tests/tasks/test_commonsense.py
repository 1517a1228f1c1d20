"""The commonsense suite (``tasks/commonsense.py``): label extraction (tabulated cases), hub
converters, and the LLM-Adapters and llm-foundry formats checked row by row on the offline data
(those tests skip, with the reason, when the data folder is absent).
"""

from __future__ import annotations

import re

import pytest

import tasks
from bench.errors import UsageError
from tasks import commonsense

COMMONSENSE = ["boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa"]


# llm-foundry ARC rows (0-based) whose gold is one option after LLM-Adapters' (correct) answer,
# and rows with a repeated option; why the ARC loglik variants read LLM-Adapters' eval file.
FOUNDRY_ARC_GOLD_OFF = {"arc_easy": {14, 26, 63, 91, 92, 151, 174, 292}, "arc_challenge": {44, 135}}
FOUNDRY_ARC_REPEATED_OPTION = {"arc_easy": {93}, "arc_challenge": {121}}


# ---------------------------------------------------------------------------------------------
# Extraction: the first whole word of the task's label set, case-insensitive
# ---------------------------------------------------------------------------------------------
COMMONSENSE_CASES = [
    # (task, response, expected)
    ("boolq", "the correct answer is true", "true"),
    ("boolq", "True", "true"),
    ("boolq", "FALSE.", "false"),
    ("boolq", "the correct answer is false, not true", "false"),  # the first one wins
    ("boolq", "that is untrue", None),  # whole words only
    ("boolq", "yes", None),
    ("boolq", "", None),
    ("piqa", "the correct answer is solution2", "solution2"),
    ("piqa", "Solution1", "solution1"),
    ("piqa", "solution12", None),
    ("piqa", "solution3", None),
    ("siqa", "the correct answer is answer3", "answer3"),
    ("siqa", "answer5", "answer5"),  # the shared answer1-5 set, as LLM-Adapters
    ("hellaswag", "the correct answer is ending4.", "ending4"),
    ("hellaswag", "ending5", None),
    ("winogrande", "Option2", "option2"),
    ("winogrande", "the first option", None),
    ("arc_easy", "the correct answer is answer1", "answer1"),
    ("arc_easy", "answer10", None),  # not answer1
    ("arc_easy", "answer10 or answer2", "answer2"),
    ("arc_challenge", "Answer4: Planetary gravity", "answer4"),
    ("arc_challenge", "answer format: answer1/answer2/answer3/answer4", "answer1"),  # an echoed format
    ("openbookqa", "answer_2", None),
    ("openbookqa", "the correct answer is\nanswer2", "answer2"),
]


@pytest.mark.parametrize(("task", "response", "expected"), COMMONSENSE_CASES)
def test_commonsense_extraction(task, response, expected):
    assert tasks.get(task).extract(response) == expected


def test_commonsense_label_sets():
    assert commonsense.LABELS["boolq"] == ("true", "false")
    assert commonsense.LABELS["arc_easy"] == ("answer1", "answer2", "answer3", "answer4", "answer5")
    assert commonsense.extract_label("Ending3", ("ending1", "ending3")) == "ending3"


# ---------------------------------------------------------------------------------------------
# Training sources and hub converters
# ---------------------------------------------------------------------------------------------
def test_per_task_train_options():
    arc = commonsense.per_task_train(tasks.get("arc_easy"))
    assert (arc.train_file, arc.train_hub) == ("arc_easy/train.jsonl", None)
    assert set(commonsense.PER_TASK_TRAIN) == set(COMMONSENSE)
    assert tasks.per_task_train(tasks.get("arc_easy")) == arc


@pytest.mark.parametrize("name", COMMONSENSE)
def test_per_task_train_rows_extract_to_their_answer(name, data_dir):
    task = commonsense.per_task_train(tasks.get(name))
    rows = task.load("train", data_dir)
    assert all(task.extract(r["output"]) == r["answer"] for r in rows)


def test_hub_converters_reproduce_local_rows(raw_rows):
    """Hub rows rebuilt from the llm-foundry files convert to the LLM-Adapters (and llm-foundry) rows."""
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


# ---------------------------------------------------------------------------------------------
# The offline data
# ---------------------------------------------------------------------------------------------
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
# Errors
# ---------------------------------------------------------------------------------------------
def test_non_empty_input_is_refused():
    row = {"instruction": "2+2?", "input": "context", "output": "4", "answer": "4"}
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
