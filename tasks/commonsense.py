"""Commonsense reasoning: the eight tasks of LLM-Adapters, LoReFT and NeuroAda, plus loglik variants.

Suite ``commonsense`` (the papers' column order): boolq, piqa, siqa, hellaswag, winogrande,
arc_easy, arc_challenge, openbookqa.

- **Data**: LLM-Adapters' files (``instruction``/``input``/``output``/``answer``; the instruction
  lists the options and the answer format, ``output`` is "the correct answer is answer1").
  From the hub, each task's own dataset is converted into that format (``to_llm_adapters_*``).
- **Training** follows the papers: one mixture, ``commonsense_mix/train.jsonl`` locally
  (commonsense_170k from the hub), is the train file of all eight tasks. Per-task training is
  an option: :data:`PER_TASK_TRAIN` and :func:`per_task_train`.
- **Evaluation** ("generate-greedy"): the Alpaca prompt of training (the same text, unlike
  LLM-Adapters whose evaluation prompt differs in whitespace), greedy decoding (LLM-Adapters'
  script in fact uses 4 beams), 32 new tokens; the answer is the first word of the task's label
  set in the response (whole word, case-insensitive), exact match with the row's ``answer``.

Suite ``commonsense_mc``: the loglik multiple-choice variant ``<task>_mc`` of the six tasks with
an llm-foundry file (``<task>/eval_mc.jsonl``: ``query``/``choices``/``gold``; WinoGrande
``context_options``/``continuation``/``gold``), scored as lm-eval does (``Question: ...\\nAnswer:``
plus `` choice``; WinoGrande by partial scoring, one context per option). They train per task on
``<task>/train.jsonl``, whose LLM-Adapters rows are parsed back into the same context/choices.
The two ARC variants evaluate on LLM-Adapters' ``eval.jsonl`` parsed the same way (the same
questions), because llm-foundry's ARC gold is one option off on some items (see ``_FOUNDRY``).
``--tasks all`` and ``--tasks commonsense`` leave them out (no double runs); name the suite
(``--tasks commonsense_mc``) or a task to run them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from functools import partial

from bench.errors import UsageError
from bench.registry import TASKS as REGISTRY
from tasks._base import HubSource, TaskConfig, accuracy, alpaca_prompt

VERSION = 1
MODEL = "smollm2-135m"
MAX_NEW_TOKENS = 32  # LLM-Adapters / LoReFT / NeuroAda: the label fits in a few tokens
MIX_TRAIN = "commonsense_mix/train.jsonl"
# The full commonsense_170k mixture, as LLM-Adapters ships it (pinned to the commit of our data).
_LLM_ADAPTERS = (
    "https://raw.githubusercontent.com/AGI-Edgerunners/LLM-Adapters/816657208af4db747803f87ba40a4c71383fed7a"
)
MIX_HUB = HubSource(
    "json", train_split="train", data_files={"train": f"{_LLM_ADAPTERS}/ft-training_set/commonsense_170k.json"}
)

NAMES = ("boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa")
DISPLAY_NAMES = {
    "boolq": "BoolQ",
    "piqa": "PIQA",
    "siqa": "SIQA",
    "hellaswag": "HellaS.",
    "winogrande": "WinoG.",
    "arc_easy": "ARC-e",
    "arc_challenge": "ARC-c",
    "openbookqa": "OBQA",
}
"""Table labels (the papers' abbreviations); the ``_mc`` variants use their names."""
PER_TASK_TRAIN = {name: f"{name}/train.jsonl" for name in NAMES}
"""Each task's own train file, an alternative to the shared mixture (see :func:`per_task_train`)."""

LABELS: dict[str, tuple[str, ...]] = {
    "boolq": ("true", "false"),
    "piqa": ("solution1", "solution2"),
    # LLM-Adapters matches answer1-answer5 for SIQA, ARC and OBQA alike (ARC has 3-5 options).
    "siqa": tuple(f"answer{i}" for i in range(1, 6)),
    "hellaswag": tuple(f"ending{i}" for i in range(1, 5)),
    "winogrande": ("option1", "option2"),
    "arc_easy": tuple(f"answer{i}" for i in range(1, 6)),
    "arc_challenge": tuple(f"answer{i}" for i in range(1, 6)),
    "openbookqa": tuple(f"answer{i}" for i in range(1, 6)),
}


# ---------------------------------------------------------------------------------------------
# Answer extraction (pure)
# ---------------------------------------------------------------------------------------------
def extract_label(response: str, labels: Sequence[str]) -> str | None:
    """The first word of ``labels`` in ``response`` (whole word, case-insensitive), lowercased.

    Whole words, so ``answer10`` or ``untrue`` match nothing; LLM-Adapters matches substrings,
    case-sensitively (``True`` would miss there).
    """
    pattern = r"\b(" + "|".join(re.escape(label) for label in labels) + r")\b"
    match = re.search(pattern, response, flags=re.IGNORECASE)
    return match.group(1).lower() if match else None


# ---------------------------------------------------------------------------------------------
# Generate variant: Alpaca prompt, target = the row's output
# ---------------------------------------------------------------------------------------------
def _instruction(row: dict) -> str:
    if row.get("input"):
        # LLM-Adapters rows never carry an input; a different prompt template would be needed.
        raise UsageError(f"row has a non-empty 'input' ({row['input'][:60]!r}); these tasks use the instruction only")
    return row["instruction"]


def generate_to_train(row: dict) -> dict:
    return {"prompt": alpaca_prompt(_instruction(row)), "target": row["output"]}


def generate_to_eval(row: dict) -> dict:
    return {"prompt": alpaca_prompt(_instruction(row)), "reference": row["answer"]}


# ---------------------------------------------------------------------------------------------
# Hub rows -> LLM-Adapters rows (the exact instruction texts of LLM-Adapters' files)
# ---------------------------------------------------------------------------------------------
def _la_row(instruction: str, answer: str) -> dict:
    return {"instruction": instruction, "input": "", "output": f"the correct answer is {answer}", "answer": answer}


def _answer_block(word: str, texts: Sequence[str]) -> str:
    return " ".join(f"{word}{i}: {t}" for i, t in enumerate(texts, 1))


def _answer_format(word: str, n: int) -> str:
    return "Answer format: " + "/".join(f"{word}{i}" for i in range(1, n + 1))


def to_llm_adapters_boolq(row: dict) -> dict:
    """``google/boolq`` (question, answer: bool)."""
    return _la_row(
        f"Please answer the following question with true or false, question: {row['question']}?\n\n"
        "Answer format: true/false",
        "true" if row["answer"] else "false",
    )


def to_llm_adapters_piqa(row: dict) -> dict:
    """``baber/piqa`` (goal, sol1, sol2, label 0/1)."""
    return _la_row(
        f"Please choose the correct solution to the question: {row['goal']}\n\n"
        f"Solution1: {row['sol1']}\n\nSolution2: {row['sol2']}\n\nAnswer format: solution1/solution2",
        f"solution{int(row['label']) + 1}",
    )


def to_llm_adapters_siqa(row: dict) -> dict:
    """``lighteval/siqa`` (context, question, answerA-C, label "1"-"3")."""
    options = [row["answerA"], row["answerB"], row["answerC"]]
    return _la_row(
        f"Please choose the correct answer to the question: {row['context']} {row['question']}\n\n"
        f"{_answer_block('Answer', options)}\n\n{_answer_format('answer', 3)}",
        f"answer{int(row['label'])}",
    )


def to_llm_adapters_hellaswag(row: dict) -> dict:
    """``Rowan/hellaswag`` (activity_label, ctx = ctx_a + " " + ctx_b, endings, label "0"-"3")."""
    endings = list(row["endings"])
    return _la_row(
        f"Please choose the correct ending to complete the given sentence: {row['activity_label']}: {row['ctx']}\n\n"
        f"{_answer_block('Ending', endings)}\n\n{_answer_format('ending', len(endings))}",
        f"ending{int(row['label']) + 1}",
    )


def to_llm_adapters_winogrande(row: dict) -> dict:
    """``allenai/winogrande`` (sentence with ``_``, option1, option2, answer "1"/"2")."""
    return _la_row(
        "Please choose the correct answer to fill in the blank to complete the given sentence: "
        f"{row['sentence']}\n\nOption1: {row['option1']} Option2: {row['option2']} Answer format: option1/option2",
        f"option{int(row['answer'])}",
    )


def _question_and_choices(row: dict, question_key: str) -> tuple[str, list[str], int]:
    labels = list(row["choices"]["label"])
    key = row["answerKey"].strip()
    return row[question_key], list(row["choices"]["text"]), labels.index(key)


def _to_llm_adapters_qa(row: dict, question_key: str) -> dict:
    question, texts, gold = _question_and_choices(row, question_key)
    return _la_row(
        f"Please choose the correct answer to the question: {question}\n\n"
        f"{_answer_block('Answer', texts)}\n\n{_answer_format('answer', len(texts))}",
        f"answer{gold + 1}",
    )


to_llm_adapters_arc = partial(_to_llm_adapters_qa, question_key="question")
"""``allenai/ai2_arc`` (question, choices {text, label}, answerKey)."""
to_llm_adapters_openbookqa = partial(_to_llm_adapters_qa, question_key="question_stem")
"""``allenai/openbookqa`` main (question_stem, choices {text, label}, answerKey)."""


# Real hub datasets (script-free parquet versions: baber/piqa and lighteval/siqa are the copies
# lm-eval loads, since ybisk/piqa and allenai/social_i_qa are loading scripts datasets>=4 refuses).
# Eval splits are LLM-Adapters' test sets: the validation split where the test has no labels.
HUB: dict[str, tuple[HubSource, Callable[[dict], dict]]] = {
    "boolq": (HubSource("google/boolq", eval_split="validation"), to_llm_adapters_boolq),
    "piqa": (HubSource("baber/piqa", eval_split="validation"), to_llm_adapters_piqa),
    "siqa": (HubSource("lighteval/siqa", eval_split="validation"), to_llm_adapters_siqa),
    "hellaswag": (HubSource("Rowan/hellaswag", eval_split="validation"), to_llm_adapters_hellaswag),
    "winogrande": (
        HubSource("allenai/winogrande", "winogrande_xl", eval_split="validation"),
        to_llm_adapters_winogrande,
    ),
    "arc_easy": (HubSource("allenai/ai2_arc", "ARC-Easy", eval_split="test"), to_llm_adapters_arc),
    "arc_challenge": (HubSource("allenai/ai2_arc", "ARC-Challenge", eval_split="test"), to_llm_adapters_arc),
    "openbookqa": (HubSource("allenai/openbookqa", "main", eval_split="test"), to_llm_adapters_openbookqa),
}


def _hub(name: str, convert: Callable[[dict], dict] | None = None) -> HubSource:
    source, la_convert = HUB[name]
    return dataclasses.replace(source, convert=convert or la_convert)


# ---------------------------------------------------------------------------------------------
# Loglik variant: contexts and choices the lm-eval way
# ---------------------------------------------------------------------------------------------
def _question_context(question: str) -> str:
    return f"{question.rstrip()}\nAnswer:"


def mc_to_eval(row: dict, *, stem_only: bool = False) -> dict:
    """An llm-foundry row -> ``{"context", "choices", "gold"}`` (choices with a leading space)."""
    context = row["query"] if stem_only else _question_context(row["query"])
    return {"context": context, "choices": [" " + c for c in row["choices"]], "gold": int(row["gold"])}


def winogrande_mc_to_eval(row: dict) -> dict:
    """Partial scoring: each option fills the blank of its own context; the rest is shared."""
    contexts = list(row["context_options"])
    return {"contexts": contexts, "continuation": " " + row["continuation"], "gold": int(row["gold"])}


_MC_PARSE = {
    "boolq": r"Please answer the following question with true or false, question: (?P<q>.*)\n\n"
    r"Answer format: true/false",
    "piqa": r"Please choose the correct solution to the question: (?P<q>.*)\n\nSolution1: (?P<s1>.*)\n\n"
    r"Solution2: (?P<s2>.*)\n\nAnswer format: solution1/solution2",
    "qa": r"Please choose the correct answer to the question: (?P<q>.*)\n\n(?P<block>Answer1: .*)\n\n"
    r"Answer format: \S+",
    "winogrande": r"Please choose the correct answer to fill in the blank to complete the given sentence: "
    r"(?P<q>.*)\n\nOption1: (?P<o1>.*) Option2: (?P<o2>.*) Answer format: option1/option2",
}


def parse_llm_adapters(row: dict, family: str) -> tuple[str, list[str], int]:
    """An LLM-Adapters row -> (question or sentence, options, gold index); ``family``: boolq,
    piqa, qa (ARC, OBQA, SIQA) or winogrande. BoolQ's options are ``["no", "yes"]``."""
    match = re.fullmatch(_MC_PARSE[family], row["instruction"], flags=re.DOTALL)
    if match is None:
        raise UsageError(
            f"instruction is not in LLM-Adapters' {family} format: {row['instruction'][:80]!r}; "
            "these tasks train on LLM-Adapters files (instruction/input/output/answer)"
        )
    answer = row["answer"].strip().lower()
    gold = int(re.sub(r"\D", "", answer) or 0) - 1
    if family == "boolq":
        return match["q"].strip(), ["no", "yes"], int(answer == "true")
    if family == "piqa":
        options = [match["s1"], match["s2"]]
    elif family == "winogrande":
        options = [match["o1"], match["o2"]]
    else:
        options = re.split(r"(?:^| )Answer\d: ", match["block"])[1:]
    if not 0 <= gold < len(options):
        raise UsageError(f"answer {row['answer']!r} names none of the {len(options)} options of {family} row")
    return match["q"].strip(), [o.strip() for o in options], gold


def mc_item(row: dict, *, family: str, stem_only: bool = False) -> dict:
    """An LLM-Adapters row -> ``{"context", "choices", "gold"}`` in the lm-eval format of
    :func:`mc_to_eval` (``Question: {q}\\nAnswer:``, or the bare stem for OpenBookQA)."""
    question, options, gold = parse_llm_adapters(row, family)
    # BoolQ: LLM-Adapters' rows have no passage, so these lack the "Passage: ..." of eval_mc.
    context = question if stem_only else _question_context(f"Question: {question}")
    return {"context": context, "choices": [" " + o for o in options], "gold": gold}


def mc_to_train(row: dict, *, family: str, stem_only: bool = False) -> dict:
    """An LLM-Adapters train row -> the eval format's context + " " + gold choice."""
    item = mc_item(row, family=family, stem_only=stem_only)
    return {"prompt": item["context"], "target": item["choices"][item["gold"]]}


def winogrande_mc_to_train(row: dict) -> dict:
    sentence, options, gold = parse_llm_adapters(row, "winogrande")
    blank = sentence.index("_")
    return {"prompt": sentence[:blank] + options[gold], "target": " " + sentence[blank + 1 :].strip()}


# Hub rows -> llm-foundry rows (the eval_mc.jsonl fields), for the loglik variants' eval splits.
def to_llm_foundry_openbookqa(row: dict) -> dict:
    question, texts, gold = _question_and_choices(row, "question_stem")
    return {"query": question, "choices": texts, "gold": gold}


def to_llm_foundry_piqa(row: dict) -> dict:
    choices = [row["sol1"].strip(), row["sol2"].strip()]
    return {"query": f"Question: {row['goal']}\n", "choices": choices, "gold": int(row["label"])}


def to_llm_foundry_boolq(row: dict) -> dict:
    query = f"Passage: {row['passage']}\nQuestion: {row['question']}?"
    return {"query": query, "choices": ["no", "yes"], "gold": int(bool(row["answer"]))}


def to_llm_foundry_winogrande(row: dict) -> dict:
    sentence = row["sentence"]
    blank = sentence.index("_")
    return {
        "context_options": [sentence[:blank] + row["option1"], sentence[:blank] + row["option2"]],
        "continuation": sentence[blank + 1 :].strip(),
        "gold": int(row["answer"]) - 1,
    }


# ---------------------------------------------------------------------------------------------
# Task configs
# ---------------------------------------------------------------------------------------------
_PROTOCOL = (
    "generate-greedy: alpaca prompt (as in training), greedy, max_new_tokens=32; "
    "answer = first whole-word, case-insensitive match of {labels} in the response; exact match"
)
_DESCRIPTIONS = {
    "boolq": "BoolQ yes/no questions without passage (LLM-Adapters format), answered true/false",
    "piqa": "PIQA physical commonsense, pick solution1/solution2",
    "siqa": "Social IQa social commonsense, pick answer1-3",
    "hellaswag": "HellaSwag sentence endings, pick ending1-4 (local eval rows: HellaSwag train split)",
    "winogrande": "WinoGrande pronoun-style blanks, pick option1/option2",
    "arc_easy": "ARC-Easy grade-school science, pick answer1-5",
    "arc_challenge": "ARC-Challenge grade-school science, pick answer1-5",
    "openbookqa": "OpenBookQA elementary science, pick answer1-4",
}


def _labels_text(labels: tuple[str, ...]) -> str:
    return "/".join(labels)


def _generate_task(name: str) -> TaskConfig:
    labels = LABELS[name]
    return TaskConfig(
        name=name,
        suite="commonsense",
        kind="generate",
        version=VERSION,
        metrics=("accuracy",),
        to_train=generate_to_train,
        to_eval=generate_to_eval,
        score=accuracy,
        default_model=MODEL,
        eval_file=f"{name}/eval.jsonl",
        train_file=MIX_TRAIN,
        required_fields=("instruction", "answer"),
        train_required_fields=("instruction", "output"),
        hub=_hub(name),
        train_hub=MIX_HUB,
        extract=partial(extract_label, labels=labels),
        protocol=_PROTOCOL.format(labels=_labels_text(labels)),
        max_new_tokens=MAX_NEW_TOKENS,
        higher_is_better={"accuracy": True},
        description=_DESCRIPTIONS[name],
        display_name=DISPLAY_NAMES[name],
    )


def per_task_train(task: TaskConfig) -> TaskConfig:
    """``task`` trained on its own train split (``<task>/train.jsonl`` or its hub dataset's
    train split) instead of the shared mixture."""
    if task.name not in PER_TASK_TRAIN:
        raise UsageError(f"task '{task.name}' has no per-task train file; those that do: {', '.join(PER_TASK_TRAIN)}")
    return dataclasses.replace(task, train_file=PER_TASK_TRAIN[task.name], train_hub=None)


BOOLQ, PIQA, SIQA, HELLASWAG, WINOGRANDE, ARC_EASY, ARC_CHALLENGE, OPENBOOKQA = (
    REGISTRY.register(_generate_task(name)) for name in NAMES
)
TASKS = [BOOLQ, PIQA, SIQA, HELLASWAG, WINOGRANDE, ARC_EASY, ARC_CHALLENGE, OPENBOOKQA]


_MC_PROTOCOL = (
    "loglik: sum log p(choice | context), lm-eval prompts ({prompt}); argmax vs gold; "
    "eval rows: {source}; trained per task on the task's own train file"
)
_FOUNDRY = "llm-foundry eval_mc.jsonl"
# llm-foundry's ARC files point one option too far on some items (8/300 of our ARC-Easy rows,
# 2/300 ARC-Challenge; apparently those whose ARC answerKey is numeric, "1"-"4", read as a 0-based
# index), and repeat an option in one item each: the ARC variants read LLM-Adapters' eval file
# instead (the same questions and options, correct answers; tests/tasks checks the difference).
_LLM_ADAPTERS_EVAL = "LLM-Adapters eval.jsonl (llm-foundry's ARC gold is one option off on some items)"


def _mc_task(
    name: str,
    *,
    to_eval: Callable[[dict], dict],
    to_train: Callable[[dict], dict],
    eval_convert: Callable[[dict], dict] | None,
    prompt: str,
    description: str,
    llm_adapters_eval: bool = False,
) -> TaskConfig:
    if llm_adapters_eval:
        eval_file, required = f"{name}/eval.jsonl", ("instruction", "answer")
    elif name == "winogrande":
        eval_file, required = f"{name}/eval_mc.jsonl", ("context_options", "continuation", "gold")
    else:
        eval_file, required = f"{name}/eval_mc.jsonl", ("query", "choices", "gold")
    return TaskConfig(
        name=f"{name}_mc",
        suite="commonsense_mc",
        kind="multiple_choice",
        version=VERSION,
        metrics=("accuracy",),
        to_train=to_train,
        to_eval=to_eval,
        score=accuracy,
        default_model=MODEL,
        eval_file=eval_file,
        train_file=PER_TASK_TRAIN[name],
        required_fields=required,
        train_required_fields=("instruction", "answer"),
        hub=_hub(name, eval_convert),
        train_hub=_hub(name),  # the same dataset's train split, in LLM-Adapters' format
        protocol=_MC_PROTOCOL.format(prompt=prompt, source=_LLM_ADAPTERS_EVAL if llm_adapters_eval else _FOUNDRY),
        # The evaluator also reports accuracy_norm (log-likelihood per character).
        higher_is_better={"accuracy": True, "accuracy_norm": True},
        description=description,
        display_name=f"{name}_mc",
    )


_QA = "'Question: {q}\\nAnswer:' + ' ' + choice"
BOOLQ_MC, PIQA_MC, WINOGRANDE_MC, ARC_EASY_MC, ARC_CHALLENGE_MC, OPENBOOKQA_MC = (
    REGISTRY.register(task)
    for task in (
        _mc_task(
            "boolq",
            to_eval=mc_to_eval,
            to_train=partial(mc_to_train, family="boolq"),
            eval_convert=to_llm_foundry_boolq,
            prompt="'Passage: {p}\\nQuestion: {q}?\\nAnswer:' + ' no'/' yes'; train rows have no passage",
            description="BoolQ with passage, no/yes by log-likelihood (trains without passages)",
        ),
        _mc_task(
            "piqa",
            to_eval=mc_to_eval,
            to_train=partial(mc_to_train, family="piqa"),
            eval_convert=to_llm_foundry_piqa,
            prompt=_QA,
            description="PIQA, the two solutions scored by log-likelihood",
        ),
        _mc_task(
            "winogrande",
            to_eval=winogrande_mc_to_eval,
            to_train=winogrande_mc_to_train,
            eval_convert=to_llm_foundry_winogrande,
            prompt="partial scoring: context = sentence up to the blank + option, continuation = the rest",
            description="WinoGrande by partial scoring (lm-eval): the shared continuation after each option",
        ),
        _mc_task(
            "arc_easy",
            to_eval=partial(mc_item, family="qa"),
            to_train=partial(mc_to_train, family="qa"),
            eval_convert=None,
            llm_adapters_eval=True,
            prompt=_QA,
            description="ARC-Easy, the answer options scored by log-likelihood",
        ),
        _mc_task(
            "arc_challenge",
            to_eval=partial(mc_item, family="qa"),
            to_train=partial(mc_to_train, family="qa"),
            eval_convert=None,
            llm_adapters_eval=True,
            prompt=_QA,
            description="ARC-Challenge, the answer options scored by log-likelihood",
        ),
        _mc_task(
            "openbookqa",
            to_eval=partial(mc_to_eval, stem_only=True),
            to_train=partial(mc_to_train, family="qa", stem_only=True),
            eval_convert=to_llm_foundry_openbookqa,
            prompt="'{question_stem}' + ' ' + choice",
            description="OpenBookQA, the answer options scored by log-likelihood",
        ),
    )
)
MC_TASKS = [BOOLQ_MC, PIQA_MC, WINOGRANDE_MC, ARC_EASY_MC, ARC_CHALLENGE_MC, OPENBOOKQA_MC]
