"""The obvious alternatives a router must beat, computed on the same embeddings.

- ``ridge``: one ridge regression per model from the embedding to its quality (penalty 1, no
  tuning), with each model's mean training cost as its cost estimate;
- ``knn``: the mean quality of the 40 most similar training queries per model, same cost estimate;
- ``oracle``: the recorded outcomes used as predictions (an upper bound no router reaches);
- ``random`` and every single model: one point each.

Routers are swept over λ exactly like the main router (``tradeoff.sweep``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ridge_baseline", "knn_baseline"]


def _mean_cost(train_cost: np.ndarray, n: int) -> np.ndarray:
    return np.tile(np.nanmean(train_cost, axis=0), (n, 1))


def ridge_baseline(
    train_emb: np.ndarray, train_quality: np.ndarray, train_cost: np.ndarray, test_emb: np.ndarray, *, penalty: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted quality and cost for the test queries: ``w = (XᵀX + λI)⁻¹ Xᵀy`` with ``X = [e, 1]``."""
    x = np.hstack([train_emb, np.ones((train_emb.shape[0], 1))]).astype(np.float64)
    xt = np.hstack([test_emb, np.ones((test_emb.shape[0], 1))]).astype(np.float64)
    quality = np.empty((test_emb.shape[0], train_quality.shape[1]))
    for j in range(train_quality.shape[1]):
        ok = np.isfinite(train_quality[:, j])
        w = np.linalg.solve(x[ok].T @ x[ok] + penalty * np.eye(x.shape[1]), x[ok].T @ train_quality[ok, j])
        quality[:, j] = xt @ w
    return np.clip(quality, 0.0, 1.0), _mean_cost(train_cost, test_emb.shape[0])


def knn_baseline(
    train_emb: np.ndarray, train_quality: np.ndarray, train_cost: np.ndarray, test_emb: np.ndarray, *, k: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    """Mean quality of the ``k`` most cosine-similar training queries, per model."""
    sims = test_emb.astype(np.float64) @ train_emb.astype(np.float64).T
    quality = np.empty((test_emb.shape[0], train_quality.shape[1]))
    for j in range(train_quality.shape[1]):
        ok = np.flatnonzero(np.isfinite(train_quality[:, j]))
        kk = min(k, ok.size)
        idx = np.argpartition(-sims[:, ok], kk - 1, axis=1)[:, :kk]
        quality[:, j] = train_quality[ok, j][idx].mean(axis=1)
    return quality, _mean_cost(train_cost, test_emb.shape[0])
