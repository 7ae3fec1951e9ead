"""SIGKILL during a collection against the local server: nothing finished is lost or paid twice (slow)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "collect_crash.py"


@pytest.mark.slow
def test_sigkill_loses_nothing_and_pays_nothing_twice():
    spec = importlib.util.spec_from_file_location("collect_crash", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    counts = module.run(n_queries=30, kills=4, seed=1)
    assert counts["killed"] >= 1
    assert counts["lost_results"] == 0 and counts["duplicate_paid_calls"] == 0
    assert counts["finished_results"] == counts["expected_results"] == 90
    # every request beyond one per pair is a call that was in flight when a run was killed
    assert counts["requests"] - 90 == counts["in_flight_lost_in_kill"]
