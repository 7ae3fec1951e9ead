"""The meta decision: one score per candidate, route to the highest.

For a query with embedding ``e`` and candidate ``l``::

    S_l = q_l(e) − λ·c_l(e) + α·u_l(e) − β·P_l(W_l) + γ·κ_l·s_l(e)

- ``q_l``  predicted quality in [0, 1]
- ``c_l``  predicted cost in USD (known prompt tokens × input price + predicted output)
- ``u_l``  LinUCB uncertainty ``sqrt(eᵀ A_l⁻¹ e)``; ``α`` rewards exploring little-seen candidates
- ``P_l``  latency penalty of the candidate's expected wait ``W_l`` (see ``mixllm_router.policy.load``)
- ``s_l``  online feedback score, the centred policy probability ``π(l|e) − 1/m`` of the network
           trained on feedback (bounded; see ``mixllm_router.learning.learner``), weighted by its
           confidence ``κ_l = 1/(Var[s_l] + ε)``
- ``λ``    quality per USD: how many points of quality one dollar is worth. ``λ = 0`` ignores
           cost; large ``λ`` picks the cheapest candidate.

Candidates excluded for the query (too expensive for a per-query budget, past the latency
tolerance while others are not, filtered out by the caller) get ``S = −inf``; at least one
candidate always stays eligible.

This module is pure numpy: it scores a whole batch (rows = queries, columns = candidates) at once,
so an evaluation sweep over many ``λ`` re-uses one set of predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._exceptions import ConfigError

__all__ = ["ScoreTerms", "meta_scores", "choose"]


@dataclass(frozen=True)
class ScoreTerms:
    """Per-candidate inputs of the meta score for a batch: arrays of shape (n_queries, n_candidates).

    Terms that do not apply (no latency tracking, no online feedback yet) are ``None``.
    """

    quality: np.ndarray
    cost: np.ndarray
    uncertainty: np.ndarray | None = None
    penalty: np.ndarray | None = None
    feedback: np.ndarray | None = None
    confidence: np.ndarray | None = None  # κ, used with ``feedback``

    def __post_init__(self) -> None:
        shape = np.shape(self.quality)
        for name in ("cost", "uncertainty", "penalty", "feedback", "confidence"):
            value = getattr(self, name)
            if value is not None and np.shape(value) != shape:
                raise ConfigError(f"ScoreTerms.{name} has shape {np.shape(value)}, expected {shape}")


def meta_scores(
    terms: ScoreTerms,
    *,
    cost_weight: float,
    exploration: float = 0.0,
    latency_weight: float = 0.0,
    feedback_weight: float = 0.0,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """``S = q − λ·c + α·u − β·P + γ·κ·s`` with ineligible entries set to ``−inf``."""
    if cost_weight < 0 or exploration < 0 or latency_weight < 0 or feedback_weight < 0:
        raise ConfigError("cost, exploration, latency and feedback weights must be >= 0")
    score = np.asarray(terms.quality, dtype=np.float64) - cost_weight * np.asarray(terms.cost)
    if exploration and terms.uncertainty is not None:
        score = score + exploration * terms.uncertainty
    if latency_weight and terms.penalty is not None:
        score = score - latency_weight * terms.penalty
    if feedback_weight and terms.feedback is not None:
        kappa = 1.0 if terms.confidence is None else terms.confidence
        score = score + feedback_weight * kappa * terms.feedback
    if eligible is not None:
        score = np.where(eligible, score, -np.inf)
    return score


def choose(scores: np.ndarray, tie_break: np.ndarray | None = None) -> np.ndarray:
    """Index of the best candidate per row. Ties go to the lower ``tie_break`` (e.g. cost)."""
    scores = np.atleast_2d(scores)
    if tie_break is None:
        return np.argmax(scores, axis=1)
    best = scores.max(axis=1, keepdims=True)
    tied = np.isclose(scores, best, rtol=0.0, atol=1e-12) & np.isfinite(scores)
    return np.argmin(np.where(tied, np.atleast_2d(tie_break), np.inf), axis=1)
