"""Per-candidate load tracking and the latency penalty of the meta decision.

MixLLM trades quality and cost against *waiting*: when many queries arrive, sending them all to the
one best model makes users wait. This module estimates, per candidate ``l``, the expected wait
``W_l`` before a new request would start, and turns it into the penalty ``P_l`` of the meta score
``S_l = q_l − λ·c_l + α·u_l − β·P_l + γ·κ_l·s_l``.

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

The waiting-time model (:class:`LoadTracker`)
---------------------------------------------
Each candidate has a concurrency limit ``c``. Requests are kept in arrival order; the first ``c``
are *running*, later ones are *queued* (FIFO) and start when a running one finishes.

Every request ``i`` has a *predicted* service time ``d_i = TTFT + n_i · s_per_token`` from the
candidate's current :class:`ServiceTimeEstimate` (``n_i``: the output tokens given to
:meth:`LoadTracker.start`, else the running mean). It is re-costed whenever the estimate learns:
a ticket does not keep the duration it was given when it was sent.

Service times are skewed (most answers are a few tokens, a few are long programs), so ``d_i`` is
only a typical value. The tracker therefore keeps the last ``tail_window`` (default 100) finished
requests ``(D_k, n_k)`` (observed service time, the length it was started with) and their ratios
``r_k = D_k / d(n_k)`` to what the *current* estimate predicts for them (recomputed when the
estimate learns, so old ratios never refer to a stale prediction; for requests started without a
length ``d_i · r_k = D_k``: the raw recent durations). It uses the empirical *conditional mean* of
the service time given how long a request has already run (mean residual life). For a running
request that started at ``t0`` and has run ``a = now − t0``::

    end_i = t0 + d_i · mean{ r_k : r_k > a / d_i }        (the ratios longer than what it has run)
    end_i = now + floor                                    if no recent ratio exceeds a / d_i

and ``end_i`` is never earlier than ``now + floor`` (``overdue_floor_s``, 0.1 s): a running request
is still busy. So a slot busy with a request past the typical time is *not* nearly free: it is
expected to run as long as the recent requests that ran that long did. A queued request is
expected to take ``d_q · r̄`` with ``r̄`` the mean ratio (without a length: the recent mean
duration). With no finished request yet the ratio set is ``{1}``: a running request ends at
``t0 + d_i``, then (overdue) within the floor.

The wait of a new request is then plain list scheduling: take the ``c`` slot-free times ``end_i``;
each queued request, in order, takes the earliest slot and frees it again after ``d_q · r̄``;
``W`` = the earliest slot-free time left, minus now (0 when a slot is free). With limit 2 and
three 10-s requests sent at ``t = 0`` (no history): slots free at 10 and 10; the queued one takes
the first (→ 20); a 4th request waits ``min(10, 20) = 10`` s, and at ``t = 4`` it waits 6 s.
With recent finishes of 5, 5, 20 and 40 s (ratios ``{0.5, 0.5, 2, 4}`` to a 10-s prediction) and
one 10-s request running (limit 1), a new request waits
``10 · mean{0.5, 0.5, 2, 4} = 17.5`` s at ``t = 0``; at ``t = 6`` (``a/d = 0.6``) the request is
one of the long ones, it ends at ``10 · mean{2, 4} = 30``: a wait of 24 s.

Cost: ``end_i`` is constant in absolute time until ``a / d_i`` passes the next recent ratio (or the
floor binds), so :meth:`LoadTracker.waits` caches ``W`` per candidate and recomputes it only
after a change or such a breakpoint: ``O(c·log K + q·log c)`` for ``q`` queued and ``K`` ratios.

Other processes. With a shared state (:meth:`LoadTracker.attach`, e.g. Redis), the requests other
worker processes have in flight arrive through :meth:`LoadTracker.set_remote` with their ages.
They take the slots this process leaves free, oldest first, and the rest queue; a request of this
process starts "running" (and its service time starts) only when its own and the others' requests
leave a slot, so time spent queued behind other workers is not learnt as service time. Their
finishes arrive through :meth:`LoadTracker.record_finish` and teach the estimate like local ones.

Expected durations come from a :class:`ServiceTimeEstimate` per candidate:
``d(n) = TTFT + n · s_per_token`` for ``n`` output tokens, both adapted online by exponentially
weighted means.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from pydantic import ConfigDict, Field

from .._exceptions import CheckpointError, ConfigError, DataError, UnknownCandidateError
from .._settings import Settings

__all__ = [
    "MAX_EXPONENT",
    "latency_penalty",
    "LatencySettings",
    "ServiceTimeEstimate",
    "LoadTicket",
    "LoadSharing",
    "LoadTracker",
]

#: Cap on the penalty's exponent: ``P ≤ exp(MAX_EXPONENT) − 1 ≈ 2.7e43``, never inf or nan.
MAX_EXPONENT = 100.0

_STATE_VERSION = 1


# --------------------------------------------------------------------------------------------
# The penalty
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Service-time estimate
# --------------------------------------------------------------------------------------------


def _positive_finite(value: float | None, what: str, *, allow_zero: bool = True) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ConfigError(f"{what} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return v


class ServiceTimeEstimate:
    """How long a candidate takes to serve a request: ``d(n) = TTFT + n · s_per_token``.

    Both parts are exponentially weighted means (with variances) of what was observed. The prior
    counts as ``prior_strength`` observations: the step size is ``max(alpha, 1/(k + prior_strength
    + 1))`` after ``k`` observations, so the first few observations move the estimate quickly and
    later ones at the steady rate ``alpha`` (a half-life of about ``0.69/alpha`` requests).

    When only the total latency is known (no time to first token), it is split between the two
    parts in the proportion the current estimate predicts for that many tokens, i.e. both parts
    are scaled by ``observed / expected``: a provider that slows down under load slows both.

    Not thread-safe on its own; :class:`LoadTracker` guards it with its lock.
    """

    DEFAULT_TTFT_S = 0.5
    DEFAULT_S_PER_TOKEN = 0.02  # 50 tokens/s
    DEFAULT_OUTPUT_TOKENS = 256.0

    def __init__(
        self,
        *,
        ttft_s: float | None = None,
        s_per_token: float | None = None,
        output_tokens: float | None = None,
        alpha: float = 0.1,
        prior_strength: float = 1.0,
    ) -> None:
        self.ttft_mean = _positive_finite(self.DEFAULT_TTFT_S if ttft_s is None else ttft_s, "ttft_s")
        self.spt_mean = _positive_finite(
            self.DEFAULT_S_PER_TOKEN if s_per_token is None else s_per_token, "s_per_token"
        )
        self.tokens_mean = _positive_finite(
            self.DEFAULT_OUTPUT_TOKENS if output_tokens is None else output_tokens, "output_tokens"
        )
        self.alpha = _positive_finite(alpha, "alpha", allow_zero=False)
        if self.alpha > 1:
            raise ConfigError(f"alpha must be in (0, 1], got {alpha}")
        self.prior_strength = _positive_finite(prior_strength, "prior_strength")
        # Prior spread: a coefficient of variation of 1/2 on each part.
        self.ttft_var = (0.5 * self.ttft_mean) ** 2
        self.spt_var = (0.5 * self.spt_mean) ** 2
        self.n_obs = 0

    # -- reading ----------------------------------------------------------------------------
    def expected(self, output_tokens: float | None = None) -> float:
        """Expected seconds to serve a request of ``output_tokens`` (None: the running mean)."""
        n = self.tokens_mean if output_tokens is None else max(float(output_tokens), 0.0)
        return self.ttft_mean + n * self.spt_mean

    def std(self, output_tokens: float | None = None) -> float:
        """Spread of the service time, treating the two parts as independent."""
        n = self.tokens_mean if output_tokens is None else max(float(output_tokens), 0.0)
        return math.sqrt(self.ttft_var + n * n * self.spt_var)

    # -- learning ---------------------------------------------------------------------------
    def _step(self) -> float:
        return max(self.alpha, 1.0 / (self.n_obs + self.prior_strength + 1.0))

    @staticmethod
    def _ew(mean: float, var: float, x: float, a: float) -> tuple[float, float]:
        diff = x - mean
        incr = a * diff
        return mean + incr, (1.0 - a) * (var + diff * incr)

    def observe(self, latency_s: float, output_tokens: float | None = None, *, ttft_s: float | None = None) -> None:
        """Learn from one finished request: total ``latency_s``, ``output_tokens`` produced.

        ``output_tokens=None`` means unknown: the running mean is assumed for the split.
        ``ttft_s`` (time to first token, when streaming) lets each part be learnt directly.
        Raises :class:`DataError` for a negative or non-finite value.
        """
        lat = _observation(latency_s, "latency_s")
        tokens = self.tokens_mean if output_tokens is None else _observation(output_tokens, "output_tokens")
        a = self._step()
        if ttft_s is not None:
            first = min(_observation(ttft_s, "ttft_s"), lat)
            ttft_obs = first
            spt_obs = (lat - first) / tokens if tokens > 0 else None
        else:
            expected = self.expected(tokens)
            ratio = lat / expected if expected > 0 else 1.0
            ttft_obs = self.ttft_mean * ratio if tokens > 0 else lat
            spt_obs = self.spt_mean * ratio if tokens > 0 else None
        self.ttft_mean, self.ttft_var = self._ew(self.ttft_mean, self.ttft_var, ttft_obs, a)
        if spt_obs is not None:
            self.spt_mean, self.spt_var = self._ew(self.spt_mean, self.spt_var, spt_obs, a)
        if output_tokens is not None:
            self.tokens_mean += a * (tokens - self.tokens_mean)
        self.n_obs += 1

    # -- state ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, float]:
        return {
            "ttft_mean": self.ttft_mean,
            "ttft_var": self.ttft_var,
            "spt_mean": self.spt_mean,
            "spt_var": self.spt_var,
            "tokens_mean": self.tokens_mean,
            "alpha": self.alpha,
            "prior_strength": self.prior_strength,
            "n_obs": float(self.n_obs),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ServiceTimeEstimate:
        est = cls(
            ttft_s=d["ttft_mean"],
            s_per_token=d["spt_mean"],
            output_tokens=d["tokens_mean"],
            alpha=d["alpha"],
            prior_strength=d["prior_strength"],
        )
        est.ttft_var = _positive_finite(d["ttft_var"], "ttft_var")
        est.spt_var = _positive_finite(d["spt_var"], "spt_var")
        est.n_obs = int(_positive_finite(d["n_obs"], "n_obs"))
        return est

    def copy(self) -> ServiceTimeEstimate:
        return ServiceTimeEstimate.from_dict(self.to_dict())

    def __repr__(self) -> str:
        return (
            f"ServiceTimeEstimate(ttft_s={self.ttft_mean:.3g}, s_per_token={self.spt_mean:.3g}, "
            f"output_tokens={self.tokens_mean:.3g}, n_obs={self.n_obs})"
        )


def _observation(value: float, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise DataError(f"{what} must be a finite number >= 0, got {value!r}")
    return v


# --------------------------------------------------------------------------------------------
# Load tracker
# --------------------------------------------------------------------------------------------

_ticket_ids = itertools.count(1)


class LoadTicket:
    """One request in flight, returned by :meth:`LoadTracker.start`.

    Inside :meth:`LoadTracker.track` the body may set ``output_tokens`` (and ``ttft_s`` when
    streaming) so the service estimate learns from the call when the block ends.
    """

    __slots__ = ("name", "id", "started_at", "expected_s", "expected_tokens", "output_tokens", "ttft_s", "_done")

    def __init__(self, name: str, started_at: float, expected_s: float, expected_tokens: float | None = None) -> None:
        self.name = name
        self.id = next(_ticket_ids)
        self.started_at = started_at
        self.expected_s = expected_s
        self.expected_tokens = expected_tokens
        self.output_tokens: float | None = None
        self.ttft_s: float | None = None
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def __repr__(self) -> str:
        return f"LoadTicket({self.name!r}, id={self.id}, expected_s={self.expected_s:.3g}, done={self._done})"


class LoadSharing(Protocol):
    """What a :class:`LoadTracker` tells, and asks, a shared state (see :meth:`LoadTracker.attach`).

    Implementations must never raise: a shared state that is unreachable degrades to local
    tracking, it does not fail a call.
    """

    def started(self, ticket: LoadTicket) -> None:
        """A request of this process started (take a lease on it)."""

    def finished(self, ticket: LoadTicket, service_s: float | None, output_tokens: float | None,
                 ttft_s: float | None) -> None:
        """It ended (drop the lease); ``service_s`` is None when it failed."""

    def sync(self, tracker: LoadTracker) -> None:
        """Bring the other processes' requests and finishes into ``tracker`` (may be rate-limited)."""


class _CandidateLoad:
    """Mutable per-candidate state; only touched under the tracker's lock."""

    __slots__ = (
        "limit", "estimate", "running", "queued", "ext_n", "ext_at", "history",
        "free_at", "valid_until", "dirty", "full", "runs", "ext_ends", "durations",
        "r_sorted", "r_tail", "r_dirty", "remote",
    )

    def __init__(
        self, limit: int, estimate: ServiceTimeEstimate, window: int,
        history: Sequence[tuple[float, float | None]] = (),
    ) -> None:
        self.limit = limit
        self.estimate = estimate
        # ticket id -> (run start, output tokens or None for the running mean)
        self.running: dict[int, tuple[float, float | None]] = {}
        self.queued: deque[tuple[int, float | None]] = deque()  # (ticket id, output tokens or None), FIFO
        self.ext_n = 0  # in flight as reported by set_in_flight()
        self.ext_at = 0.0  # when it was reported
        # in flight in *other* processes (shared state): (start on this clock, output tokens or None),
        # oldest first; replaced wholesale by LoadTracker.set_remote()
        self.remote: list[tuple[float, float | None]] = []
        # recent finishes: (observed service seconds, output tokens it was started with or None)
        self.history: deque[tuple[float, float | None]] = deque(history, maxlen=window)
        # Cache of the schedule: W = max(free_at − now, 0) while now <= valid_until.
        self.free_at = -math.inf
        self.valid_until = -math.inf
        # Parts of the schedule rebuilt only after a change (see LoadTracker._rebuild).
        self.dirty = True
        self.full = False  # every slot is taken
        self.runs: list[tuple[float, float]] = []  # (run start, predicted duration d_i) of running requests
        self.ext_ends: list[float] = []  # slot-free times of externally reported running requests
        self.durations: list[float] = []  # expected durations d_q · r̄ of queued requests, FIFO
        self.r_sorted: list[float] = [1.0]  # recent ratios, sorted ({1} with no history)
        self.r_tail: list[float] = [1.0]  # r_tail[j] = mean(r_sorted[j:])
        self.r_dirty = True  # history or estimate changed since r_sorted / r_tail were computed

    def set_history(self, history: Sequence[tuple[float, float | None]]) -> None:
        self.history = deque(history, maxlen=self.history.maxlen)
        self.r_dirty = True

    def ratio_table(self) -> None:
        """Ratios of the recent finishes to what the *current* estimate predicts for them, sorted,
        and their tail means (recomputed only after the history or the estimate changed)."""
        self.r_dirty = False
        if self.history:
            est = self.estimate
            seconds = np.array([h[0] for h in self.history], dtype=np.float64)
            tokens = np.array([est.tokens_mean if h[1] is None else h[1] for h in self.history], dtype=np.float64)
            predicted = est.ttft_mean + tokens * est.spt_mean
            ok = predicted > 0.0
            if ok.any():
                r = np.sort(seconds[ok] / predicted[ok])
                tail = np.cumsum(r[::-1])[::-1] / np.arange(r.size, 0, -1)  # tail[j] = mean(r[j:])
                self.r_sorted, self.r_tail = r.tolist(), tail.tolist()
                return
        self.r_sorted, self.r_tail = [1.0], [1.0]

    @property
    def in_flight(self) -> int:
        return len(self.running) + len(self.queued) + self.ext_n + len(self.remote)

    def has_free_slot(self) -> bool:
        """A slot is free when this process's running requests and the other processes' requests
        (all older than a request starting now) leave one, so a request that queues behind other
        workers is timed from when it got a slot, not from when it was sent."""
        return len(self.running) + len(self.remote) < self.limit

    def promote(self, now: float) -> None:
        """Queued requests take the free slots, oldest first; their service time starts now."""
        while self.queued and self.has_free_slot():
            tid, tokens = self.queued.popleft()
            self.running[tid] = (now, tokens)

    def invalidate(self) -> None:
        self.valid_until = -math.inf
        self.dirty = True


class LoadTracker:
    """Requests in flight, concurrency limits and service-time estimates per candidate.

    Feed it from the call path (:meth:`track` / :meth:`atrack` around each call, or
    :meth:`start` / :meth:`finish`), or from outside (:meth:`observe`, :meth:`set_in_flight`).
    Ask it for :meth:`expected_wait` / :meth:`waits` when routing. The model behind ``W`` is in
    the module docstring.

    Thread-safe and asyncio-safe: one ``threading.Lock``, held only for a few dict operations and
    never across an ``await``. The clock is injectable (seconds, monotonic) so tests are exact.
    In-flight state is never persisted; :meth:`state_dict` saves limits and service estimates.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        alpha: float = 0.1,
        overdue_floor_s: float = 0.1,
        tail_window: int = 100,
    ) -> None:
        self._clock = clock
        self._alpha = _positive_finite(alpha, "alpha", allow_zero=False)
        if self._alpha > 1:
            raise ConfigError(f"alpha must be in (0, 1], got {alpha}")
        self._floor = _positive_finite(overdue_floor_s, "overdue_floor_s", allow_zero=False)
        if isinstance(tail_window, bool) or not isinstance(tail_window, (int, np.integer)) or tail_window < 1:
            raise ConfigError(f"tail_window must be an integer >= 1, got {tail_window!r}")
        self._window = int(tail_window)
        self._lock = threading.Lock()
        self._loads: dict[str, _CandidateLoad] = {}
        self._sharing: LoadSharing | None = None

    # -- candidates -------------------------------------------------------------------------
    def register(
        self,
        name: str,
        max_concurrency: int,
        *,
        ttft_s: float | None = None,
        s_per_token: float | None = None,
        output_tokens: float | None = None,
    ) -> None:
        """Track a candidate with this concurrency limit and (optional) prior service times."""
        limit = _limit(max_concurrency)
        estimate = ServiceTimeEstimate(
            ttft_s=ttft_s, s_per_token=s_per_token, output_tokens=output_tokens, alpha=self._alpha
        )
        with self._lock:
            if name in self._loads:
                raise ConfigError(f"candidate {name!r} is already tracked")
            self._loads[name] = _CandidateLoad(limit, estimate, self._window)

    def unregister(self, name: str) -> None:
        """Stop tracking a candidate; its open tickets become no-ops; others are untouched."""
        with self._lock:
            self._get(name)
            del self._loads[name]

    def set_max_concurrency(self, name: str, max_concurrency: int) -> None:
        """Change a candidate's limit; queued tickets start if slots opened."""
        limit = _limit(max_concurrency)
        with self._lock:
            load = self._get(name)
            load.limit = limit
            now = self._clock()
            load.promote(now)
            load.invalidate()

    @property
    def names(self) -> list[str]:
        with self._lock:
            return list(self._loads)

    def __contains__(self, name: object) -> bool:
        return name in self._loads

    def _get(self, name: str) -> _CandidateLoad:
        try:
            return self._loads[name]
        except KeyError:
            raise UnknownCandidateError(
                f"no tracked candidate named {name!r}; known: {list(self._loads)}"
            ) from None

    # -- waiting time -----------------------------------------------------------------------
    def _wait(self, load: _CandidateLoad, now: float) -> float:
        if now > load.valid_until:
            self._schedule(load, now)
        w = load.free_at - now
        return w if w > 0.0 else 0.0

    def _schedule(self, load: _CandidateLoad, now: float) -> None:
        """Recompute the earliest slot-free time (list scheduling, see the module docstring)."""
        if load.dirty:
            self._rebuild(load)
        if not load.full:  # a free slot, so nothing can be queued
            load.free_at, load.valid_until = -math.inf, math.inf
            return
        floor = self._floor
        floor_at = now + floor
        r_sorted, r_tail = load.r_sorted, load.r_tail
        k = len(r_sorted)
        until = math.inf  # the schedule holds in absolute time until a breakpoint
        ends = []
        for t0, d in load.runs:
            # end = t0 + d · mean{r : r > a/d}; it changes when a/d passes the next ratio r_sorted[j]
            j = bisect.bisect_right(r_sorted, (now - t0) / d) if d > 0.0 else k
            if j < k:
                end = t0 + d * r_tail[j]
                nxt = t0 + d * r_sorted[j]
                if nxt < until:
                    until = nxt
            else:
                end = floor_at
            ends.append(end)
        ends.extend(load.ext_ends)
        for i, end in enumerate(ends):
            if end <= floor_at:  # still busy: never free before now + floor
                ends[i], until = floor_at, now
            elif end - floor < until:
                until = end - floor
        ends.sort()
        # More running than the limit (it was lowered): the first finishes free no slot.
        slots = ends[len(ends) - load.limit :]  # sorted, so a valid heap as is
        for d in load.durations:
            heapq.heapreplace(slots, slots[0] + d)
        load.free_at = slots[0]
        load.valid_until = until if until > now else now

    @staticmethod
    def _rebuild(load: _CandidateLoad) -> None:
        """The parts of the schedule that change only when the candidate's state does.

        Durations are re-costed with the current estimate here (see the module docstring).
        Requests of other processes (:meth:`set_remote`) fill the slots this process leaves free,
        oldest first, with their real start times; the rest queue behind this process's own.
        """
        load.dirty = False
        limit = load.limit
        n_run = len(load.running)
        remote = load.remote
        free = max(limit - n_run, 0)
        remote_running, remote_queued = remote[:free], remote[free:]
        ext_running = min(load.ext_n, max(free - len(remote_running), 0))
        load.full = n_run + len(remote_running) + ext_running >= limit
        if not load.full:
            return
        if load.r_dirty:
            load.ratio_table()
        mean_ratio = load.r_tail[0]
        est = load.estimate
        typical = est.expected()
        load.runs = [(t0, est.expected(tokens)) for t0, tokens in load.running.values()]
        load.runs.extend((t0, est.expected(tokens)) for t0, tokens in remote_running)
        # Reported without start times: assume each is half-way through a typical request.
        load.ext_ends = [load.ext_at + 0.5 * typical * mean_ratio] * ext_running
        typical_q = typical * mean_ratio  # most tickets carry no length: one duration for them all
        durations = [typical_q if tokens is None else est.expected(tokens) * mean_ratio for _, tokens in load.queued]
        durations.extend(typical_q if tokens is None else est.expected(tokens) * mean_ratio
                         for _, tokens in remote_queued)
        ext_queued = load.ext_n - ext_running
        if ext_queued:
            durations.extend([typical_q] * ext_queued)
        load.durations = durations

    def expected_wait(self, name: str) -> float:
        """``W``: seconds before a new request to ``name`` would start (0 while a slot is free)."""
        self.refresh()
        with self._lock:
            return self._wait(self._get(name), self._clock())

    def expected_latency(self, name: str, output_tokens: float | None = None) -> float:
        """``W`` plus the expected service time of a request of ``output_tokens`` tokens."""
        with self._lock:
            load = self._get(name)
            return self._wait(load, self._clock()) + load.estimate.expected(output_tokens)

    def refresh(self) -> None:
        """Bring in the other processes' requests now (no-op without a shared state).

        :meth:`waits` does this itself; the router calls it *before* taking its own lock, so the
        round trip to the shared store never holds up other threads' routes.
        """
        sharing = self._sharing
        if sharing is not None:
            sharing.sync(self)

    def waits(self, names: Sequence[str], *, refresh: bool = True) -> np.ndarray:
        """``W`` for each name, as a float64 array (the router's hot path: one lock, one clock read).

        ``refresh=False`` skips :meth:`refresh` (the caller just did it).
        """
        if refresh:
            self.refresh()
        out = np.empty(len(names), dtype=np.float64)
        with self._lock:
            now = self._clock()
            loads = self._loads
            for i, name in enumerate(names):
                load = loads.get(name)
                if load is None:
                    raise UnknownCandidateError(f"no tracked candidate named {name!r}; known: {list(loads)}")
                if now > load.valid_until:
                    self._schedule(load, now)
                w = load.free_at - now
                out[i] = w if w > 0.0 else 0.0
        return out

    def in_flight(self, name: str) -> int:
        """Requests in flight (running, queued and externally reported)."""
        with self._lock:
            return self._get(name).in_flight

    def estimate(self, name: str) -> ServiceTimeEstimate:
        """A copy of the candidate's current service-time estimate."""
        with self._lock:
            return self._get(name).estimate.copy()

    # -- call path --------------------------------------------------------------------------
    def start(self, name: str, expected_output_tokens: float | None = None) -> LoadTicket:
        """Record that a request to ``name`` was sent; pair it with :meth:`finish`.

        ``expected_output_tokens`` (a per-request length, when the caller can predict it) sets the
        request's predicted service time ``d(n)``; None uses the candidate's running mean. The
        ticket's ``expected_s`` is ``d`` at the time it was sent; the tracker itself re-costs it
        with the estimate of the moment (see the module docstring).
        """
        tokens = None if expected_output_tokens is None else _observation(expected_output_tokens,
                                                                           "expected_output_tokens")
        with self._lock:
            load = self._get(name)
            now = self._clock()
            ticket = LoadTicket(name, now, load.estimate.expected(tokens), tokens)
            if load.has_free_slot():
                load.running[ticket.id] = (now, tokens)
            else:
                load.queued.append((ticket.id, tokens))
            load.invalidate()
        sharing = self._sharing
        if sharing is not None:  # outside the lock: it may talk to a server (and never raises)
            sharing.started(ticket)
        return ticket

    def finish(
        self,
        ticket: LoadTicket,
        *,
        output_tokens: float | None = None,
        ttft_s: float | None = None,
        error: bool = False,
    ) -> bool:
        """Release the ticket's slot; learn its service time unless ``error``.

        Returns True when the slot was released, False when this was a no-op: the ticket was
        already finished, or its candidate was unregistered meanwhile. The observed service time
        is measured from when the request got a slot (a queued request waits first).
        Bad ``output_tokens``/``ttft_s`` raise :class:`DataError` *after* the slot is released.
        """
        released = False  # by this call: only then does a shared state hear of it
        service_s: float | None = None
        try:
            with self._lock:
                if ticket._done:
                    return False
                ticket._done = released = True
                load = self._loads.get(ticket.name)
                if load is None:
                    return False
                now = self._clock()
                entry = load.running.pop(ticket.id, None)
                if entry is not None:
                    served_from, started_tokens = entry
                    load.promote(now)
                else:
                    for i, (tid, _) in enumerate(load.queued):
                        if tid == ticket.id:
                            del load.queued[i]
                            break
                    else:  # not ours (e.g. unregistered and registered again under the same name)
                        return False
                    served_from = ticket.started_at  # our queue model was wrong: it was served (no history)
                served = max(now - served_from, 0.0)
                load.invalidate()
                if not error:
                    if entry is not None:  # how long it took, for the residual-time rule
                        load.history.append((served, started_tokens))
                    load.r_dirty = True  # new history, new estimate: the ratios change
                    load.estimate.observe(served, output_tokens, ttft_s=ttft_s)
                    service_s = served
            return True
        finally:
            sharing = self._sharing
            if sharing is not None and released:
                # the lease goes whatever happened; the service time is shared only when it was learnt here
                sharing.finished(ticket, service_s, output_tokens, ttft_s)

    def _finish_block(self, ticket: LoadTicket, failed: bool) -> None:
        try:
            self.finish(ticket, output_tokens=ticket.output_tokens, ttft_s=ticket.ttft_s, error=failed)
        except DataError:
            if not failed:
                raise
            # the slot is already released; a bad token count must not mask the body's error

    @contextlib.contextmanager
    def track(self, name: str, expected_output_tokens: float | None = None) -> Iterator[LoadTicket]:
        """``with tracker.track(name) as t: ...`` holds a slot for the block and always releases it.

        Set ``t.output_tokens`` (and ``t.ttft_s``) in the block so the estimate learns; a block
        that raises (or is interrupted) releases the slot without teaching the estimate.
        """
        ticket = self.start(name, expected_output_tokens)
        failed = True
        try:
            yield ticket
            failed = False
        finally:
            self._finish_block(ticket, failed)

    @contextlib.asynccontextmanager
    async def atrack(self, name: str, expected_output_tokens: float | None = None) -> AsyncIterator[LoadTicket]:
        """Async twin of :meth:`track`; a cancelled task also releases its slot."""
        ticket = self.start(name, expected_output_tokens)
        failed = True
        try:
            yield ticket
            failed = False
        finally:
            self._finish_block(ticket, failed)

    # -- external feeding -------------------------------------------------------------------
    def observe(
        self, name: str, latency_s: float, output_tokens: float | None = None, *, ttft_s: float | None = None
    ) -> None:
        """Teach the service estimate one finished call measured elsewhere."""
        with self._lock:
            load = self._get(name)
            load.estimate.observe(latency_s, output_tokens, ttft_s=ttft_s)
            load.r_dirty = True
            load.invalidate()

    def set_in_flight(self, name: str, n: int) -> None:
        """Report that ``n`` requests to ``name`` are in flight, tracked outside this object.

        Replaces the previous report (tickets from :meth:`start` are counted separately and
        added). Reported requests fill free slots first, each assumed half-way through a typical
        request at the time of the report; the rest queue behind the tracked ones.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise DataError(f"in-flight count must be an integer >= 0, got {n!r}")
        with self._lock:
            load = self._get(name)
            load.ext_n = int(n)
            load.ext_at = self._clock()
            load.invalidate()

    # -- shared state (several processes) -------------------------------------------------
    def attach(self, sharing: LoadSharing | None) -> None:
        """Share this tracker's requests with other processes through ``sharing`` (None: stop).

        ``sharing`` (e.g. :class:`mixllm_router.state.RedisState`) hears of every :meth:`start` and
        :meth:`finish`, and before each :meth:`waits` may call :meth:`set_remote` and
        :meth:`record_finish` with what the other processes are doing. Detaching forgets the
        remote requests.
        """
        self._sharing = sharing
        if sharing is None:
            self.set_remote({})

    @property
    def sharing(self) -> LoadSharing | None:
        return self._sharing

    def set_remote(self, requests: Mapping[str, Sequence[tuple[float, float | None]]]) -> None:
        """Replace the requests in flight in *other* processes: ``{name: [(age_s, tokens), ...]}``.

        ``age_s`` is how long ago each started (by a clock both sides share, such as the Redis
        server's); ``tokens`` its expected output tokens or None. Names absent from ``requests``
        have none; unknown names are ignored (another process may know a candidate this one
        does not yet).
        """
        with self._lock:
            now = self._clock()
            for name, load in self._loads.items():
                entries = requests.get(name, ())
                if not entries and not load.remote:
                    continue
                remote = sorted((now - max(float(age), 0.0), tokens) for age, tokens in entries)
                if remote != load.remote:
                    load.remote = remote
                    load.promote(now)  # other workers' requests ended: ours queued behind them start
                    load.invalidate()

    def record_finish(
        self, name: str, service_s: float, started_tokens: float | None = None,
        output_tokens: float | None = None, ttft_s: float | None = None,
    ) -> None:
        """Learn from a request another process served: its service time joins the recent
        finishes (the residual-time rule) and the service estimate, as if served here."""
        seconds = _observation(service_s, "service_s")
        with self._lock:
            load = self._loads.get(name)
            if load is None:
                return
            load.history.append((seconds, started_tokens))
            load.estimate.observe(seconds, output_tokens, ttft_s=ttft_s)
            load.r_dirty = True
            load.invalidate()

    # -- explainability and persistence -----------------------------------------------------
    def snapshot(self) -> dict[str, dict[str, float]]:
        """Current load per candidate (for explanations and logs); JSON-serialisable."""
        with self._lock:
            now = self._clock()
            out: dict[str, dict[str, float]] = {}
            for name, load in self._loads.items():
                est = load.estimate
                out[name] = {
                    "max_concurrency": load.limit,
                    "in_flight": load.in_flight,
                    "running": len(load.running),
                    "queued": len(load.queued),
                    "external": load.ext_n,
                    "expected_wait_s": self._wait(load, now),
                    "ttft_s": est.ttft_mean,
                    "s_per_token": est.spt_mean,
                    "mean_output_tokens": est.tokens_mean,
                    "expected_service_s": est.expected(),
                    "observations": est.n_obs,
                    "recent_finishes": len(load.history),
                    "recent_mean_service_s": (float(np.mean([h[0] for h in load.history]))
                                              if load.history else est.expected()),
                }
            return out

    def state_dict(self) -> dict[str, Any]:
        """Limits, service estimates and recent finishes (not in-flight state), JSON-serialisable."""
        with self._lock:
            return {
                "version": _STATE_VERSION,
                "candidates": {
                    name: {"max_concurrency": load.limit, "estimate": load.estimate.to_dict(),
                           "service_history": [list(h) for h in load.history]}
                    for name, load in self._loads.items()
                },
            }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore limits and estimates saved by :meth:`state_dict`.

        Unknown names are registered; known ones get the saved limit and estimate (their
        in-flight requests are kept); tracked names absent from ``state`` are untouched.
        Raises :class:`CheckpointError` for a malformed state (nothing is changed then).
        """
        try:
            if state.get("version") != _STATE_VERSION:
                raise CheckpointError(f"load state version {state.get('version')!r} is not {_STATE_VERSION}")
            parsed = {
                str(name): (
                    _limit(entry["max_concurrency"]),
                    ServiceTimeEstimate.from_dict(entry["estimate"]),
                    # absent in states saved before the residual-time rule: start with no history
                    [_history_entry(h) for h in entry.get("service_history", [])],
                )
                for name, entry in state["candidates"].items()
            }
        except CheckpointError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise CheckpointError(f"malformed load state: {exc!r}") from None
        with self._lock:
            for name, (limit, estimate, history) in parsed.items():
                load = self._loads.get(name)
                if load is None:
                    self._loads[name] = _CandidateLoad(limit, estimate, self._window, history)
                else:
                    load.limit, load.estimate = limit, estimate
                    load.set_history(history)
                    now = self._clock()
                    load.promote(now)
                    load.invalidate()


def _history_entry(entry: Sequence[Any]) -> tuple[float, float | None]:
    seconds, tokens = entry  # ValueError / TypeError when not a pair
    return (_positive_finite(seconds, "service seconds"),
            None if tokens is None else _positive_finite(tokens, "output tokens"))


def _limit(max_concurrency: int) -> int:
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, (int, np.integer)) or max_concurrency < 1:
        raise ConfigError(f"max_concurrency must be an integer >= 1, got {max_concurrency!r}")
    return int(max_concurrency)
