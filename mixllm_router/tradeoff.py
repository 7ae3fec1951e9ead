"""Quality-cost trade-off curves: sweeping the cost weight λ and summarising the curve.

Shared by the router (to calibrate friendly cost handles on held-out training predictions) and by
the evaluation (to report the metrics of DESIGN §2), so both use the same arithmetic.

For predictions ``q̂, ĉ`` (queries × candidates) and a cost weight ``λ``, the router picks
``argmax_l q̂_l − λ·ĉ_l`` per query; on recorded outcomes ``Q, C`` that choice has

    quality share = mean_i Q[i, pick_i] / mean_i Q[i, ref]
    cost share    = Σ_i C[i, pick_i]   / Σ_i C[i, ref]

relative to a reference candidate ``ref``. Sweeping λ over a grid gives points (cost share,
quality share). The *best quality reachable within a cost share s* is the highest quality share
among points whose cost share is ≤ s (0 if none), and

- ``quality_at(s)``     that value at s (0.10 and 0.25 are reported),
- ``cost_to_reach(r)``  the smallest cost share of a point with quality share ≥ r (∞ if none),
- ``auc``               the mean of ``quality_at(s)`` over s = 0, 0.01, …, 1.00.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TradeoffCurve", "bootstrap_summary", "default_cost_weights", "sweep", "pick"]


def default_cost_weights(typical_cost_usd: float, n: int = 200) -> np.ndarray:
    """A λ grid (0 plus log-spaced values) scaled to the data's typical per-query cost.

    ``λ·c`` must range from negligible to dominant against quality differences of about 0.01–1,
    so λ spans ``[1e-3, 1e3] / typical_cost``.
    """
    typical = max(float(typical_cost_usd), 1e-12)
    return np.concatenate([[0.0], np.logspace(-3, 3, n - 1) / typical])


def pick(quality_pred: np.ndarray, cost_pred: np.ndarray, cost_weight: float, eligible: np.ndarray | None = None) -> np.ndarray:
    """Index of ``argmax q̂ − λ ĉ`` per row; ties go to the cheaper prediction."""
    score = quality_pred - cost_weight * cost_pred
    if eligible is not None:
        score = np.where(eligible, score, -np.inf)
    best = score.max(axis=1, keepdims=True)
    tied = score >= best - 1e-12
    return np.argmin(np.where(tied, cost_pred, np.inf), axis=1)


@dataclass(frozen=True)
class TradeoffCurve:
    """Points of a λ sweep, in shares of the reference candidate's quality and cost."""

    cost_weights: np.ndarray
    cost_share: np.ndarray
    quality_share: np.ndarray

    def quality_at(self, share: float) -> float:
        ok = self.cost_share <= share + 1e-12
        return float(self.quality_share[ok].max()) if ok.any() else 0.0

    def cost_to_reach(self, quality_share: float) -> float:
        ok = self.quality_share >= quality_share - 1e-12
        return float(self.cost_share[ok].min()) if ok.any() else float("inf")

    def auc(self) -> float:
        return float(np.mean([self.quality_at(s) for s in np.linspace(0.0, 1.0, 101)]))

    def envelope(self) -> tuple[np.ndarray, np.ndarray]:
        """The upper-left frontier: for increasing cost share, the best quality so far."""
        order = np.argsort(self.cost_share, kind="stable")
        return self.cost_share[order], np.maximum.accumulate(self.quality_share[order])

    def cost_weight_for_share(self, share: float) -> float:
        """The λ with the best quality among sweep points within ``share`` (the cheapest if none)."""
        ok = self.cost_share <= share + 1e-12
        if not ok.any():
            return float(self.cost_weights[np.argmin(self.cost_share)])
        idx = np.flatnonzero(ok)
        best = idx[np.argmax(self.quality_share[idx])]
        return float(self.cost_weights[best])

    def summary(self) -> dict[str, float]:
        return {
            "auc": 100 * self.auc(),
            "quality_at_10": 100 * self.quality_at(0.10),
            "quality_at_25": 100 * self.quality_at(0.25),
            "cost_to_97_25": 100 * self.cost_to_reach(0.9725),
        }


def sweep(
    quality_pred: np.ndarray,
    cost_pred: np.ndarray,
    quality_true: np.ndarray,
    cost_true: np.ndarray,
    reference: int,
    cost_weights: np.ndarray | None = None,
) -> TradeoffCurve:
    """Route every query at every λ and score the choices on the recorded outcomes."""
    if cost_weights is None:
        cost_weights = default_cost_weights(float(np.nanmean(cost_true)))
    rows = np.arange(quality_true.shape[0])
    ref_quality = float(np.mean(quality_true[:, reference]))
    ref_cost = float(np.sum(cost_true[:, reference]))
    cost_share = np.empty(len(cost_weights))
    quality_share = np.empty(len(cost_weights))
    for i, lam in enumerate(cost_weights):
        chosen = pick(quality_pred, cost_pred, float(lam))
        cost_share[i] = cost_true[rows, chosen].sum() / ref_cost if ref_cost > 0 else 0.0
        quality_share[i] = quality_true[rows, chosen].mean() / ref_quality if ref_quality > 0 else 0.0
    return TradeoffCurve(np.asarray(cost_weights, dtype=np.float64), cost_share, quality_share)


def bootstrap_summary(
    quality_pred: np.ndarray,
    cost_pred: np.ndarray,
    quality_true: np.ndarray,
    cost_true: np.ndarray,
    reference: int,
    cost_weights: np.ndarray,
    *,
    n_resamples: int = 200,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of the curve metrics when the test queries are resampled.

    The choices at each λ are fixed (they depend on the predictions only); each resample re-draws
    the queries with replacement and recomputes the shares, so the interval shows how much of a
    difference between two routers the test set can resolve.
    """
    rows = np.arange(quality_true.shape[0])
    picks = np.stack([pick(quality_pred, cost_pred, float(lam)) for lam in cost_weights])  # (L, n)
    q_chosen = quality_true[rows[None, :], picks]
    c_chosen = cost_true[rows[None, :], picks]
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {"auc": [], "quality_at_10": [], "quality_at_25": [], "cost_to_97_25": []}
    for _ in range(n_resamples):
        idx = rng.integers(0, len(rows), size=len(rows))
        ref_q = quality_true[idx, reference].mean()
        ref_c = cost_true[idx, reference].sum()
        curve = TradeoffCurve(cost_weights, c_chosen[:, idx].sum(axis=1) / ref_c, q_chosen[:, idx].mean(axis=1) / ref_q)
        for key, value in curve.summary().items():
            samples[key].append(value)
    return {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for k, v in samples.items()}
