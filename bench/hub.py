"""Is the Hugging Face hub reachable, and which task data is already on this machine?

A task without ``--data-dir`` loads its data from the hub in each job (``tasks._base.load_hub``).
When the hub cannot be reached, that only works for data in the local ``datasets`` cache; every
other job would load a model and then record ``failed: ConnectionError``. ``bench.plan`` asks
:func:`missing_data` before any job runs and stops with one line naming the tasks instead.

The hub counts as unreachable when offline mode is set (``HF_HUB_OFFLINE`` or
``HF_DATASETS_OFFLINE``), or when one short request to its endpoint fails (:func:`probe`,
made once per process). Data counts as cached when ``datasets`` has prepared the split
(``<HF_DATASETS_CACHE>/<org>___<name>/<config>/<version>/<hash>/dataset_info.json`` lists it),
or, for raw files fetched by URL (``HubSource.data_files``), when every file is in its
download cache.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

PROBE_TIMEOUT_S = 3.0  # one HEAD request: a reachable hub answers in well under a second
TRUE = ("1", "ON", "YES", "TRUE")  # what huggingface_hub and datasets read as true


def offline_setting() -> str | None:
    """The offline variable that is set (``HF_HUB_OFFLINE=1``), or None."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        value = os.environ.get(var, "")
        if value.upper() in TRUE:
            return f"{var}={value}"
    return None


def endpoint() -> str:
    """The hub's address (``$HF_ENDPOINT``, else huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


@functools.cache
def probe(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the hub cannot be reached (one HEAD request, once per process), or None if it answers.

    Any HTTP answer, even an error status, means the hub is reachable.
    """
    request = urllib.request.Request(endpoint(), method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except (OSError, ValueError, http.client.HTTPException) as err:  # URLError, timeouts, refusals, garbage
        reason = getattr(err, "reason", err)
        return f"{endpoint()} did not answer within {timeout:g}s ({type(reason).__name__}: {reason})"


def unreachable() -> str | None:
    """Why jobs cannot load data from the hub (offline mode, or the probe failed); None if they can."""
    setting = offline_setting()
    if setting is not None:
        return f"{setting} is set"
    return probe()


def datasets_cache() -> Path:
    """``datasets``' cache folder (``$HF_DATASETS_CACHE``, else ``$HF_HOME/datasets``)."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "datasets"


def _snake(name: str) -> str:
    """``datasets.naming.camelcase_to_snakecase``: how the cache spells a dataset's name."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).lower()


def cached(source, split_name: str, cache: Path | None = None) -> bool:
    """Whether split ``split_name`` of ``source`` (a ``tasks._base.HubSource``) is in the cache."""
    cache = cache or datasets_cache()
    if source.data_files:  # raw files by URL: datasets keeps each download as sha256(url)[.sha256(etag)]
        urls = list(source.data_files.values())
        downloads = cache / "downloads"
        return all(any(downloads.glob(hashlib.sha256(url.encode()).hexdigest() + "*")) for url in urls)
    *org, name = source.path.split("/")
    folder = cache / "___".join([*org, _snake(name)])
    for info in folder.glob(f"{source.name or '*'}/*/*/dataset_info.json"):
        try:
            if split_name in json.loads(info.read_text(encoding="utf-8")).get("splits", {}):
                return True
        except (OSError, ValueError, AttributeError):
            continue
    return False


def task_cached(task, cache: Path | None = None) -> bool:
    """Whether both splits a job of ``task`` loads (train and eval) are in the local cache."""
    train = task.train_hub or task.hub
    if task.hub is None or train is None:
        return False
    return cached(task.hub, task.hub.eval_split, cache) and cached(train, train.train_split, cache)


def missing_data(selected: list) -> str | None:
    """One line naming the tasks whose data jobs could not load (no ``--data-dir``, the hub
    unreachable, not cached) and the fix; None when every task can load its data.

    The hub is probed only when some task needs it.
    """
    needing = [t for t in selected if t.generator is None]
    if not needing:
        return None
    why = unreachable()
    if why is None:
        return None
    missing = [t.name for t in needing if not task_cached(t)]
    if not missing:
        return None
    return (
        f"no data for task(s) {', '.join(missing)}: the hub is unreachable ({why}) and their data is "
        f"not in the datasets cache ({datasets_cache()}); pass --data-dir with a folder laid out like "
        "shared/data (or set BENCH_DATA_DIR)"
    )
