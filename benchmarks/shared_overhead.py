"""What sharing state through Redis adds to the hot path, against a real local ``redis-server``.

One process, a router fitted on the synthetic table of the tests (3 candidates, the torch-free
hashing encoder, so the figures show the router and Redis, not an encoder), measures:

- ``route`` p50/p99 with the in-process state (the baseline);
- the same with ``share_state(redis)``: a sync (one Lua script reading every candidate's leases,
  plus an ``XREAD`` of the service streams) before every route, and with ``sync_interval_s=0.01``;
- one call's lease taken and released (``LoadTracker.start`` + ``finish``: a script, then a pipeline);
- ``feedback`` appended to the shared stream.

Run:  python benchmarks/shared_overhead.py [--repeats 2000] [--json out.json]
Needs redis-server on PATH (Debian package redis-server).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def percentiles(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50_ms": s[len(s) // 2] * 1e3, "p99_ms": s[min(int(len(s) * 0.99), len(s) - 1)] * 1e3}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    from redis_server import RedisServer
    from synthetic import make_synthetic

    from mixllm_router import MixLLMRouter, RoutingDataset
    from mixllm_router.encoders import HashingEncoder

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            router = MixLLMRouter(encoder=HashingEncoder(), prior_strength=1.0, calibration_folds=3)
            router.fit(RoutingDataset.from_records(make_synthetic()))
            query = "Solve this integral problem number 3: compute the integral value step by step."

            def timed(fn, n: int = args.repeats) -> dict[str, float]:
                for _ in range(min(200, n)):
                    fn()
                samples = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    fn()
                    samples.append(time.perf_counter() - t0)
                return percentiles(samples)

            results["route, in-process state"] = timed(lambda: router.route(query))
            router.share_state(server.url)
            results["route, Redis, sync every route"] = timed(lambda: router.route(query))
            router.share_state(server.url, sync_interval_s=0.01)
            results["route, Redis, sync_interval_s=0.01"] = timed(lambda: router.route(query))
            tracker = router.load_tracker
            results["lease taken + released (one call)"] = timed(lambda: tracker.finish(tracker.start("poet")))
            decisions = iter(router.route_batch([query] * (args.repeats + 200)))
            results["feedback to the shared stream"] = timed(lambda: router.feedback(next(decisions).decision_id, 1.0))
            router.state.close()
        finally:
            server.stop()

    load = os.getloadavg()[0]
    print(f"{'operation':40s} {'p50 ms':>8s} {'p99 ms':>8s}   (load average {load:.1f})")
    for name, r in results.items():
        print(f"{name:40s} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"load_average": load, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
