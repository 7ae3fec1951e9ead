"""Call the chosen candidate, fall back to the next best on failure, and account for what happened.

The router ranks candidates by meta score ``S_l``; :class:`FallbackCaller` walks that ranking.

Per candidate, per call::

    transient error (429, 5xx, 529, timeout, connection)  -> wait, retry the same candidate,
        up to ``max_attempts_per_candidate`` attempts; wait_k = min(b_max, b0 * 2^(k-1)) * U(0.5, 1)
        (or the server's Retry-After when it is <= b_max; a longer Retry-After skips to the next
        candidate at once and cools this one for max(cooldown_s, Retry-After));
        after the last attempt: cooldown for ``cooldown_s`` and the next candidate
    ContextLengthError                                    -> the next candidate whose
        ``context_window`` is larger than every window that already failed
    any other PermanentClientError (auth, bad request)     -> raised at once, provider error chained
    success                                                -> CallResult (usage, cost, latency)

Candidates in cooldown are skipped unless every allowed candidate is cooling down (then they are
tried in rank order: a degraded answer beats none). With ``tools``, only candidates whose
``Candidate.supports_tools`` *and* client ``supports_tools`` are true are tried.

Streams may fall back only before their first token (text or tool-call delta); a failure after
it raises :class:`~mixllm_router.StreamInterruptedError` with the partial text, because splicing
two models' answers would produce a text neither wrote.

Cost of a call: ``c = (p_in * t_in + p_out * t_out) / 1e6`` from the usage the provider
reported and the candidate's prices; when usage is missing, ``t = ceil(chars / 4)`` and
``cost_estimated`` is true.

SDK retries must be off in the clients (ours set ``max_retries=0``) so this loop is the only one.

Where the parts live: these rules, once, in :class:`._attempts.AttemptPlan` (the state of one call);
:class:`FallbackCaller` here holds the settings and the cooldown table shared by its calls and
drives the plan in four thin loops (``call``, ``acall`` here, ``stream``, ``astream`` in
:mod:`.streams`); :class:`~.spending.SpendingGuard` is the budget. Every name is importable from
this module as before.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .._exceptions import ConfigError
from ._attempts import DEFAULT_OUTPUT_TOKENS_GUESS as DEFAULT_OUTPUT_TOKENS_GUESS  # importable here as before
from ._attempts import Attempt, AttemptPlan, CallResult, EndHook, Ranked, StartHook
from .base import CallOptions, MessagesInput, ToolSpec
from .spending import SpendingGuard
from .streams import AsyncCallStream, CallStream, astream_chunks, stream_chunks

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Attempt", "CallResult", "CallStream", "AsyncCallStream", "FallbackCaller", "SpendingGuard"]

logger = logging.getLogger(__name__)  # the logger the core's records go to (see ._attempts)


@dataclass(kw_only=True, eq=False)
class FallbackCaller:
    """The retry / fallback / cooldown loop around candidate clients (see the module docstring).

    ``on_start(candidate)`` runs before every attempt and ``on_end(candidate, CallResult | error,
    seconds)`` after it, so a load tracker sees every in-flight request and a learner every
    outcome; exceptions in hooks are logged, never raised into the call. ``clock``, ``sleep``,
    ``asleep`` and ``rng`` are injectable for exact tests. Cooldown state is shared by threads and
    tasks (a lock guards it; nothing awaits while holding it).
    """

    max_attempts_per_candidate: int = 2
    backoff_base_s: float = 0.25
    backoff_max_s: float = 4.0
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    asleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    guard: SpendingGuard | None = None
    on_start: StartHook | None = None
    on_end: EndHook | None = None
    rng: random.Random = field(default_factory=random.Random)
    _cooldowns: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts_per_candidate < 1:
            raise ConfigError("max_attempts_per_candidate must be >= 1")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.cooldown_s < 0:
            raise ConfigError("backoff and cooldown times must be >= 0")

    def sharing(self, **overrides: Any) -> FallbackCaller:
        """A caller with other settings (e.g. ``max_attempts_per_candidate``) that shares this one's
        cooldowns (the same table and lock), spending guard, hooks and random source.

        Why: a wrapper with its own retry count (``ChatMixLLM(max_retries=...)``) must still skip a
        candidate the router has cooled down, and spend from the same budget.
        """
        view = replace(self, **overrides)
        view._cooldowns = self._cooldowns
        view._lock = self._lock
        return view

    # -- cooldown ------------------------------------------------------------------------------
    def in_cooldown(self, name: str) -> bool:
        with self._lock:
            until = self._cooldowns.get(name)
            if until is None:
                return False
            if self.clock() >= until:
                del self._cooldowns[name]
                return False
            return True

    def cool_down(self, name: str, seconds: float) -> None:
        with self._lock:
            until = self.clock() + seconds
            self._cooldowns[name] = max(until, self._cooldowns.get(name, until))

    def clear_cooldown(self, name: str) -> None:
        with self._lock:
            self._cooldowns.pop(name, None)

    def cooldowns(self) -> dict[str, float]:
        """Seconds of cooldown left per candidate now cooling down."""
        now = self.clock()
        with self._lock:
            return {n: until - now for n, until in self._cooldowns.items() if until > now}

    def backoff(self, attempt: int) -> float:
        """Wait before retry number ``attempt`` (1-based): ``min(b_max, b0 * 2^(attempt-1)) * U(0.5, 1)``."""
        base = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return base * (0.5 + 0.5 * self.rng.random())

    # -- the four calls: thin loops around one AttemptPlan ------------------------------------------
    def call(self, ranked: Ranked, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
             estimated_costs: Mapping[str, float] | None = None, **options: Unpack[CallOptions]) -> CallResult:
        """Call the candidates in ``ranked`` order until one answers. ``options``
        (:class:`~mixllm_router.clients.CallOptions`: ``max_tokens``, ``temperature``, ``stop``,
        ``timeout``) reach each client as given: the client checks them, so a client of one's own
        may take more. ``estimated_costs`` (USD per candidate name, e.g. the router's predicted
        ``c_l``) feeds the spending guard."""
        plan = AttemptPlan(self, ranked, messages, tools, options, estimated_costs)
        while (pick := plan.next_attempt()) is not None:
            _, client = pick
            try:
                completion = client.complete(plan.messages, tools=plan.tools, **options)
            except Exception as exc:
                wait = plan.record_failure(exc)
                if wait is not None:
                    self.sleep(wait)
                continue
            return plan.record_success(completion)
        raise plan.exhausted()

    async def acall(self, ranked: Ranked, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                    estimated_costs: Mapping[str, float] | None = None, **options: Unpack[CallOptions]) -> CallResult:
        """Async :meth:`call` (``client.acomplete``; waits with ``asleep``)."""
        plan = AttemptPlan(self, ranked, messages, tools, options, estimated_costs)
        while (pick := plan.next_attempt()) is not None:
            _, client = pick
            try:
                completion = await client.acomplete(plan.messages, tools=plan.tools, **options)
            except Exception as exc:
                wait = plan.record_failure(exc)
                if wait is not None:
                    await self.asleep(wait)
                continue
            return plan.record_success(completion)
        raise plan.exhausted()

    def stream(self, ranked: Ranked, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
               estimated_costs: Mapping[str, float] | None = None, **options: Unpack[CallOptions]) -> CallStream:
        """Stream from the first candidate that produces a first token. Iterate the returned
        :class:`CallStream`; its ``result`` holds the :class:`CallResult` at the end."""
        plan = AttemptPlan(self, ranked, messages, tools, options, estimated_costs)
        return CallStream(lambda holder: stream_chunks(plan, holder, options))

    def astream(self, ranked: Ranked, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                estimated_costs: Mapping[str, float] | None = None,
                **options: Unpack[CallOptions]) -> AsyncCallStream:
        """Async :meth:`stream`: ``async for chunk in caller.astream(...)``."""
        plan = AttemptPlan(self, ranked, messages, tools, options, estimated_costs)
        return AsyncCallStream(lambda holder: astream_chunks(plan, holder, options))
