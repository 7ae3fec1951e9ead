"""Client for the Anthropic messages API.

Differences from the OpenAI shape that this module absorbs, so the router sees one format:

* the system prompt is a separate ``system`` field, not a message;
* tools are ``{"name", "description", "input_schema"}`` (we accept OpenAI function definitions and
  convert them; a definition already in Anthropic's shape passes unchanged);
* tool calls come back as ``tool_use`` content blocks and tool results go back as ``tool_result``
  blocks in a *user* turn; consecutive turns of one role are merged (the API wants alternation);
* ``max_tokens`` is required (``max_tokens_default`` when the caller gives none);
* streaming usage arrives in ``message_start`` (input) and ``message_delta`` (output);
* 529 ``overloaded_error`` is transient.

SDK retries are off (``max_retries=0``); :class:`mixllm_router.clients.fallback.FallbackCaller` owns retries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from .._exceptions import ConfigError
from ._errors import raising_ours
from ._sdk import SDKChatClient
from .base import (
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

__all__ = ["AnthropicClient", "to_anthropic_messages", "to_anthropic_tools"]

_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def to_anthropic_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """OpenAI function definitions → Anthropic tool definitions (``parameters`` → ``input_schema``)."""
    out = []
    for tool in tools:
        if "input_schema" in tool:
            out.append(dict(tool))
            continue
        fn = tool.get("function", tool)
        if "name" not in fn:
            raise ConfigError(f"a tool definition needs a name: {tool!r:.120}")
        spec: dict[str, Any] = {
            "name": fn["name"],
            "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
        }
        if fn.get("description"):
            spec["description"] = fn["description"]
        out.append(spec)
    return out


def to_anthropic_messages(messages: Sequence[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """(system prompt, messages) in the messages-API shape."""
    system: list[str] = []
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for m in messages:
        if m.role == "system":
            if m.content:
                system.append(m.content)
        elif m.role == "tool":
            add("user", [{"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": m.content or ""}])
        else:
            blocks: list[dict[str, Any]] = []
            if m.content:
                blocks.append({"type": "text", "text": m.content})
            for c in m.tool_calls or []:
                blocks.append({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments})
            add(m.role, blocks)
    return ("\n\n".join(system) if system else None), out


class AnthropicClient(SDKChatClient):
    """Call ``model`` through ``anthropic.Anthropic().messages``; ``api_key`` defaults to
    ``$ANTHROPIC_API_KEY``. ``http_client`` / ``async_http_client`` are ``httpx2`` clients."""

    supports_tools = True
    _provider = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        api_key: SecretStr | str | None = None,
        base_url: str | None = None,
        http_client: Any = None,
        async_http_client: Any = None,
        max_tokens_default: int = 1024,
        timeout: float = 60.0,
    ) -> None:
        if not model:
            raise ConfigError("AnthropicClient needs a model name")
        if max_tokens_default <= 0:
            raise ConfigError("max_tokens_default must be positive")
        self.model = model
        self.max_tokens_default = int(max_tokens_default)
        self._connect(api_key=api_key, key_env="ANTHROPIC_API_KEY", base_url=base_url, http_client=http_client,
                      async_http_client=async_http_client, timeout=timeout)
        if self._api_key is None:
            raise ConfigError("AnthropicClient needs api_key= or $ANTHROPIC_API_KEY")

    def _sdk_classes(self) -> tuple[Any, Any]:
        import anthropic

        return anthropic.Anthropic, anthropic.AsyncAnthropic

    def _request(self, messages: MessagesInput, tools: Sequence[ToolSpec] | None,
                 options: CallOptions) -> dict[str, Any]:
        self._check_call(tools, options)
        given = given_options(options)
        system, msgs = to_anthropic_messages(normalize_messages(messages))
        kwargs: dict[str, Any] = {
            "model": self.model, "messages": msgs, "max_tokens": given.pop("max_tokens", self.max_tokens_default),
        }
        if system is not None:
            kwargs["system"] = system
        if tools:
            kwargs["tools"] = to_anthropic_tools(tools)
        for name, value in given.items():  # temperature, stop (the API's stop_sequences), timeout
            kwargs["stop_sequences" if name == "stop" else name] = value
        return kwargs

    @staticmethod
    def _completion(resp: Any) -> Completion:
        text, calls = [], []
        for block in resp.content or []:
            if block.type == "text":
                text.append(block.text)
            elif block.type == "tool_use":
                calls.append(ToolCall(id=block.id, name=block.name, arguments=dict(block.input or {})))
        usage = resp.usage
        return Completion(
            text="".join(text), tool_calls=calls,
            input_tokens=getattr(usage, "input_tokens", None), output_tokens=getattr(usage, "output_tokens", None),
            finish_reason=_STOP_REASONS.get(resp.stop_reason, resp.stop_reason), model=resp.model, raw=resp,
        )

    class _StreamState:
        def __init__(self) -> None:
            self.tool_index: dict[int, int] = {}  # content-block index -> tool-call index

        def chunk(self, event: Any) -> CompletionChunk | None:
            kind = event.type
            if kind == "message_start":
                usage = event.message.usage
                return CompletionChunk(model=event.message.model, input_tokens=getattr(usage, "input_tokens", None))
            if kind == "content_block_start" and event.content_block.type == "tool_use":
                i = self.tool_index.setdefault(event.index, len(self.tool_index))
                block = event.content_block
                return CompletionChunk(tool_calls=[ToolCallDelta(index=i, id=block.id, name=block.name)])
            if kind == "content_block_delta":
                delta = event.delta
                if delta.type == "text_delta":
                    return CompletionChunk(text=delta.text)
                if delta.type == "input_json_delta" and event.index in self.tool_index:
                    return CompletionChunk(
                        tool_calls=[ToolCallDelta(index=self.tool_index[event.index], arguments=delta.partial_json)]
                    )
            if kind == "message_delta":
                usage = getattr(event, "usage", None)
                reason = getattr(event.delta, "stop_reason", None)
                return CompletionChunk(
                    output_tokens=getattr(usage, "output_tokens", None),
                    input_tokens=getattr(usage, "input_tokens", None),
                    finish_reason=_STOP_REASONS.get(reason, reason) if reason else None,
                )
            return None

    def complete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                 **options: Unpack[CallOptions]) -> Completion:
        kwargs = self._request(messages, tools, options)
        with raising_ours(self._error):
            resp = self._client().messages.create(**kwargs)
        return self._completion(resp)

    async def acomplete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                        **options: Unpack[CallOptions]) -> Completion:
        kwargs = self._request(messages, tools, options)
        with raising_ours(self._error):
            resp = await self._aclient().messages.create(**kwargs)
        return self._completion(resp)

    def stream(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
               **options: Unpack[CallOptions]) -> Iterator[CompletionChunk]:
        kwargs = self._request(messages, tools, options)
        state = self._StreamState()
        with raising_ours(self._error):
            events = self._client().messages.create(**kwargs, stream=True)
            with events:
                for event in events:
                    chunk = state.chunk(event)
                    if chunk is not None:
                        yield chunk

    async def astream(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                      **options: Unpack[CallOptions]) -> AsyncIterator[CompletionChunk]:
        kwargs = self._request(messages, tools, options)
        state = self._StreamState()
        with raising_ours(self._error):
            events = await self._aclient().messages.create(**kwargs, stream=True)
            async with events:
                async for event in events:
                    chunk = state.chunk(event)
                    if chunk is not None:
                        yield chunk
