"""Where a candidate added without retraining starts: its labelled examples and its prior.

``add_candidate`` sets the new candidate's ridge to a prior ``(w0, m0)`` — from the candidate nearest
in log prices (``"similar"``), the mean of all candidates (``"mean"``), a named candidate, or a mix
of the others fitted to its examples (``"fitted"``, :mod:`.onboarding`) — then applies its examples
on top. The uncertainty starts at its maximum, so the exploration bonus sends it traffic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import DataError, UnknownCandidateError

if TYPE_CHECKING:
    from ..candidates import Candidate
    from ..data import RoutingDataset
    from .host import LearnerHost

__all__ = ["candidate_examples", "cost_bias_guess", "fitted_prior", "named_prior"]


def candidate_examples(
    router: LearnerHost, name: str, examples: RoutingDataset | Iterable[Mapping[str, Any]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None] | None:
    from ..data import RoutingDataset

    cost: np.ndarray | None
    out: np.ndarray | None
    if isinstance(examples, RoutingDataset):
        if name not in examples.models:
            raise DataError(f"the examples have no outcomes for {name!r}; models in them: {examples.models}")
        ds = examples.with_models([name])
        queries = ds.queries
        quality = ds.matrix("quality", [name])[:, 0]
        cost = ds.matrix("cost", [name])[:, 0]
        out = ds.matrix("output_tokens", [name])[:, 0] if ds.has_column("output_tokens") else None
    else:
        records = list(examples)
        queries, q, c, o = [], [], [], []
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping) or "query" not in rec or "quality" not in rec:
                raise DataError(f"example {i} must be a mapping with at least 'query' and 'quality'")
            if rec.get("model", name) != name:
                raise DataError(f"example {i} is for model {rec.get('model')!r}, not {name!r}")
            queries.append(str(rec["query"]))
            q.append(rec["quality"])
            c.append(rec.get("cost", np.nan))
            o.append(rec.get("output_tokens", np.nan))
        try:
            quality = np.asarray(q, dtype=np.float64)
            cost = np.asarray(c, dtype=np.float64)
            out = np.asarray(o, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"example values must be numbers: {exc}") from None
        if not np.isfinite(out).all():
            out = None
    if not queries:
        return None
    if not (np.isfinite(quality).all() and ((quality >= 0) & (quality <= 1)).all()):
        raise DataError(f"example qualities for {name!r} must be finite and in [0, 1]")
    if not np.isfinite(cost).all() or (cost < 0).any():
        cost = None  # no usable recorded cost: the prior's cost prediction stays
    emb, tokens = router.embed(queries)
    return emb, tokens, quality, cost, out

def named_prior(
    router: LearnerHost, candidate: Candidate, prior: str | None, cost_mode: str
) -> tuple[str, np.ndarray, np.ndarray]:
    """(description, prior weights w₀ (dim + 2, 2), prior centre m₀ (2,)) with ŷ = m₀ + xᵀw₀.

    Column 0 is quality, column 1 the cost target (log cost or log output tokens, by
    ``cost_mode``); a donor with another cost mode lends only its quality column.
    """
    names = router.model.pool.names
    dim = next(iter(router.model.predictors.values())).linear.dim

    def parts(name: str) -> tuple[np.ndarray, np.ndarray]:
        lin = router.model.predictors[name].linear
        return lin.weights.copy(), np.array(getattr(lin, "offset", np.zeros(2)), dtype=np.float64).copy()

    def neutral_cost(w0: np.ndarray, m0: np.ndarray) -> None:
        w0[:, 1] = 0.0
        m0[1] = cost_bias_guess(router, cost_mode)

    if prior is None:
        w0, m0 = np.zeros((dim, 2)), np.zeros(2)
        neutral_cost(w0, m0)
        return "none", w0, m0
    if prior == "similar":
        priced = [n for n in names if router.model.pool.get(n).input_price > 0 or router.model.pool.get(n).output_price > 0]
        if priced and (candidate.input_price > 0 or candidate.output_price > 0):
            def distance(n: str) -> float:
                other = router.model.pool.get(n)
                return abs(math.log1p(other.input_price) - math.log1p(candidate.input_price)) + \
                    abs(math.log1p(other.output_price) - math.log1p(candidate.output_price))
            prior = min(priced, key=distance)
        else:
            prior = "mean"  # no prices to compare: the average candidate
    if prior == "mean":
        all_parts = [parts(n) for n in names]
        w0 = np.mean([w for w, _ in all_parts], axis=0)
        m0 = np.mean([m for _, m in all_parts], axis=0)
        same = [parts(n) for n in names if router.model.predictors[n].cost_mode == cost_mode]
        if same:
            w0[:, 1] = np.mean([w[:, 1] for w, _ in same], axis=0)
            m0[1] = float(np.mean([m[1] for _, m in same]))
        else:
            neutral_cost(w0, m0)
        return "mean", w0, m0
    if prior not in router.model.pool:
        raise UnknownCandidateError(
            f"prior={prior!r}: expected 'similar', 'mean', None or a candidate name; candidates: {names}"
        )
    w0, m0 = parts(prior)
    if router.model.predictors[prior].cost_mode != cost_mode:
        neutral_cost(w0, m0)
    return prior, w0, m0

def fitted_prior(router: LearnerHost, ex: Any, cost_mode: str) -> tuple[str, np.ndarray, np.ndarray]:
    """The prior fitted to the examples: a mix of the other candidates' ridges (``mixllm_router.learning.onboarding``)."""
    from ..predictors import features
    from ..predictors.candidate import COST_FLOOR_USD
    from .onboarding import MIN_EXAMPLES, fitted_prior

    if ex is None or len(ex[2]) < MIN_EXAMPLES:
        raise DataError(f"prior='fitted' needs at least {MIN_EXAMPLES} examples, got {0 if ex is None else len(ex[2])}")
    emb, tokens, quality, cost, out = ex
    names = router.model.pool.names
    models = {n: router.model.predictors[n] for n in names}
    cost_t = None
    if cost_mode == "tokens" and out is not None:
        cost_t = np.log1p(np.maximum(out, 0.0))
    elif cost_mode == "direct" and cost is not None:
        cost_t = np.log(np.maximum(cost, 0.0) + COST_FLOOR_USD)
    fit = fitted_prior(
        {n: m.linear.weights for n, m in models.items()},
        {n: np.asarray(getattr(m.linear, "offset", np.zeros(2)), dtype=np.float64) for n, m in models.items()},
        [n for n, m in models.items() if m.cost_mode == cost_mode],
        features(emb, tokens), quality, cost_t,
        (np.zeros(next(iter(models.values())).linear.dim), cost_bias_guess(router, cost_mode)),
    )
    return "fitted", fit.w0, fit.m0

def cost_bias_guess(router: LearnerHost, cost_mode: str) -> float:
    if cost_mode == "tokens":
        return float(np.log1p(256.0))  # a typical answer length
    direct = [float(m.linear.predict(np.zeros((1, m.linear.dim)))[0, 1])
              for m in router.model.predictors.values() if m.cost_mode == "direct"]
    return float(np.mean(direct)) if direct else float(np.log(1e-3))
