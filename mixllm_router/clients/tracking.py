"""Glue between the call path and the load tracker: every request a candidate serves is counted.

:class:`TrackedClient` wraps a candidate's client so that each call (complete, stream, sync or
async) holds a slot in the :class:`~mixllm_router.policy.load.LoadTracker` from its start to its last
chunk, and releases it whatever happens (error, cancellation, a stream abandoned half way). The
observed latency and output tokens then refine that candidate's service-time estimate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING

from ..policy.load import LoadTracker
from .base import CallOptions, ChatClient, Completion, CompletionChunk, MessagesInput, ToolSpec

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["TrackedClient"]


class TrackedClient:
    """A :class:`ChatClient` that reports every call to a load tracker."""

    def __init__(self, inner: ChatClient, tracker: LoadTracker, name: str) -> None:
        self.inner = inner
        self.tracker = tracker
        self.name = name

    @property
    def supports_tools(self) -> bool:
        return bool(getattr(self.inner, "supports_tools", False))

    @property
    def model(self) -> str:
        return str(getattr(self.inner, "model", self.name))

    def complete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                 **options: Unpack[CallOptions]) -> Completion:
        with self.tracker.track(self.name) as ticket:
            completion = self.inner.complete(messages, tools=tools, **options)
            ticket.output_tokens = completion.output_tokens
            return completion

    async def acomplete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                        **options: Unpack[CallOptions]) -> Completion:
        async with self.tracker.atrack(self.name) as ticket:
            completion = await self.inner.acomplete(messages, tools=tools, **options)
            ticket.output_tokens = completion.output_tokens
            return completion

    def stream(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
               **options: Unpack[CallOptions]) -> Iterator[CompletionChunk]:
        with self.tracker.track(self.name) as ticket:
            for chunk in self.inner.stream(messages, tools=tools, **options):
                if chunk.output_tokens is not None:
                    ticket.output_tokens = chunk.output_tokens
                yield chunk

    async def astream(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                      **options: Unpack[CallOptions]) -> AsyncIterator[CompletionChunk]:
        async with self.tracker.atrack(self.name) as ticket:
            async for chunk in self.inner.astream(messages, tools=tools, **options):
                if chunk.output_tokens is not None:
                    ticket.output_tokens = chunk.output_tokens
                yield chunk

    def __repr__(self) -> str:
        return f"TrackedClient({self.inner!r})"
