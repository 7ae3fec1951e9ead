"""From predictions to decisions: eligibility, the latency terms, the meta score, the explanation.

The router predicts quality ``q``, cost ``c`` and uncertainty ``u`` for queries × candidates; this
module turns them into :class:`~mixllm_router.policy.decision.RoutingDecision` objects::

    eligible_il = requested(l) ∧ (c_il ≤ max_cost or l is the cheapest requested) ∧ (W_l ≤ τ, under hard_limit)
    S_il        = q_il − λ·c_il + α·u_il − β·P(W_l) + γ·κ_il·s_il          (meta_score.py)
    ranking_i   = eligible candidates by S_il descending, ties by cost ascending

With Thompson sampling the bonus ``α·u`` becomes ``σ·u·ξ``, ``ξ ~ N(0, 1)``: a draw of ``q`` from
the ridge posterior. Every input is an array or a setting, so nothing here knows the router,
the learner or the load tracker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .._exceptions import ConfigError, UnknownCandidateError
from .decision import CandidateScore, DecisionRecord, RoutingDecision, new_decision_id
from .meta_score import ScoreTerms, meta_scores

if TYPE_CHECKING:
    from .load import LatencySettings

__all__ = ["Exploration", "RoutingRequest", "decide", "eligibility", "latency_terms"]


@dataclass(frozen=True)
class RoutingRequest:
    """What the caller asked of a batch: λ, a cost cap and a subset of candidates (None: all)."""

    cost_weight: float
    max_cost_usd: float | None = None
    candidates: Sequence[str] | None = None


@dataclass(frozen=True)
class Exploration:
    """The exploration term: ``"ucb"`` adds ``alpha·u``; ``"thompson"`` adds ``thompson_scale·u·ξ``."""

    policy: str
    alpha: float
    thompson_scale: float
    feedback_weight: float


def eligibility(
    names: Sequence[str], cost: np.ndarray, max_cost_usd: float | None, candidates: Sequence[str] | None
) -> np.ndarray:
    """Queries × candidates mask of who may answer; the cheapest requested one always may."""
    eligible = np.ones(cost.shape, dtype=bool)
    if candidates is not None:
        unknown = [c for c in candidates if c not in names]
        if unknown:
            raise UnknownCandidateError(f"unknown candidates {unknown}; known: {list(names)}")
        if not candidates:
            raise ConfigError("candidates= must name at least one candidate")
        eligible &= np.isin(list(names), list(candidates))[None, :]
    if max_cost_usd is not None:
        if not max_cost_usd >= 0:
            raise ConfigError(f"max_cost_usd must be >= 0, got {max_cost_usd}")
        within = cost <= max_cost_usd
        fallback = np.where(eligible, cost, np.inf).argmin(axis=1)
        none_left = ~(within & eligible).any(axis=1)
        within[none_left, fallback[none_left]] = True
        eligible &= within
    return eligible


def latency_terms(waits: np.ndarray, latency: LatencySettings, eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Penalties ``P(W)`` and eligibility after the hard limit.

    With ``hard_limit``, a candidate whose wait exceeds τ stays eligible for a query only when
    every candidate eligible for it is past τ.
    """
    penalty = np.asarray(latency.penalty(waits), dtype=np.float64)
    if latency.hard_limit:
        over = waits > latency.tolerance_s
        if over.any():
            keep = eligible & ~over[None, :]
            eligible = np.where(keep.any(axis=1, keepdims=True), keep, eligible)
    return penalty, eligible


def _reason(name: str, cost: float, wait: float, eligible: bool, request: RoutingRequest, tolerance_s: float) -> str:
    if eligible:
        return ""
    if request.candidates is not None and name not in request.candidates:
        return "not among the requested candidates"
    if request.max_cost_usd is not None and cost > request.max_cost_usd:
        return f"predicted cost over max_cost_usd={request.max_cost_usd:g}"
    if wait > tolerance_s:
        return f"expected wait {wait:.1f}s over the {tolerance_s:g}s tolerance"
    return "not eligible"


def decide(
    queries: Sequence[str],
    names: list[str],
    terms: ScoreTerms,
    input_tokens: np.ndarray,
    embeddings: np.ndarray,
    *,
    request: RoutingRequest,
    eligible: np.ndarray,
    waits: np.ndarray,
    latency: LatencySettings,
    exploration: Exploration,
    rng: np.random.Generator,
    now: float,
) -> list[tuple[RoutingDecision, DecisionRecord]]:
    """Score, rank and explain every query; each decision with the record the decision log keeps.

    ``terms`` holds ``q``, ``c``, ``u``, the penalty and (when the feedback weight is on) the
    feedback score and its confidence, all queries × candidates.
    """
    quality, cost = terms.quality, terms.cost
    unc = terms.uncertainty if terms.uncertainty is not None else np.zeros_like(quality)  # none: no bonus
    alpha, scored = exploration.alpha, terms
    if exploration.policy == "thompson":  # σ·u·ξ: a draw of q from the ridge posterior N(w, σ²A⁻¹)
        draws = rng.standard_normal(unc.shape)
        scored = ScoreTerms(quality=terms.quality, cost=terms.cost, uncertainty=unc * draws,
                            penalty=terms.penalty, feedback=terms.feedback, confidence=terms.confidence)
        alpha = exploration.thompson_scale
    scores = meta_scores(scored, cost_weight=request.cost_weight, exploration=alpha, latency_weight=latency.weight,
                         feedback_weight=exploration.feedback_weight, eligible=eligible)
    penalty = np.broadcast_to(np.asarray(terms.penalty), quality.shape)
    out = []
    for i, query in enumerate(queries):
        order = sorted(range(len(names)), key=lambda j: (-scores[i, j], cost[i, j]))
        ranking = tuple(names[j] for j in order if eligible[i, j])
        per_candidate = tuple(
            CandidateScore(
                name=name,
                quality=float(quality[i, j]),
                cost_usd=float(cost[i, j]),
                uncertainty=float(unc[i, j]),
                wait_s=float(waits[j]),
                penalty=float(penalty[i, j]),
                feedback=0.0 if terms.feedback is None else float(terms.feedback[i, j]),
                score=float(scores[i, j]),
                eligible=bool(eligible[i, j]),
                reason=_reason(name, float(cost[i, j]), float(waits[j]), bool(eligible[i, j]), request,
                               latency.tolerance_s),
            )
            for j, name in enumerate(names)
        )
        decision_id = new_decision_id()
        record = DecisionRecord(decision_id=decision_id, chosen=ranking[0], embedding=embeddings[i],
                                input_tokens=float(input_tokens[i]), created_at=now)
        decision = RoutingDecision(decision_id=decision_id, chosen=ranking[0], scores=per_candidate,
                                   cost_weight=request.cost_weight, query_tokens=int(input_tokens[i]),
                                   created_at=now, query=query, ranking=ranking)
        out.append((decision, record))
    return out
