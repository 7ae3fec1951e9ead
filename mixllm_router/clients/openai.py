"""Client for the OpenAI chat-completions API and every server that speaks it (vLLM, Ollama,
llama.cpp server, LM Studio, ... through ``base_url``).

The SDK's own retries are switched off (``max_retries=0``): one retry/fallback loop, owned by
:class:`mixllm_router.clients.fallback.FallbackCaller`, decides whether to wait, retry or move to another
candidate, so retries never multiply (SDK retries × our retries) and a failing provider is left
quickly for the next best one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from .._exceptions import ConfigError
from ._errors import raising_ours
from ._sdk import SDKChatClient
from .base import (
    CallOptions,
    Completion,
    CompletionChunk,
    MessagesInput,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    _decode_arguments,
    given_options,
    normalize_messages,
    to_openai_messages,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["OpenAIClient"]


class OpenAIClient(SDKChatClient):
    """Call ``model`` through ``openai.OpenAI().chat.completions``.

    ``api_key`` defaults to ``$OPENAI_API_KEY``; a key is optional when ``base_url`` points at a
    local OpenAI-compatible server. ``http_client`` / ``async_http_client`` are ``httpx2`` clients
    handed to the SDK (for proxies, custom transports, tests). ``extra_body`` is merged into every
    request (e.g. vLLM's ``{"top_k": 20}``).
    """

    supports_tools = True
    _provider = "openai"

    def __init__(
        self,
        model: str,
        *,
        api_key: SecretStr | str | None = None,
        base_url: str | None = None,
        http_client: Any = None,
        async_http_client: Any = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
        supports_tools: bool = True,
    ) -> None:
        if not model:
            raise ConfigError("OpenAIClient needs a model name")
        self.model = model
        self.extra_body = dict(extra_body or {})
        self.supports_tools = supports_tools
        self._connect(api_key=api_key, key_env="OPENAI_API_KEY", base_url=base_url, http_client=http_client,
                      async_http_client=async_http_client, timeout=timeout)
        if self._api_key is None and base_url is None:
            raise ConfigError("OpenAIClient needs api_key= or $OPENAI_API_KEY (or a base_url of a local server)")

    def _sdk_classes(self) -> tuple[Any, Any]:
        import openai

        return openai.OpenAI, openai.AsyncOpenAI

    # -- request / response --------------------------------------------------------------------
    def _request(self, messages: MessagesInput, tools: Sequence[ToolSpec] | None,
                 options: CallOptions) -> dict[str, Any]:
        self._check_call(tools, options)
        kwargs: dict[str, Any] = {"model": self.model, "messages": to_openai_messages(normalize_messages(messages))}
        if tools:
            kwargs["tools"] = list(tools)
        kwargs.update(given_options(options))  # max_tokens, temperature, stop, timeout: as named here
        if self.extra_body:
            kwargs["extra_body"] = dict(self.extra_body)
        return kwargs

    @staticmethod
    def _completion(resp: Any) -> Completion:
        choice = resp.choices[0] if resp.choices else None
        message = choice.message if choice is not None else None
        calls = [
            ToolCall(id=c.id or "", name=c.function.name or "", arguments=_decode_arguments(c.function.arguments))
            for c in (getattr(message, "tool_calls", None) or [])
            if getattr(c, "function", None) is not None
        ]
        usage = resp.usage
        return Completion(
            text=(message.content or "") if message is not None else "",
            tool_calls=calls,
            input_tokens=getattr(usage, "prompt_tokens", None),
            output_tokens=getattr(usage, "completion_tokens", None),
            finish_reason=choice.finish_reason if choice is not None else None,
            model=resp.model,
            raw=resp,
        )

    @staticmethod
    def _chunk(event: Any) -> CompletionChunk:
        chunk = CompletionChunk(model=getattr(event, "model", None))
        for choice in event.choices or []:
            delta = choice.delta
            if delta is not None:
                chunk.text += delta.content or ""
                for c in delta.tool_calls or []:
                    fn = c.function
                    chunk.tool_calls.append(
                        ToolCallDelta(
                            index=c.index, id=c.id, name=getattr(fn, "name", None),
                            arguments=getattr(fn, "arguments", None) or "",
                        )
                    )
            if choice.finish_reason:
                chunk.finish_reason = choice.finish_reason
        usage = getattr(event, "usage", None)
        if usage is not None:
            chunk.input_tokens = usage.prompt_tokens
            chunk.output_tokens = usage.completion_tokens
        return chunk

    # -- the four calls ------------------------------------------------------------------------
    def complete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                 **options: Unpack[CallOptions]) -> Completion:
        kwargs = self._request(messages, tools, options)
        with raising_ours(self._error):
            resp = self._client().chat.completions.create(**kwargs)
        return self._completion(resp)

    async def acomplete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                        **options: Unpack[CallOptions]) -> Completion:
        kwargs = self._request(messages, tools, options)
        with raising_ours(self._error):
            resp = await self._aclient().chat.completions.create(**kwargs)
        return self._completion(resp)

    def stream(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
               **options: Unpack[CallOptions]) -> Iterator[CompletionChunk]:
        kwargs = self._request(messages, tools, options)
        with raising_ours(self._error):
            events = self._client().chat.completions.create(
                **kwargs, stream=True, stream_options={"include_usage": True}
            )
            with events:
                for event in events:
                    yield self._chunk(event)

    async def astream(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                      **options: Unpack[CallOptions]) -> AsyncIterator[CompletionChunk]:
        kwargs = self._request(messages, tools, options)
        with raising_ours(self._error):
            events = await self._aclient().chat.completions.create(
                **kwargs, stream=True, stream_options={"include_usage": True}
            )
            async with events:
                async for event in events:
                    yield self._chunk(event)
