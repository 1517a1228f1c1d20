"""Test-only hooks for job processes, active only when a test puts this folder on PYTHONPATH
and sets the variable (tests/bench/test_executors.py, tests/bench/test_distributed.py).

- ``BENCH_TEST_HANG=1``: a ``bench.runner`` job process sleeps instead of running, so that a
  job timeout is certain to fire (no timing threshold in the test).
- ``BENCH_TEST_WRITE_LOG=FILE``: every ``os.replace`` onto a ``.json`` file (how records are
  written) appends ``RANK PATH`` to FILE, so a test can count which process wrote what.
"""

import os
import sys

if os.environ.get("BENCH_TEST_HANG") and "bench.runner" in sys.orig_argv:
    import time

    time.sleep(3600)

if os.environ.get("BENCH_TEST_WRITE_LOG"):
    _replace = os.replace

    def _logged_replace(src, dst, *args, **kwargs):
        _replace(src, dst, *args, **kwargs)
        if str(dst).endswith(".json"):
            with open(os.environ["BENCH_TEST_WRITE_LOG"], "a") as fh:
                fh.write(f"{os.environ.get('RANK', '-')} {dst}\n")

    os.replace = _logged_replace
