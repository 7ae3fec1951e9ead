"""``ChatMixLLM``: a LangChain chat model that routes every call among candidate chat models.

For each call the router scores every eligible candidate on the last user turn,

    S_l = q_l − λ·c_l + α·u_l − β·P(W_l) + γ·κ·s_l          (see mixllm_router.policy)

and the call goes to the candidate with the highest ``S_l``; on a provider failure
(429 / 5xx / timeout / connection, or a context window that is too small) the next candidate of
the ranking answers instead. The answer is the candidate's own ``AIMessage`` (text, tool calls,
``usage_metadata``), with ``response_metadata["model_name"]`` set to the candidate that answered
and ``response_metadata["mixllm"]`` holding the routing decision.

Why candidates are called directly (``chat_model.invoke``) and not through
``MixLLMRouter.invoke``: the router's client protocol is provider-neutral text + tool calls, so a
round trip through it would drop what LangChain users rely on (content blocks, tool-call ids,
``tool_choice``, structured-output bindings, callbacks). The fallback loop below follows
:mod:`mixllm_router.calling` (transient errors: retry the same candidate up to ``max_retries``
times, then the next; context too long: the next; anything else: raise), and each call holds a
slot in the router's load tracker so the latency penalty keeps working.

Callbacks: the candidate's own run nests under the ``ChatMixLLM`` run (``run_manager.get_child()``).
By default only *tracers* (LangSmith, console, event streams) are passed down; plain callback
handlers (token and cost counters) see the ``ChatMixLLM`` run alone, because a chat-model run
nested in a chat-model run would make them count every token twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    BaseCallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import (
    LangSmithParams,
    agenerate_from_stream,
    generate_from_stream,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, var_child_runnable_config
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

from mixllm_router import (
    AllCandidatesFailedError,
    ClientError,
    ContextLengthError,
    MixLLMRouter,
    RoutingDecision,
    StreamInterruptedError,
    TransientClientError,
)
from mixllm_router.clients._errors import map_provider_error

if TYPE_CHECKING:
    from mixllm_router.decision import DecisionRecord

__all__ = ["ChatMixLLM"]

#: Keyword arguments of a call that steer the routing and are not sent to the candidate.
_ROUTING_KWARGS = ("model", "cost_weight", "cost_share", "max_cost_usd", "candidates", "tools", "tool_choice",
                   "_mixllm_parent")

#: Private call kwarg by which ``stream``/``astream`` tell ``_stream``/``_astream`` their run (see
#: :meth:`ChatMixLLM.stream`); stripped from the invocation params, so tracing never sees it.
_PARENT_KW = "_mixllm_parent"


@dataclass(frozen=True)
class _Parent:
    """The ChatMixLLM run a stream belongs to: its id and the config its callbacks came from."""

    run_id: uuid.UUID
    config: RunnableConfig


def _routing_text(messages: Sequence[BaseMessage]) -> str:
    """The text the router scores: the last human turn (the question being asked now)."""
    for message in reversed(messages):
        if message.type == "human" and message.text:
            return message.text
    return "\n".join(m.text for m in messages if m.text)


def _backoff(attempt: int) -> float:
    """Wait before retry ``attempt`` (1-based): 0.25 s · 2^(k−1), at most 2 s."""
    return min(2.0, 0.25 * 2 ** (attempt - 1))


@contextlib.contextmanager
def _isolated(config: RunnableConfig) -> Iterator[None]:
    """Make ``config`` the ambient runnable config while the candidate runs.

    Inside a chain, LangChain merges the *enclosing* step's config (a context variable) into every
    nested ``invoke``; its callback manager would then win over ours and the candidate's run would
    hang off the chain instead of off the ChatMixLLM run, and be seen by every handler.
    """
    token = var_child_runnable_config.set(config)
    try:
        yield
    finally:
        var_child_runnable_config.reset(token)


def _own_id(message: BaseMessage) -> None:
    """Drop the candidate run's ``lc_run-`` id so LangChain gives the message the router run's id."""
    if message.id and message.id.startswith("lc_run-"):
        message.id = None


@dataclass
class _StreamAttempt:
    """One try of one candidate while streaming: what it has sent so far.

    Shared by ``_stream`` and ``_astream``, which then differ only in how they wait.
    """

    name: str
    started: float = field(default_factory=time.perf_counter)
    provider: dict[str, Any] = field(default_factory=dict)  # the provider's own model name, once seen
    usage: dict[str, Any] = field(default_factory=dict)
    emitted: bool = False
    text: str = ""

    def take(self, raw: AIMessageChunk) -> ChatGenerationChunk:
        """The candidate's chunk as ours, with the text and usage it adds counted.

        Its position and model name move to our final chunk (:meth:`ChatMixLLM._last_chunk`).
        """
        meta = dict(raw.response_metadata or {})
        if meta.get("model_name"):
            self.provider["model"] = meta.pop("model_name")
        meta.pop("model_provider", None)
        update: dict[str, Any] = {"response_metadata": meta, "chunk_position": None}
        if raw.id and raw.id.startswith("lc_run-"):
            update["id"] = None
        chunk = ChatGenerationChunk(message=raw.model_copy(update=update))
        self.text += chunk.text
        usage: Mapping[str, Any] = raw.usage_metadata or {}
        for key in ("input_tokens", "output_tokens", "total_tokens"):
            value = usage.get(key)
            if value is not None:
                self.usage[key] = self.usage.get(key, 0) + value
        self.emitted = self.emitted or bool(raw.content or raw.tool_call_chunks)
        return chunk

    def interrupted(self, exc: Exception) -> StreamInterruptedError | None:
        """The error to raise once text went out (no fallback then: splicing two models' answers
        would make a text neither wrote); ``None`` while falling back is still safe."""
        if not self.emitted:
            return None
        return StreamInterruptedError(f"candidate {self.name!r} failed mid-stream: {exc}",
                                      candidate=self.name, partial_text=self.text)


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

    router: Any = Field(default=None, exclude=True, description="A fitted MixLLMRouter (else checkpoint_path).")
    checkpoint_path: str | None = Field(
        default_factory=lambda: os.environ.get("MIXLLM_CHECKPOINT") or None,
        description="Router checkpoint folder; default: $MIXLLM_CHECKPOINT. Loaded on first use.",
    )
    state: str | None = Field(
        default_factory=lambda: os.environ.get("MIXLLM_STATE") or None,
        description="Share load, feedback and model versions between workers: redis://host:port/db "
        "(default: $MIXLLM_STATE; none: this process only). See mixllm-router's docs/shared_state.md.",
    )
    candidates: dict[str, BaseChatModel] = Field(
        default_factory=dict, description="Candidate name -> the LangChain chat model that serves it."
    )
    model_name: str = Field(default="mixllm", alias="model", description="Name reported to tracing.")
    cost_weight: float | None = Field(default=None, description="λ (quality per USD); default: the router's.")
    cost_share: float | None = Field(default=None, description="Target share of the reference model's cost.")
    max_cost_usd: float | None = Field(default=None, description="Exclude candidates predicted to cost more.")
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, description="Forwarded to the candidate as max_tokens.")
    timeout: float | None = Field(default=None, description="Seconds per candidate request, forwarded.")
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    max_retries: int = Field(default=2, ge=0, description="Retries of a candidate after a transient error.")
    streaming: bool = Field(default=False, description="invoke() streams from the candidate internally.")
    fallback: bool = Field(default=True, description="On failure, try the next candidate of the ranking.")
    nested_callbacks: Literal["tracers", "all", "none"] = Field(
        default="tracers", description="Which handlers see the candidate's nested run (see module docs)."
    )

    _router: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

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
            ls_model_name=str(kwargs.get("model") or self.model_name),
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
        with self._lock:
            if self._router is None:
                self._router = self._build_router()
            return self._router

    def _build_router(self) -> MixLLMRouter:
        from mixllm_router.clients import LangChainClient

        router = MixLLMRouter.from_source(self.router, self.checkpoint_path, state=self.state, owner="ChatMixLLM")
        for name, chat_model in self.candidates.items():
            router.set_client(name, LangChainClient(chat_model, model_name=name))
        return router

    def _chat_model(self, name: str) -> BaseChatModel | None:
        """The LangChain model serving candidate ``name``: given here, or attached to the router."""
        if name in self.candidates:
            return self.candidates[name]
        client = self.router_._clients.get(name)
        inner = getattr(client, "inner", client)
        model = getattr(inner, "chat_model", None)
        return model if isinstance(model, BaseChatModel) else None

    def _allowed(self, kwargs: Mapping[str, Any]) -> list[str]:
        """Candidates that can serve this call: have a chat model, and tools if tools are bound."""
        router = self.router_
        names = [n for n in router.candidate_names if self._chat_model(n) is not None]
        wanted = kwargs.get("model") or kwargs.get("candidates")
        if wanted:
            wanted = [wanted] if isinstance(wanted, str) else list(wanted)
            for n in wanted:
                router.pool.get(n)  # unknown name -> UnknownCandidateError
            names = [n for n in names if n in wanted]
        if kwargs.get("tools"):
            names = [
                n for n in names
                if router.pool.get(n).supports_tools
                and type(self._chat_model(n)).bind_tools is not BaseChatModel.bind_tools  # type: ignore[union-attr]
            ]
        if not names:
            need = " that supports tools (Candidate.supports_tools and a bind_tools model)" if kwargs.get("tools") else ""
            raise ClientError(f"no candidate{need} has a LangChain chat model: pass candidates={{name: chat_model}}")
        return names

    def _route(self, messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]) -> RoutingDecision:
        return self.router_.route(
            _routing_text(messages),
            cost_weight=kwargs.get("cost_weight", self.cost_weight),
            cost_share=kwargs.get("cost_share", self.cost_share),
            max_cost_usd=kwargs.get("max_cost_usd", self.max_cost_usd),
            candidates=self._allowed(kwargs),
        )

    def decision_for(self, run_id: Any) -> DecisionRecord | None:
        """The decision record of a LangChain run (``AIMessage``'s run id or a callback's run_id)."""
        return self.router_.decisions.get(str(run_id))

    # ------------------------------------------------------------------------------ calling
    def _run_id(self, run_manager: Any, kwargs: Mapping[str, Any]) -> uuid.UUID | None:
        if run_manager is not None:
            return run_manager.run_id
        parent = kwargs.get(_PARENT_KW)
        return parent.run_id if isinstance(parent, _Parent) else None

    def _register(self, decision: RoutingDecision, run_manager: Any, kwargs: Mapping[str, Any]) -> None:
        """Let the LangChain run id find this decision: ``router.decisions.get(str(run_id))``."""
        run_id = self._run_id(run_manager, kwargs)
        if run_id is not None:
            self.router_.decisions.alias(str(run_id), decision.decision_id)

    def _child_callbacks(self, run_manager: Any, kwargs: Mapping[str, Any], *, is_async: bool
                         ) -> BaseCallbackManager | None:
        """Callbacks for the candidate's run: a child of ours (``parent_run_id = our run_id``)."""
        from langchain_core.callbacks import AsyncCallbackManager, CallbackManager

        run_id = self._run_id(run_manager, kwargs)
        if run_id is None or self.nested_callbacks == "none":
            return None
        if run_manager is None:  # a stream: rebuild what LangChain configured for our run
            parent: _Parent = kwargs[_PARENT_KW]
            run_manager = CallbackManager.configure(
                parent.config.get("callbacks"), self.callbacks, self.verbose,
                parent.config.get("tags"), self.tags, parent.config.get("metadata"), self.metadata,
            )
        handlers = list(run_manager.inheritable_handlers)
        if self.nested_callbacks == "tracers":
            from langchain_core.tracers.base import AsyncBaseTracer, BaseTracer

            handlers = [h for h in handlers if isinstance(h, (BaseTracer, AsyncBaseTracer))]
        manager_cls = AsyncCallbackManager if is_async else CallbackManager
        child = manager_cls(handlers=handlers, inheritable_handlers=handlers, parent_run_id=run_id)
        child.add_tags(run_manager.inheritable_tags)
        child.add_metadata(run_manager.inheritable_metadata)
        return child

    # LangChain calls ``_stream``/``_astream`` without the run manager (it emits the tokens
    # itself), so the run id is fixed here and handed down in a private kwarg.
    def _with_parent(self, config: RunnableConfig | None) -> tuple[RunnableConfig, _Parent]:
        config = ensure_config(config)
        run_id = config.get("run_id") or uuid.uuid4()
        config = RunnableConfig(**{**config, "run_id": run_id})
        return config, _Parent(run_id=run_id, config=config)

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        config, parent = self._with_parent(config)
        return super().stream(input, config, stop=stop, **{_PARENT_KW: parent}, **kwargs)

    def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                stop: list[str] | None = None, **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        config, parent = self._with_parent(config)
        return super().astream(input, config, stop=stop, **{_PARENT_KW: parent}, **kwargs)

    def _get_invocation_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        kwargs.pop(_PARENT_KW, None)
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
        """What the candidate receives besides the messages: standard params and extra kwargs."""
        out = {k: v for k, v in kwargs.items() if k not in _ROUTING_KWARGS}
        for key in ("temperature", "max_tokens", "timeout"):
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

    def _metadata(self, decision: RoutingDecision, name: str, provider_model: Any, errors: dict[str, BaseException],
                  ) -> dict[str, Any]:
        info = decision.to_dict()
        info["answered_by"] = name
        info["failed"] = {k: f"{type(v).__name__}: {v}" for k, v in errors.items()}
        meta: dict[str, Any] = {"model_name": name, "model_provider": "mixllm", "mixllm": info}
        if provider_model:
            meta["provider_model_name"] = provider_model
        return meta

    def _record(self, decision: RoutingDecision, name: str, message: BaseMessage, started: float) -> None:
        usage = getattr(message, "usage_metadata", None) or {}
        t_in, t_out = usage.get("input_tokens"), usage.get("output_tokens")
        cost = None
        if t_in is not None and t_out is not None:
            cost = self.router_.pool.get(name).call_cost(t_in, t_out)
        self.router_.decisions.update(
            decision.decision_id, answered_by=name, output_tokens=t_out,
            latency_s=time.perf_counter() - started, cost_usd=cost,
        )

    def _on_error(self, exc: BaseException, name: str, attempt: int, errors: dict[str, BaseException]) -> str:
        """Classify a failure: ``"retry"`` the same candidate, go to the ``"next"``, or raise."""
        mapped = map_provider_error(exc, provider=f"langchain:{name}", candidate=name)
        if mapped is None:
            raise exc
        errors[name] = mapped
        if isinstance(mapped, TransientClientError):
            return "retry" if attempt < self.max_retries else "next"
        if isinstance(mapped, ContextLengthError):
            return "next"
        raise mapped from exc

    def _all_failed(self, errors: dict[str, BaseException]) -> AllCandidatesFailedError:
        detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
        return AllCandidatesFailedError(f"every candidate failed: {detail}", errors)

    def _finish(self, decision: RoutingDecision, name: str, message: BaseMessage,
                errors: dict[str, BaseException], started: float) -> ChatResult:
        self._record(decision, name, message, started)
        meta = dict(message.response_metadata or {})
        provider_model = meta.pop("model_name", None)
        meta.update(self._metadata(decision, name, provider_model, errors))
        message = message.model_copy(update={"response_metadata": meta})
        _own_id(message)
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"model_name": name})

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return generate_from_stream(self._stream(messages, stop=stop, run_manager=run_manager, **kwargs))
        decision = self._route(messages, kwargs)
        self._register(decision, run_manager, kwargs)
        generation = self._generation(stop, kwargs)
        config = RunnableConfig(callbacks=self._child_callbacks(run_manager, kwargs, is_async=False))
        errors: dict[str, BaseException] = {}
        tracker = self.router_.load_tracker
        for name in self._ranking(decision):
            runnable = self._runnable(name, kwargs)
            attempt = 0
            while True:
                started = time.perf_counter()
                try:
                    with tracker.track(name) as ticket, _isolated(config):
                        message = runnable.invoke(messages, config=config, **generation)
                        ticket.output_tokens = (message.usage_metadata or {}).get("output_tokens")
                except Exception as exc:  # noqa: BLE001 - classified by _on_error
                    attempt += 1
                    if self._on_error(exc, name, attempt - 1, errors) == "next":
                        break
                    time.sleep(_backoff(attempt))
                    continue
                return self._finish(decision, name, message, errors, started)
        raise self._all_failed(errors)

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
        self._register(decision, run_manager, kwargs)
        generation = self._generation(stop, kwargs)
        config = RunnableConfig(callbacks=self._child_callbacks(run_manager, kwargs, is_async=True))
        errors: dict[str, BaseException] = {}
        tracker = self.router_.load_tracker
        for name in self._ranking(decision):
            runnable = self._runnable(name, kwargs)
            attempt = 0
            while True:
                started = time.perf_counter()
                try:
                    async with tracker.atrack(name) as ticket:
                        with _isolated(config):
                            message = await runnable.ainvoke(messages, config=config, **generation)
                        ticket.output_tokens = (message.usage_metadata or {}).get("output_tokens")
                except Exception as exc:  # noqa: BLE001 - classified by _on_error
                    attempt += 1
                    if self._on_error(exc, name, attempt - 1, errors) == "next":
                        break
                    await asyncio.sleep(_backoff(attempt))
                    continue
                return self._finish(decision, name, message, errors, started)
        raise self._all_failed(errors)

    def _last_chunk(self, decision: RoutingDecision, sent: _StreamAttempt,
                    errors: dict[str, BaseException]) -> ChatGenerationChunk:
        self._record(decision, sent.name, AIMessage(content="", usage_metadata=sent.usage or None), sent.started)
        meta = self._metadata(decision, sent.name, sent.provider.get("model"), errors)
        return ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata=meta, chunk_position="last"))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        decision = self._route(messages, kwargs)
        self._register(decision, run_manager, kwargs)
        generation = self._generation(stop, kwargs)
        config = RunnableConfig(callbacks=self._child_callbacks(run_manager, kwargs, is_async=False))
        errors: dict[str, BaseException] = {}
        tracker = self.router_.load_tracker
        for name in self._ranking(decision):
            runnable = self._runnable(name, kwargs)
            attempt = 0
            while True:
                sent = _StreamAttempt(name)
                try:
                    with tracker.track(name) as ticket:
                        chunks = iter(runnable.stream(messages, config=config, **generation))
                        while True:
                            with _isolated(config):
                                raw = next(chunks, None)
                            if raw is None:
                                break
                            chunk = sent.take(raw)
                            if run_manager is not None:
                                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                            yield chunk
                        ticket.output_tokens = sent.usage.get("output_tokens")
                except Exception as exc:  # noqa: BLE001 - classified below
                    if (broken := sent.interrupted(exc)) is not None:
                        raise broken from exc
                    attempt += 1
                    if self._on_error(exc, name, attempt - 1, errors) == "next":
                        break
                    time.sleep(_backoff(attempt))
                    continue
                yield self._last_chunk(decision, sent, errors)
                return
        raise self._all_failed(errors)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        decision = await asyncio.to_thread(self._route, messages, kwargs)
        self._register(decision, run_manager, kwargs)
        generation = self._generation(stop, kwargs)
        config = RunnableConfig(callbacks=self._child_callbacks(run_manager, kwargs, is_async=True))
        errors: dict[str, BaseException] = {}
        tracker = self.router_.load_tracker
        for name in self._ranking(decision):
            runnable = self._runnable(name, kwargs)
            attempt = 0
            while True:
                sent = _StreamAttempt(name)
                try:
                    async with tracker.atrack(name) as ticket:
                        achunks = aiter(runnable.astream(messages, config=config, **generation))
                        while True:
                            with _isolated(config):
                                raw = await anext(achunks, None)
                            if raw is None:
                                break
                            chunk = sent.take(raw)
                            if run_manager is not None:
                                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                            yield chunk
                        ticket.output_tokens = sent.usage.get("output_tokens")
                except Exception as exc:  # noqa: BLE001 - classified below
                    if (broken := sent.interrupted(exc)) is not None:
                        raise broken from exc
                    attempt += 1
                    if self._on_error(exc, name, attempt - 1, errors) == "next":
                        break
                    await asyncio.sleep(_backoff(attempt))
                    continue
                yield self._last_chunk(decision, sent, errors)
                return
        raise self._all_failed(errors)

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
