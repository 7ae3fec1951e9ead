"""k-nearest-neighbour quality predictor over a shared bank of example embeddings.

``q(e) = (1/k) Σ_{i ∈ N_k(e)} y_i`` over the ``k`` stored examples of this candidate with the highest
cosine similarity ``eᵀe_i`` (embeddings are unit-norm, so the dot product is the cosine). Uniform
weights: on 0/1 outcomes a similarity-weighted mean is noisier and no better. A candidate with at
most ``k`` examples predicts the mean of all of them.

The router keeps ONE bank of embeddings for every query any candidate has seen and computes the
similarities once per query; each candidate only stores the bank rows it has outcomes for and
those outcomes. That keeps routing cost at one matrix product however many candidates there are,
and adding feedback is an append with no refit.
"""

from __future__ import annotations

import numpy as np

from .._exceptions import ConfigError, DataError

__all__ = ["KNNRegressor"]


#: Similarities closer than this are tied (a few float32 ulps of a 384-term dot product near 1).
_TIE = 1e-6


class KNNRegressor:
    """Mean outcome of the ``k`` most similar examples this candidate has seen."""

    def __init__(self, k: int = 40) -> None:
        if k <= 0:
            raise ConfigError(f"k must be > 0, got {k}")
        self.k = k
        self.rows = np.zeros(0, dtype=np.int64)  # indices into the router's embedding bank
        self.targets = np.zeros(0, dtype=np.float64)

    def fit(self, rows: np.ndarray, targets: np.ndarray) -> KNNRegressor:
        self.rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        self.targets = np.asarray(targets, dtype=np.float64).reshape(-1)
        if self.rows.shape != self.targets.shape:
            raise DataError("KNNRegressor.fit: rows and targets differ in length")
        return self

    def update(self, rows: np.ndarray, targets: np.ndarray) -> None:
        self.rows = np.concatenate([self.rows, np.asarray(rows, dtype=np.int64).reshape(-1)])
        self.targets = np.concatenate([self.targets, np.asarray(targets, dtype=np.float64).reshape(-1)])

    def keep_recent(self, n: int) -> None:
        """Keep only the last ``n`` examples (they are stored in the order they arrived)."""
        if 0 <= n < self.targets.size:
            self.rows = self.rows[self.targets.size - n:]
            self.targets = self.targets[self.targets.size - n:]

    def predict(self, bank_similarities: np.ndarray) -> np.ndarray:
        """Predict from similarities to the whole bank, shape (n_queries, n_bank)."""
        sims = np.atleast_2d(bank_similarities)
        n = self.targets.shape[0]
        if n == 0:
            return np.full(sims.shape[0], np.nan)
        if n <= self.k:
            return np.full(sims.shape[0], self.targets.mean())
        own = sims[:, self.rows]
        # The k most similar, with similarities within _TIE of the k-th one taken as tied and broken
        # by the lower bank row. float32 products differ in the last bits with the shape of the
        # batch (BLAS kernels), and duplicate prompts tie exactly; without this rule one query
        # predicted alone, in a block or in a batch could get different neighbours.
        kth = np.partition(own, n - self.k, axis=1)[:, n - self.k, None]
        better = own > kth + _TIE
        tied = np.abs(own - kth) <= _TIE
        room = self.k - better.sum(axis=1, keepdims=True)
        chosen = better | (tied & (np.cumsum(tied, axis=1) <= room))
        return (chosen @ self.targets) / self.k

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {"rows": self.rows, "targets": self.targets}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], *, k: int, bank_size: int) -> KNNRegressor:
        model = cls(k).fit(arrays["rows"], arrays["targets"])
        if model.rows.size and (model.rows.min() < 0 or model.rows.max() >= bank_size):
            raise DataError("kNN rows point outside the embedding bank")
        return model
