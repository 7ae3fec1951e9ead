"""``ChatMixLLM``: a LangChain chat model that routes every call among candidate chat models.

For each call the router scores every eligible candidate on the last user turn,

    S_l = q_l − λ·c_l + α·u_l − β·P(W_l) + γ·κ·s_l          (see mixllm_router.policy.meta_score)

and the call goes to the candidate with the highest ``S_l``; on a provider failure
(429 / 5xx / timeout / connection, or a context window that is too small) the next candidate of
the ranking answers instead. The answer is the candidate's own ``AIMessage`` (text, tool calls,
``usage_metadata``), with ``response_metadata["model_name"]`` set to the candidate that answered
and ``response_metadata["mixllm"]`` holding the routing decision.

Candidates are LangChain chat models called directly (``chat_model.invoke``), so content
blocks, tool-call ids, ``tool_choice``, structured-output bindings and callbacks survive; the
calls go through the router's own ``FallbackCaller`` (``router.caller``: retries with backoff,
fallback down the ranking, cooldowns, spending guard), so ``ChatMixLLM`` and ``router.invoke``
share one retry / cooldown / budget state (see :mod:`langchain_mixllm._calling`). Each call holds
a slot in the router's load tracker, so the latency penalty keeps working.

Callbacks: the candidate's own run nests under the ``ChatMixLLM`` run. By default
(``nested_callbacks="tracers"``) handlers that *observe* runs (tracers, LangSmith, ``astream_events``,
``astream_log``) see it; handlers that *count* (``get_usage_metadata_callback``, cost counters)
see the ``ChatMixLLM`` run alone, so no token is counted twice.

The parts: :mod:`._routing` (which candidates may serve a call), :mod:`._calling` (the candidate
calls the FallbackCaller drives), :mod:`._runs` (run ids and the nested run's callbacks),
:mod:`._answers` (the candidate's answer as ours).
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import (
    LangSmithParams,
    agenerate_from_stream,
    generate_from_stream,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.utils import build_extra_kwargs, get_pydantic_field_names
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from langchain_mixllm._answers import chat_result, last_chunk, our_chunk
from langchain_mixllm._calling import CandidateCall, RoutedCall
from langchain_mixllm._routing import allowed, client_for, routing_text, stream_usage_kwargs
from langchain_mixllm._runs import PARENT_KW, child_callbacks, message_ids, run_id, run_key, with_parent
from mixllm_router import ConfigError, MixLLMRouter, RoutingDecision
from mixllm_router._integration import checkpoint_field, lazy_router, router_field, state_field
from mixllm_router.clients.fallback import CallResult, FallbackCaller

if TYPE_CHECKING:
    from mixllm_router.policy.decision import DecisionRecord

__all__ = ["ChatMixLLM"]

#: Keyword arguments of a call that steer the routing and are not sent to the candidate.
_ROUTING_KWARGS = ("model", "cost_weight", "cost_share", "max_cost_usd", "candidates", "tools", "tool_choice",
                   PARENT_KW)

class ChatMixLLM(BaseChatModel):
    """A chat model that routes each call to the best candidate for its quality and cost.

    Build it from keyword arguments only::

        llm = ChatMixLLM(checkpoint_path="router-ckpt/",
                         candidates={"gpt-4o-mini": ChatOpenAI(model="gpt-4o-mini"),
                                     "claude-sonnet": ChatAnthropic(model="claude-sonnet-4-5")})

    or from a fitted router: ``ChatMixLLM(router=router, candidates={...})``. Candidate names
    must be candidates of the router. The router is loaded on first use (never at construction)
    and every candidate is also attached to it with ``router.set_client``, so ``router.invoke``
    works too. Feedback: ``llm.router_.decisions.get(str(run_id))`` finds the decision of a run,
    and ``router.feedback(str(run_id), score)`` teaches it (run ids are registered as aliases).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    router: Any = router_field()
    checkpoint_path: str | None = checkpoint_field()
    state: str | None = state_field()
    candidates: dict[str, BaseChatModel] = Field(
        default_factory=dict,
        description="Candidate name -> the LangChain chat model that serves it (or a mixllm ChatClient, "
        "e.g. OpenAIClient / AnthropicClient, wrapped in ClientChatModel).",
    )
    model_name: str | None = Field(
        default=None, alias="model",
        description="Pin every call to this candidate (None: route). `model=` at call time does the same for one call.",
    )
    cost_weight: float | None = Field(default=None, description="λ (quality per USD); default: the router's.")
    cost_share: float | None = Field(default=None, description="Target share of the reference model's cost.")
    max_cost_usd: float | None = Field(default=None, description="Exclude candidates predicted to cost more.")
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, description="Forwarded to the candidate as max_tokens.")
    timeout: float | None = Field(default=None, description="Seconds per candidate request, forwarded.")
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    top_p: float | None = Field(default=None, description="Forwarded to the candidate.")
    seed: int | None = Field(default=None, description="Forwarded to the candidate.")
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Other keyword arguments for every candidate call (as ChatOpenAI's)."
    )
    max_retries: int | None = Field(
        default=None, ge=0,
        description="Retries of a candidate after a transient error; default: the router's FallbackCaller setting.",
    )
    streaming: bool = Field(default=False, description="invoke() streams from the candidate internally.")
    fallback: bool = Field(default=True, description="On failure, try the next candidate of the ranking.")
    nested_callbacks: Literal["tracers", "all", "none"] = Field(
        default="tracers", description="Which handlers see the candidate's nested run (see module docs)."
    )

    _router: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="before")
    @classmethod
    def _build_extra(cls, values: Any) -> Any:
        """As ChatOpenAI does: an init keyword that is no field moves to ``model_kwargs`` with a
        warning (instead of being dropped); a field given inside ``model_kwargs`` is an error."""
        if not isinstance(values, dict):
            return values
        names = get_pydantic_field_names(cls)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            extra = build_extra_kwargs(dict(values.get("model_kwargs") or {}), values, names)
        for w in caught:
            warnings.warn(str(w.message).replace("WARNING! ", ""), UserWarning, stacklevel=4)
        values = {k: v for k, v in values.items() if k in names}
        values["model_kwargs"] = extra
        return values

    @model_validator(mode="before")
    @classmethod
    def _wrap_clients(cls, values: Any) -> Any:
        """A mixllm ChatClient given as a candidate (OpenAIClient, AnthropicClient, ...) is served
        through :class:`~langchain_mixllm.ClientChatModel`."""
        if isinstance(values, dict) and isinstance(values.get("candidates"), Mapping):
            from langchain_mixllm.client_model import ClientChatModel

            values = {**values, "candidates": {
                name: model if isinstance(model, BaseChatModel) or not ClientChatModel.accepts(model)
                else ClientChatModel(client=model)
                for name, model in values["candidates"].items()}}
        return values

    # ------------------------------------------------------------------------------ LangChain plumbing
    @property
    def _llm_type(self) -> str:
        return "mixllm"

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["langchain_mixllm", "chat_models"]

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "checkpoint_path": self.checkpoint_path,
            "candidates": sorted(self.candidates),
            "cost_weight": self.cost_weight,
            "cost_share": self.cost_share,
            "max_cost_usd": self.max_cost_usd,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="mixllm",
            ls_model_name=str(kwargs.get("model") or self.model_name or "mixllm"),
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        stop = stop or self.stop
        if stop:
            params["ls_stop"] = list(stop)
        return params

    # ------------------------------------------------------------------------------ the router
    @property
    def router_(self) -> MixLLMRouter:
        """The router, loaded (and given the candidates' clients) on first use."""
        return lazy_router(self, "ChatMixLLM", client_for)

    def _chat_model(self, name: str) -> BaseChatModel | None:
        """The LangChain model serving candidate ``name``: given here, or attached to the router."""
        if name in self.candidates:
            return self.candidates[name]
        client = self.router_._clients.get(name)
        inner = getattr(client, "inner", client)
        model = getattr(inner, "chat_model", None)
        return model if isinstance(model, BaseChatModel) else None

    def _route(self, messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]) -> RoutingDecision:
        return self.router_.route(
            routing_text(messages),
            cost_weight=kwargs.get("cost_weight", self.cost_weight),
            cost_share=kwargs.get("cost_share", self.cost_share),
            max_cost_usd=kwargs.get("max_cost_usd", self.max_cost_usd),
            candidates=allowed(self.router_, self._chat_model, kwargs, self.model_name),
        )

    def decision_for(self, key: Any) -> DecisionRecord | None:
        """The decision record of a LangChain run: its run id (a callback's ``run_id``) or the
        answer's message id (``msg.id``, ``lc_run--<run id>``, also in a batch: ``...-<index>``)."""
        return self.router_.decisions.get(run_key(key))

    # ------------------------------------------------------------------------------ tokens
    def get_num_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the router's own tokenizer (offline; what it routes on).

        LangChain's default would load GPT-2's tokenizer from the Hugging Face hub: a network call
        this library never makes.
        """
        if self.custom_get_token_ids is not None:
            return len(self.custom_get_token_ids(text))
        return int(self.router_.encoder.count_tokens(text))

    def get_token_ids(self, text: str) -> list[int]:
        """Only with ``custom_get_token_ids``: the router exposes token counts, not ids, and
        LangChain's fallback (GPT-2 from the hub) would be a network call. ``get_num_tokens``,
        ``get_num_tokens_from_messages`` and ``trim_messages(token_counter=llm)`` work offline."""
        if self.custom_get_token_ids is not None:
            return self.custom_get_token_ids(text)
        raise ConfigError("ChatMixLLM has token counts, not token ids: use get_num_tokens(), or pass "
                          "custom_get_token_ids=")

    # ------------------------------------------------------------------------------ calling
    def _register(self, decision: RoutingDecision, run_manager: Any, kwargs: Mapping[str, Any]) -> None:
        """Let the LangChain run id, and the answer's message id, find this decision."""
        run = run_id(run_manager, kwargs)
        if run is not None:
            self.router_.decisions.alias(str(run), decision.decision_id)
            for message_id in message_ids(run):  # stream / invoke
                self.router_.decisions.alias(message_id, decision.decision_id)

    # LangChain calls ``_stream``/``_astream`` without the run manager (it emits the tokens
    # itself), so the run id is fixed here and handed down in a private kwarg (see _runs).
    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        config, parent = with_parent(config)
        return super().stream(input, config, stop=stop, **{PARENT_KW: parent}, **kwargs)

    def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                stop: list[str] | None = None, **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        config, parent = with_parent(config)
        return super().astream(input, config, stop=stop, **{PARENT_KW: parent}, **kwargs)

    def _get_invocation_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        kwargs.pop(PARENT_KW, None)
        return super()._get_invocation_params(stop=stop, **kwargs)

    def _runnable(self, name: str, kwargs: Mapping[str, Any]) -> Runnable[Any, Any]:
        model = self._chat_model(name)
        assert model is not None
        if kwargs.get("tools"):
            tool_choice = kwargs.get("tool_choice")
            extra = {} if tool_choice is None else {"tool_choice": tool_choice}
            return model.bind_tools(kwargs["tools"], **extra)
        return model

    def _generation(self, stop: list[str] | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """What the candidate receives besides the messages: standard params, ``top_p``, ``seed``,
        ``model_kwargs`` (as ChatOpenAI: init values, overridden by call kwargs) and extra call kwargs."""
        out = {**self.model_kwargs, **{k: v for k, v in kwargs.items() if k not in _ROUTING_KWARGS}}
        for key in ("temperature", "max_tokens", "timeout", "top_p", "seed"):
            value = out.get(key, getattr(self, key))
            if value is None:
                out.pop(key, None)
            else:
                out[key] = value
        stop = stop if stop is not None else self.stop
        if stop:
            out["stop"] = list(stop)
        return out

    def _ranking(self, decision: RoutingDecision) -> list[str]:
        return list(decision.ranking) if self.fallback else [decision.chosen]

    def _caller(self) -> FallbackCaller:
        """The router's FallbackCaller (its cooldowns and spending guard), with ``max_retries``
        retries per candidate when set."""
        caller = self.router_.caller
        if self.max_retries is None:
            return caller
        return caller.sharing(max_attempts_per_candidate=self.max_retries + 1)

    def _plan(self, messages: list[BaseMessage], stop: list[str] | None, run_manager: Any, kwargs: dict[str, Any],
              *, is_async: bool, streaming: bool = False) -> RoutedCall:
        """Everything one call needs after routing: the ranked candidate calls for the FallbackCaller."""
        decision = self._route(messages, kwargs)
        return self._plan_for(decision, messages, stop, run_manager, kwargs, is_async=is_async, streaming=streaming)

    def _plan_for(self, decision: RoutingDecision, messages: list[BaseMessage], stop: list[str] | None,
                  run_manager: Any, kwargs: dict[str, Any], *, is_async: bool, streaming: bool) -> RoutedCall:
        self._register(decision, run_manager, kwargs)
        generation = self._generation(stop, kwargs)
        child = child_callbacks(self, self.nested_callbacks, run_manager, kwargs, is_async=is_async)
        router = self.router_
        ranked = []
        for name in self._ranking(decision):
            config = RunnableConfig(callbacks=child, metadata={"mixllm_candidate": name,
                                                               "mixllm_decision_id": decision.decision_id})
            extra = stream_usage_kwargs(self._chat_model(name)) if streaming else {}
            ranked.append((router.pool.get(name), CandidateCall(
                name, self._runnable(name, kwargs), messages, config, generation, router.load_tracker,
                self.nested_callbacks, stream_kwargs=extra)))
        costs = {s.name: s.cost_usd for s in decision.scores}
        text = [{"role": "user", "content": "\n".join(m.text for m in messages)}]  # the guard's token estimate
        return RoutedCall(decision, ranked, costs, text, time.perf_counter())

    def _finish(self, call: RoutedCall, result: CallResult) -> ChatResult:
        self._record(call.decision, result)
        return chat_result(call.decision, result)

    def _last_chunk(self, call: RoutedCall, result: CallResult | None, provider: dict[str, Any]) -> ChatGenerationChunk:
        if result is not None:  # None: the stream was closed early, nothing to account
            self._record(call.decision, result)
        return last_chunk(call.decision, result, provider)

    def _record(self, decision: RoutingDecision, result: CallResult) -> None:
        self.router_.decisions.update(
            decision.decision_id, answered_by=result.candidate, output_tokens=result.output_tokens,
            latency_s=result.latency_s, cost_usd=result.cost_usd,
        )
        self.router_.answered(decision, result.text, result.candidate)  # online scorers (router.attach_scorer)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return generate_from_stream(self._stream(messages, stop=stop, run_manager=run_manager, **kwargs))
        call = self._plan(messages, stop, run_manager, kwargs, is_async=False)
        return self._finish(call, self._caller().call(call.ranked, call.text, estimated_costs=call.costs))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return await agenerate_from_stream(self._astream(messages, stop=stop, run_manager=run_manager, **kwargs))
        # Encoding and scoring are CPU work: keep them off the event loop.
        decision = await asyncio.to_thread(self._route, messages, kwargs)
        call = self._plan_for(decision, messages, stop, run_manager, kwargs, is_async=True, streaming=False)
        return self._finish(call, await self._caller().acall(call.ranked, call.text, estimated_costs=call.costs))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._plan(messages, stop, run_manager, kwargs, is_async=False, streaming=True)
        stream = self._caller().stream(call.ranked, call.text, estimated_costs=call.costs)
        provider: dict[str, Any] = {}
        for piece in stream:
            chunk = our_chunk(piece, provider)
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
        yield self._last_chunk(call, stream.result, provider)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        decision = await asyncio.to_thread(self._route, messages, kwargs)
        call = self._plan_for(decision, messages, stop, run_manager, kwargs, is_async=True, streaming=True)
        stream = self._caller().astream(call.ranked, call.text, estimated_costs=call.costs)
        provider: dict[str, Any] = {}
        async for piece in stream:
            chunk = our_chunk(piece, provider)
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
        yield self._last_chunk(call, stream.result, provider)

    # ------------------------------------------------------------------------------ tools
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools: the call is routed among candidates that support tools, and the chosen
        candidate's own ``bind_tools`` receives them (in OpenAI format) with ``tool_choice``."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None and tool_choice is not False:
            kwargs["tool_choice"] = tool_choice
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: Literal["function_calling", "json_schema", "json_mode"] = "function_calling",
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """Structured output, routed among the candidates that can give it.

        ``"function_calling"`` (default): LangChain's tool-calling implementation over
        :meth:`bind_tools`, among candidates with tools. ``"json_schema"`` / ``"json_mode"``: the
        call carries OpenAI's ``response_format`` and is routed only among candidates that take it
        (OpenAI-compatible chat models); the JSON answer is parsed here. With no such candidate the
        call raises a ``ClientError`` instead of silently using tool calling.
        """
        from langchain_mixllm.structured import json_structured_output

        if method == "function_calling":
            return super().with_structured_output(schema, include_raw=include_raw, **kwargs)
        if kwargs:
            raise ConfigError(f"unsupported arguments {sorted(kwargs)}")
        if method not in ("json_schema", "json_mode"):
            raise ConfigError(f"method must be 'function_calling', 'json_schema' or 'json_mode', got {method!r}")
        return json_structured_output(self, schema, method=method, strict=strict, include_raw=include_raw)
