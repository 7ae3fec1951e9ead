"""Change detection on feedback residuals: when a candidate starts answering unlike its predictor."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._exceptions import DataError
from .settings import LearningSettings

__all__ = ["ResidualChangeDetector"]


class ResidualChangeDetector:
    """Two-sided Bernoulli CUSUM (Page, 1954) on each candidate's feedback, against its predictions.

    Why: the ridge weighs every past observation equally, so after a model changes behind its
    name it needs about as many new outcomes as it has old ones to follow (docs/online_learning.md,
    drift replay). The detector asks, event by event, whether the outcomes have become more likely
    under "the candidate got worse (or better) by ``δ`` in log-odds" than under its predictions.

    For an event with outcome ``r`` in [0, 1] and predicted quality ``q̂``, the prediction is first
    recentred by the running mean ``μ`` of this candidate's residuals ``r − q̂`` since the last reset
    (chosen candidates are the ones predicted high, so their residuals run slightly negative even
    when nothing changes): ``p0 = clip(q̂ + μ, 0.02, 0.98)``. With ``p± = σ(logit(p0) ± δ)``::

        ℓ±  = r·log(p±/p0) + (1 − r)·log((1 − p±)/(1 − p0))      log-likelihood ratio of one event
        g± ← max(0, g± + ℓ±)                                       alarm when max(g+, g−) > h

    Because ``ℓ`` is a likelihood ratio, the false-alarm rate does not depend on how skewed the
    outcomes are (a normal-theory CUSUM on standardised residuals fires often on a candidate right
    95% of the time): with no change a side alarms about once in ``e^h`` events or less (h = 9.2:
    10⁴), and a change of ``δ`` is detected after about ``h / KL(p±‖p0)`` events, about 90 for
    p0 = 0.85 and δ = 1 (fewer for larger changes). On an alarm the candidate's statistics restart.
    """

    _FIELDS = 4  # n, mean residual, g_up, g_down
    _P_MIN = 0.02

    def __init__(self, settings: LearningSettings) -> None:
        self.settings = settings
        self.state: dict[str, np.ndarray] = {}
        self.alarms: dict[str, int] = {}

    def update(self, name: str, score: float, predicted: float) -> bool:
        """Add one outcome of ``name``; True when it raises an alarm (the statistics then restart)."""
        st = self.state.setdefault(name, np.zeros(self._FIELDS))
        residual = score - predicted
        alarm = False
        if st[0] >= self.settings.change_warmup:
            p0 = min(max(predicted + st[1], self._P_MIN), 1.0 - self._P_MIN)
            logit = math.log(p0 / (1.0 - p0))
            for j, sign in ((2, 1.0), (3, -1.0)):
                p1 = 1.0 / (1.0 + math.exp(-(logit + sign * self.settings.change_shift)))
                llr = score * math.log(p1 / p0) + (1.0 - score) * math.log((1.0 - p1) / (1.0 - p0))
                st[j] = max(0.0, st[j] + llr)
            alarm = max(st[2], st[3]) > self.settings.change_threshold
        if alarm:
            st[:] = 0.0
            self.alarms[name] = self.alarms.get(name, 0) + 1
            return True
        st[0] += 1
        st[1] += (residual - st[1]) / st[0]
        return False

    def forget(self, name: str) -> None:
        self.state.pop(name, None)
        self.alarms.pop(name, None)

    def to_json(self) -> dict[str, Any]:
        return {"state": {n: [float(v) for v in st] for n, st in self.state.items()}, "alarms": dict(self.alarms)}

    def load_json(self, data: Mapping[str, Any]) -> None:
        state = data.get("state", {})
        if not isinstance(state, Mapping) or any(len(v) != self._FIELDS for v in state.values()):
            raise DataError("change detector state in the manifest is malformed")
        self.state = {str(n): np.asarray(v, dtype=np.float64) for n, v in state.items()}
        self.alarms = {str(n): int(v) for n, v in data.get("alarms", {}).items()}


# ---------------------------------------------------------------------------------- learner
