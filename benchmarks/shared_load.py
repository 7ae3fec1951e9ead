"""Do worker processes that share load through Redis avoid congesting a candidate?

Several worker processes route math queries (which ``math-pro`` answers best) through their own
:class:`~mixllm_router.MixLLMRouter` and call a real local OpenAI-compatible server with the real
``openai`` SDK. The server serves ``math-pro`` with a GLOBAL limit of ``--strong-slots`` requests at
once (``--strong-service`` seconds each); the other models have many fast slots. Together the workers
offer ``workers × rate`` queries per second, more than ``math-pro`` can serve.

- ``per-process``: each worker's load tracker sees only its own requests, so each believes it has
  math-pro's slots to itself; together they keep ``workers × slots`` requests on it and the
  server's queue makes users wait past the tolerance τ.
- ``shared``: every worker calls ``router.share_state(redis_url, namespace=..., lease_s=...)``; each
  request holds a lease in a real ``redis-server``, the expected wait counts every worker's
  requests, and the hard limit at τ sends the overflow elsewhere before the wait passes τ.

Both modes use the same worker processes, server and Poisson arrivals (same seed). Reported per
mode: queries, share answered by math-pro, share of requests whose queue wait at the server exceeded
τ (the number that matters), mean / p95 queue wait over all requests and over math-pro's, math-pro's
mean expected wait at decision time against its actual mean wait, and a quality proxy (the synthetic
table's success probability of the model that answered: math-pro 0.9, cheap 0.5).

Run:  python benchmarks/shared_load.py [--duration 40] [--workers 4] [--rate 1.5] [--out runs/shared_load]
The experiment itself lives in ``tests/shared_load_experiment.py`` (the test runs it small).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # redis_server.py, synthetic.py, shared_load_experiment.py

from redis_server import RedisServer, redis_server_binary
from shared_load_experiment import (
    MODES,
    STRONG,
    ExperimentSettings,
    ModeResult,
    run_experiment,
)


def table(results: dict[str, ModeResult], tau: float) -> str:
    head = (f"| mode | queries | {STRONG} share % | wait > τ % | mean wait s | p95 wait s | {STRONG} mean / p95 wait s | "
            f"{STRONG} wait > τ % | {STRONG} est. W / actual s | quality proxy | errors |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in results.values():
        lines.append(
            f"| {r.mode} | {r.queries} | {100 * r.strong_share:.1f} | {100 * r.past_tolerance_share:.1f} | "
            f"{r.mean_wait_s:.2f} | {r.p95_wait_s:.2f} | {r.strong_mean_wait_s:.2f} / {r.strong_p95_wait_s:.2f} | "
            f"{100 * r.strong_past_tolerance_share:.1f} | {r.strong_estimated_wait_s:.2f} / {r.strong_mean_wait_s:.2f} | "
            f"{r.quality_proxy:.3f} | {r.errors} |"
        )
    return "\n".join(lines)


def main() -> None:
    defaults = ExperimentSettings()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=40.0, help="seconds each worker sends queries (default 40)")
    ap.add_argument("--workers", type=int, default=defaults.workers)
    ap.add_argument("--rate", type=float, default=defaults.rate_per_worker, help="queries per second per worker")
    ap.add_argument("--tau", type=float, default=defaults.tolerance_s, help="tolerance τ in seconds")
    ap.add_argument("--xi", type=float, default=defaults.xi)
    ap.add_argument("--beta", type=float, default=defaults.beta)
    ap.add_argument("--strong-slots", type=int, default=defaults.strong_slots)
    ap.add_argument("--strong-service", type=float, default=defaults.strong_service_s)
    ap.add_argument("--lease", type=float, default=defaults.lease_s, help="lease_s of the Redis state")
    ap.add_argument("--seed", type=int, default=defaults.seed)
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--out", default=None, help="folder for results.json and table.md")
    args = ap.parse_args()
    if redis_server_binary() is None:
        sys.exit("redis-server is not installed (Debian: apt-get install redis-server)")

    settings = ExperimentSettings(
        workers=args.workers, rate_per_worker=args.rate, duration_s=args.duration, tolerance_s=args.tau,
        xi=args.xi, beta=args.beta, strong_slots=args.strong_slots, strong_service_s=args.strong_service,
        lease_s=args.lease, seed=args.seed,
    )
    offered = settings.workers * settings.rate_per_worker
    capacity = settings.strong_slots / settings.strong_service_s
    print(f"{settings.workers} workers × {settings.rate_per_worker:g} q/s = {offered:g} q/s of math queries; "
          f"{STRONG} serves {settings.strong_slots} at once × {settings.strong_service_s:g} s = {capacity:g} q/s; "
          f"τ = {settings.tolerance_s:g} s, ξ = {settings.xi:g}, β = {settings.beta:g}, hard limit on; "
          f"{settings.duration_s:g} s per mode", flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mixllm-shared-load-") as tmp:
        redis = RedisServer(Path(tmp) / "redis").start()
        try:
            results = run_experiment(redis.url, Path(tmp), settings, modes=args.modes, log=print)
        finally:
            redis.stop()
    text = table(results, settings.tolerance_s)
    print(f"\nqueue wait = time a request waited at the provider for a slot; τ = {settings.tolerance_s:g} s; "
          f"total {time.perf_counter() - t0:.0f} s\n")
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.md").write_text(text + "\n")
        payload = {"settings": settings.__dict__, "offered_qps": offered, "strong_capacity_qps": capacity,
                   "results": {m: r.as_dict() for m, r in results.items()}}
        (out / "results.json").write_text(json.dumps(payload, indent=1))
        print(f"\nwrote {out}/table.md and results.json")


if __name__ == "__main__":
    main()
