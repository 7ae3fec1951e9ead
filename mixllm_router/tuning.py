"""Choosing the router's knobs by cross-validation on the training data only.

For each candidate setting, the router's out-of-fold predictions on the training queries (k-fold:
every query predicted by predictors that never saw it) are swept over λ, and the setting with the
highest AUC of the quality-cost curve wins (DESIGN §2). Test data never enters this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._exceptions import DataError
from .config import RouterConfig, make_config
from .tradeoff import default_cost_weights, sweep

if TYPE_CHECKING:
    from .data import RoutingDataset
    from .encoders.base import QueryEncoder

__all__ = ["DEFAULT_GRID", "TuningResult", "tune"]

#: The settings tried by default: the predictor family and its main regulariser.
DEFAULT_GRID: tuple[dict[str, Any], ...] = (
    {"quality_model": "ridge", "prior_strength": 1.0},
    {"quality_model": "ridge", "prior_strength": 3.0},
    {"quality_model": "ridge", "prior_strength": 10.0},
    {"quality_model": "ridge", "prior_strength": 30.0},
    {"quality_model": "knn", "knn_k": 40},
    {"quality_model": "knn", "knn_k": 80},
    {"quality_model": "knn", "knn_k": 160},
    {"quality_model": "ridge+knn", "prior_strength": 10.0, "knn_k": 80},
)


@dataclass(frozen=True)
class TuningResult:
    best: RouterConfig
    rows: list[tuple[dict[str, Any], dict[str, float]]]  # (overrides, out-of-fold summary)

    def table(self) -> str:
        lines = [f"{'setting':<58} {'AUC':>6} {'Q@10%':>6} {'Q@25%':>6} {'C@97.25%':>9}"]
        for overrides, s in sorted(self.rows, key=lambda r: -r[1]["auc"]):
            label = ", ".join(f"{k}={v}" for k, v in overrides.items())
            c97 = f"{s['cost_to_97_25']:9.1f}" if np.isfinite(s["cost_to_97_25"]) else f"{'—':>9}"
            lines.append(f"{label:<58} {s['auc']:6.1f} {s['quality_at_10']:6.1f} {s['quality_at_25']:6.1f} {c97}")
        return "\n".join(lines)


def tune(
    data: RoutingDataset,
    *,
    config: RouterConfig | dict[str, Any] | None = None,
    grid: Sequence[dict[str, Any]] = DEFAULT_GRID,
    encoder: QueryEncoder | None = None,
    embeddings: np.ndarray | None = None,
    reference: str | None = None,
    folds: int = 5,
) -> TuningResult:
    """Pick the grid setting with the best out-of-fold AUC on ``data``."""
    from .router import MixLLMRouter

    base = make_config(config)
    probe = MixLLMRouter(config=base, encoder=encoder)
    names = data.models
    quality, cost = data.matrix("quality", names), data.matrix("cost", names)
    complete = np.isfinite(quality).all(axis=1) & np.isfinite(cost).all(axis=1)
    if complete.sum() < 4 * folds:
        raise DataError(f"tuning needs at least {4 * folds} queries with every model's outcome")
    if embeddings is None:
        embeddings, tokens = probe.embed(data.queries)
    else:
        tokens = np.array([probe.encoder.count_tokens(q) for q in data.queries], dtype=np.float64)
    embeddings, tokens = np.asarray(embeddings)[complete], tokens[complete]
    quality, cost = quality[complete], cost[complete]
    ref_name = reference or base.reference_model or names[int(np.argmax(cost.mean(axis=0)))]
    ref = names.index(ref_name)
    grid_lam = default_cost_weights(float(cost.mean()))
    rows: list[tuple[dict[str, Any], dict[str, float]]] = []
    for overrides in grid:
        cfg = make_config(base, **overrides)
        router = MixLLMRouter(names, config=cfg, encoder=probe.encoder)
        q_oof, c_oof = router.out_of_fold(names, embeddings, tokens, quality, cost, folds=folds)
        rows.append((dict(overrides), sweep(q_oof, c_oof, quality, cost, ref, grid_lam).summary()))
    best_overrides = max(rows, key=lambda r: r[1]["auc"])[0]
    return TuningResult(make_config(base, **best_overrides), rows)
