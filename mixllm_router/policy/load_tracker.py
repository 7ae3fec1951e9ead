"""Per-candidate load tracking: requests in flight, concurrency limits, service times, waits.

MixLLM trades quality and cost against *waiting*. :class:`LoadTracker` follows, per candidate, the
requests this process (and, through a shared state, the other worker processes) has in flight and
estimates the expected wait ``W_l`` before a new request would start; :mod:`.latency` turns ``W_l``
into the penalty of the meta score. The waiting-time model itself (running and queued requests,
the residual-time rule, list scheduling) is described and computed in :mod:`.candidate_load`; how
long a request takes is a :class:`~mixllm_router.policy.service_time.ServiceTimeEstimate`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from .._exceptions import ConfigError, DataError, UnknownCandidateError
from .candidate_load import _STATE_VERSION, _CandidateLoad, _limit, _parse_state
from .load_ticket import LoadTicket
from .service_time import ServiceTimeEstimate, _observation, _positive_finite

__all__ = ["LoadSharing", "LoadTracker"]


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


class LoadTracker:
    """Requests in flight, concurrency limits and service-time estimates per candidate.

    Feed it from the call path (:meth:`track` / :meth:`atrack` around each call, or
    :meth:`start` / :meth:`finish`), or from outside (:meth:`observe`, :meth:`set_in_flight`).
    Ask it for :meth:`expected_wait` / :meth:`waits` when routing. The model behind ``W`` is in
    :mod:`~mixllm_router.policy.candidate_load`.

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
            load.schedule(now, self._floor)
        w = load.free_at - now
        return w if w > 0.0 else 0.0


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
                    load.schedule(now, self._floor)
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
        with the estimate of the moment (see :mod:`.candidate_load`).
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
        parsed = _parse_state(state)
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

