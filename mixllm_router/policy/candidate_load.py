"""One candidate's load (:class:`_CandidateLoad`) and the waiting-time model it computes.

:class:`~mixllm_router.policy.load_tracker.LoadTracker` keeps one such record per candidate, under
its lock, and asks it for the expected wait ``W`` of a new request.

The waiting-time model
----------------------
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
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._exceptions import CheckpointError, ConfigError
from .service_time import ServiceTimeEstimate, _positive_finite

#: Version of :meth:`LoadTracker.state_dict`'s layout.
_STATE_VERSION = 1


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
        # Parts of the schedule rebuilt only after a change (see rebuild()).
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


    def schedule(self, now: float, floor: float) -> None:
        """Recompute the earliest slot-free time (list scheduling, see the module docstring).

        ``floor`` is the tracker's ``overdue_floor_s``: a running request is never free before it.
        """
        if self.dirty:
            self.rebuild()
        if not self.full:  # a free slot, so nothing can be queued
            self.free_at, self.valid_until = -math.inf, math.inf
            return
        floor_at = now + floor
        r_sorted, r_tail = self.r_sorted, self.r_tail
        k = len(r_sorted)
        until = math.inf  # the schedule holds in absolute time until a breakpoint
        ends = []
        for t0, d in self.runs:
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
        ends.extend(self.ext_ends)
        for i, end in enumerate(ends):
            if end <= floor_at:  # still busy: never free before now + floor
                ends[i], until = floor_at, now
            elif end - floor < until:
                until = end - floor
        ends.sort()
        # More running than the limit (it was lowered): the first finishes free no slot.
        slots = ends[len(ends) - self.limit :]  # sorted, so a valid heap as is
        for d in self.durations:
            heapq.heapreplace(slots, slots[0] + d)
        self.free_at = slots[0]
        self.valid_until = until if until > now else now

    def rebuild(self) -> None:
        """The parts of the schedule that change only when the candidate's state does.

        Durations are re-costed with the current estimate here (see the module docstring).
        Requests of other processes (:meth:`LoadTracker.set_remote`) fill the slots this process leaves free,
        oldest first, with their real start times; the rest queue behind this process's own.
        """
        self.dirty = False
        limit = self.limit
        n_run = len(self.running)
        remote = self.remote
        free = max(limit - n_run, 0)
        remote_running, remote_queued = remote[:free], remote[free:]
        ext_running = min(self.ext_n, max(free - len(remote_running), 0))
        self.full = n_run + len(remote_running) + ext_running >= limit
        if not self.full:
            return
        if self.r_dirty:
            self.ratio_table()
        mean_ratio = self.r_tail[0]
        est = self.estimate
        typical = est.expected()
        self.runs = [(t0, est.expected(tokens)) for t0, tokens in self.running.values()]
        self.runs.extend((t0, est.expected(tokens)) for t0, tokens in remote_running)
        # Reported without start times: assume each is half-way through a typical request.
        self.ext_ends = [self.ext_at + 0.5 * typical * mean_ratio] * ext_running
        typical_q = typical * mean_ratio  # most tickets carry no length: one duration for them all
        durations = [typical_q if tokens is None else est.expected(tokens) * mean_ratio for _, tokens in self.queued]
        durations.extend(typical_q if tokens is None else est.expected(tokens) * mean_ratio
                         for _, tokens in remote_queued)
        ext_queued = self.ext_n - ext_running
        if ext_queued:
            durations.extend([typical_q] * ext_queued)
        self.durations = durations


def _history_entry(entry: Sequence[Any]) -> tuple[float, float | None]:
    seconds, tokens = entry  # ValueError / TypeError when not a pair
    return (_positive_finite(seconds, "service seconds"),
            None if tokens is None else _positive_finite(tokens, "output tokens"))


def _limit(max_concurrency: int) -> int:
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, (int, np.integer)) or max_concurrency < 1:
        raise ConfigError(f"max_concurrency must be an integer >= 1, got {max_concurrency!r}")
    return int(max_concurrency)


def _parse_state(state: Mapping[str, Any]) -> dict[str, tuple[int, ServiceTimeEstimate, list[tuple[float, float | None]]]]:
    """Each candidate of a saved :meth:`LoadTracker.state_dict`, checked: (limit, estimate, recent finishes).

    Raises :class:`CheckpointError` for a malformed state, before the tracker has changed anything.
    """
    try:
        if state.get("version") != _STATE_VERSION:
            raise CheckpointError(f"load state version {state.get('version')!r} is not {_STATE_VERSION}")
        return {
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
