"""Everything the router predicts for one candidate, kept independent of every other candidate.

Features. ``x = [e, z, 1]`` where ``e`` is the unit query embedding and
``z = log(1 + t_in) / log(1 + 8192)`` the prompt length on a log scale (long prompts cost more and
are often harder). ``x`` feeds the ridge models and the LinUCB uncertainty.

Quality ``q(e)`` in [0, 1]: the mean of the enabled predictors (``ridge``: LinUCB ridge on ``x``;
``knn``: mean outcome of the nearest examples; ``mlp``: a small MLP on ``e``), clipped to [0, 1].

Cost ``c`` in USD, one of two ways:

- ``"tokens"`` (the data records output tokens and the candidate has prices):
  ``c = p_in·t_in + p_out·o(e)`` with ``o(e) = exp(ridge(x)) − 1`` predicted output tokens;
- ``"direct"`` (only the charged cost is recorded, as in RouterBench):
  ``c = exp(ridge(x)) − c0`` fitted on ``log(cost + c0)``, ``c0 = 1e-7`` USD.

The quality and cost ridges share one ``A⁻¹`` (same inputs), so one Sherman-Morrison step updates
both and the uncertainty. Adding or removing a candidate never touches another's predictor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from .._exceptions import DataError
from .knn import KNNRegressor
from .linear import LinUCBRidge
from .mlp import MLPRegressorNP

__all__ = ["CandidatePredictor", "features", "COST_FLOOR_USD"]

COST_FLOOR_USD = 1e-7
_LOG_MAX_TOKENS = float(np.log1p(8192))
CostMode = Literal["tokens", "direct"]


def features(embeddings: np.ndarray, input_tokens: np.ndarray) -> np.ndarray:
    """``x = [e, z, 1]`` for a batch; ``z`` is the log prompt length scaled to about [0, 1]."""
    e = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
    z = np.log1p(np.asarray(input_tokens, dtype=np.float64).reshape(-1, 1)) / _LOG_MAX_TOKENS
    return np.hstack([e, z, np.ones((e.shape[0], 1))])


class CandidatePredictor:
    """Quality, cost and uncertainty predictions for one candidate."""

    def __init__(
        self,
        name: str,
        *,
        dim: int,
        kinds: Sequence[str] = ("ridge", "knn"),
        cost_mode: CostMode = "direct",
        prior_strength: float = 1.0,
        knn_k: int = 40,
        mlp_hidden: int = 64,
        mlp_alpha: float = 1e-2,
        seed: int = 0,
    ) -> None:
        self.name = name
        self.dim = dim  # embedding size; x has dim + 2 entries
        self.kinds = tuple(kinds)
        self.cost_mode: CostMode = cost_mode
        self.prior_strength = prior_strength
        self.knn_k = knn_k
        self.mlp_hidden = mlp_hidden
        self.mlp_alpha = mlp_alpha
        self.seed = seed
        # targets of the shared ridge: column 0 quality, column 1 log cost or log output tokens
        self.linear = LinUCBRidge(dim + 2, 2, prior_strength=prior_strength)
        self.knn = KNNRegressor(knn_k)
        self.mlp: MLPRegressorNP | None = None

    @property
    def n_examples(self) -> int:
        return self.linear.n_seen

    # -- learning ------------------------------------------------------------------------------
    def cost_target(self, cost: np.ndarray, output_tokens: np.ndarray | None) -> np.ndarray:
        if self.cost_mode == "tokens":
            if output_tokens is None:
                raise DataError(f"candidate {self.name!r}: cost mode 'tokens' needs output_tokens")
            return np.log1p(np.maximum(np.asarray(output_tokens, dtype=np.float64), 0.0))
        return np.log(np.maximum(np.asarray(cost, dtype=np.float64), 0.0) + COST_FLOOR_USD)

    def fit(
        self,
        x: np.ndarray,
        bank_rows: np.ndarray,
        embeddings: np.ndarray,
        quality: np.ndarray,
        cost: np.ndarray,
        output_tokens: np.ndarray | None = None,
    ) -> CandidatePredictor:
        """Fit every enabled predictor on this candidate's examples (rows of ``x``)."""
        quality = np.asarray(quality, dtype=np.float64)
        targets = np.column_stack([quality, self.cost_target(cost, output_tokens)])
        self.linear.fit(x, targets)
        self.knn.fit(bank_rows, quality)
        if "mlp" in self.kinds:
            self.mlp = MLPRegressorNP(self.mlp_hidden, self.mlp_alpha, seed=self.seed).fit(embeddings, quality)
        return self

    def update(
        self,
        x: np.ndarray,
        bank_rows: np.ndarray,
        quality: np.ndarray,
        cost: np.ndarray | None = None,
        output_tokens: np.ndarray | None = None,
    ) -> None:
        """Online update with new outcomes. Unknown cost keeps the current cost prediction."""
        x = np.atleast_2d(x)
        quality = np.asarray(quality, dtype=np.float64).reshape(-1)
        if cost is None and output_tokens is None:
            cost_t = self.linear.predict(x)[:, 1]
        else:
            cost_t = self.cost_target(
                np.zeros(len(quality)) if cost is None else cost, output_tokens
            )
        self.linear.update(x, np.column_stack([quality, cost_t]))
        self.knn.update(bank_rows, quality)
        # the MLP is refitted offline only; online signal flows through ridge, kNN and feedback

    # -- prediction ----------------------------------------------------------------------------
    def predict_quality(self, x: np.ndarray, embeddings: np.ndarray, bank_similarities: np.ndarray | None) -> np.ndarray:
        """Mean of the enabled predictors, clipped to [0, 1]; ``bank_similarities`` is needed only by kNN."""
        parts = []
        if "ridge" in self.kinds or self.knn.targets.size == 0:
            parts.append(self.linear.predict(x)[:, 0])
        if "knn" in self.kinds and self.knn.targets.size:
            assert bank_similarities is not None, "kNN prediction needs the similarities to the bank"
            parts.append(self.knn.predict(bank_similarities))
        if "mlp" in self.kinds and self.mlp is not None:
            parts.append(self.mlp.predict(embeddings))
        mean = parts[0] if len(parts) == 1 else np.mean(parts, axis=0)
        return np.clip(mean, 0.0, 1.0)

    def predict_cost(self, x: np.ndarray, input_tokens: np.ndarray, input_price: float, output_price: float) -> np.ndarray:
        """Predicted USD per query."""
        pred = self.linear.predict(x)[:, 1]
        if self.cost_mode == "tokens":
            out_tokens = np.expm1(np.clip(pred, 0.0, 20.0))
            return (input_price * np.asarray(input_tokens, dtype=np.float64) + output_price * out_tokens) / 1e6
        return np.maximum(np.exp(np.clip(pred, -40.0, 10.0)) - COST_FLOOR_USD, 0.0)

    def uncertainty(self, x: np.ndarray) -> np.ndarray:
        return self.linear.uncertainty(x)

    # -- state ---------------------------------------------------------------------------------
    def meta(self) -> dict[str, object]:
        return {
            "name": self.name,
            "dim": self.dim,
            "kinds": list(self.kinds),
            "cost_mode": self.cost_mode,
            "prior_strength": self.prior_strength,
            "knn_k": self.knn_k,
            "mlp_hidden": self.mlp_hidden,
            "mlp_alpha": self.mlp_alpha,
            "seed": self.seed,
            "has_mlp": self.mlp is not None,
        }

    def state_arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"linear.{k}": v for k, v in self.linear.state_arrays().items()}
        arrays.update({f"knn.{k}": v for k, v in self.knn.state_arrays().items()})
        if self.mlp is not None:
            arrays.update({f"mlp.{k}": v for k, v in self.mlp.state_arrays().items()})
        return arrays

    @classmethod
    def from_state(cls, meta: dict[str, object], arrays: dict[str, np.ndarray], *, bank_size: int) -> CandidatePredictor:
        model = cls(
            str(meta["name"]),
            dim=int(meta["dim"]),  # type: ignore[call-overload]
            kinds=[str(k) for k in meta["kinds"]],  # type: ignore[attr-defined]
            cost_mode=meta["cost_mode"],  # type: ignore[arg-type]
            prior_strength=float(meta["prior_strength"]),  # type: ignore[arg-type]
            knn_k=int(meta["knn_k"]),  # type: ignore[call-overload]
            mlp_hidden=int(meta["mlp_hidden"]),  # type: ignore[call-overload]
            mlp_alpha=float(meta["mlp_alpha"]),  # type: ignore[arg-type]
            seed=int(meta["seed"]),  # type: ignore[call-overload]
        )
        sub = lambda prefix: {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}  # noqa: E731
        model.linear = LinUCBRidge.from_state(sub("linear."), prior_strength=model.prior_strength)
        if model.linear.dim != model.dim + 2:
            raise DataError(f"candidate {model.name!r}: state has dim {model.linear.dim - 2}, manifest says {model.dim}")
        model.knn = KNNRegressor.from_state(sub("knn."), k=model.knn_k, bank_size=bank_size)
        if meta.get("has_mlp"):
            model.mlp = MLPRegressorNP.from_state(sub("mlp."), hidden=model.mlp_hidden, alpha=model.mlp_alpha, seed=model.seed)
        return model
