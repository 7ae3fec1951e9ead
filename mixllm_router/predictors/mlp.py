"""A one-hidden-layer MLP quality predictor, trained with scikit-learn and run with numpy.

``q(e) = clip(W2ᵀ relu(W1ᵀ e + b1) + b2, 0, 1)``. Training uses scikit-learn's
``MLPRegressor`` (Adam, L2 penalty, early stopping on a held-out tenth); only the weight arrays are
kept, so prediction is two small matrix products and the checkpoint is plain arrays, never a pickled
estimator.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["MLPRegressorNP"]


class MLPRegressorNP:
    """Small MLP: fitted with scikit-learn, evaluated and stored as numpy arrays."""

    def __init__(self, hidden: int = 64, alpha: float = 1e-2, *, seed: int = 0, max_iter: int = 300) -> None:
        self.hidden = hidden
        self.alpha = alpha
        self.seed = seed
        self.max_iter = max_iter
        self.w1: np.ndarray | None = None
        self.b1: np.ndarray | None = None
        self.w2: np.ndarray | None = None
        self.b2: np.ndarray | None = None

    def fit(self, embeddings: np.ndarray, targets: np.ndarray) -> MLPRegressorNP:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor

        y = np.asarray(targets, dtype=np.float64).reshape(-1)
        x = np.asarray(embeddings, dtype=np.float64)
        if y.shape[0] < 20 or np.ptp(y) == 0:
            # too little or constant data: a constant predictor is the honest answer
            self.w1 = np.zeros((x.shape[1], 1))
            self.b1 = np.zeros(1)
            self.w2 = np.zeros((1, 1))
            self.b2 = np.array([y.mean() if y.size else 0.5])
            return self
        model = MLPRegressor(
            hidden_layer_sizes=(self.hidden,),
            alpha=self.alpha,
            max_iter=self.max_iter,
            early_stopping=True,
            random_state=self.seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, y)
        self.w1, self.w2 = (np.asarray(w) for w in model.coefs_)
        self.b1, self.b2 = (np.asarray(b) for b in model.intercepts_)
        return self

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        if self.w1 is None:
            raise RuntimeError("MLPRegressorNP is not fitted")
        x = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
        hidden = np.maximum(x @ self.w1 + self.b1, 0.0)
        return np.clip((hidden @ self.w2 + self.b2).reshape(-1), 0.0, 1.0)

    def state_arrays(self) -> dict[str, np.ndarray]:
        assert self.w1 is not None and self.b1 is not None and self.w2 is not None and self.b2 is not None
        return {"w1": self.w1, "b1": self.b1, "w2": self.w2, "b2": self.b2}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], *, hidden: int, alpha: float, seed: int) -> MLPRegressorNP:
        model = cls(hidden, alpha, seed=seed)
        model.w1, model.b1 = np.asarray(arrays["w1"], np.float64), np.asarray(arrays["b1"], np.float64)
        model.w2, model.b2 = np.asarray(arrays["w2"], np.float64), np.asarray(arrays["b2"], np.float64)
        return model
