"""Streaming through the fallback core: the sync and async stream loops and the stream objects.

A stream may fall back only before its first token (text or tool-call delta): the chunks up to
that one are held back, so a failure among them is handled like a failed call (retry, next
candidate). Once a token has been yielded, a failure raises
:class:`~mixllm_router.StreamInterruptedError` with the partial text, because splicing two
models' answers would produce a text neither wrote. Every decision is the plan's
(:class:`._attempts.AttemptPlan`); the two loops differ only in ``next`` vs ``await anext``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from ._attempts import AttemptPlan, CallResult
from .base import CompletionChunk, accumulate_chunks

__all__ = ["AsyncCallStream", "CallStream"]


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


def _close(it: Any) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()


async def _aclose(it: Any) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        await close()


def _tagged(chunk: CompletionChunk, candidate: str) -> CompletionChunk:
    """The chunk, saying which candidate streamed it."""
    chunk.candidate = candidate
    return chunk


class _Head:
    """The chunks of one attempt up to its first with content, or to its end: until then nothing
    has reached the caller, so falling back is still safe."""

    def __init__(self) -> None:
        self.chunks: list[CompletionChunk] = []
        self.finished = False  # the stream ended within the head

    def wants(self, chunk: CompletionChunk | None) -> bool:
        """Take the next chunk (``None``: the stream ended); whether to read another."""
        if chunk is None:
            self.finished = True
            return False
        self.chunks.append(chunk)
        return not chunk.has_content

    def first_token_s(self, plan: AttemptPlan) -> float | None:
        """Seconds to the first token, now that the head is read (``None`` for an empty answer)."""
        return plan.elapsed() if any(c.has_content for c in self.chunks) else None


def stream_chunks(plan: AttemptPlan, holder: CallStream, options: Mapping[str, Any]) -> Iterator[CompletionChunk]:
    """The chunks of the first candidate that streams a first token; ``holder.result`` at the end."""
    while (pick := plan.next_attempt()) is not None:
        cand, client = pick
        it: Any = None
        head = _Head()
        try:
            it = iter(client.stream(plan.messages, tools=plan.tools, **options))
            while head.wants(next(it, None)):
                pass
        except Exception as exc:
            _close(it)
            wait = plan.record_failure(exc)
            if wait is not None:
                plan.caller.sleep(wait)
            continue
        ttft = head.first_token_s(plan)
        chunks = list(head.chunks)
        try:
            for chunk in head.chunks:
                yield _tagged(chunk, cand.name)
            if not head.finished:
                for chunk in it:
                    chunks.append(chunk)
                    yield _tagged(chunk, cand.name)
        except GeneratorExit:
            _close(it)
            raise
        except Exception as exc:
            raise plan.record_interrupted(exc, chunks) from exc
        plan.record_success(accumulate_chunks(chunks), ttft, stream=holder)
        return
    raise plan.exhausted()


async def astream_chunks(plan: AttemptPlan, holder: AsyncCallStream,
                         options: Mapping[str, Any]) -> AsyncIterator[CompletionChunk]:
    """Async :func:`stream_chunks` (``client.astream``; waits with the caller's ``asleep``)."""
    while (pick := plan.next_attempt()) is not None:
        cand, client = pick
        it: Any = None
        head = _Head()
        try:
            it = client.astream(plan.messages, tools=plan.tools, **options).__aiter__()
            while head.wants(await anext(it, None)):
                pass
        except Exception as exc:
            await _aclose(it)
            wait = plan.record_failure(exc)
            if wait is not None:
                await plan.caller.asleep(wait)
            continue
        ttft = head.first_token_s(plan)
        chunks = list(head.chunks)
        try:
            for chunk in head.chunks:
                yield _tagged(chunk, cand.name)
            if not head.finished:
                async for chunk in it:
                    chunks.append(chunk)
                    yield _tagged(chunk, cand.name)
        except GeneratorExit:
            await _aclose(it)
            raise
        except Exception as exc:
            raise plan.record_interrupted(exc, chunks) from exc
        plan.record_success(accumulate_chunks(chunks), ttft, stream=holder)
        return
    raise plan.exhausted()
