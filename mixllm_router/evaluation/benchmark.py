"""Train on one routing dataset, report on another, beside the obvious alternatives.

Methods reported in one run (DESIGN §2):

- the router (its configured quality model), swept over the cost weight λ;
- ``ridge`` and ``knn`` (k=40) baselines on the same embeddings (``baselines.py``), swept the same way;
- every single candidate (one point each), ``random`` (uniform choice per query, one point,
  seeded), and the ``oracle`` (the recorded outcomes as predictions: best candidate per query).

All figures are shares of the reference candidate (default: the best mean quality on the
*training* split, :func:`~mixllm_router.policy.tradeoff.choose_reference`; ties and a weak requested
reference are noted): quality share = mean quality / reference mean quality, cost share = total
cost / reference total cost. Queries missing an outcome for some candidate are dropped from the
test set (reported); test queries whose exact text is also in the training data are counted and
flagged. Quality-only data (no cost trade-off) gets quality metrics instead (``report.py``).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import DataError
from ..config import RouterConfig, make_config
from ..policy.tradeoff import (
    TradeoffCurve,
    bootstrap_quality,
    bootstrap_summary,
    choose_reference,
    default_cost_weights,
    is_quality_only,
    pick,
    sweep,
)
from ..router import MixLLMRouter
from .baselines import knn_baseline, ridge_baseline
from .report import EvalReport, MethodResult

if TYPE_CHECKING:
    from ..data import RoutingDataset
    from ..encoders.base import QueryEncoder

__all__ = ["EvalReport", "MethodResult", "evaluate", "router_label"]


def router_label(quality_model: str, setting: dict[str, Any] | None = None) -> str:
    """``mixllm (ridge)``, or with the tuned setting ``mixllm (quality_model=ridge, prior_strength=30.0; tuned by CV)``."""
    if not setting:
        return f"mixllm ({quality_model})"
    return f"mixllm ({', '.join(f'{k}={v}' for k, v in setting.items())}; tuned by CV)"


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
    decisions_at: int | None = 0,
    bootstrap: bool = True,
    seed: int = 0,
    setting: dict[str, Any] | None = None,
) -> EvalReport:
    """Fit the router on ``train`` and report it and the baselines on ``test``.

    ``decisions_at``: ``None`` records the router's per-query choice at every λ of the table's grid
    (for ``--decisions``: every figure can be recomputed from the file and the test outcomes), ``k``
    > 0 at ``k`` λ values evenly spaced in it, 0 none. ``setting``: the tuned overrides, printed in
    the router's name.
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
    train_q, train_c = train.matrix("quality", names), train.matrix("cost", names)
    reference, notes = choose_reference(names, train_q, train_c, reference)
    quality_only = is_quality_only(cost)
    if quality_only and not is_quality_only(train_c):
        notes.append("the test queries have no cost trade-off (every candidate costs the same) but the training "
                     "queries do: reported on quality alone")
    train_texts = set(train.queries)
    duplicates = sum(q in train_texts for q in queries)
    if duplicates:
        warnings.warn(f"{duplicates} of {len(queries)} test queries also appear word for word in the training "
                      "data: the evaluation partly measures recall", stacklevel=2)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    ref = names.index(reference)
    test_emb, _ = router.embed(queries, show_progress=show_progress)
    grid = default_cost_weights(float(np.mean(cost)), n=300)

    def curve_of(r: MixLLMRouter) -> tuple[TradeoffCurve, np.ndarray, np.ndarray]:
        p = r.predict(queries, embeddings=test_emb)
        return sweep(p.quality, p.cost, quality, cost, ref, grid), p.quality, p.cost

    methods: list[MethodResult] = []
    main_curve, q_hat, c_hat = curve_of(router)
    methods.append(MethodResult(router_label(cfg.quality_model, setting), "router", main_curve))
    intervals: dict[str, tuple[float, float]] = {}
    if bootstrap:
        intervals = (bootstrap_quality(q_hat, c_hat, quality, ref, seed=seed) if quality_only
                     else bootstrap_summary(q_hat, c_hat, quality, cost, ref, grid, seed=seed))
    report_decisions: list[dict[str, Any]] = []
    if decisions_at is None or decisions_at > 0:
        at = grid if decisions_at is None else grid[np.linspace(0, len(grid) - 1, decisions_at).astype(int)]
        for lam in at:
            chosen = pick(q_hat, c_hat, float(lam))
            for qid, j in zip(query_ids, chosen):
                report_decisions.append({"cost_weight": float(lam), "query_id": qid, "chosen": names[j]})
    if baselines:
        for label, fn in (("ridge baseline", ridge_baseline), ("knn baseline (k=40)", knn_baseline)):
            bq, bc = fn(train_emb, train_q, train_c, test_emb)
            methods.append(MethodResult(label, "baseline", sweep(bq, bc, quality, cost, ref, grid)))
        methods.append(MethodResult("oracle", "oracle", sweep(quality, cost, quality, cost, ref, grid)))
        rng = np.random.default_rng(seed)
        rows = np.arange(len(queries))
        random_pick = rng.integers(0, len(names), size=len(queries))
        ref_q, ref_c = quality[:, ref].mean(), cost[:, ref].sum()
        share = lambda x, total: float(x / total) if total > 0 else 0.0  # noqa: E731  (as sweep() does)
        methods.append(MethodResult("random", "single", _point(
            share(cost[rows, random_pick].sum(), ref_c), share(quality[rows, random_pick].mean(), ref_q))))
        for j, name in enumerate(names):
            methods.append(MethodResult(name, "single", _point(share(cost[:, j].sum(), ref_c),
                                                               share(quality[:, j].mean(), ref_q))))
    return EvalReport(
        reference=reference,
        n_train=len(train),
        n_test=len(queries),
        methods=methods,
        dropped_test_queries=int((~keep).sum()),
        decisions=report_decisions,
        intervals=intervals,
        quality_only=quality_only,
        encoder=router.encoder.fingerprint,
        notes=notes,
        duplicate_test_queries=int(duplicates),
    )
