"""``ClientChatModel``: any mixllm ``ChatClient`` (``OpenAIClient``, ``AnthropicClient``, ``FakeClient``,
...) as a LangChain chat model, so the library's own clients can be ``ChatMixLLM`` candidates.

LangChain messages become the client's provider-neutral turns (text, tool calls, tool results);
the answer comes back as an ``AIMessage`` with ``tool_calls`` and ``usage_metadata`` from the usage
the provider reported. Tools bound with ``bind_tools`` are passed in OpenAI format, which every
mixllm client takes. Provider errors are raised as the library's own (``TransientClientError``
...), which ``ChatMixLLM``'s fallback loop understands.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from mixllm_router.clients.base import Completion, CompletionChunk, Message, ToolCall, given_options

__all__ = ["ClientChatModel"]


def _content(message: BaseMessage) -> str:
    return message.text


def to_neutral(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain turns as the router's provider-neutral messages (text content)."""
    out: list[Message] = []
    for m in messages:
        if m.type == "system":
            out.append(Message(role="system", content=_content(m)))
        elif m.type == "human":
            out.append(Message(role="user", content=_content(m)))
        elif m.type == "ai":
            calls = [ToolCall(id=c.get("id") or "", name=c["name"], arguments=dict(c.get("args") or {}))
                     for c in getattr(m, "tool_calls", None) or []]
            out.append(Message(role="assistant", content=_content(m) or None, tool_calls=calls or None))
        elif m.type == "tool":
            out.append(Message(role="tool", content=_content(m), tool_call_id=str(getattr(m, "tool_call_id", ""))))
        else:
            out.append(Message(role="user", content=_content(m)))
    return out


def _usage(t_in: int | None, t_out: int | None) -> dict[str, int] | None:
    if t_in is None and t_out is None:
        return None
    return {"input_tokens": t_in or 0, "output_tokens": t_out or 0, "total_tokens": (t_in or 0) + (t_out or 0)}


def _message(completion: Completion, name: str) -> AIMessage:
    calls = [{"id": c.id, "name": c.name, "args": c.arguments, "type": "tool_call"} for c in completion.tool_calls]
    meta = {"model_name": completion.model or name, "finish_reason": completion.finish_reason}
    return AIMessage(content=completion.text, tool_calls=calls, response_metadata=meta,
                     usage_metadata=_usage(completion.input_tokens, completion.output_tokens))  # type: ignore[arg-type]


class ClientChatModel(BaseChatModel):
    """A LangChain chat model that calls a mixllm ``ChatClient``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: Any = Field(exclude=True, description="The mixllm ChatClient (OpenAIClient, AnthropicClient, ...).")

    @staticmethod
    def accepts(obj: Any) -> bool:
        """Whether ``obj`` looks like a mixllm ChatClient."""
        return all(callable(getattr(obj, m, None)) for m in ("complete", "acomplete", "stream", "astream"))

    @property
    def _llm_type(self) -> str:
        return "mixllm-client"

    @property
    def model_name(self) -> str:
        return str(getattr(self.client, "model", type(self.client).__name__))

    def _kwargs(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The client's call options from LangChain's call: the ones it names (``stop`` comes on its
        own), given ones only; other LangChain keyword arguments are not the client's."""
        out = given_options({**kwargs, "stop": stop})
        if kwargs.get("tools"):
            out["tools"] = list(kwargs["tools"])
        return out

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        completion = self.client.complete(to_neutral(messages), **self._kwargs(stop, kwargs))
        return ChatResult(generations=[ChatGeneration(message=_message(completion, self.model_name))])

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        completion = await self.client.acomplete(to_neutral(messages), **self._kwargs(stop, kwargs))
        return ChatResult(generations=[ChatGeneration(message=_message(completion, self.model_name))])

    def _chunk(self, piece: CompletionChunk, last: dict[str, int | None]) -> ChatGenerationChunk:
        # the client's usage is cumulative; LangChain's chunk usage is additive: send the increase
        t_in, t_out = piece.input_tokens, piece.output_tokens
        usage = None
        if t_in is not None or t_out is not None:
            usage = _usage((t_in or 0) - (last.get("in") or 0), (t_out or 0) - (last.get("out") or 0))
            last["in"], last["out"] = t_in, t_out
        calls = [tool_call_chunk(name=d.name, args=d.arguments or None, id=d.id, index=d.index) for d in piece.tool_calls]
        meta = {"model_name": piece.model} if piece.model else {}
        return ChatGenerationChunk(message=AIMessageChunk(content=piece.text, tool_call_chunks=calls,
                                                          usage_metadata=usage, response_metadata=meta))  # type: ignore[arg-type]

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        last: dict[str, int | None] = {}
        for piece in self.client.stream(to_neutral(messages), **self._kwargs(stop, kwargs)):
            chunk = self._chunk(piece, last)
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        last: dict[str, int | None] = {}
        async for piece in self.client.astream(to_neutral(messages), **self._kwargs(stop, kwargs)):
            chunk = self._chunk(piece, last)
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool], *,
                   tool_choice: Any = None, **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (OpenAI format, which every mixllm client takes); ``tool_choice`` is not
        part of the client protocol and is ignored."""
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)
