"""A new candidate's prior, fitted to a few scored examples: how its outcomes relate to the others'.

``add_candidate(name, examples=...)`` gives the new candidate a ridge whose prior mean ``w₀``
sets its predictions before any feedback (``mixllm_router.learning.learner``). The ``"mean"`` prior
(the average candidate) is a guess that ignores the examples. It is often far from the
candidate's level, and under the default UCB policy a candidate predicted below the best ones is
never tried, so it never learns (``docs/online_learning.md``). Here the examples choose the prior.

For each target ``t`` (quality; the cost target, log cost or log output tokens) the existing
candidates' ridge predictions on the examples, ``Z_ij = m_j + x_iᵀw_j`` (``x = [e, z, 1]``), are
regressed on the new candidate's outcomes ``y_i``:

    y ≈ c + Z β,     β = argmin ‖y − c − Zβ‖² + τ‖β − β̄‖²,   β̄ = (1/m, …, 1/m)

so the new candidate is predicted as an intercept plus a weighted mix of the others. Because
every ``Z_j`` is linear in ``x``, so is the mix, and it *is* a ridge prior:
``w₀ = Σ_j β_j w_j``, ``m₀ = c + Σ_j β_j m_j``. The shrinkage ``τ`` pulls β towards the plain
average (the ``"mean"`` prior); as ``τ → ∞`` only the intercept ``c`` is fitted, which already
removes the optimistic or pessimistic offset of a guess. ``τ`` is chosen from a grid, scaled by
``s = tr(Z_cᵀZ_c)/m``, by leave-one-out error (closed form for ridge: ``e_i/(1 − H_ii − 1/n)``).
A handful of coefficients (m + 1) is fitted on the examples, not the ``d``-dimensional weights;
the examples are then applied to the ridge on top of the prior as usual.

Opt-in (``prior="fitted"``), not the default: on the RouterBench replay (Yi-34B-Chat held out,
25 examples) it predicted the new candidate's cost better than the ``"mean"`` prior (log-cost
MSE 0.032 against 0.062) but its quality worse (0.170 against 0.148): the other candidates'
predicted qualities are nearly collinear, and 25 noisy 0/1 outcomes let leave-one-out pick a
shrinkage too small. The test AUC right after the addition was 92.5 against 95.1
(``docs/scoring.md``, "Onboarding a new candidate"). It fits when the new candidate's outcomes
are a clean mix of the others' (``tests/learning/test_onboarding.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FittedPrior", "fit_mix", "fitted_prior", "MIN_EXAMPLES"]

#: Fewest examples for a fitted prior (``prior="fitted"``).
MIN_EXAMPLES = 5
_TAU_GRID = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e4)


@dataclass(frozen=True)
class FittedPrior:
    w0: np.ndarray  # (dim, 2)
    m0: np.ndarray  # (2,)
    beta: dict[str, np.ndarray]  # target -> coefficient per donor
    intercept: dict[str, float]
    tau: dict[str, float]
    loo_rmse: dict[str, float]


def fit_mix(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """``(β, c, τ, leave-one-out RMSE)`` of ``y ≈ c + zβ`` shrunk towards the average (module docstring)."""
    n, m = z.shape
    zbar, ybar = z.mean(axis=0), float(y.mean())
    zc, yc = z - zbar, y - ybar
    prior = np.full(m, 1.0 / m)
    r = yc - zc @ prior
    scale = float(np.trace(zc.T @ zc)) / m or 1.0
    best: tuple[float, np.ndarray, float] | None = None
    for t in _TAU_GRID:
        tau = t * scale
        inv = np.linalg.inv(zc.T @ zc + tau * np.eye(m))
        delta = inv @ zc.T @ r
        hat = np.einsum("ij,jk,ik->i", zc, inv, zc) + 1.0 / n  # the intercept's leverage too
        resid = r - zc @ delta
        loo = resid / np.maximum(1.0 - hat, 1e-6)
        err = float(np.sqrt(np.mean(loo**2)))
        if best is None or err < best[0] - 1e-12:
            best = (err, prior + delta, tau)
    assert best is not None
    err, beta, tau = best
    return beta, ybar - float(zbar @ beta), tau, err


def fitted_prior(
    weights: dict[str, np.ndarray],
    offsets: dict[str, np.ndarray],
    cost_donors: list[str],
    x: np.ndarray,
    quality: np.ndarray,
    cost_target: np.ndarray | None,
    neutral_cost: tuple[np.ndarray, float],
) -> FittedPrior:
    """The prior ``(w₀, m₀)`` from the donors' ridges (``weights[name]`` (dim, 2), ``offsets[name]``
    (2,)) and the examples (features ``x`` (n, dim), outcomes ``quality`` and ``cost_target``).

    The quality column uses every donor; the cost column only ``cost_donors`` (same cost mode),
    and falls back to ``neutral_cost`` (weights column, intercept) without them or without costs.
    """
    names = list(weights)
    dim = x.shape[1]
    w0, m0 = np.zeros((dim, 2)), np.zeros(2)
    beta: dict[str, np.ndarray] = {}
    intercept: dict[str, float] = {}
    tau: dict[str, float] = {}
    loo: dict[str, float] = {}
    plans = [("quality", 0, names, quality)]
    if cost_target is not None and cost_donors:
        plans.append(("cost", 1, cost_donors, cost_target))
    else:
        w0[:, 1], m0[1] = neutral_cost[0], neutral_cost[1]
    for label, col, donors, y in plans:
        z = np.column_stack([x @ weights[n][:, col] + offsets[n][col] for n in donors])
        b, c, t, err = fit_mix(z, np.asarray(y, dtype=np.float64))
        w0[:, col] = sum(bj * weights[n][:, col] for bj, n in zip(b, donors))
        m0[col] = c + float(sum(bj * offsets[n][col] for bj, n in zip(b, donors)))
        beta[label], intercept[label], tau[label], loo[label] = b, c, t, err
    return FittedPrior(w0, m0, beta, intercept, tau, loo)
