"""Why the default router can lose to a plain ridge / kNN on data of other shapes (issue #19).

On synthetic tables from :func:`mixllm_router.evaluation.shapes.make_shaped` (graded scores, 9
candidates, costs that follow the prompt's length, equal prices), fits on the train split and
reports on the test split:

- the router at its default (ridge, λ0 = 10) and at other penalties;
- the router's quality predictions with the per-model *mean* training cost in place of its cost
  regression (isolates the cost model);
- the baselines (plain ridge, penalty 1, and kNN-40, both with mean costs);
- what ``tune()`` chooses by 5-fold CV on the train split, and its test figure.

    python benchmarks/shapes_study.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np


def _score(q_hat: np.ndarray, c_hat: np.ndarray, quality: np.ndarray, cost: np.ndarray, ref: int,
           quality_only: bool) -> float:
    from mixllm_router.policy.tradeoff import default_cost_weights, quality_only_score, sweep

    if quality_only:
        return 100 * quality_only_score(q_hat, c_hat, quality, ref)
    return 100 * sweep(q_hat, c_hat, quality, cost, ref, default_cost_weights(float(cost.mean()), n=300)).auc()


def study(shape: dict[str, Any], seed: int, grid: Any) -> dict[str, float]:
    from mixllm_router import MixLLMRouter, RoutingDataset
    from mixllm_router.encoders import HashingEncoder
    from mixllm_router.evaluation.baselines import knn_baseline, ridge_baseline
    from mixllm_router.evaluation.shapes import make_shaped
    from mixllm_router.evaluation.tuning import tune
    from mixllm_router.policy.tradeoff import choose_reference, is_quality_only

    make = make_shaped(seed=seed, **shape)
    data = RoutingDataset.from_records(make.records)
    parts = data.splits()
    emb = dict(zip(make.query_ids, make.embeddings))
    train, test = parts["train"], parts["test"]
    e_tr = np.stack([emb[q] for q in train.query_ids])
    e_te = np.stack([emb[q] for q in test.query_ids])
    names = make.models
    q_tr, c_tr = train.matrix("quality", names), train.matrix("cost", names)
    q_te, c_te = test.matrix("quality", names), test.matrix("cost", names)
    ref = names.index(choose_reference(names, q_tr, c_tr)[0])
    qo = is_quality_only(c_te)
    mean_cost = np.tile(c_tr.mean(axis=0), (len(e_te), 1))
    out: dict[str, float] = {}
    enc = HashingEncoder(dim=8)  # token counts only: the embeddings are given
    for label, cfg in (("router ridge λ0=30", {"prior_strength": 30.0}), ("router ridge λ0=10 (default)", {}),
                       ("router ridge λ0=3", {"prior_strength": 3.0}), ("router ridge λ0=1", {"prior_strength": 1.0}),
                       ("router knn k=40", {"quality_model": "knn", "knn_k": 40})):
        r = MixLLMRouter(config=cfg, encoder=enc).fit(train, embeddings=e_tr, calibrate=False)
        p = r.predict(test.queries, embeddings=e_te)
        out[label] = _score(p.quality, p.cost, q_te, c_te, ref, qo)
        out[label + " + mean cost"] = _score(p.quality, mean_cost, q_te, c_te, ref, qo)
    for label, fn in (("plain ridge (baseline)", ridge_baseline), ("plain knn-40 (baseline)", knn_baseline)):
        bq, bc = fn(e_tr, q_tr, c_tr, e_te)
        out[label] = _score(bq, bc, q_te, c_te, ref, qo)
    result = tune(train, encoder=enc, embeddings=e_tr, grid=grid)
    r = MixLLMRouter(config=result.best, encoder=enc).fit(train, embeddings=e_tr, calibrate=False)
    p = r.predict(test.queries, embeddings=e_te)
    out[f"tuned: {result.setting}"] = _score(p.quality, p.cost, q_te, c_te, ref, qo)
    print(f"[seed {seed}] {shape}\n{result.table()}", file=sys.stderr, flush=True)
    out["_quality_only"] = float(qo)
    return out


SHAPES = {
    "graded, 9 candidates, list prices": {"scores": "graded", "n_models": 9},
    "graded, 7 candidates, equal prices": {"scores": "graded", "n_models": 7, "equal_prices": True},
    "0/1, 7 candidates, equal prices": {"scores": "binary", "n_models": 7, "equal_prices": True},
    "0/1, 9 candidates, list prices": {"scores": "binary", "n_models": 9},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-queries", type=int, default=2500)
    parser.add_argument("--grid", choices=["default"], default="default")
    args = parser.parse_args(argv)
    from mixllm_router.evaluation.tuning import DEFAULT_GRID

    for name, shape in SHAPES.items():
        rows: dict[str, list[float]] = {}
        for seed in args.seeds:
            for k, v in study({**shape, "n_queries": args.n_queries}, seed, DEFAULT_GRID).items():
                key = "tuned (CV on train)" if k.startswith("tuned") else k
                rows.setdefault(key, []).append(v)
                if k.startswith("tuned"):
                    rows.setdefault("_chosen", []).append(k)  # type: ignore[arg-type]
        metric = "quality % of ref (λ=0)" if rows.pop("_quality_only")[0] else "test AUC"
        chosen = rows.pop("_chosen")
        print(f"\n## {name} ({len(args.seeds)} seeds, {args.n_queries} queries, 30% test) — {metric}")
        for k, v in rows.items():
            print(f"  {k:<44} {np.mean(v):7.2f}  (per seed: {', '.join(f'{x:.2f}' for x in v)})")
        print(f"  chosen by tune: {chosen}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
