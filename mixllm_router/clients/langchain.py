"""Call any LangChain ``BaseChatModel`` (ChatOpenAI, ChatAnthropic, ChatOllama, a fake, ...).

Usage comes from ``AIMessage.usage_metadata`` (LangChain's provider-neutral token counts); tools
go through ``bind_tools`` (the model's own conversion); async uses the model's native ``ainvoke`` /
``astream``. Provider errors surfacing from a partner package (openai / anthropic SDK errors,
httpx transport errors) are mapped to our tree; anything else propagates unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .._exceptions import ConfigError
from ._errors import map_provider_error, raising_ours
from .base import (
    BaseChatClient,
    CallOptions,
    Completion,
    CompletionChunk,
    Message,
    MessagesInput,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    given_options,
    normalize_messages,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["LangChainClient", "to_langchain_messages"]


def to_langchain_messages(messages: Sequence[Message]) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    out: list[Any] = []
    for m in messages:
        content = m.content or ""
        if m.role == "system":
            out.append(SystemMessage(content=content))
        elif m.role == "user":
            out.append(HumanMessage(content=content))
        elif m.role == "assistant":
            calls = [{"id": c.id, "name": c.name, "args": c.arguments, "type": "tool_call"} for c in m.tool_calls or []]
            out.append(AIMessage(content=content, tool_calls=calls))
        else:
            out.append(ToolMessage(content=content, tool_call_id=m.tool_call_id or ""))
    return out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


class LangChainClient(BaseChatClient):
    """Wrap ``chat_model``; ``supports_tools`` is true when the model implements ``bind_tools``."""

    def __init__(self, chat_model: Any, *, model_name: str | None = None) -> None:
        try:
            from langchain_core.language_models import BaseChatModel
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError("LangChainClient needs langchain-core: pip install 'mixllm-router[langchain]'") from exc
        if not isinstance(chat_model, BaseChatModel):
            raise ConfigError(f"LangChainClient needs a langchain BaseChatModel, got {type(chat_model).__name__}")
        self.chat_model = chat_model
        self.model = model_name or str(
            getattr(chat_model, "model_name", None) or getattr(chat_model, "model", None) or type(chat_model).__name__
        )
        self.supports_tools = type(chat_model).bind_tools is not BaseChatModel.bind_tools

    def _prepare(self, messages: MessagesInput, tools: Sequence[ToolSpec] | None,
                 options: CallOptions) -> tuple[Any, list[Any], dict[str, Any]]:
        """(the model, tools bound; the LangChain messages; the options it is given). ``timeout``
        is not passed: a LangChain model takes it at construction."""
        self._check_call(tools, options)
        runnable = self.chat_model.bind_tools(list(tools)) if tools else self.chat_model
        return runnable, to_langchain_messages(normalize_messages(messages)), given_options(options, without=["timeout"])

    def _map(self, exc: BaseException) -> BaseException | None:
        return map_provider_error(exc, provider=f"langchain:{self.model}")

    def _completion(self, msg: Any) -> Completion:
        usage = getattr(msg, "usage_metadata", None) or {}
        meta = getattr(msg, "response_metadata", None) or {}
        return Completion(
            text=_text(msg.content),
            tool_calls=[ToolCall(id=c.get("id") or "", name=c["name"], arguments=dict(c.get("args") or {}))
                        for c in getattr(msg, "tool_calls", None) or []],
            input_tokens=usage.get("input_tokens"),
            output_tokens=usage.get("output_tokens"),
            finish_reason=meta.get("finish_reason") or meta.get("stop_reason"),
            model=meta.get("model_name") or meta.get("model") or self.model,
            raw=msg,
        )

    @staticmethod
    def _chunk(msg: Any, totals: dict[str, int]) -> CompletionChunk:
        usage = getattr(msg, "usage_metadata", None)
        if usage:  # LangChain chunk usage is additive: chunk1 + chunk2 merges by summing
            totals["input_tokens"] = totals.get("input_tokens", 0) + int(usage.get("input_tokens") or 0)
            totals["output_tokens"] = totals.get("output_tokens", 0) + int(usage.get("output_tokens") or 0)
        meta = getattr(msg, "response_metadata", None) or {}
        return CompletionChunk(
            text=_text(msg.content),
            tool_calls=[ToolCallDelta(index=c.get("index") or 0, id=c.get("id"), name=c.get("name"),
                                      arguments=c.get("args") or "")
                        for c in getattr(msg, "tool_call_chunks", None) or []],
            finish_reason=meta.get("finish_reason") or meta.get("stop_reason"),
            model=meta.get("model_name"),
        )

    def complete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                 **options: Unpack[CallOptions]) -> Completion:
        runnable, lc, kwargs = self._prepare(messages, tools, options)
        with raising_ours(self._map):
            msg = runnable.invoke(lc, **kwargs)
        return self._completion(msg)

    async def acomplete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                        **options: Unpack[CallOptions]) -> Completion:
        runnable, lc, kwargs = self._prepare(messages, tools, options)
        with raising_ours(self._map):
            msg = await runnable.ainvoke(lc, **kwargs)
        return self._completion(msg)

    def stream(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
               **options: Unpack[CallOptions]) -> Iterator[CompletionChunk]:
        runnable, lc, kwargs = self._prepare(messages, tools, options)
        totals: dict[str, int] = {}
        with raising_ours(self._map):
            for msg in runnable.stream(lc, **kwargs):
                yield self._chunk(msg, totals)
        yield CompletionChunk(input_tokens=totals.get("input_tokens"), output_tokens=totals.get("output_tokens"))

    async def astream(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                      **options: Unpack[CallOptions]) -> AsyncIterator[CompletionChunk]:
        runnable, lc, kwargs = self._prepare(messages, tools, options)
        totals: dict[str, int] = {}
        with raising_ours(self._map):
            async for msg in runnable.astream(lc, **kwargs):
                yield self._chunk(msg, totals)
        yield CompletionChunk(input_tokens=totals.get("input_tokens"), output_tokens=totals.get("output_tokens"))
