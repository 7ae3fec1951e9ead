"""``MixLLM``: a LlamaIndex function-calling chat LLM that routes every call among candidate LLMs.

Each call is scored by the router on the user's question,

    S_l = q_l − λ·c_l + α·u_l − β·P(W_l) + γ·κ·s_l          (see mixllm_router.policy.meta_score)

and goes to the candidate with the highest ``S_l`` through the router's ``FallbackCaller``, which
retries transient errors and falls back down the ranking. The question is the template variable
``query_str`` / ``question`` when LlamaIndex fills a prompt template (query engines, synthesizers,
condense-question chat engines: ``predict``, ``stream``, ``apredict``, ``astream``), else the last
user turn; the candidate receives the whole prompt. See :mod:`llama_index.llms.mixllm._convert`.

``MixLLM`` is a chat model (``is_chat_model=True``) and a ``FunctionCallingLLM``: ``chat_with_tools``,
``FunctionAgent``, ``ReActAgent`` and function-calling ``structured_predict`` work, and calls
with tools are routed only among candidates that support tools. Candidates are LlamaIndex LLMs
(wrapped in :class:`~mixllm_router.clients.LlamaIndexClient`) or any mixllm ``ChatClient``
(OpenAI, Anthropic, replay, ...).

The routing decision travels with the answer, in ``ChatResponse.additional_kwargs``
(and ``CompletionResponse.additional_kwargs``)::

    {"decision_id": "...", "candidate": "<who answered>", "decision": {...scores...},
     "cost_usd": ..., "prompt_tokens": ..., "completion_tokens": ...}

Streamed pieces name the candidate that streams them (after a fallback: the one that answers).
LlamaIndex's instrumentation events (``LLMChatEndEvent.response``) carry it to any event
handler, so feedback can be given later with ``router.feedback(decision_id, score)``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index.llms.mixllm._convert import (
    ROUTE_ON,
    question_in_prompt,
    question_of,
    route_on,
    to_messages,
    tool_calls_of,
    with_tool_calls,
)

from mixllm_router import MixLLMRouter, RoutingDecision
from mixllm_router._integration import checkpoint_field, lazy_router, router_field, state_field
from mixllm_router.clients.base import ChatClient
from mixllm_router.responses import RoutedResponse, RoutedStream, prepare_call

if TYPE_CHECKING:
    from llama_index.core.prompts import BasePromptTemplate
    from llama_index.core.tools.types import BaseTool

__all__ = ["MixLLM"]


def _is_llamaindex_llm(obj: Any) -> bool:
    return all(hasattr(obj, m) for m in ("chat", "achat", "stream_chat", "astream_chat", "metadata"))


def _client_for(name: str, candidate: Any) -> ChatClient:
    """The router's client for a candidate: a LlamaIndex LLM through ``LlamaIndexClient``; a mixllm
    ``ChatClient`` as it is."""
    from mixllm_router.clients import LlamaIndexClient

    return LlamaIndexClient(candidate, model_name=name) if _is_llamaindex_llm(candidate) else candidate


class MixLLM(FunctionCallingLLM):
    """A LlamaIndex LLM that sends each call to the best candidate for its quality and cost.

    ::

        llm = MixLLM(checkpoint_path="router-ckpt/",
                     candidates={"gpt-4o-mini": OpenAI(model="gpt-4o-mini"), "local": Ollama(model="qwen3")})
        index.as_query_engine(llm=llm, embed_model=MixLLMEmbedding.from_router(llm.router_))

    The router is loaded on first use; candidates are attached to it with ``router.set_client``.
    ``metadata.context_window`` is the smallest window of the candidates (an answer must fit
    whichever candidate is chosen).
    """

    router: Any = router_field()
    checkpoint_path: str | None = checkpoint_field()
    state: str | None = state_field()
    candidates: dict[str, Any] = Field(
        default_factory=dict, exclude=True,
        description="Candidate name -> a LlamaIndex LLM or a mixllm ChatClient.",
    )
    cost_weight: float | None = Field(default=None, description="λ (quality per USD); default: the router's.")
    cost_share: float | None = Field(default=None, description="Target share of the reference model's cost.")
    max_cost_usd: float | None = Field(default=None, description="Exclude candidates predicted to cost more.")
    num_output: int = Field(default=256, gt=0, description="Tokens reserved for the answer (prompt packing).")
    max_tokens: int | None = Field(default=None, description="Forwarded to the candidate.")
    temperature: float | None = Field(default=None, description="Forwarded to the candidate.")

    _router: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def class_name(cls) -> str:
        return "MixLLM"

    # ------------------------------------------------------------------------------ the router
    @property
    def router_(self) -> MixLLMRouter:
        """The router, loaded (and given the candidates' clients) on first use."""
        return lazy_router(self, "MixLLM", _client_for)

    @property
    def metadata(self) -> LLMMetadata:
        router = self.router_
        windows = [router.pool.get(n).context_window for n in router.candidate_names]
        for candidate in self.candidates.values():  # a LlamaIndex LLM knows its own window too
            if _is_llamaindex_llm(candidate):
                windows.append(int(candidate.metadata.context_window))
        return LLMMetadata(
            context_window=min(windows),
            num_output=self.max_tokens or self.num_output,
            is_chat_model=True,
            is_function_calling_model=bool(self._tool_candidates()),
            model_name="mixllm",
        )

    def _tool_candidates(self) -> list[str]:
        """Candidates a call with tools may go to (``Candidate.supports_tools`` and a client with tools)."""
        router = self.router_
        return [n for n, client in router._clients.items()
                if n in router.pool and router.pool.get(n).supports_tools and client.supports_tools]

    # ------------------------------------------------------------------------------ one routed call
    def _split(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[Any] | None]:
        """(routing options, generation settings, tools) of one call; call kwargs override fields."""
        routing = {
            "cost_weight": kwargs.pop("cost_weight", self.cost_weight),
            "cost_share": kwargs.pop("cost_share", self.cost_share),
            "max_cost_usd": kwargs.pop("max_cost_usd", self.max_cost_usd),
            "candidates": kwargs.pop("candidates", None),
        }
        generation: dict[str, Any] = {}
        for key in ("max_tokens", "temperature"):
            value = kwargs.pop(key, getattr(self, key))
            if value is not None:
                generation[key] = value
        stop = kwargs.pop("stop", None)
        if stop:
            generation["stop"] = list(stop)
        tools = kwargs.pop("tools", None) or None
        return routing, generation, tools

    def _prepare(self, messages: Any, kwargs: dict[str, Any]) -> tuple[Any, ...]:
        routing, generation, tools = self._split(kwargs)
        query = ROUTE_ON.get()
        if query is None:
            last = messages if isinstance(messages, str) else next(
                (m["content"] for m in reversed(messages) if m["role"] == "user" and m["content"]), "")
            query = question_in_prompt(last)
        msgs, decision, ranked, costs = prepare_call(self.router_, messages, tools, query=query, **routing)
        return msgs, decision, ranked, costs, tools, generation

    def _invoke(self, messages: Any, kwargs: dict[str, Any]) -> RoutedResponse:
        msgs, decision, ranked, costs, tools, generation = self._prepare(messages, kwargs)
        result = self.router_.caller.call(ranked, msgs, tools=tools, estimated_costs=costs, **generation)
        return RoutedResponse.build(self.router_, decision, result)

    async def _ainvoke(self, messages: Any, kwargs: dict[str, Any]) -> RoutedResponse:
        msgs, decision, ranked, costs, tools, generation = await asyncio.to_thread(self._prepare, messages, kwargs)
        result = await self.router_.caller.acall(ranked, msgs, tools=tools, estimated_costs=costs, **generation)
        return RoutedResponse.build(self.router_, decision, result)

    def _stream(self, messages: Any, kwargs: dict[str, Any]) -> RoutedStream:
        msgs, decision, ranked, costs, tools, generation = self._prepare(messages, kwargs)
        inner = self.router_.caller.stream(ranked, msgs, tools=tools, estimated_costs=costs, **generation)
        return RoutedStream(self.router_, decision, inner)

    async def _astream(self, messages: Any, kwargs: dict[str, Any]) -> RoutedStream:
        msgs, decision, ranked, costs, tools, generation = await asyncio.to_thread(self._prepare, messages, kwargs)
        inner = self.router_.caller.astream(ranked, msgs, tools=tools, estimated_costs=costs, **generation)
        return RoutedStream(self.router_, decision, inner)

    @staticmethod
    def _extra(decision: RoutingDecision, routed: RoutedResponse | None = None, candidate: str | None = None,
               ) -> dict[str, Any]:
        extra: dict[str, Any] = {"decision_id": decision.decision_id, "decision": decision.to_dict(),
                                 "candidate": candidate or decision.chosen}
        if routed is not None:
            extra.update(candidate=routed.candidate, cost_usd=routed.cost_usd,
                         prompt_tokens=routed.usage["input_tokens"], completion_tokens=routed.usage["output_tokens"])
        return extra

    def _chat_response(self, routed: RoutedResponse) -> ChatResponse:
        message = ChatMessage(role=MessageRole.ASSISTANT, content=routed.text,
                              additional_kwargs=with_tool_calls(routed.tool_calls))
        return ChatResponse(message=message, raw={"usage": routed.usage, "candidate": routed.candidate},
                            additional_kwargs=self._extra(routed.decision, routed))

    # ------------------------------------------------------------------------------ prompt templates
    # LlamaIndex fills a template and then calls chat(); here the template's question is known, so
    # the call is routed on it (and the candidate receives the filled template).
    def predict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        with route_on(question_of(prompt, prompt_args)):
            return super().predict(prompt, **prompt_args)

    def stream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> Any:
        with route_on(question_of(prompt, prompt_args)):
            return super().stream(prompt, **prompt_args)

    async def apredict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        with route_on(question_of(prompt, prompt_args)):
            return await super().apredict(prompt, **prompt_args)

    async def astream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> Any:
        with route_on(question_of(prompt, prompt_args)):
            return await super().astream(prompt, **prompt_args)

    # ------------------------------------------------------------------------------ completion
    def _completion_piece(self, routed: RoutedStream, text: str, chunk: Any) -> CompletionResponse:
        return CompletionResponse(text=text, delta=chunk.text,
                                  additional_kwargs=self._extra(routed.decision, candidate=chunk.candidate))

    def _completion_last(self, routed: RoutedStream, text: str) -> CompletionResponse:
        result = routed.result
        return CompletionResponse(text=text, delta="", raw={"usage": result.usage if result else None},
                                  additional_kwargs=self._extra(routed.decision, result))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        routed = self._invoke(prompt, kwargs)
        return CompletionResponse(text=routed.text, raw={"usage": routed.usage, "candidate": routed.candidate},
                                  additional_kwargs=self._extra(routed.decision, routed))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        routed = self._stream(prompt, kwargs)

        def gen() -> CompletionResponseGen:
            text = ""
            for chunk in routed:
                if chunk.text:
                    text += chunk.text
                    yield self._completion_piece(routed, text, chunk)
            yield self._completion_last(routed, text)

        return gen()

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        routed = await self._ainvoke(prompt, kwargs)
        return CompletionResponse(text=routed.text, raw={"usage": routed.usage, "candidate": routed.candidate},
                                  additional_kwargs=self._extra(routed.decision, routed))

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        routed = await self._astream(prompt, kwargs)

        async def gen() -> CompletionResponseAsyncGen:
            text = ""
            async for chunk in routed:
                if chunk.text:
                    text += chunk.text
                    yield self._completion_piece(routed, text, chunk)
            yield self._completion_last(routed, text)

        return gen()

    # ------------------------------------------------------------------------------ chat
    # The whole conversation goes to the candidate as turns (not flattened into one prompt).
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat_response(self._invoke(to_messages(messages), kwargs))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat_response(await self._ainvoke(to_messages(messages), kwargs))

    def _pieces(self, routed: RoutedStream, text: str, chunk: Any) -> ChatResponse:
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=chunk.text,
                            additional_kwargs=self._extra(routed.decision, candidate=chunk.candidate))

    def _last(self, routed: RoutedStream, text: str) -> ChatResponse:
        result = routed.result
        calls = with_tool_calls(result.tool_calls) if result is not None else {}
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text, additional_kwargs=calls),
                            delta="", raw={"usage": result.usage if result else None},
                            additional_kwargs=self._extra(routed.decision, result))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        routed = self._stream(to_messages(messages), kwargs)

        def gen() -> ChatResponseGen:
            text = ""
            for chunk in routed:
                if chunk.text:
                    text += chunk.text
                    yield self._pieces(routed, text, chunk)
            yield self._last(routed, text)

        return gen()

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        routed = await self._astream(to_messages(messages), kwargs)

        async def gen() -> ChatResponseAsyncGen:
            text = ""
            async for chunk in routed:
                if chunk.text:
                    text += chunk.text
                    yield self._pieces(routed, text, chunk)
            yield self._last(routed, text)

        return gen()

    # ------------------------------------------------------------------------------ function calling
    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The chat call with the tools in OpenAI format (every mixllm client takes it); the call
        is then routed among the candidates that support tools."""
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            user_msg = ChatMessage(role=MessageRole.USER, content=user_msg)
        if user_msg is not None:
            messages.append(user_msg)
        specs = [t.metadata.to_openai_tool(skip_length_check=True) for t in tools]
        return {"messages": messages, "tools": specs or None, **kwargs}

    def _validate_chat_with_tools_response(self, response: ChatResponse, tools: Sequence[BaseTool],
                                           allow_parallel_tool_calls: bool = False, **kwargs: Any) -> ChatResponse:
        if not allow_parallel_tool_calls:  # keep the first call only, as LlamaIndex's own LLMs do
            calls = response.message.additional_kwargs.get("tool_calls") or []
            if len(calls) > 1:
                response.message.additional_kwargs["tool_calls"] = calls[:1]
        return response

    def get_tool_calls_from_response(self, response: ChatResponse, error_on_no_tool_call: bool = True,
                                     **kwargs: Any) -> list[ToolSelection]:
        calls = tool_calls_of(response.message)
        if not calls and error_on_no_tool_call:
            raise ValueError(f"expected at least one tool call, got none (answered by "
                             f"{response.additional_kwargs.get('candidate')!r})")
        return [ToolSelection(tool_id=i, tool_name=n, tool_kwargs=a) for i, n, a in calls]
