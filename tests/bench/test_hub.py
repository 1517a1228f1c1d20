"""Hub reachability and the local datasets cache (``bench.hub``), without the network: the probe
talks to a server on 127.0.0.1, and the cache is a folder laid out as ``datasets`` lays it out."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading

import pytest

import tasks
from bench import cli, hub
from tasks._base import HubSource

ARC = HubSource("allenai/ai2_arc", "ARC-Easy", eval_split="test")
URL = "https://raw.githubusercontent.com/org/repo/0123/train.json"


@pytest.fixture(autouse=True)
def _fresh_probe():
    hub.probe.cache_clear()
    yield
    hub.probe.cache_clear()


def prepared(cache, folder: str, config: str, splits: list[str]) -> None:
    """A split prepared by ``datasets``: ``<folder>/<config>/<version>/<hash>/dataset_info.json``."""
    path = cache / folder / config / "0.0.0" / f"hash{len(list(cache.glob('**/dataset_info.json')))}"
    path.mkdir(parents=True)
    info = {"config_name": config, "splits": {s: {"name": s, "num_examples": 1} for s in splits}}
    (path / "dataset_info.json").write_text(json.dumps(info))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE=1"),
        ({"HF_DATASETS_OFFLINE": "true"}, "HF_DATASETS_OFFLINE=true"),
        ({"HF_HUB_OFFLINE": "0"}, None),
    ],
)
def test_offline_setting(monkeypatch, env, expected):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert hub.offline_setting() == expected


def test_unreachable_is_the_offline_setting_without_probing(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "probe", lambda: pytest.fail("probed although offline mode is set"))
    assert hub.unreachable() == "HF_HUB_OFFLINE=1 is set"


def test_unreachable_asks_the_probe_when_online(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub, "probe", lambda: "no route")
    assert hub.unreachable() == "no route"


def test_probe_answers_once_and_any_http_status_counts_as_reachable(monkeypatch):
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 (http.server's name)
            hits.append(self.path)
            self.send_response(404)  # an error status is still an answer
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}/")
        assert hub.probe() is None
        assert hub.probe() is None
    finally:
        server.shutdown()
        server.server_close()
    assert hits == ["/"]  # done once per process


def test_probe_names_an_endpoint_that_does_not_answer(monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    reason = hub.probe(timeout=1.0)
    assert reason.startswith(f"http://127.0.0.1:{port} did not answer within 1s (")


@pytest.mark.parametrize("name", ["ai2_arc", "HellaSwag", "GLUE", "openbookqa", "SQuADv2"])
def test_cache_names_follow_datasets(name):
    from datasets.naming import camelcase_to_snakecase

    assert hub._snake(name) == camelcase_to_snakecase(name)


def test_a_prepared_split_is_cached_for_its_config_only(tmp_path):
    prepared(tmp_path, "allenai___ai2_arc", "ARC-Easy", ["test", "train"])
    assert hub.cached(ARC, "test", tmp_path)
    assert not hub.cached(ARC, "validation", tmp_path)
    assert not hub.cached(HubSource("allenai/ai2_arc", "ARC-Challenge"), "test", tmp_path)
    assert not hub.cached(HubSource("allenai/openbookqa", "main"), "test", tmp_path)


def test_raw_files_are_cached_when_every_download_is(tmp_path):
    source = HubSource("json", train_split="train", data_files={"train": URL})
    assert not hub.cached(source, "train", tmp_path)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / (hashlib.sha256(URL.encode()).hexdigest() + ".etaghash")).write_text("[]")
    assert hub.cached(source, "train", tmp_path)


def test_a_task_needs_both_of_its_splits(tmp_path):
    arc = tasks.get("arc_easy_mc")
    train = arc.train_hub or arc.hub
    assert (arc.hub.path, arc.hub.name, train.path, train.name) == ("allenai/ai2_arc", "ARC-Easy") * 2
    prepared(tmp_path, "allenai___ai2_arc", "ARC-Easy", [arc.hub.eval_split])
    assert not hub.task_cached(arc, tmp_path)
    prepared(tmp_path, "allenai___ai2_arc", "ARC-Challenge", [train.train_split])  # another config
    assert not hub.task_cached(arc, tmp_path)
    prepared(tmp_path, "allenai___ai2_arc", "ARC-Easy", [train.train_split])  # the same config, another hash
    assert hub.task_cached(arc, tmp_path)


def test_missing_data_names_uncached_tasks_and_never_probes_for_in_code_ones(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    monkeypatch.setattr(hub, "unreachable", lambda: pytest.fail("the hub was probed for toy tasks"))
    assert hub.missing_data(tasks.select("toy")) is None
    monkeypatch.setattr(hub, "unreachable", lambda: None)
    assert hub.missing_data(tasks.select("glue_sst2")) is None  # reachable: the jobs download it
    monkeypatch.setattr(hub, "unreachable", lambda: "HF_HUB_OFFLINE=1 is set")
    line = hub.missing_data(tasks.select("glue_sst2,glue_rte,toy_sum"))
    assert line.startswith("no data for task(s) glue_sst2, glue_rte: the hub is unreachable (HF_HUB_OFFLINE=1 is set)")
    sst2 = tasks.get("glue_sst2").hub
    prepared(tmp_path, sst2.path.replace("/", "___"), sst2.name, [sst2.train_split, sst2.eval_split])
    assert hub.missing_data(tasks.select("glue_sst2,glue_rte")).startswith("no data for task(s) glue_rte:")


def test_run_without_data_offline_stops_before_any_job(monkeypatch, capsys, tmp_path):
    # As a new user offline: `bench run --tasks all`, no --data-dir, nothing cached.
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "runs"
    code = cli.main(["run", "--tasks", "all", "--preset", "smoke", "--output-dir", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    hub_tasks = [t.name for t in tasks.select("all") if t.generator is None]
    assert err == (
        f"error: no data for task(s) {', '.join(hub_tasks)}: the hub is unreachable (HF_HUB_OFFLINE=1 is set) "
        f"and their data is not in the datasets cache ({tmp_path / 'cache'}); pass "
        "--data-dir with a folder laid out like shared/data (or set BENCH_DATA_DIR)\n"
    )
    assert not list(out.glob("**/*.json")) and not (out / "logs").exists()
