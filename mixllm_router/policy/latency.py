"""The latency penalty of the meta decision, and its settings.

MixLLM trades quality and cost against *waiting*: when many queries arrive, sending them all to the
one best model makes users wait. :class:`~mixllm_router.policy.load_tracker.LoadTracker` estimates,
per candidate ``l``, the expected wait ``W_l`` before a new request would start; this module turns
it into the penalty ``P_l`` of the meta score ``S_l = q_l − λ·c_l + α·u_l − β·P_l + γ·κ_l·s_l``.

Symbols
-------
``W_l``  expected wait (seconds) before candidate ``l`` starts a new request
``τ``    the user's tolerance in seconds (``LatencySettings.tolerance_s``)
``ξ``    in ``(0, 1]``: the penalty starts at ``ξ·τ`` (``LatencySettings.xi``)
``β``    weight of the penalty in the meta score (``LatencySettings.weight``)
``ε``    a small constant that keeps the exponent finite when ``ξ = 1``

The penalty::

    P_l = 0                                      if W_l ≤ ξ·τ
    P_l = exp((W_l − ξ·τ) / ((1 − ξ)·τ + ε)) − 1  otherwise

It is 0 up to ``ξτ``, continuous there, then increasing and convex; at ``W = τ`` it is
``exp(1) − 1 ≈ 1.72`` when ``ξ < 1`` (for ``ε → 0``), so ``β`` reads as "score points a user gives
up to avoid waiting the full tolerance". With ``ξ = 1`` it is a near step: 0 up to ``τ`` and huge
just past it. The exponent is capped at :data:`MAX_EXPONENT` (100), so ``P ≤ e^100 − 1 ≈ 2.7e43``:
always finite, and ``β·P`` cannot overflow for any sane ``β``. Past the cap, candidates tie on the
penalty; that only happens far beyond ``τ``, where the hard limit (below) already decides.

Hard limit: a candidate with ``W_l > τ`` may be chosen only when every candidate (of those eligible
for the query) is past ``τ`` (:meth:`LatencySettings.allowed`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import ConfigDict, Field

from .._exceptions import ConfigError, DataError
from .._settings import Settings

__all__ = ["MAX_EXPONENT", "latency_penalty", "LatencySettings"]

#: Cap on the penalty's exponent: ``P ≤ exp(MAX_EXPONENT) − 1 ≈ 2.7e43``, never inf or nan.
MAX_EXPONENT = 100.0


def _check_penalty_args(tolerance_s: float, xi: float, eps: float) -> None:
    try:
        tolerance_s, xi, eps = float(tolerance_s), float(xi), float(eps)
    except (TypeError, ValueError):
        raise ConfigError("tolerance_s, xi and eps must be numbers") from None
    if not (math.isfinite(tolerance_s) and tolerance_s > 0):
        raise ConfigError(f"tolerance_s (τ) must be a finite number > 0, got {tolerance_s}")
    if not (0.0 < xi <= 1.0):
        raise ConfigError(f"xi (ξ) must be in (0, 1], got {xi}")
    if not (math.isfinite(eps) and eps > 0):
        raise ConfigError(f"eps must be a finite number > 0, got {eps}")


def latency_penalty(
    wait_s: float | np.ndarray, *, tolerance_s: float, xi: float, eps: float = 1e-6
) -> float | np.ndarray:
    """``P(W) = 0`` for ``W ≤ ξτ``, else ``exp((W − ξτ)/((1 − ξ)τ + ε)) − 1`` (exponent capped).

    Vectorised: a scalar gives a ``float``, an array (or list) an array of the same shape.
    Negative waits count as 0; ``+inf`` gives the capped maximum; NaN raises :class:`DataError`.
    Raises :class:`ConfigError` for ``τ ≤ 0``, ``ξ ∉ (0, 1]`` or ``ε ≤ 0``.
    """
    _check_penalty_args(tolerance_s, xi, eps)
    scalar = not isinstance(wait_s, np.ndarray) and np.ndim(wait_s) == 0
    try:
        w = np.asarray(wait_s, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError("waiting times must be numbers") from None
    if np.isnan(w).any():
        raise DataError("a waiting time is NaN")
    start = xi * tolerance_s
    scale = (1.0 - xi) * tolerance_s + eps
    with np.errstate(over="ignore", invalid="ignore"):
        x = np.clip((w - start) / scale, 0.0, MAX_EXPONENT)
    penalty = np.expm1(x)
    return float(penalty) if scalar else penalty


class LatencySettings(Settings):
    """The latency penalty ``P(W; τ, ξ)``, its weight β and the hard limit at τ.

    Constructing it with bad values (also ``inf``/NaN) raises :class:`ConfigError`, as
    :meth:`create` does.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    tolerance_s: float = Field(default=30.0, gt=0, le=1e7, description="τ: the longest wait a user accepts.")
    xi: float = Field(default=0.8, gt=0, le=1, description="ξ: the penalty starts at ξ·τ.")
    weight: float = Field(default=0.0, ge=0, le=1e6, description="β: weight of the penalty in the meta score.")
    hard_limit: bool = Field(default=True, description="Candidates past τ are chosen only when all are.")
    eps: float = Field(default=1e-6, ge=1e-12, le=1.0, description="ε: keeps the exponent finite when ξ = 1.")

    @classmethod
    def create(cls, **values: Any) -> LatencySettings:
        """The constructor under another name (kept for callers that used it to get ConfigError)."""
        return cls(**values)

    def penalty(self, wait_s: float | np.ndarray) -> float | np.ndarray:
        """``P(W)`` with these settings (see :func:`latency_penalty`)."""
        return latency_penalty(wait_s, tolerance_s=self.tolerance_s, xi=self.xi, eps=self.eps)

    def allowed(self, wait_s: Sequence[float] | np.ndarray) -> np.ndarray:
        """Boolean mask of candidates the hard limit lets through.

        Pass the waits of the candidates *eligible for this query* only: those with ``W ≤ τ`` are
        allowed; if none is, all are (the least-bad one then wins on the score). Without the hard
        limit every candidate is allowed.
        """
        w = np.asarray(wait_s, dtype=np.float64)
        if np.isnan(w).any():
            raise DataError("a waiting time is NaN")
        if not self.hard_limit:
            return np.ones(w.shape, dtype=bool)
        within = w <= self.tolerance_s
        return within if within.any() else np.ones(w.shape, dtype=bool)
