"""Train on one routing dataset, report on another, beside the obvious alternatives.

Methods reported in one run (DESIGN §2):

- the router (its configured quality model), swept over the cost weight λ;
- ``ridge`` and ``knn`` (k=40) baselines on the same embeddings (``baselines.py``), swept the same way;
- every single candidate (one point each), ``random`` (uniform choice per query, one point,
  seeded), and the ``oracle`` (the recorded outcomes as predictions: best candidate per query).

All figures are shares of the reference candidate (default ``gpt-4-1106-preview`` when present,
else the costliest): quality share = mean quality / reference mean quality, cost share = total
cost / reference total cost. Queries missing an outcome for some candidate are dropped from the
test set (reported).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import DataError
from ..config import RouterConfig, make_config
from ..router import MixLLMRouter
from ..tradeoff import TradeoffCurve, bootstrap_summary, default_cost_weights, pick, sweep
from .baselines import knn_baseline, ridge_baseline

if TYPE_CHECKING:
    from ..data import RoutingDataset
    from ..encoders.base import QueryEncoder

__all__ = ["EvalReport", "MethodResult", "evaluate", "DEFAULT_REFERENCE"]

DEFAULT_REFERENCE = "gpt-4-1106-preview"


@dataclass
class MethodResult:
    """One method's curve (routers) or point (single models, random)."""

    name: str
    kind: str  # "router", "baseline", "single", "oracle"
    curve: TradeoffCurve

    def summary(self) -> dict[str, float]:
        return self.curve.summary()


@dataclass
class EvalReport:
    reference: str
    n_train: int
    n_test: int
    methods: list[MethodResult]
    dropped_test_queries: int = 0
    decisions: list[dict[str, Any]] = field(default_factory=list)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # router, 95% bootstrap

    def get(self, name: str) -> MethodResult:
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(name)

    def table(self) -> str:
        """Routers: AUC, quality at ≤10% / ≤25% cost, cost to reach 97.25%. Fixed choices: their point."""
        head = f"{'router (swept over λ)':<40} {'AUC':>6} {'Q@10%':>6} {'Q@25%':>6} {'C@97.25%':>9}"
        lines = [
            f"train {self.n_train} queries, test {self.n_test} queries; quality and cost in % of {self.reference}",
            head,
            "-" * len(head),
        ]
        for m in self.methods:
            if m.kind == "single":
                continue
            s = m.summary()
            c97 = f"{s['cost_to_97_25']:9.1f}" if np.isfinite(s["cost_to_97_25"]) else f"{'—':>9}"
            lines.append(f"{m.name:<40} {s['auc']:6.1f} {s['quality_at_10']:6.1f} {s['quality_at_25']:6.1f} {c97}")
        if self.intervals:
            iv = self.intervals
            fmt = lambda k: f"{iv[k][0]:.1f}–{iv[k][1]:.1f}"  # noqa: E731
            lines.append(
                f"  95% bootstrap intervals of {self.methods[0].name} (test queries resampled): AUC {fmt('auc')}, "
                f"Q@10% {fmt('quality_at_10')}, Q@25% {fmt('quality_at_25')}, C@97.25% {fmt('cost_to_97_25')}"
            )
        lines += ["", f"{'fixed choice':<40} {'cost %':>6} {'quality %':>9}", "-" * 57]
        for m in self.methods:
            if m.kind == "single":
                lines.append(f"{m.name:<40} {100 * m.curve.cost_share[0]:6.1f} {100 * m.curve.quality_share[0]:9.1f}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reference": self.reference,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "dropped_test_queries": self.dropped_test_queries,
            "router_intervals_95": {k: list(v) for k, v in self.intervals.items()},
            "methods": [],
        }
        for m in self.methods:
            s = {k: (v if np.isfinite(v) else None) for k, v in m.summary().items()}
            out["methods"].append({
                "name": m.name,
                "kind": m.kind,
                "summary": s,
                "cost_weights": m.curve.cost_weights.tolist(),
                "cost_share": m.curve.cost_share.tolist(),
                "quality_share": m.curve.quality_share.tolist(),
            })
        return out

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2))


def _point(cost_share: float, quality_share: float) -> TradeoffCurve:
    return TradeoffCurve(np.array([np.nan]), np.array([cost_share]), np.array([quality_share]))


def evaluate(
    train: RoutingDataset,
    test: RoutingDataset,
    *,
    config: RouterConfig | dict[str, Any] | None = None,
    encoder: QueryEncoder | None = None,
    reference: str | None = None,
    baselines: bool = True,
    show_progress: bool = False,
    decisions_at: int = 0,
    bootstrap: bool = True,
    seed: int = 0,
) -> EvalReport:
    """Fit the router on ``train`` and report it and the baselines on ``test``.

    ``decisions_at`` > 0 records the router's per-query choice at that many λ values
    (evenly spaced in the sweep grid) for ``--decisions``.
    """
    cfg = make_config(config)
    router = MixLLMRouter(config=cfg, encoder=encoder)
    train_emb, _ = router.embed(train.queries, show_progress=show_progress)
    router.fit(train, embeddings=train_emb, calibrate=False)
    names = router.candidate_names
    test_full = test
    quality = test_full.matrix("quality", names)
    cost = test_full.matrix("cost", names)
    keep = np.isfinite(quality).all(axis=1) & np.isfinite(cost).all(axis=1)
    if keep.sum() < 2:
        raise DataError(
            f"{int(keep.sum())} of {len(keep)} test queries have every candidate's outcome: an offline "
            "evaluation scores the choice at every λ on recorded outcomes, so it needs test queries "
            "answered by every model (training may be sparse)"
        )
    if not keep.all():
        warnings.warn(f"{int((~keep).sum())} of {len(keep)} test queries miss some candidate's outcome and are "
                      "left out of the evaluation", stacklevel=2)
    quality, cost = quality[keep], cost[keep]
    queries = [q for q, k in zip(test_full.queries, keep) if k]
    query_ids = [q for q, k in zip(test_full.query_ids, keep) if k]
    if reference is None:
        reference = DEFAULT_REFERENCE if DEFAULT_REFERENCE in names else router.reference_
    assert reference is not None
    ref = names.index(reference)
    test_emb, _ = router.embed(queries, show_progress=show_progress)
    grid = default_cost_weights(float(np.mean(cost)), n=300)

    def curve_of(r: MixLLMRouter) -> tuple[TradeoffCurve, np.ndarray, np.ndarray]:
        p = r.predict(queries, embeddings=test_emb)
        return sweep(p.quality, p.cost, quality, cost, ref, grid), p.quality, p.cost

    methods: list[MethodResult] = []
    main_curve, q_hat, c_hat = curve_of(router)
    methods.append(MethodResult(f"mixllm ({cfg.quality_model})", "router", main_curve))
    intervals = bootstrap_summary(q_hat, c_hat, quality, cost, ref, grid, seed=seed) if bootstrap else {}
    report_decisions: list[dict[str, Any]] = []
    if decisions_at > 0:
        for lam in grid[np.linspace(0, len(grid) - 1, decisions_at).astype(int)]:
            chosen = pick(q_hat, c_hat, float(lam))
            for qid, j in zip(query_ids, chosen):
                report_decisions.append({"cost_weight": float(lam), "query_id": qid, "chosen": names[j]})
    if baselines:
        train_q, train_c = train.matrix("quality", names), train.matrix("cost", names)
        for label, fn in (("ridge baseline", ridge_baseline), ("knn baseline (k=40)", knn_baseline)):
            bq, bc = fn(train_emb, train_q, train_c, test_emb)
            methods.append(MethodResult(label, "baseline", sweep(bq, bc, quality, cost, ref, grid)))
        methods.append(MethodResult("oracle", "oracle", sweep(quality, cost, quality, cost, ref, grid)))
        rng = np.random.default_rng(seed)
        rows = np.arange(len(queries))
        random_pick = rng.integers(0, len(names), size=len(queries))
        ref_q, ref_c = quality[:, ref].mean(), cost[:, ref].sum()
        methods.append(MethodResult(
            "random", "single", _point(cost[rows, random_pick].sum() / ref_c, quality[rows, random_pick].mean() / ref_q)
        ))
        for j, name in enumerate(names):
            methods.append(MethodResult(name, "single", _point(cost[:, j].sum() / ref_c, quality[:, j].mean() / ref_q)))
    return EvalReport(
        reference=reference,
        n_train=len(train),
        n_test=len(queries),
        methods=methods,
        dropped_test_queries=int((~keep).sum()),
        decisions=report_decisions,
        intervals=intervals,
    )
