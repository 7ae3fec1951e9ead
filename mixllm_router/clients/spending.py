"""A spending budget per call and per rolling period, checked before each attempt.

The fallback core (:mod:`._attempts`) asks the guard whether a candidate's estimated cost fits
before calling it, and records the actual cost after a success; one guard may be shared by every
caller of a router (``FallbackCaller.sharing``), so all its paths spend from one budget.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from .._exceptions import BudgetExceededError, ConfigError
from ..candidates import Candidate

__all__ = ["SpendingGuard"]


class SpendingGuard:
    """Budget per call and per (rolling) period, in USD.

    A candidate fits when its estimated cost is ``<= min(per_call_usd, per_period_usd - spent)``,
    ``spent`` being the recorded cost of the calls in the last ``period_s`` seconds. When the top
    candidate does not fit: ``when_exhausted="cheaper"`` moves down the ranking to the candidates
    that fit; ``"raise"`` raises :class:`~mixllm_router.BudgetExceededError`. Thread-safe.
    """

    def __init__(
        self,
        per_call_usd: float | None = None,
        per_period_usd: float | None = None,
        *,
        period_s: float = 86400.0,
        when_exhausted: Literal["cheaper", "raise"] = "cheaper",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for label, value in (("per_call_usd", per_call_usd), ("per_period_usd", per_period_usd)):
            if value is not None and value < 0:
                raise ConfigError(f"{label} must be >= 0, got {value}")
        if period_s <= 0:
            raise ConfigError(f"period_s must be positive, got {period_s}")
        if when_exhausted not in ("cheaper", "raise"):
            raise ConfigError(f"when_exhausted must be 'cheaper' or 'raise', got {when_exhausted!r}")
        self.per_call_usd = per_call_usd
        self.per_period_usd = per_period_usd
        self.period_s = float(period_s)
        self.when_exhausted = when_exhausted
        self._clock = clock
        self._spent: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()

    def spent(self) -> float:
        """USD recorded within the last ``period_s`` seconds."""
        with self._lock:
            self._expire()
            return sum(c for _, c in self._spent)

    def _expire(self) -> None:
        horizon = self._clock() - self.period_s
        while self._spent and self._spent[0][0] <= horizon:
            self._spent.popleft()

    def remaining(self) -> float:
        """The most a call may cost now (``inf`` without limits)."""
        limit = float("inf") if self.per_call_usd is None else self.per_call_usd
        if self.per_period_usd is not None:
            limit = min(limit, self.per_period_usd - self.spent())
        return max(0.0, limit)

    def check(self, candidate: Candidate | str, estimated_cost: float) -> bool:
        """Whether a call of ``estimated_cost`` fits; raises in ``"raise"`` mode when it does not."""
        remaining = self.remaining()
        if estimated_cost <= remaining:
            return True
        if self.when_exhausted == "raise":
            name = candidate.name if isinstance(candidate, Candidate) else candidate
            raise BudgetExceededError(
                f"calling {name!r} would cost about ${estimated_cost:.6f}; the budget left is ${remaining:.6f}"
            )
        return False

    def record(self, cost: float) -> None:
        with self._lock:
            self._spent.append((self._clock(), float(cost)))
