"""Plots: the Pareto front, and the k sweep only where a method was recorded with several k."""

from __future__ import annotations

import pandas as pd

from bench.report import frame_of, plots


def test_pareto_front():
    pts = pd.DataFrame({"method": list("abcd"), "mem": [1.0, 2.0, 3.0, 1.5], "score": [50.0, 60.0, 55.0, 40.0]})
    assert list(plots.pareto_front(pts, "mem", "score")["method"]) == ["a", "b"]
    assert list(plots.pareto_front(pts, "mem", "score", higher_is_better=False)["method"]) == ["a", "d"]


def test_no_k_sweep_without_several_k(rec, tmp_path):
    df = frame_of([rec("neuroada", "t", 0, 1.0, method_config={"k": 1}), rec("lora", "t", 0, 2.0)])
    assert plots.k_sweep_frame(df).empty
    assert not [p for p in plots.write_all(df, tmp_path) if p.stem == "k_sweep"]


def test_suite_points_use_the_suite_average(golden_frame):
    points = {suite: (label, frame) for suite, label, frame in plots.suite_points(golden_frame)}
    assert list(points) == ["commonsense", "arithmetic", "glue"]
    label, frame = points["commonsense"]
    assert label == "avg commonsense"
    assert list(frame["method"]) == ["full_ft", "lora", "neuroada", "neuroada@k=4"]
