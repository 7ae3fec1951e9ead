"""How ``ChatMixLLM`` calls a candidate: through the router's own ``FallbackCaller``.

The router's client protocol is provider-neutral text + tool calls; a round trip through it would
drop what LangChain users rely on (content blocks, tool-call ids, ``tool_choice``, structured-output
bindings, callbacks). So each call builds one :class:`CandidateCall` per ranked candidate: a
``ChatClient`` whose ``complete``/``stream`` ignore the neutral messages and invoke the LangChain
runnable with this call's own LangChain messages, config and keyword arguments, and hand the
``AIMessage`` back in ``Completion.raw`` (``CompletionChunk.raw`` for a stream).

The ``FallbackCaller`` (``router.caller``) then owns retries, backoff, cooldowns and the spending
guard, and shares them with ``router.invoke``: a candidate cooled down by one path is skipped by
the other, and both spend from one budget.

Callbacks: the candidate's run nests under the ``ChatMixLLM`` run. Handlers that count (token and
cost counters such as ``get_usage_metadata_callback``) must not see both runs, or every token
would be counted twice; handlers that observe (tracers, LangSmith, ``astream_events``,
``astream_log``) must see both, or the candidate's run is invisible. :func:`observes` tells them
apart and :func:`isolated` keeps LangChain's configure hooks from re-adding a counter to the
nested run.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config

from mixllm_router import RoutingDecision
from mixllm_router.clients.base import Completion, CompletionChunk, ToolCall, ToolCallDelta

__all__ = ["CandidateCall", "RoutedCall", "isolated", "observes"]


def observes(handler: Any) -> bool:
    """Whether a callback handler observes runs (tracers, event streams) rather than counting them."""
    from langchain_core.tracers.base import AsyncBaseTracer, BaseTracer

    if isinstance(handler, (BaseTracer, AsyncBaseTracer)):
        return True
    return hasattr(handler, "tap_output_aiter") and hasattr(handler, "tap_output_iter")  # _StreamingCallbackHandler


@contextlib.contextmanager
def isolated(config: RunnableConfig, mode: str) -> Iterator[None]:
    """Make ``config`` the ambient runnable config while the candidate runs, and hide the
    configure hooks (``get_usage_metadata_callback``, ...) whose handler ``mode`` keeps away.

    Inside a chain, LangChain merges the *enclosing* step's config (a context variable) into every
    nested ``invoke``; its callback manager would then win over ours and the candidate's run would
    hang off the chain instead of off the ChatMixLLM run. Configure hooks are context variables
    that LangChain adds to *every* run it configures, the nested one included.
    """
    from langchain_core.tracers.context import _configure_hooks

    tokens = [(var_child_runnable_config, var_child_runnable_config.set(config))]
    if mode != "all":
        for var, *_ in _configure_hooks:
            handler = var.get()
            if handler is not None and (mode == "none" or not observes(handler)):
                tokens.append((var, var.set(None)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _usage(message: BaseMessage) -> tuple[int | None, int | None]:
    usage: Mapping[str, Any] = getattr(message, "usage_metadata", None) or {}
    return usage.get("input_tokens"), usage.get("output_tokens")


class CandidateCall:
    """One candidate for one ``ChatMixLLM`` call, as a ``ChatClient`` for the ``FallbackCaller``.

    ``complete`` returns a :class:`Completion` whose ``raw`` is the candidate's ``AIMessage``;
    ``stream`` yields :class:`CompletionChunk` s whose ``raw`` is the ``AIMessageChunk`` (usage
    is cumulative on the chunks, as the caller expects, while LangChain's is additive).
    Each attempt holds a slot in the router's load tracker.
    """

    supports_tools = True  # ChatMixLLM filters tool-capable candidates itself

    def __init__(self, name: str, runnable: Runnable[Any, Any], messages: Sequence[BaseMessage],
                 config: RunnableConfig, generation: Mapping[str, Any], tracker: Any, callbacks_mode: str,
                 stream_kwargs: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.model = name
        self._runnable = runnable
        self._messages = list(messages)
        self._config = config
        self._generation = dict(generation)
        self._stream_kwargs = dict(stream_kwargs or {})
        self._tracker = tracker
        self._mode = callbacks_mode

    def _completion(self, message: AIMessage) -> Completion:
        t_in, t_out = _usage(message)
        calls = [ToolCall(id=c.get("id") or "", name=c["name"], arguments=dict(c.get("args") or {}))
                 for c in message.tool_calls]
        return Completion(text=message.text, tool_calls=calls, input_tokens=t_in, output_tokens=t_out,
                          model=self.name, raw=message)

    def complete(self, messages: Any = None, **_: Any) -> Completion:
        with self._tracker.track(self.name) as ticket, isolated(self._config, self._mode):
            message = self._runnable.invoke(self._messages, config=self._config, **self._generation)
            ticket.output_tokens = _usage(message)[1]
        return self._completion(message)

    async def acomplete(self, messages: Any = None, **_: Any) -> Completion:
        async with self._tracker.atrack(self.name) as ticket:
            with isolated(self._config, self._mode):
                message = await self._runnable.ainvoke(self._messages, config=self._config, **self._generation)
            ticket.output_tokens = _usage(message)[1]
        return self._completion(message)

    def _chunk(self, raw: AIMessageChunk, totals: dict[str, int]) -> CompletionChunk:
        t_in, t_out = _usage(raw)
        if t_in is not None:
            totals["in"] = totals.get("in", 0) + t_in
        if t_out is not None:
            totals["out"] = totals.get("out", 0) + t_out
        deltas = [ToolCallDelta(index=c.get("index") or 0, id=c.get("id"), name=c.get("name"), arguments=c.get("args") or "")
                  for c in raw.tool_call_chunks]
        return CompletionChunk(text=raw.text, tool_calls=deltas, input_tokens=totals.get("in"),
                               output_tokens=totals.get("out"), raw=raw)

    def stream(self, messages: Any = None, **_: Any) -> Iterator[CompletionChunk]:
        totals: dict[str, int] = {}
        with self._tracker.track(self.name) as ticket:
            kwargs = {**self._generation, **self._stream_kwargs}
            with isolated(self._config, self._mode):
                chunks = iter(self._runnable.stream(self._messages, config=self._config, **kwargs))
            while True:
                with isolated(self._config, self._mode):
                    raw = next(chunks, None)
                if raw is None:
                    break
                yield self._chunk(raw, totals)
            ticket.output_tokens = totals.get("out")

    async def astream(self, messages: Any = None, **_: Any) -> AsyncIterator[CompletionChunk]:
        totals: dict[str, int] = {}
        async with self._tracker.atrack(self.name) as ticket:
            kwargs = {**self._generation, **self._stream_kwargs}
            with isolated(self._config, self._mode):
                chunks = aiter(self._runnable.astream(self._messages, config=self._config, **kwargs))
            while True:
                with isolated(self._config, self._mode):
                    raw = await anext(chunks, None)
                if raw is None:
                    break
                yield self._chunk(raw, totals)
            ticket.output_tokens = totals.get("out")


@dataclass
class RoutedCall:
    """One routed call: its decision, the ranked candidate calls, the predicted costs (spending
    guard), the text the guard estimates tokens from, and when it started."""

    decision: RoutingDecision
    ranked: list[tuple[Any, CandidateCall]]
    costs: dict[str, float]
    text: list[dict[str, str]]
    started: float
