"""The decision core of one routed call, stated once for the four ways of calling.

What to try next, whether an error is retried here, sent to another candidate or raised, how long
to wait, whether the budget allows a candidate, and the record of every attempt: all of it lives
in :class:`AttemptPlan`. The loops that drive it (``FallbackCaller.call`` / ``acall`` and the sync
and async streams of :mod:`.streams`) only call the client, ``await`` it or iterate it::

    plan = AttemptPlan(caller, ranked, messages, tools, options, estimated_costs)
    while (pick := plan.next_attempt()) is not None:
        candidate, client = pick
        try:
            completion = client.complete(plan.messages, tools=plan.tools, **options)
        except Exception as exc:
            wait = plan.record_failure(exc)  # raises what must be neither retried nor tried elsewhere
            if wait is not None:
                caller.sleep(wait)
            continue
        return plan.record_success(completion)
    raise plan.exhausted()

Why one plan object rather than a shared loop: Python cannot write one loop that is sync in one
caller and async in another, but the loop is then six lines and every rule is here, so the sync
and async paths cannot drift apart. The rules themselves are described in :mod:`.fallback`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from .._exceptions import (
    AllCandidatesFailedError,
    BudgetExceededError,
    ClientError,
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
    Message,
    MessagesInput,
    ToolSpec,
    estimate_tokens,
    messages_text,
    normalize_messages,
)
from .spending import SpendingGuard

__all__ = ["Attempt", "AttemptPlan", "CallResult", "DEFAULT_OUTPUT_TOKENS_GUESS", "EndHook", "Ranked",
           "RetrySettings", "StartHook"]

# The records keep the logger name they had before the fallback module was split, so a logging
# configuration that names it still sees them.
logger = logging.getLogger(f"{__package__}.fallback")

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


class RetrySettings(Protocol):
    """What a plan reads from its caller (:class:`~mixllm_router.clients.fallback.FallbackCaller`):
    the retry settings, the shared cooldown table, the spending guard, the hooks and the clock.

    A protocol, not the class, so that this core does not import the caller built on it; its
    members are read-only here (properties), which the caller's dataclass fields satisfy.
    """

    @property
    def max_attempts_per_candidate(self) -> int: ...

    @property
    def backoff_max_s(self) -> float: ...

    @property
    def cooldown_s(self) -> float: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def sleep(self) -> Callable[[float], None]: ...

    @property
    def asleep(self) -> Callable[[float], Awaitable[None]]: ...

    @property
    def guard(self) -> SpendingGuard | None: ...

    @property
    def on_start(self) -> StartHook | None: ...

    @property
    def on_end(self) -> EndHook | None: ...

    def in_cooldown(self, name: str) -> bool: ...

    def cool_down(self, name: str, seconds: float) -> None: ...

    def clear_cooldown(self, name: str) -> None: ...

    def backoff(self, attempt: int) -> float: ...


class _HasResult(Protocol):
    """A stream whose ``result`` is set when it finishes (``CallStream`` / ``AsyncCallStream``)."""

    result: CallResult | None


def to_client_error(exc: BaseException, candidate: str) -> ClientError | None:
    """Our error for ``exc`` (``None`` when it is no provider failure), naming ``candidate``."""
    err = exc if isinstance(exc, ClientError) else map_provider_error(exc, provider=candidate, candidate=candidate)
    if err is not None and err.candidate is None:
        err.candidate = candidate
    return err


def _run_hook(hook: Callable[..., None] | None, name: str, *args: Any) -> None:
    """Run a user hook; its exceptions are logged, never raised into the call."""
    if hook is not None:
        try:
            hook(*args)
        except Exception:
            logger.exception("%s hook failed", name)


class AttemptPlan:
    """The state of one call: the candidates in order, the attempt now running, every attempt so
    far, the errors per candidate and the context windows that proved too small.

    Drive it with :meth:`next_attempt`, then :meth:`record_success` or :meth:`record_failure` (or,
    for a stream that broke after its first token, :meth:`record_interrupted`), and raise
    :meth:`exhausted` when :meth:`next_attempt` says no candidate is left.
    """

    def __init__(self, caller: RetrySettings, ranked: Ranked, messages: MessagesInput,
                 tools: Sequence[ToolSpec] | None, options: Mapping[str, Any],
                 estimated_costs: Mapping[str, float] | None) -> None:
        if not ranked:
            raise AllCandidatesFailedError("no candidates to call", {})
        self.caller = caller
        self.messages: list[Message] = normalize_messages(messages)
        self.tools = list(tools) if tools else None
        self.options = options
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
        self._candidates = self._eligible()
        self._current: tuple[Candidate, ChatClient] | None = None
        self._attempt = 0  # of the current candidate, 1-based
        self._t0 = 0.0

    # -- what to try -------------------------------------------------------------------------------
    def _eligible(self) -> Iterator[tuple[Candidate, ChatClient]]:
        """The candidates still worth a try, judged when each is reached (a window that failed,
        a cooldown that started, the budget left may have changed since the call began)."""
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
            t_out = self.options.get("max_tokens") or DEFAULT_OUTPUT_TOKENS_GUESS
            estimate = cand.call_cost(t_in, t_out)
        if guard.check(cand, estimate):  # raises in "raise" mode
            return True
        err = BudgetExceededError(f"{cand.name!r}: estimated ${estimate:.6f} exceeds the budget left", candidate=cand.name)
        self.attempts.append(Attempt(cand.name, err, 0.0))
        self.errors[cand.name] = err
        return False

    def next_attempt(self) -> tuple[Candidate, ChatClient] | None:
        """The candidate and client to call now (the same one again after a retry), or ``None`` when
        none is left. Runs the ``on_start`` hook and starts the attempt's clock."""
        if self._current is None:
            self._current = next(self._candidates, None)
            self._attempt = 0
            if self._current is None:
                return None
        self._attempt += 1
        cand = self._current[0]
        _run_hook(self.caller.on_start, "on_start", cand)
        self._t0 = self.caller.clock()
        return self._current

    def elapsed(self) -> float:
        """Seconds since the current attempt started."""
        return self.caller.clock() - self._t0

    def _candidate(self) -> Candidate:
        if self._current is None:
            raise RuntimeError("no attempt is running: call next_attempt() first")
        return self._current[0]

    # -- what happened -----------------------------------------------------------------------------
    def record_failure(self, exc: Exception) -> float | None:
        """Account for a failed attempt and say what follows: the seconds to wait before retrying
        the same candidate, or ``None`` to move on to the next one.

        Call it inside the ``except``: it raises what must be neither retried nor tried elsewhere,
        an exception that is no provider failure (a bug in the calling code is never swallowed) or
        a permanent error (ours, with the provider's chained).
        """
        cand = self._candidate()
        seconds = self.elapsed()
        err = to_client_error(exc, cand.name)
        if err is None:
            _run_hook(self.caller.on_end, "on_end", cand, exc, seconds)
            raise exc
        _run_hook(self.caller.on_end, "on_end", cand, err, seconds)
        action, delay = self._decide(cand, err, seconds)
        if action == "raise":
            if err is exc:
                raise exc
            raise err from exc
        if action == "next":
            self._current = None
            return None
        return delay

    def _decide(self, cand: Candidate, err: ClientError, seconds: float
                ) -> tuple[Literal["retry", "next", "raise"], float]:
        """The rule for a provider error: ("retry", delay) | ("next", 0) | ("raise", 0)."""
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
        if self._attempt < c.max_attempts_per_candidate:
            return "retry", (retry_after if retry_after is not None else c.backoff(self._attempt))
        c.cool_down(cand.name, c.cooldown_s)
        return "next", 0.0

    def record_success(self, completion: Completion, ttft: float | None = None,
                       stream: _HasResult | None = None) -> CallResult:
        """The :class:`CallResult` of the attempt that answered: usage (estimated when unreported),
        cost (recorded by the spending guard), latency; the candidate's cooldown is cleared.
        ``stream`` gets the result before the ``on_end`` hook runs."""
        cand = self._candidate()
        seconds = self.elapsed()
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
        result = CallResult(
            completion=completion, candidate=cand.name, attempts=list(self.attempts), latency_s=seconds,
            input_tokens=int(t_in), output_tokens=int(t_out), cost_usd=cost, cost_estimated=estimated,
            time_to_first_token_s=ttft,
        )
        if stream is not None:
            stream.result = result
        _run_hook(self.caller.on_end, "on_end", cand, result, seconds)
        return result

    def record_interrupted(self, exc: BaseException, chunks: Sequence[CompletionChunk]) -> StreamInterruptedError:
        """The error for a stream that broke after its first token (raise it, ``from exc``): no
        fallback then, since splicing two models' answers would give a text neither wrote."""
        cand = self._candidate()
        seconds = self.elapsed()
        err = to_client_error(exc, cand.name) or exc
        self.attempts.append(Attempt(cand.name, err, seconds))
        if isinstance(err, TransientClientError):
            self.caller.cool_down(cand.name, self.caller.cooldown_s)
        _run_hook(self.caller.on_end, "on_end", cand, err, seconds)
        partial = "".join(c.text for c in chunks)
        return StreamInterruptedError(
            f"the stream from {cand.name!r} broke after {len(partial)} characters: {err}",
            candidate=cand.name, partial_text=partial,
        )

    def exhausted(self) -> ClientError:
        """The error to raise when no candidate is left."""
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
