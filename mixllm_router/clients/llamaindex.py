"""Call any LlamaIndex ``LLM`` (OpenAI, Anthropic, Ollama, vLLM, MockLLM, a CustomLLM, ...).

Uses the chat interface (``chat`` / ``stream_chat`` / ``achat`` / ``astream_chat``). LlamaIndex has
no provider-neutral usage field: token counts are read from ``response.raw["usage"]`` (OpenAI- or
Anthropic-shaped) or ``additional_kwargs`` (``prompt_tokens`` / ``completion_tokens``) when the
integration puts them there, else left ``None`` (the caller then estimates cost and says so).
Tool definitions are not passed (LlamaIndex tools are ``BaseTool`` objects, not JSON schemas), so
``supports_tools`` is false and the router sends tool calls to other candidates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
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
    ToolSpec,
    given_options,
    normalize_messages,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["LlamaIndexClient", "to_llamaindex_messages"]


def to_llamaindex_messages(messages: Sequence[Message]) -> list[Any]:
    from llama_index.core.llms import ChatMessage

    out = []
    for m in messages:
        extra: dict[str, Any] = {}
        if m.tool_call_id is not None:
            extra["tool_call_id"] = m.tool_call_id
        if m.tool_calls:
            extra["tool_calls"] = [c.model_dump() for c in m.tool_calls]
        out.append(ChatMessage(role=m.role, content=m.content or "", additional_kwargs=extra))
    return out


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _usage(response: Any) -> tuple[int | None, int | None]:
    raw = getattr(response, "raw", None)
    usage = _get(raw, "usage") if raw is not None else None
    if usage is not None:
        tin = _get(usage, "prompt_tokens") if _get(usage, "prompt_tokens") is not None else _get(usage, "input_tokens")
        tout = (_get(usage, "completion_tokens") if _get(usage, "completion_tokens") is not None
                else _get(usage, "output_tokens"))
        if tin is not None or tout is not None:
            return tin, tout
    extra = getattr(response, "additional_kwargs", None) or {}
    return extra.get("prompt_tokens"), extra.get("completion_tokens")


class LlamaIndexClient(BaseChatClient):
    """Wrap a LlamaIndex ``llm`` (anything with ``chat``/``achat``/``stream_chat``/``astream_chat``)."""

    supports_tools = False

    def __init__(self, llm: Any, *, model_name: str | None = None) -> None:
        if not all(hasattr(llm, m) for m in ("chat", "achat", "stream_chat", "astream_chat")):
            raise ConfigError(f"LlamaIndexClient needs a llama_index LLM, got {type(llm).__name__}")
        self.llm = llm
        meta = getattr(llm, "metadata", None)
        self.model = model_name or str(getattr(meta, "model_name", None) or type(llm).__name__)

    def _map(self, exc: BaseException) -> BaseException | None:
        return map_provider_error(exc, provider=f"llamaindex:{self.model}")

    def _prepare(self, messages: MessagesInput, tools: Sequence[ToolSpec] | None,
                 options: CallOptions) -> tuple[list[Any], dict[str, Any]]:
        """(the LlamaIndex messages, the options the LLM is given). LlamaIndex LLMs take generation
        settings at construction: only what was asked for is passed, and never ``timeout``."""
        self._check_call(tools, options)
        return to_llamaindex_messages(normalize_messages(messages)), given_options(options, without=["timeout"])

    def _completion(self, response: Any) -> Completion:
        tin, tout = _usage(response)
        return Completion(
            text=response.message.content or "", input_tokens=tin, output_tokens=tout,
            model=self.model, raw=response,
        )

    def complete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                 **options: Unpack[CallOptions]) -> Completion:
        chat, kwargs = self._prepare(messages, tools, options)
        with raising_ours(self._map):
            response = self.llm.chat(chat, **kwargs)
        return self._completion(response)

    async def acomplete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                        **options: Unpack[CallOptions]) -> Completion:
        chat, kwargs = self._prepare(messages, tools, options)
        with raising_ours(self._map):
            response = await self.llm.achat(chat, **kwargs)
        return self._completion(response)

    def stream(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
               **options: Unpack[CallOptions]) -> Iterator[CompletionChunk]:
        chat, kwargs = self._prepare(messages, tools, options)
        last = None
        with raising_ours(self._map):
            for response in self.llm.stream_chat(chat, **kwargs):
                last = response
                yield CompletionChunk(text=response.delta or "", model=self.model)
        tin, tout = _usage(last) if last is not None else (None, None)
        yield CompletionChunk(input_tokens=tin, output_tokens=tout)

    async def astream(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                      **options: Unpack[CallOptions]) -> AsyncIterator[CompletionChunk]:
        chat, kwargs = self._prepare(messages, tools, options)
        last = None
        with raising_ours(self._map):
            async for response in await self.llm.astream_chat(chat, **kwargs):
                last = response
                yield CompletionChunk(text=response.delta or "", model=self.model)
        tin, tout = _usage(last) if last is not None else (None, None)
        yield CompletionChunk(input_tokens=tin, output_tokens=tout)
