"""Recompute the router's figures from a ``mixllm eval --decisions`` file and the test outcomes.

    python benchmarks/score_decisions.py --decisions runs/routerbench/decisions.jsonl \\
        --data ../shared/data/routerbench --reference gpt-4-1106-preview

Each line of the file is one test query's choice at one λ; with the table's whole grid (the
default since issue #19) the AUC, Q@10%, Q@25% and C@97.25% printed here equal the table's.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", required=True)
    parser.add_argument("--data", nargs="+", required=True, help="the files given to mixllm eval --data")
    parser.add_argument("--reference", required=True, help="the reference named in the table")
    args = parser.parse_args(argv)
    from mixllm_router.evaluation.loading import load_train_test
    from mixllm_router.policy.tradeoff import TradeoffCurve

    _, test = load_train_test(args.data)
    names = test.models
    quality, cost = test.matrix("quality", names), test.matrix("cost", names)
    row = {q: i for i, q in enumerate(test.query_ids)}
    ref = names.index(args.reference)
    col = {n: j for j, n in enumerate(names)}
    sums: dict[float, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    seen: set[str] = set()
    with open(args.decisions, encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            i, j = row[d["query_id"]], col[d["chosen"]]
            acc = sums[float(d["cost_weight"])]
            acc[0] += cost[i, j]
            acc[1] += quality[i, j]
            acc[2] += 1
            seen.add(d["query_id"])
    keep = np.array([row[q] for q in seen])
    lams = np.array(sorted(sums))
    curve = TradeoffCurve(
        lams,
        np.array([sums[x][0] for x in lams]) / cost[keep, ref].sum(),
        np.array([sums[x][1] / sums[x][2] for x in lams]) / quality[keep, ref].mean(),
    )
    s = curve.summary()
    c97 = f"{s['cost_to_97_25']:.1f}" if np.isfinite(s["cost_to_97_25"]) else "never"
    print(f"{len(lams)} λ values, {len(seen)} test queries: AUC {s['auc']:.1f}, Q@10% {s['quality_at_10']:.1f}, "
          f"Q@25% {s['quality_at_25']:.1f}, C@97.25% {c97}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
