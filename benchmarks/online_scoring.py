"""What online scoring adds to a call's latency: nothing measurable, even with a scorer that sleeps.

Routes and calls N queries (a FakeClient answers at once, so the figure is the router's own
overhead) three ways: no scorer; a scorer that sleeps --scorer-s seconds per answer (one worker,
queue of --max-queue); a scorer that raises. Prints invoke latency (median, p99, max) and the
scorer's counters.

    python benchmarks/online_scoring.py [--n 300] [--scorer-s 2.0] [--max-queue 16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from mixllm_router import Candidate, MixLLMRouter, RoutingDataset
from mixllm_router.clients import FakeClient
from mixllm_router.encoders import HashingEncoder
from mixllm_router.scoring import FunctionScorer


def router() -> MixLLMRouter:
    rng = np.random.default_rng(0)
    rows = [{"query": f"question {i} about {'maths' if i % 2 else 'poems'}", "model": m,
             "quality": float(rng.random() < p), "cost": c}
            for i in range(200) for m, p, c in (("big", 0.9, 1e-3), ("small", 0.5, 1e-4))]
    r = MixLLMRouter([Candidate(name="big", input_price=1, output_price=2),
                      Candidate(name="small", input_price=0.1, output_price=0.2)],
                     config={"encoder": {"kind": "hashing", "use_cache": False}},
                     encoder=HashingEncoder(dim=64)).fit(RoutingDataset.from_records(rows))
    for m in ("big", "small"):
        r.set_client(m, FakeClient(f"answer from {m}", model_name=m))
    return r


def timed(r: MixLLMRouter, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        r.invoke(f"new question {i} about {'maths' if i % 3 else 'poems'}")
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def report(label: str, ms: list[float]) -> None:
    ms = sorted(ms)
    print(f"{label:<34} median {statistics.median(ms):6.2f} ms   p99 {ms[int(0.99 * (len(ms) - 1))]:6.2f} ms   "
          f"max {ms[-1]:7.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--scorer-s", dest="scorer_s", type=float, default=2.0)
    ap.add_argument("--max-queue", dest="max_queue", type=int, default=16)
    args = ap.parse_args()
    r = router()
    timed(r, 20)  # warm up
    report("no scorer", timed(r, args.n))

    def sleepy(query, response, reference):
        time.sleep(args.scorer_s)
        return 1.0

    online = r.attach_scorer(FunctionScorer(sleepy), max_queue=args.max_queue)
    report(f"scorer sleeping {args.scorer_s:g} s", timed(r, args.n))
    s = online.stats
    print(f"  submitted {s['submitted']:.0f}, queued now {s['queued']:.0f}, max queued {s['max_queue_seen']:.0f} "
          f"(bound {args.max_queue}), dropped {s.get('dropped', 0):.0f}, scored so far {s.get('scored', 0):.0f}")
    r.detach_scorer(online, timeout=0.1)

    def broken(query, response, reference):
        raise RuntimeError("scorer bug")

    online = r.attach_scorer(FunctionScorer(broken), max_queue=args.max_queue)
    report("scorer raising", timed(r, args.n))
    online.drain(30)
    print(f"  failed {online.stats.get('failed', 0):.0f}, dropped {online.stats.get('dropped', 0):.0f} of "
          f"{online.stats['submitted']:.0f}; none raised to the caller")
    online.close()


if __name__ == "__main__":
    main()
