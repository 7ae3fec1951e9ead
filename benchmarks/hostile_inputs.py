"""≥ 10,000 hypothesis-generated hostile inputs over route options, feedback, every settings model
and training tables; counts what was accepted, what was refused with the library's own error, and
what escaped (anything outside ``MixLLMError``: the target is 0).

The properties are those of ``tests/test_hostile_values.py`` (shared in ``tests/hostile_values.py``),
run here with many more examples:

- ``route``: hostile ``cost_weight`` / ``cost_share`` / ``max_cost_usd`` (huge ints, NaN/inf of
  every kind, Decimal sNaN, complex, str, bool, lists) and ``candidates`` (names, non-names,
  nested lists, a bare str, iterators);
- ``feedback``: hostile score, ``output_tokens`` and ``latency_s`` on a journaled router; a refused
  event must leave the journal, the counters and the decision untouched;
- settings: ``RouterConfig``, ``EncoderSettings``, ``LatencySettings``, ``LearningSettings``,
  ``RedisStateSettings`` built from hostile and boundary values (each field's bounds and their
  neighbours); and for ``RouterConfig`` a config that validates must also fit, route, learn, save
  and load;
- training tables: hostile cells in every column, through ``RoutingDataset.from_records`` and
  ``from_pandas``, then ``fit`` and ``route``.

    python benchmarks/hostile_inputs.py                 # the documented run (≥ 10,000 inputs)
    python benchmarks/hostile_inputs.py --scale 0.1     # a quick look

Checkpoint mutations are the other half of the campaign (``benchmarks`` of the checkpoint side).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from hostile_values import (  # noqa: E402
    SETTINGS_MODELS,
    check_config_lifecycle,
    check_feedback,
    check_route,
    check_settings,
    check_table,
    feedback_args,
    field_values,
    route_options,
    small_router,
    table_cells,
)
from hypothesis import HealthCheck, given, settings  # noqa: E402

from mixllm_router.learning.learner import FeedbackJournal  # noqa: E402

COUNTS: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
ESCAPED: list[str] = []


def record(prop: str, fn) -> None:
    """Run one input; count its outcome; an exception outside the tree is kept, not raised, so
    the run goes on and the count is complete."""
    try:
        COUNTS[prop][fn()] += 1
    except Exception as exc:  # noqa: BLE001 - that is what is being counted
        COUNTS[prop]["escaped"] += 1
        if len(ESCAPED) < 20:
            ESCAPED.append(f"{prop}: {type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc(limit=-3)))


def run(prop: str, n: int, strategy, body) -> None:
    cfg = settings(max_examples=n, deadline=None, database=None, derandomize=False,
                   suppress_health_check=list(HealthCheck))
    t0 = time.perf_counter()
    given(strategy)(cfg(lambda value: record(prop, lambda: body(value))))()
    print(f"  {prop:22s} {sum(COUNTS[prop].values()):6d} inputs  {dict(COUNTS[prop])}  {time.perf_counter() - t0:.0f} s",
          flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply every example count")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    def n(base: int) -> int:
        return max(1, int(base * args.scale))

    t0 = time.perf_counter()
    router = small_router()
    with tempfile.TemporaryDirectory() as tmp:
        journaled = small_router(Path(tmp) / "feedback.jsonl")
        print("hostile inputs (hypothesis):")
        run("route", n(3000), route_options(), lambda opts: check_route(router, opts))
        run("feedback", n(2000), feedback_args(), lambda args: check_feedback(journaled, *args))
        for name, model in SETTINGS_MODELS.items():
            run(f"settings:{name}", n(700), field_values(model), lambda values, m=model: check_settings(m, values))
        run("config lifecycle", n(300), field_values(SETTINGS_MODELS["RouterConfig"]), check_config_lifecycle)
        run("table:records", n(600), table_cells(), lambda cells: check_table(cells, "records"))
        run("table:pandas", n(600), table_cells(), lambda cells: check_table(cells, "pandas"))
        journaled.learning.close()
        events = FeedbackJournal(Path(tmp) / "feedback.jsonl").read()  # the journal of every accepted event
        if len(events) != journaled.learning.n_events or len({e.seq for e in events}) != len(events):
            ESCAPED.append(f"feedback journal: {len(events)} entries for {journaled.learning.n_events} events")
    total = sum(sum(c.values()) for c in COUNTS.values())
    escaped = sum(c["escaped"] for c in COUNTS.values())
    refused = sum(c["refused"] for c in COUNTS.values())
    print(f"[hostile inputs] {total} inputs: {total - refused - escaped} accepted, {refused} refused with a "
          f"MixLLMError, {escaped} escaped the exception tree; {time.perf_counter() - t0:.0f} s")
    for text in ESCAPED:
        print(text)
    if args.json:
        print(json.dumps({k: dict(v) for k, v in COUNTS.items()}))
    return 1 if escaped or ESCAPED else 0


if __name__ == "__main__":
    raise SystemExit(main())
