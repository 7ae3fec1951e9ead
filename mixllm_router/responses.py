"""What :meth:`MixLLMRouter.invoke` and ``stream`` return: the answer together with its decision.

The text a router routes on is the last user turn of the conversation (the question being asked
now); earlier turns and the system prompt still go to the chosen candidate unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .clients.base import ChatClient, CompletionChunk, Message, normalize_messages
from .clients.fallback import AsyncCallStream, CallResult, CallStream
from .policy.decision import RoutingDecision

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .candidates import Candidate, CandidatePool
    from .policy.decision import DecisionLog

__all__ = ["CallHost", "RoutedResponse", "RoutedStream", "routing_text", "prepare_call"]


class CallHost(Protocol):
    """What a call needs from the router that makes it (a :class:`~mixllm_router.MixLLMRouter`):
    routing, the pool and clients of the candidates, the decision log that records what the call
    cost, and the listeners told of each delivered answer."""

    decisions: DecisionLog

    @property
    def pool(self) -> CandidatePool: ...

    @property
    def clients(self) -> Mapping[str, ChatClient]: ...

    def route(self, query: str, *, cost_weight: float | None = None, cost_share: float | None = None,
              max_cost_usd: float | None = None, candidates: Sequence[str] | None = None) -> RoutingDecision: ...

    def callable_candidates(self, tools: Sequence[Any] | None, candidates: Sequence[str] | None) -> list[str]: ...

    def answered(self, decision: RoutingDecision, text: str, candidate: str | None = None,
                 messages: Sequence[Any] | None = None) -> None: ...


def routing_text(messages: Sequence[Message]) -> str:
    """The text to route on: the last user message, else every message's text joined."""
    for message in reversed(messages):
        if message.role == "user" and message.content:
            return message.content
    return "\n".join(m.content for m in messages if m.content)


def prepare_call(
    router: CallHost,
    messages: Any,
    tools: Sequence[Any] | None,
    cost_weight: float | None,
    cost_share: float | None,
    max_cost_usd: float | None,
    candidates: Sequence[str] | None,
    query: str | None = None,
) -> tuple[list[Message], RoutingDecision, list[tuple[Candidate, ChatClient]], dict[str, float]]:
    """Normalise the messages, route among candidates that can serve the call, rank them.

    ``query``: the text to route on when it is not the last user turn (a wrapper that knows the
    user's question inside a RAG prompt); the candidate still receives every message.
    """
    msgs = normalize_messages(messages)
    allowed = router.callable_candidates(tools, candidates)
    text = query if query else routing_text(msgs)
    decision = router.route(text, cost_weight=cost_weight, cost_share=cost_share,
                            max_cost_usd=max_cost_usd, candidates=allowed)
    ranked = [(router.pool.get(name), router.clients[name]) for name in decision.ranking]
    costs = {s.name: s.cost_usd for s in decision.scores}
    return msgs, decision, ranked, costs


def _record(router: CallHost, decision: RoutingDecision, result: CallResult) -> None:
    router.decisions.update(
        decision.decision_id,
        answered_by=result.candidate,
        output_tokens=result.output_tokens,
        latency_s=result.latency_s,
        cost_usd=result.cost_usd,
    )


@dataclass(frozen=True)
class RoutedResponse:
    """The answer, the decision that picked its candidate, and what the call cost."""

    decision: RoutingDecision
    call: CallResult

    @classmethod
    def build(cls, router: CallHost, decision: RoutingDecision, result: CallResult,
              messages: Sequence[Message] | None = None) -> RoutedResponse:
        _record(router, decision, result)
        router.answered(decision, result.text, result.candidate, messages)  # online scoring: O(1), never raises
        return cls(decision, result)

    @property
    def text(self) -> str:
        return self.call.text

    @property
    def tool_calls(self) -> list[Any]:
        return self.call.tool_calls

    @property
    def decision_id(self) -> str:
        return self.decision.decision_id

    @property
    def candidate(self) -> str:
        """The candidate that answered (after any fallback)."""
        return self.call.candidate

    @property
    def cost_usd(self) -> float:
        return self.call.cost_usd

    @property
    def latency_s(self) -> float:
        return self.call.latency_s

    @property
    def usage(self) -> dict[str, int]:
        return {
            "input_tokens": self.call.input_tokens,
            "output_tokens": self.call.output_tokens,
            "total_tokens": self.call.input_tokens + self.call.output_tokens,
        }

    def __str__(self) -> str:
        return self.text


class RoutedStream:
    """Chunks of the chosen candidate's answer (``for`` or ``async for``), plus the decision.

    ``result`` is the :class:`RoutedResponse` once the stream has ended.
    """

    def __init__(self, router: CallHost, decision: RoutingDecision, inner: CallStream | AsyncCallStream,
                 messages: Sequence[Message] | None = None) -> None:
        self.decision = decision
        self.result: RoutedResponse | None = None
        self._router = router
        self._inner = inner
        self._messages = messages

    @property
    def decision_id(self) -> str:
        return self.decision.decision_id

    def _finish(self) -> None:
        if self.result is None and self._inner.result is not None:
            self.result = RoutedResponse.build(self._router, self.decision, self._inner.result, self._messages)

    def __iter__(self) -> Iterator[CompletionChunk]:
        if not isinstance(self._inner, CallStream):
            raise TypeError("this stream is asynchronous: use `async for`")
        yield from self._inner
        self._finish()

    async def __aiter__(self) -> AsyncIterator[CompletionChunk]:
        if not isinstance(self._inner, AsyncCallStream):
            raise TypeError("this stream is synchronous: use `for`")
        async for chunk in self._inner:
            yield chunk
        self._finish()
