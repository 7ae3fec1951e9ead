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
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

from .._exceptions import (
    AllCandidatesFailedError,
    BudgetExceededError,
    ClientError,
    ConfigError,
    ContextLengthError,
    StreamInterruptedError,
    TransientClientError,
)
from ..candidates import Candidate
from ._errors import map_provider_error
from .base import (
    ChatClient,
    Completion,
    CompletionChunk,
    MessagesInput,
    ToolSpec,
    accumulate_chunks,
    estimate_tokens,
    messages_text,
    normalize_messages,
)

__all__ = ["Attempt", "CallResult", "CallStream", "AsyncCallStream", "FallbackCaller", "SpendingGuard"]

logger = logging.getLogger(__name__)

Ranked = Sequence[tuple[Candidate, ChatClient]]
StartHook = Callable[[Candidate], None]
EndHook = Callable[[Candidate, Any, float], None]

#: Output tokens assumed for a pre-call cost estimate when neither ``max_tokens`` nor the router's
#: prediction is given (only the spending guard uses it).
DEFAULT_OUTPUT_TOKENS_GUESS = 256


class Attempt(NamedTuple):
    """One try of one candidate: its name, the error (``None`` on success) and the seconds it took."""

    candidate: str
    error: BaseException | None
    seconds: float


@dataclass
class CallResult:
    """What a call returned and what it cost."""

    completion: Completion
    candidate: str
    attempts: list[Attempt]
    latency_s: float  # of the successful attempt (to the last chunk for a stream)
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cost_estimated: bool  # usage was not reported; tokens were estimated from text length
    time_to_first_token_s: float | None = None  # streams only

    @property
    def text(self) -> str:
        return self.completion.text

    @property
    def tool_calls(self) -> list[Any]:
        return self.completion.tool_calls


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


def _to_client_error(exc: BaseException, candidate: str) -> ClientError | None:
    err = exc if isinstance(exc, ClientError) else map_provider_error(exc, provider=candidate, candidate=candidate)
    if err is not None and err.candidate is None:
        err.candidate = candidate
    return err


class _Plan:
    """The state of one call: order of candidates, attempts, errors, windows that were too small."""

    def __init__(self, caller: FallbackCaller, ranked: Ranked, messages: Any, tools: Any,
                 gen_kwargs: dict[str, Any], estimated_costs: Mapping[str, float] | None) -> None:
        if not ranked:
            raise AllCandidatesFailedError("no candidates to call", {})
        self.caller = caller
        self.messages = normalize_messages(messages)
        self.tools = list(tools) if tools else None
        self.gen_kwargs = gen_kwargs
        self.estimated_costs = estimated_costs or {}
        self.attempts: list[Attempt] = []
        self.errors: dict[str, BaseException] = {}
        self.min_window = 0
        pairs = list(ranked)
        if self.tools:
            pairs = [(c, k) for c, k in pairs if c.supports_tools and getattr(k, "supports_tools", False)]
            if not pairs:
                raise AllCandidatesFailedError(
                    "tools were given but no candidate supports tools (Candidate.supports_tools and the client's)", {}
                )
        fresh = [(c, k) for c, k in pairs if not caller.in_cooldown(c.name)]
        self.order = fresh or pairs
        self._skip_cooling = bool(fresh)  # also skip candidates that start cooling during this call
        if len(fresh) < len(pairs):
            skipped = [c.name for c, _ in pairs if caller.in_cooldown(c.name)]
            logger.info("skipping candidates in cooldown: %s%s", skipped, "" if fresh else " (all cooling; trying anyway)")

    def __iter__(self) -> Iterator[tuple[Candidate, ChatClient]]:
        for cand, client in self.order:
            if cand.context_window <= self.min_window:
                continue
            if self._skip_cooling and cand.name not in self.errors and self.caller.in_cooldown(cand.name):
                continue
            if not self._admit(cand):
                continue
            yield cand, client

    def _admit(self, cand: Candidate) -> bool:
        guard = self.caller.guard
        if guard is None:
            return True
        estimate = self.estimated_costs.get(cand.name)
        if estimate is None:
            t_in = estimate_tokens(messages_text(self.messages))
            t_out = self.gen_kwargs.get("max_tokens") or DEFAULT_OUTPUT_TOKENS_GUESS
            estimate = cand.call_cost(t_in, t_out)
        if guard.check(cand, estimate):  # raises in "raise" mode
            return True
        err = BudgetExceededError(f"{cand.name!r}: estimated ${estimate:.6f} exceeds the budget left", candidate=cand.name)
        self.attempts.append(Attempt(cand.name, err, 0.0))
        self.errors[cand.name] = err
        return False

    def on_error(self, cand: Candidate, err: ClientError, seconds: float, attempt: int) -> tuple[str, float]:
        """("retry", delay) | ("next", 0) | ("raise", 0)."""
        self.attempts.append(Attempt(cand.name, err, seconds))
        self.errors[cand.name] = err
        c = self.caller
        if isinstance(err, ContextLengthError):
            self.min_window = max(self.min_window, cand.context_window)
            return "next", 0.0
        if not isinstance(err, TransientClientError):
            return "raise", 0.0
        retry_after = err.retry_after
        if retry_after is not None and retry_after > c.backoff_max_s:
            c.cool_down(cand.name, max(c.cooldown_s, retry_after))
            return "next", 0.0
        if attempt < c.max_attempts_per_candidate:
            return "retry", (retry_after if retry_after is not None else c.backoff(attempt))
        c.cool_down(cand.name, c.cooldown_s)
        return "next", 0.0

    def success(self, cand: Candidate, completion: Completion, seconds: float, ttft: float | None) -> CallResult:
        self.attempts.append(Attempt(cand.name, None, seconds))
        self.caller.clear_cooldown(cand.name)
        t_in, t_out = completion.input_tokens, completion.output_tokens
        estimated = completion.usage_estimated or t_in is None or t_out is None
        if t_in is None:
            t_in = estimate_tokens(messages_text(self.messages))
        if t_out is None:
            args = "".join(json.dumps(tc.arguments) for tc in completion.tool_calls)
            t_out = estimate_tokens(completion.text + args)
        cost = cand.call_cost(t_in, t_out)
        if self.caller.guard is not None:
            self.caller.guard.record(cost)
        return CallResult(
            completion=completion, candidate=cand.name, attempts=list(self.attempts), latency_s=seconds,
            input_tokens=int(t_in), output_tokens=int(t_out), cost_usd=cost, cost_estimated=estimated,
            time_to_first_token_s=ttft,
        )

    def exhausted(self) -> ClientError:
        if self.errors and all(isinstance(e, BudgetExceededError) for e in self.errors.values()):
            return BudgetExceededError(
                f"no candidate fits the spending budget: {sorted(self.errors)}"
            )
        if not self.errors:
            windows = [c.context_window for c, _ in self.order]
            return AllCandidatesFailedError(
                f"no candidate with a context window above {self.min_window} tokens (windows: {windows})", {}
            )
        detail = "; ".join(f"{name}: {err}" for name, err in self.errors.items())
        return AllCandidatesFailedError(f"all {len(self.errors)} candidate(s) failed: {detail}", dict(self.errors))


def _tagged(chunk: CompletionChunk, candidate: str) -> CompletionChunk:
    """The chunk, saying which candidate streamed it."""
    chunk.candidate = candidate
    return chunk


def _close(it: Any) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()


async def _aclose(it: Any) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        await close()


class CallStream:
    """Iterate for :class:`~mixllm_router.clients.CompletionChunk`; ``result`` is the
    :class:`CallResult` once the stream is exhausted (``None`` before)."""

    def __init__(self, make: Callable[[CallStream], Iterator[CompletionChunk]]) -> None:
        self.result: CallResult | None = None
        self._it = make(self)

    def __iter__(self) -> CallStream:
        return self

    def __next__(self) -> CompletionChunk:
        return next(self._it)

    def close(self) -> None:
        _close(self._it)


class AsyncCallStream:
    """``async for`` version of :class:`CallStream`."""

    def __init__(self, make: Callable[[AsyncCallStream], AsyncIterator[CompletionChunk]]) -> None:
        self.result: CallResult | None = None
        self._it = make(self)

    def __aiter__(self) -> AsyncCallStream:
        return self

    async def __anext__(self) -> CompletionChunk:
        return await self._it.__anext__()

    async def aclose(self) -> None:
        await _aclose(self._it)


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

    # -- hooks ---------------------------------------------------------------------------------
    def _start(self, cand: Candidate) -> None:
        if self.on_start is not None:
            try:
                self.on_start(cand)
            except Exception:
                logger.exception("on_start hook failed")

    def _end(self, cand: Candidate, outcome: Any, seconds: float) -> None:
        if self.on_end is not None:
            try:
                self.on_end(cand, outcome, seconds)
            except Exception:
                logger.exception("on_end hook failed")

    def _after_failure(self, plan: _Plan, cand: Candidate, exc: Exception, t0: float, attempt: int) -> float | None:
        """What follows a failed attempt (called inside the ``except``): raise what must not be
        retried or tried elsewhere; None to move on to the next candidate; else the seconds to
        wait before retrying this one. One place for the rule, shared by the four call paths."""
        seconds = self.clock() - t0
        err = _to_client_error(exc, cand.name)
        if err is None:  # not a provider error (e.g. a bug in the calling code): never swallowed
            self._end(cand, exc, seconds)
            raise exc
        self._end(cand, err, seconds)
        action, delay = plan.on_error(cand, err, seconds, attempt)
        if action == "raise":
            if err is exc:
                raise exc
            raise err from exc
        return None if action == "next" else delay

    # -- complete ------------------------------------------------------------------------------
    def call(self, ranked: Ranked, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
             estimated_costs: Mapping[str, float] | None = None, **gen_kwargs: Any) -> CallResult:
        """Call the candidates in ``ranked`` order until one answers. ``gen_kwargs``: ``max_tokens``,
        ``temperature``, ``stop``, ``timeout``. ``estimated_costs`` (USD per candidate name, e.g. the
        router's predicted ``c_l``) feeds the spending guard."""
        plan = _Plan(self, ranked, messages, tools, gen_kwargs, estimated_costs)
        for cand, client in plan:
            attempt = 1
            while True:
                self._start(cand)
                t0 = self.clock()
                try:
                    completion = client.complete(plan.messages, tools=plan.tools, **gen_kwargs)
                except Exception as exc:
                    delay = self._after_failure(plan, cand, exc, t0, attempt)
                    if delay is None:  # this candidate is done: the next one
                        break
                    self.sleep(delay)
                    attempt += 1
                    continue
                seconds = self.clock() - t0
                result = plan.success(cand, completion, seconds, None)
                self._end(cand, result, seconds)
                return result
        raise plan.exhausted()

    async def acall(self, ranked: Ranked, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                    estimated_costs: Mapping[str, float] | None = None, **gen_kwargs: Any) -> CallResult:
        """Async :meth:`call` (``client.acomplete``; waits with ``asleep``)."""
        plan = _Plan(self, ranked, messages, tools, gen_kwargs, estimated_costs)
        for cand, client in plan:
            attempt = 1
            while True:
                self._start(cand)
                t0 = self.clock()
                try:
                    completion = await client.acomplete(plan.messages, tools=plan.tools, **gen_kwargs)
                except Exception as exc:
                    delay = self._after_failure(plan, cand, exc, t0, attempt)
                    if delay is None:  # this candidate is done: the next one
                        break
                    await self.asleep(delay)
                    attempt += 1
                    continue
                seconds = self.clock() - t0
                result = plan.success(cand, completion, seconds, None)
                self._end(cand, result, seconds)
                return result
        raise plan.exhausted()

    # -- stream --------------------------------------------------------------------------------
    def stream(self, ranked: Ranked, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
               estimated_costs: Mapping[str, float] | None = None, **gen_kwargs: Any) -> CallStream:
        """Stream from the first candidate that produces a first token. Iterate the returned
        :class:`CallStream`; its ``result`` holds the :class:`CallResult` at the end."""
        plan = _Plan(self, ranked, messages, tools, gen_kwargs, estimated_costs)
        return CallStream(lambda holder: self._stream(plan, holder, gen_kwargs))

    def _stream(self, plan: _Plan, holder: CallStream, gen_kwargs: dict[str, Any]) -> Iterator[CompletionChunk]:
        for cand, client in plan:
            attempt = 1
            while True:
                self._start(cand)
                t0 = self.clock()
                it: Any = None
                head: list[CompletionChunk] = []
                finished = False
                try:
                    it = iter(client.stream(plan.messages, tools=plan.tools, **gen_kwargs))
                    while True:  # buffer up to the first chunk with content: until then, fallback is safe
                        chunk = next(it, None)
                        if chunk is None:
                            finished = True
                            break
                        head.append(chunk)
                        if chunk.has_content:
                            break
                except Exception as exc:
                    _close(it)
                    delay = self._after_failure(plan, cand, exc, t0, attempt)
                    if delay is None:  # this candidate is done: the next one
                        break
                    self.sleep(delay)
                    attempt += 1
                    continue
                ttft = self.clock() - t0 if any(c.has_content for c in head) else None
                chunks = list(head)
                try:
                    for chunk in head:
                        yield _tagged(chunk, cand.name)
                    if not finished:
                        for chunk in it:
                            chunks.append(chunk)
                            yield _tagged(chunk, cand.name)
                except GeneratorExit:
                    _close(it)
                    raise
                except Exception as exc:
                    raise self._interrupted(plan, cand, exc, chunks, t0) from exc
                seconds = self.clock() - t0
                result = plan.success(cand, accumulate_chunks(chunks), seconds, ttft)
                holder.result = result
                self._end(cand, result, seconds)
                return
        raise plan.exhausted()

    def _interrupted(self, plan: _Plan, cand: Candidate, exc: BaseException, chunks: list[CompletionChunk],
                     t0: float) -> StreamInterruptedError:
        seconds = self.clock() - t0
        err = _to_client_error(exc, cand.name) or exc
        plan.attempts.append(Attempt(cand.name, err, seconds))
        if isinstance(err, TransientClientError):
            self.cool_down(cand.name, self.cooldown_s)
        self._end(cand, err, seconds)
        partial = "".join(c.text for c in chunks)
        return StreamInterruptedError(
            f"the stream from {cand.name!r} broke after {len(partial)} characters: {err}",
            candidate=cand.name, partial_text=partial,
        )

    def astream(self, ranked: Ranked, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                estimated_costs: Mapping[str, float] | None = None, **gen_kwargs: Any) -> AsyncCallStream:
        """Async :meth:`stream`: ``async for chunk in caller.astream(...)``."""
        plan = _Plan(self, ranked, messages, tools, gen_kwargs, estimated_costs)
        return AsyncCallStream(lambda holder: self._astream(plan, holder, gen_kwargs))

    async def _astream(self, plan: _Plan, holder: AsyncCallStream,
                       gen_kwargs: dict[str, Any]) -> AsyncIterator[CompletionChunk]:
        for cand, client in plan:
            attempt = 1
            while True:
                self._start(cand)
                t0 = self.clock()
                it: Any = None
                head: list[CompletionChunk] = []
                finished = False
                try:
                    it = client.astream(plan.messages, tools=plan.tools, **gen_kwargs).__aiter__()
                    while True:
                        try:
                            chunk = await it.__anext__()
                        except StopAsyncIteration:
                            finished = True
                            break
                        head.append(chunk)
                        if chunk.has_content:
                            break
                except Exception as exc:
                    await _aclose(it)
                    delay = self._after_failure(plan, cand, exc, t0, attempt)
                    if delay is None:  # this candidate is done: the next one
                        break
                    await self.asleep(delay)
                    attempt += 1
                    continue
                ttft = self.clock() - t0 if any(c.has_content for c in head) else None
                chunks = list(head)
                try:
                    for chunk in head:
                        yield _tagged(chunk, cand.name)
                    if not finished:
                        async for chunk in it:
                            chunks.append(chunk)
                            yield _tagged(chunk, cand.name)
                except GeneratorExit:
                    await _aclose(it)
                    raise
                except Exception as exc:
                    raise self._interrupted(plan, cand, exc, chunks, t0) from exc
                seconds = self.clock() - t0
                result = plan.success(cand, accumulate_chunks(chunks), seconds, ttft)
                holder.result = result
                self._end(cand, result, seconds)
                return
        raise plan.exhausted()
