"""Messages, results and the one small interface every outbound client implements.

Why a protocol of our own instead of LangChain's or LlamaIndex's: the router must call OpenAI,
Anthropic, any LangChain or LlamaIndex model, a Python function or recorded answers the same way,
with the same error classes (see :mod:`mixllm_router._exceptions`) and the same usage fields, so
that cost (``p_in * t_in + p_out * t_out``) and latency are measured identically for every
candidate. A client only has to implement :meth:`BaseChatClient.complete`; async and streaming
are derived (async runs the sync call in a worker thread, so the event loop is never blocked).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._exceptions import ConfigError, PermanentClientError
from ._options import CALL_OPTION_NAMES, CallOptions, call_options, given_options

if TYPE_CHECKING:  # typing.Unpack is 3.11+; only the type checker reads it (annotations are strings)
    from typing_extensions import Unpack

__all__ = [
    "ToolCall",
    "ToolCallDelta",
    "Message",
    "ToolSpec",
    "MessagesInput",
    "CallOptions",
    "CALL_OPTION_NAMES",
    "call_options",
    "given_options",
    "Completion",
    "CompletionChunk",
    "ChatClient",
    "BaseChatClient",
    "normalize_messages",
    "to_openai_messages",
    "accumulate_chunks",
    "estimate_tokens",
    "last_user_text",
    "messages_text",
    "completion_to_chunks",
    "CHARS_PER_TOKEN",
]

#: Rough characters per token for English text with BPE tokenizers; used only when a provider
#: does not report usage (the estimate is then flagged, never passed off as measured).
CHARS_PER_TOKEN = 4.0

Role = Literal["system", "user", "assistant", "tool"]

#: An OpenAI-style function definition, ``{"type": "function", "function": {"name", "description",
#: "parameters"}}``, passed through unchanged to clients that speak that format.
ToolSpec = dict[str, Any]


class ToolCall(BaseModel):
    """A tool call made by the model; ``arguments`` is the decoded JSON object."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCallDelta(BaseModel):
    """A fragment of a streamed tool call; ``arguments`` is a raw JSON text fragment."""

    index: int = 0
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class Message(BaseModel):
    """One chat turn in a provider-neutral shape (close to OpenAI's, which most servers speak)."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


MessagesInput = str | Message | Mapping[str, Any] | Sequence[Message | Mapping[str, Any]]


def _decode_arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            # Models do emit broken JSON; keep the text so nothing is lost silently.
            return {"_raw_arguments": raw}
        return value if isinstance(value, dict) else {"_value": value}
    raise ConfigError(f"tool call arguments must be a JSON object or string, got {type(raw).__name__}")


def _tool_call_from_dict(item: Mapping[str, Any]) -> ToolCall:
    if "function" in item:  # OpenAI wire shape: {"id", "type": "function", "function": {...}}
        function = item["function"] or {}
        return ToolCall(
            id=str(item.get("id") or ""),
            name=str(function.get("name") or ""),
            arguments=_decode_arguments(function.get("arguments")),
        )
    args = item.get("arguments", item.get("args", item.get("input")))
    return ToolCall(id=str(item.get("id") or ""), name=str(item.get("name") or ""), arguments=_decode_arguments(args))


def _content_text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # OpenAI content parts: keep the text parts
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            else:
                raise ConfigError(f"only text content parts are supported, got {part!r:.80}")
        return "".join(parts)
    raise ConfigError(f"message content must be a string or a list of text parts, got {type(content).__name__}")


def _message_from_dict(item: Mapping[str, Any]) -> Message:
    data = dict(item)
    if "role" not in data:
        raise ConfigError(f"a message needs a 'role' (system, user, assistant or tool), got keys {sorted(data)}")
    data["content"] = _content_text(data.get("content"))
    if data.get("tool_calls"):
        data["tool_calls"] = [
            c if isinstance(c, ToolCall) else _tool_call_from_dict(c) for c in data["tool_calls"]
        ]
    else:
        data.pop("tool_calls", None)
    try:
        return Message.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid message {item!r:.120}: {exc.errors()[0]['msg']}") from None


def normalize_messages(messages: MessagesInput) -> list[Message]:
    """Turn what a user passes into a list of :class:`Message`.

    Accepts a string (one user turn), one message, or a sequence of :class:`Message` or
    OpenAI-style dicts (content may be a string or a list of ``{"type": "text"}`` parts, tool
    calls in the OpenAI wire shape or flat ``{id, name, arguments}``).
    """
    if isinstance(messages, str):
        return [Message(role="user", content=messages)]
    if isinstance(messages, Message):
        return [messages]
    if isinstance(messages, Mapping):
        return [_message_from_dict(messages)]
    if not isinstance(messages, Iterable):
        raise ConfigError(f"messages must be a string or a list of messages, got {type(messages).__name__}")
    out: list[Message] = []
    for item in messages:
        if isinstance(item, Message):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(_message_from_dict(item))
        else:
            raise ConfigError(f"each message must be a Message or a dict, got {type(item).__name__}")
    if not out:
        raise ConfigError("messages must not be empty")
    return out


def to_openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The OpenAI chat-completions wire shape of ``messages`` (arguments re-encoded as JSON text)."""
    out = []
    for m in messages:
        d: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            d["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for c in m.tool_calls
            ]
        if m.tool_call_id is not None:
            d["tool_call_id"] = m.tool_call_id
        if m.name is not None:
            d["name"] = m.name
        out.append(d)
    return out


def last_user_text(messages: Sequence[Message]) -> str:
    """The text of the last user turn (the "query" the router scores and replay keys on)."""
    for m in reversed(messages):
        if m.role == "user" and m.content is not None:
            return m.content
    return ""


def estimate_tokens(text: str | None) -> int:
    """Token count guessed from length (``ceil(len / CHARS_PER_TOKEN)``), for unreported usage."""
    return math.ceil(len(text or "") / CHARS_PER_TOKEN)


def messages_text(messages: Sequence[Message]) -> str:
    return "\n".join(m.content or "" for m in messages)


class Completion(BaseModel):
    """One finished answer. Token counts are ``None`` when the provider did not report them."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    model: str | None = Field(default=None, description="The provider's model id, as reported.")
    usage_estimated: bool = Field(default=False, description="Token counts were guessed, not reported.")
    raw: Any = Field(default=None, exclude=True, repr=False)


class CompletionChunk(BaseModel):
    """One piece of a stream. The last chunk of a stream carries usage when the provider sent it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    text: str = ""
    tool_calls: list[ToolCallDelta] = Field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    model: str | None = None
    usage_estimated: bool = False
    #: The candidate streaming this chunk, set by ``FallbackCaller`` (after a fallback: the one
    #: that answers, not the first-ranked).
    candidate: str | None = None
    #: The provider's own chunk object (e.g. a LangChain ``AIMessageChunk``), when a client keeps it.
    raw: Any = None

    @property
    def has_content(self) -> bool:
        return bool(self.text) or bool(self.tool_calls)


def completion_to_chunks(completion: Completion) -> Iterator[CompletionChunk]:
    """A one-piece stream of a finished completion (used where the client cannot stream)."""
    deltas = [
        ToolCallDelta(index=i, id=c.id, name=c.name, arguments=json.dumps(c.arguments))
        for i, c in enumerate(completion.tool_calls)
    ]
    yield CompletionChunk(
        text=completion.text,
        tool_calls=deltas,
        input_tokens=completion.input_tokens,
        output_tokens=completion.output_tokens,
        finish_reason=completion.finish_reason,
        model=completion.model,
        usage_estimated=completion.usage_estimated,
    )


def accumulate_chunks(chunks: Iterable[CompletionChunk]) -> Completion:
    """Join a stream into a :class:`Completion` (text concatenated, tool-call fragments merged)."""
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    result = Completion()
    for chunk in chunks:
        text.append(chunk.text)
        for d in chunk.tool_calls:
            slot = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
            if d.id:
                slot["id"] = d.id
            if d.name:
                slot["name"] = d.name
            slot["arguments"] += d.arguments
        if chunk.input_tokens is not None:
            result.input_tokens = chunk.input_tokens
        if chunk.output_tokens is not None:
            result.output_tokens = chunk.output_tokens
        if chunk.finish_reason is not None:
            result.finish_reason = chunk.finish_reason
        if chunk.model is not None:
            result.model = chunk.model
        result.usage_estimated = result.usage_estimated or chunk.usage_estimated
    result.text = "".join(text)
    result.tool_calls = [
        ToolCall(id=s["id"], name=s["name"], arguments=_decode_arguments(s["arguments"]))
        for _, s in sorted(calls.items())
    ]
    return result


@runtime_checkable
class ChatClient(Protocol):
    """What the router needs from a way of calling one candidate LLM.

    Every method raises only :class:`~mixllm_router.ClientError` subclasses for provider failures
    (``TransientClientError``, ``PermanentClientError``, ``ContextLengthError``), with the
    provider's own exception chained as ``__cause__``. ``options`` are the :class:`CallOptions`.
    """

    @property
    def supports_tools(self) -> bool:
        """Whether ``tools=`` may be passed (read-only here, so wrappers may compute it)."""
        ...

    def complete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                 **options: Unpack[CallOptions]) -> Completion: ...

    async def acomplete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                        **options: Unpack[CallOptions]) -> Completion: ...

    def stream(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
               **options: Unpack[CallOptions]) -> Iterator[CompletionChunk]: ...

    def astream(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                **options: Unpack[CallOptions]) -> AsyncIterator[CompletionChunk]: ...


_DONE = object()


class BaseChatClient:
    """Base class: implement :meth:`complete`; the other three methods are derived.

    * ``acomplete`` runs ``complete`` in a worker thread (``asyncio.to_thread``), so a blocking
      SDK never stalls the event loop.
    * ``stream`` yields the whole completion as one chunk (usage on it).
    * ``astream`` drives a subclass's own ``stream`` in a worker thread chunk by chunk, or yields
      ``acomplete``'s answer as one chunk.
    """

    supports_tools: bool = False
    model: str = ""

    def complete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                 **options: Unpack[CallOptions]) -> Completion:
        raise NotImplementedError

    async def acomplete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                        **options: Unpack[CallOptions]) -> Completion:
        full = call_options(options, f"{type(self).__name__}.acomplete()")
        return await asyncio.to_thread(self.complete, messages, tools=tools, **full)

    def stream(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
               **options: Unpack[CallOptions]) -> Iterator[CompletionChunk]:
        full = call_options(options, f"{type(self).__name__}.stream()")
        yield from completion_to_chunks(self.complete(messages, tools=tools, **full))

    async def astream(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                      **options: Unpack[CallOptions]) -> AsyncIterator[CompletionChunk]:
        full = call_options(options, f"{type(self).__name__}.astream()")
        if type(self).stream is not BaseChatClient.stream:
            iterator = iter(self.stream(messages, tools=tools, **full))
            try:
                while True:
                    chunk = await asyncio.to_thread(next, iterator, _DONE)
                    if chunk is _DONE:
                        return
                    yield chunk  # type: ignore[misc]
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        else:
            for chunk in completion_to_chunks(await self.acomplete(messages, tools=tools, **full)):
                yield chunk

    async def aclose(self) -> None:
        """Release what this client holds for the running event loop (the SDK's async connection
        pool); a later async call makes a new one. Call it before a loop you ran ends
        (``asyncio.run``); a no-op for clients without one (the SDK clients override it)."""

    def _check_call(self, tools: Sequence[ToolSpec] | None, options: Mapping[str, Any]) -> CallOptions:
        """What every call checks first, stated once for all clients: tool definitions only for a
        client that takes them, and known options only. Returns every option (``None`` where not
        given)."""
        if tools and not self.supports_tools:
            raise PermanentClientError(f"{type(self).__name__}({self.model!r}) does not accept tool definitions")
        return call_options(options, f"{type(self).__name__}({self.model!r})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"
