"""JobSpec: JSON round trip for the job process, record names per task, titles, the record's run section."""

from __future__ import annotations

from pathlib import Path

from bench.spec import JobSpec

SPEC = JobSpec(
    method="lora",
    label="lora@r=4",
    method_config={"r": 4, "lr": 3e-4},
    task="boolq",
    seed=2,
    model="smollm2-135m",
    budget={"max_steps": 3},
    preset="demo",
    smoke=False,
    data_dir="/data",
    output_dir="/out",
    threads=1,
    device="cpu",
    command="python -m bench run",
    eval_tasks=("boolq", "piqa", "siqa", "hellaswag"),
)


def test_json_round_trip():
    assert JobSpec.from_json(SPEC.to_json()) == SPEC


def test_one_record_per_evaluated_task():
    assert SPEC.tasks == ("boolq", "piqa", "siqa", "hellaswag")
    assert SPEC.record_paths[1] == Path("/out/lora@r=4--piqa--seed2.json")
    assert SPEC.record_path == Path("/out/lora@r=4--boolq--seed2.json")
    alone = JobSpec.from_json(
        SPEC.to_json().replace('"eval_tasks": ["boolq", "piqa", "siqa", "hellaswag"]', '"eval_tasks": []')
    )
    assert alone.tasks == ("boolq",)


def test_title_shortens_long_groups():
    assert SPEC.title == "lora@r=4 x boolq,piqa,+2 more seed 2"


def test_run_section_keeps_what_reruns_the_job():
    run = SPEC.run_section()
    assert run["method_label"] == "lora@r=4" and run["method_config"] == {"r": 4, "lr": 3e-4}
    assert not {"label", "output_dir", "progress", "task", "eval_tasks"} & set(run)
    assert run["holdout"] == 0 and run["evaluate_on"] == "eval" and run["lr_search"] is None
