"""What the outcome adapter costs: fitting time, peak memory, and the latency it adds to routing.

    python benchmarks/adapter_cost.py --data ../shared/data/routerbench --threads 2

Fits :func:`~mixllm_router.encoders.outcome_adapter.fit_outcome_adapter` on the MiniLM embeddings
of the RouterBench train files (from the embedding cache) at each setting of the ``--tune`` grid,
reporting wall time, the epoch early stopping kept, and the process's peak RSS before and after
(``ru_maxrss``; torch's own allocations included). The added latency is the projection
``normalize(e + φ(eA)B)`` of one embedding, timed over ``--repeats`` single calls (p50 / p99),
which is all the adapter adds to a route: the base encoder's forward pass is unchanged.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/routerbench")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from mixllm_router import MixLLMRouter
    from mixllm_router.data import load_routerbench
    from mixllm_router.encoders.outcome_adapter import fit_outcome_adapter
    from mixllm_router.encoders.tag_enhanced import _project
    from mixllm_router.evaluation.representation import ADAPTER_GRID

    train = load_routerbench(args.data, split="train")
    emb, _ = MixLLMRouter().embed(train.queries)
    quality = train.matrix("quality", train.models)
    print(f"{emb.shape[0]} training queries, {emb.shape[1]} dims, {quality.shape[1]} candidates, "
          f"torch threads {torch.get_num_threads()}; peak RSS before fitting {_rss_mb():.0f} MB")
    for settings in ADAPTER_GRID:
        before = _rss_mb()
        t0 = time.perf_counter()
        fit = fit_outcome_adapter(emb, quality, threads=args.threads, **settings)
        took = time.perf_counter() - t0
        label = ", ".join(f"{k}={v}" for k, v in settings.items())
        print(f"  {label}: {took:.1f} s, best epoch {fit.best_epoch} of {len(fit.val_history)} run, "
              f"peak RSS {before:.0f} → {_rss_mb():.0f} MB")
        times = []
        for i in range(args.repeats):
            x = emb[i % len(emb)][None, :]
            s = time.perf_counter()
            _project(x, fit.a, fit.b, settings["activation"])
            times.append(time.perf_counter() - s)
        t = np.array(times) * 1e3
        print(f"    added routing latency (one query's projection): p50 {np.percentile(t, 50):.3f} ms, "
              f"p99 {np.percentile(t, 99):.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
