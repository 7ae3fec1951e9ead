"""A discrete-event simulation of a query stream routed with live load.

Why: the latency penalty only matters when queries pile up, which recorded outcomes cannot show.
The simulator replays a routing dataset as a *stream*: queries arrive over (virtual) time, each
candidate serves a limited number of requests at once, and the router decides every query with
the waits its :class:`~mixllm_router.policy.load.LoadTracker` sees at that moment. Nothing sleeps: a
virtual clock is injected into the tracker and jumps from event to event.

The model
---------
Arrivals: a Poisson process of rate ``r`` (gaps ``~ Exp(r)``), plus optional :class:`Burst` s, each
an extra Poisson process of rate ``r_b`` inside ``[start, start + duration)`` (the superposition of
Poisson processes is Poisson with the summed rate). Or explicit arrival times.

Service: candidate ``l`` serves at most ``c_l`` requests at once; the others wait in a FIFO queue
per candidate. A request of ``n`` output tokens takes::

    d = (TTFT_l + n / v_l) · exp(σ_l·z − σ_l²/2),   z ~ N(0, 1)

(lognormal noise with mean 1, so ``E[d]`` is the noiseless time). ``z`` is drawn once per query and
shared by all candidates (common random numbers: two policies compared on one seed differ only
by their choices). ``n`` is the recorded ``output_tokens`` of that (query, candidate), else the
length of its recorded ``response`` / ``chars_per_token`` (≈ 4 characters a token), else a default.
Profiles (``TTFT``, tokens/s ``v``, ``σ``) default by name pattern (:data:`DEFAULT_PROFILES`).

Waiting time of a request: ``start − arrival`` (0 when a slot was free).

Event order: before the query arriving at ``t`` is routed, every request ending at or before ``t``
finishes, in time order, each with the clock set to its end time: the tracker releases the slot
(``finish(ticket, output_tokens=n)``), learns the observed service time, and starts its next
queued request, as the simulated server does. Then the clock is set to ``t`` and the router
decides; the chosen candidate's ticket starts at ``t``. So the tracker's estimate ``W_l`` at each
decision is exactly what a live router would know: its own bookkeeping of in-flight requests and
its learnt service-time estimate, never the simulator's true durations.

Reported, for the routed queries and for always-``reference`` on the same queries: quality and
cost as % of the reference, mean / p95 / max wait, the share of queries that waited longer than
``τ``, each candidate's share of queries, and load over time (in-flight = running + queued,
sampled every ``sample_every_s``).
"""

from __future__ import annotations

import heapq
import math
import warnings
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import ConfigError, DataError
from ..policy.load import LatencySettings, LoadTracker
from .simulator_report import SimulationReport
from .simulator_scenario import (
    DEFAULT_PROFILES,
    FALLBACK_PROFILE,
    Burst,
    LatencyProfile,
    default_profile,
    poisson_arrivals,
)

if TYPE_CHECKING:
    from ..data import RoutingDataset
    from ..router import MixLLMRouter

__all__ = [
    "LatencyProfile",
    "Burst",
    "DEFAULT_PROFILES",
    "FALLBACK_PROFILE",
    "default_profile",
    "poisson_arrivals",
    "Simulator",
    "SimulationReport",
]


class _VirtualClock:
    """The simulator's clock, injected into the :class:`LoadTracker`."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------


class Simulator:
    """A stream of ``data``'s queries routed by ``router`` to candidates with limited concurrency.

    The constructor fixes the *scenario* (which queries, how they arrive, how fast each candidate
    serves); :meth:`run` plays it with a *policy* (cost weight, latency settings) and a seed, so one
    scenario can be compared across penalty settings on the same arrivals and noise.

    Parameters
    ----------
    router:
        A fitted :class:`~mixllm_router.MixLLMRouter`. During :meth:`run` its ``load_tracker`` is
        replaced by one on the virtual clock (and, with ``latency=``, its ``config.latency``);
        both are restored afterwards. Decisions are added to ``router.decisions`` as usual.
    data:
        Recorded outcomes with the quality and cost of every candidate (and the reference) for
        each query; queries missing one are dropped with a warning.
    rate_per_s, bursts, arrivals:
        Poisson arrivals at ``rate_per_s`` plus bursts, or explicit ``arrivals`` (seconds).
    n_queries:
        Stream length (default: every query once). Queries are taken in a seeded random order;
        more than ``len(data)`` cycles through fresh permutations.
    concurrency:
        One limit for all, or ``{name: limit}``; unnamed candidates keep their
        ``Candidate.max_concurrency``. The tracker is told the same limits (a router knows them).
    profiles:
        ``{name: LatencyProfile}`` overrides of :func:`default_profile`.
    warm_start:
        Seed the tracker's service-time estimates with each profile's true means (default: the
        tracker starts from its generic prior and learns from finished requests).
    """

    def __init__(
        self,
        router: MixLLMRouter,
        data: RoutingDataset,
        *,
        rate_per_s: float = 10.0,
        n_queries: int | None = None,
        bursts: Sequence[Burst] = (),
        arrivals: Sequence[float] | None = None,
        concurrency: int | Mapping[str, int] | None = None,
        profiles: Mapping[str, LatencyProfile] | None = None,
        reference: str | None = None,
        chars_per_token: float = 4.0,
        default_output_tokens: float = 256.0,
        sample_every_s: float = 1.0,
        warm_start: bool = False,
        embeddings: np.ndarray | None = None,
    ) -> None:
        router.model.check_fitted()
        self.router = router
        self.candidates = router.candidate_names
        self.reference = reference or router.reference_ or self.candidates[0]
        missing = [n for n in (*self.candidates, self.reference) if n not in data.models]
        if missing:
            raise DataError(f"the simulation data has no outcomes for {sorted(set(missing))}; models: {data.models}")
        if not (chars_per_token > 0 and default_output_tokens >= 0 and sample_every_s > 0):
            raise ConfigError("chars_per_token and sample_every_s must be > 0, default_output_tokens >= 0")
        self.rate_per_s = float(rate_per_s)
        self.bursts = tuple(bursts)
        self.sample_every_s = float(sample_every_s)
        self.warm_start = warm_start

        cols = list(self.candidates)
        if self.reference not in cols:
            cols.append(self.reference)
        self._ref_col = cols.index(self.reference)
        quality, cost = data.matrix("quality", cols), data.matrix("cost", cols)
        complete = np.isfinite(quality).all(axis=1) & np.isfinite(cost).all(axis=1)
        if not complete.any():
            raise DataError("no query has a recorded quality and cost for every candidate")
        if not complete.all():
            warnings.warn(f"simulation: dropped {int((~complete).sum())} queries missing an outcome "
                          "for some candidate", stacklevel=2)
        keep = np.flatnonzero(complete)
        self.query_ids = [data.query_ids[i] for i in keep]
        self.queries = [data.queries[i] for i in keep]
        self.quality, self.cost = quality[keep], cost[keep]
        self.output_tokens = self._output_tokens(data, keep, chars_per_token, default_output_tokens)

        if embeddings is None:
            embeddings = router.embed(self.queries)[0]
        else:
            embeddings = np.asarray(embeddings, dtype=np.float32)
            if embeddings.shape[0] != len(data):
                raise DataError(f"got {embeddings.shape[0]} embeddings for {len(data)} queries")
            embeddings = embeddings[keep]
        self.embeddings = embeddings

        n = len(keep) if n_queries is None else int(n_queries)
        if n < 1:
            raise ConfigError(f"n_queries must be >= 1, got {n_queries}")
        self.n_queries = n
        if arrivals is not None:
            arr = np.asarray(arrivals, dtype=np.float64)
            if arr.ndim != 1 or arr.size < 1 or not np.isfinite(arr).all() or (arr < 0).any():
                raise ConfigError("arrivals must be a non-empty list of finite times >= 0")
            if n_queries is not None and arr.size != n:
                raise ConfigError(f"got {arr.size} arrival times for n_queries={n}")
            self.arrivals: np.ndarray | None = np.sort(arr, kind="stable")
            self.n_queries = arr.size
        else:
            self.arrivals = None
            poisson_arrivals(1, self.rate_per_s, np.random.default_rng(0))  # validate the rate now

        self.limits = self._limits(concurrency)
        profiles = dict(profiles or {})
        unknown = [p for p in profiles if p not in self.candidates]
        if unknown:
            raise ConfigError(f"profiles for unknown candidates {unknown}; candidates: {self.candidates}")
        self.profiles = [profiles.get(name) or default_profile(name) for name in self.candidates]

    # -- scenario helpers ----------------------------------------------------------------------
    def _output_tokens(self, data: RoutingDataset, keep: np.ndarray, cpt: float, default: float) -> np.ndarray:
        """Output tokens per (query, candidate): recorded count, else response length / cpt, else default."""
        tokens = np.full((keep.size, len(self.candidates)), float(default))
        if data.has_column("response"):
            frame = data.frame
            lengths = frame["response"].map(lambda r: len(r) / cpt if isinstance(r, str) else np.nan)
            table = (frame.assign(_n=lengths.astype(float)).pivot_table(index="query_id", columns="model", values="_n",
                                                                        aggfunc="first", dropna=False))
            table = table.reindex(index=[data.query_ids[i] for i in keep], columns=self.candidates)
            values = table.to_numpy(dtype=np.float64)
            tokens = np.where(np.isfinite(values), np.ceil(values), tokens)
        if data.has_column("output_tokens"):
            recorded = data.matrix("output_tokens", self.candidates)[keep]
            tokens = np.where(np.isfinite(recorded), recorded, tokens)
        return tokens

    def _limits(self, concurrency: int | Mapping[str, int] | None) -> list[int]:
        pool = self.router.pool
        if concurrency is None:
            limits = {n: pool.get(n).max_concurrency for n in self.candidates}
        elif isinstance(concurrency, Mapping):
            unknown = [n for n in concurrency if n not in self.candidates]
            if unknown:
                raise ConfigError(f"concurrency for unknown candidates {unknown}; candidates: {self.candidates}")
            limits = {n: concurrency.get(n, pool.get(n).max_concurrency) for n in self.candidates}
        else:
            limits = dict.fromkeys(self.candidates, concurrency)
        for name, limit in limits.items():
            if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
                raise ConfigError(f"concurrency of {name!r} must be an integer >= 1, got {limit!r}")
        return [int(limits[n]) for n in self.candidates]

    def _stream(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(query row per arrival, arrival times) for one run."""
        n_data = len(self.query_ids)
        perms = [rng.permutation(n_data) for _ in range(-(-self.n_queries // n_data))]
        order = np.concatenate(perms)[: self.n_queries]
        times = self.arrivals if self.arrivals is not None else poisson_arrivals(
            self.n_queries, self.rate_per_s, rng, self.bursts)
        return order, times

    def _tracker(self, clock: _VirtualClock) -> LoadTracker:
        tracker = LoadTracker(clock=clock)
        for j, name in enumerate(self.candidates):
            prior: dict[str, float] = {}
            if self.warm_start:
                p = self.profiles[j]
                prior = {"ttft_s": p.ttft_s, "s_per_token": 1.0 / p.tokens_per_s,
                         "output_tokens": float(self.output_tokens[:, j].mean())}
            tracker.register(name, self.limits[j], **prior)
        return tracker

    # -- the simulation --------------------------------------------------------------------------
    def run(
        self,
        *,
        latency: LatencySettings | Mapping[str, Any] | None = None,
        cost_weight: float | None = None,
        cost_share: float | None = None,
        seed: int = 0,
    ) -> SimulationReport:
        """Play the stream once. ``latency`` overrides ``router.config.latency`` for this run;
        ``cost_weight`` (λ) or ``cost_share`` fix the cost knob (default: the router's config).
        The same seed gives the same arrivals, query order and noise, hence the same report."""
        router = self.router
        lam = router.resolve_cost_weight(cost_weight, cost_share)
        if isinstance(latency, Mapping):
            latency = LatencySettings.create(**latency)
        rng = np.random.default_rng(seed)
        order, times = self._stream(rng)
        noise = rng.standard_normal(self.n_queries)
        n, m = self.n_queries, len(self.candidates)
        index = {name: j for j, name in enumerate(self.candidates)}

        clock = _VirtualClock()
        tracker = self._tracker(clock)
        saved_tracker, saved_config = router.load_tracker, router.config
        router.load_tracker = tracker
        if latency is not None:
            router.config = saved_config.model_copy(update={"latency": latency})
        settings = router.config.latency

        chosen = np.empty(n, dtype=np.int64)
        start = np.empty(n)
        end = np.empty(n)
        expected = np.empty((n, m))
        tickets: list[Any] = [None] * n
        running = [0] * m
        queues: list[deque[int]] = [deque() for _ in range(m)]
        ends: list[tuple[float, int]] = []  # heap of (end time, arrival index)
        events: list[list[tuple[float, int, int]]] = [[] for _ in range(m)]  # (time, Δ in flight, Δ queued)

        def begin(i: int, t: float) -> None:
            j, q = int(chosen[i]), int(order[i])
            p = self.profiles[j]
            factor = math.exp(p.noise_sigma * noise[i] - 0.5 * p.noise_sigma ** 2)
            start[i] = t
            end[i] = t + p.mean_service_s(self.output_tokens[q, j]) * factor
            running[j] += 1
            heapq.heappush(ends, (float(end[i]), i))

        def complete_until(t: float) -> None:
            while ends and ends[0][0] <= t:
                t_end, i = heapq.heappop(ends)
                j = int(chosen[i])
                clock.now = t_end
                tracker.finish(tickets[i], output_tokens=float(self.output_tokens[order[i], j]))
                running[j] -= 1
                events[j].append((t_end, -1, 0))
                if queues[j]:
                    nxt = queues[j].popleft()
                    events[j].append((t_end, 0, -1))
                    begin(nxt, t_end)

        try:
            for i in range(n):
                t = float(times[i])
                complete_until(t)
                clock.now = t
                q = int(order[i])
                decision = router.route_batch([self.queries[q]], embeddings=self.embeddings[q:q + 1],
                                              cost_weight=lam)[0]
                j = index[decision.chosen]
                chosen[i] = j
                expected[i] = [s.wait_s for s in decision.scores]
                tickets[i] = tracker.start(decision.chosen)
                if running[j] < self.limits[j]:
                    events[j].append((t, 1, 0))
                    begin(i, t)
                else:
                    events[j].append((t, 1, 1))
                    queues[j].append(i)
            complete_until(math.inf)
        finally:
            router.load_tracker, router.config = saved_tracker, saved_config

        grid = np.arange(0.0, float(end.max()) + self.sample_every_s, self.sample_every_s)
        load, queued = np.zeros((grid.size, m)), np.zeros((grid.size, m))
        for j in range(m):
            if events[j]:
                ev = np.array(events[j])
                pos = np.searchsorted(ev[:, 0], grid, side="right") - 1
                inflight, waiting = np.cumsum(ev[:, 1]), np.cumsum(ev[:, 2])
                load[:, j] = np.where(pos >= 0, inflight[np.maximum(pos, 0)], 0)
                queued[:, j] = np.where(pos >= 0, waiting[np.maximum(pos, 0)], 0)

        ref, rows = self._ref_col, order
        return SimulationReport(
            candidates=list(self.candidates),
            reference=self.reference,
            latency=settings,
            cost_weight=lam,
            query_ids=[self.query_ids[q] for q in rows],
            arrival_s=np.asarray(times, dtype=np.float64).copy(),
            start_s=start,
            end_s=end,
            chosen=chosen,
            quality=self.quality[rows, chosen],
            cost=self.cost[rows, chosen],
            reference_quality=self.quality[rows, ref],
            reference_cost=self.cost[rows, ref],
            expected_wait_s=expected,
            load_times=grid,
            load=load,
            queued=queued,
            meta={"seed": seed, "rate_per_s": self.rate_per_s, "limits": dict(zip(self.candidates, self.limits)),
                  "bursts": [b.model_dump() for b in self.bursts], "warm_start": self.warm_start,
                  "profiles": {n: p.model_dump() for n, p in zip(self.candidates, self.profiles)}},
        )
