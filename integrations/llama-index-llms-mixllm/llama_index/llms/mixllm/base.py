"""``MixLLM``: a LlamaIndex LLM that routes every call among candidate LLMs.

Each call is scored by the router on its last user turn (for ``complete``: the whole prompt),

    S_l = q_l − λ·c_l + α·u_l − β·P(W_l) + γ·κ·s_l          (see mixllm_router.policy)

and goes to the candidate with the highest ``S_l`` through :meth:`MixLLMRouter.invoke` /
``stream``, which retries transient errors and falls back down the ranking. Candidates are
LlamaIndex LLMs (wrapped in :class:`~mixllm_router.clients.LlamaIndexClient`) or any
mixllm ``ChatClient`` (OpenAI, Anthropic, replay, ...).

The routing decision travels with the answer, in ``CompletionResponse.additional_kwargs``
(and ``ChatResponse.additional_kwargs``)::

    {"decision_id": "...", "candidate": "<who answered>", "decision": {...scores...},
     "cost_usd": ..., "prompt_tokens": ..., "completion_tokens": ...}

LlamaIndex's instrumentation events (``LLMCompletionEndEvent.response``) carry it to any event
handler, so feedback can be given later with ``router.feedback(decision_id, score)``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

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
from llama_index.core.llms.custom import CustomLLM

from mixllm_router import MixLLMRouter, RoutingDecision

__all__ = ["MixLLM"]

_ROLES = {MessageRole.SYSTEM: "system", MessageRole.USER: "user", MessageRole.ASSISTANT: "assistant",
          MessageRole.TOOL: "tool", MessageRole.DEVELOPER: "system", MessageRole.CHATBOT: "assistant",
          MessageRole.MODEL: "assistant", MessageRole.FUNCTION: "tool"}


def _to_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """LlamaIndex chat turns as the router's provider-neutral messages (text content)."""
    out = []
    for m in messages:
        role = _ROLES.get(m.role, "user")
        item: dict[str, Any] = {"role": role, "content": m.content or ""}
        if role == "tool":
            item["tool_call_id"] = str(m.additional_kwargs.get("tool_call_id") or "")
        out.append(item)
    return out


def _is_llamaindex_llm(obj: Any) -> bool:
    return all(hasattr(obj, m) for m in ("chat", "achat", "stream_chat", "astream_chat", "metadata"))


class MixLLM(CustomLLM):
    """A LlamaIndex LLM that sends each call to the best candidate for its quality and cost.

    ::

        llm = MixLLM(checkpoint_path="router-ckpt/",
                     candidates={"gpt-4o-mini": OpenAI(model="gpt-4o-mini"), "local": Ollama(model="qwen3")})
        index.as_query_engine(llm=llm, embed_model=MixLLMEmbedding.from_router(llm.router_))

    The router is loaded on first use; candidates are attached to it with ``router.set_client``.
    ``metadata.context_window`` is the smallest window of the candidates (an answer must fit
    whichever candidate is chosen).
    """

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
        with self._lock:
            if self._router is None:
                self._router = self._build_router()
            return self._router

    def _build_router(self) -> MixLLMRouter:
        from mixllm_router.clients import LlamaIndexClient

        router = MixLLMRouter.from_source(self.router, self.checkpoint_path, state=self.state, owner="MixLLM")
        for name, candidate in self.candidates.items():
            client = LlamaIndexClient(candidate, model_name=name) if _is_llamaindex_llm(candidate) else candidate
            router.set_client(name, client)
        return router

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
            is_chat_model=False,
            model_name="mixllm",
        )

    # ------------------------------------------------------------------------------ helpers
    def _routing(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Routing options and generation settings of one call (call kwargs override fields)."""
        out: dict[str, Any] = {
            "cost_weight": kwargs.pop("cost_weight", self.cost_weight),
            "cost_share": kwargs.pop("cost_share", self.cost_share),
            "max_cost_usd": kwargs.pop("max_cost_usd", self.max_cost_usd),
            "candidates": kwargs.pop("candidates", None),
        }
        for key in ("max_tokens", "temperature"):
            value = kwargs.pop(key, getattr(self, key))
            if value is not None:
                out[key] = value
        stop = kwargs.pop("stop", None)
        if stop:
            out["stop"] = list(stop)
        kwargs.pop("formatted", None)
        return out

    @staticmethod
    def _extra(decision: RoutingDecision, result: Any = None) -> dict[str, Any]:
        extra: dict[str, Any] = {"decision_id": decision.decision_id, "decision": decision.to_dict(),
                                 "candidate": decision.chosen}
        if result is not None:
            extra.update(candidate=result.candidate, cost_usd=result.cost_usd,
                         prompt_tokens=result.usage["input_tokens"], completion_tokens=result.usage["output_tokens"])
        return extra

    def _complete_response(self, routed: Any) -> CompletionResponse:
        return CompletionResponse(text=routed.text, raw={"usage": routed.usage, "candidate": routed.candidate},
                                  additional_kwargs=self._extra(routed.decision, routed))

    def _chat_response(self, routed: Any) -> ChatResponse:
        extra = self._extra(routed.decision, routed)
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=routed.text),
                            raw={"usage": routed.usage, "candidate": routed.candidate}, additional_kwargs=extra)

    # ------------------------------------------------------------------------------ completion
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        opts = self._routing(kwargs)
        return self._complete_response(self.router_.invoke(prompt, **opts))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        opts = self._routing(kwargs)
        routed = self.router_.stream(prompt, **opts)

        def gen() -> CompletionResponseGen:
            text = ""
            for chunk in routed:
                if chunk.text:
                    text += chunk.text
                    yield CompletionResponse(text=text, delta=chunk.text, additional_kwargs=self._extra(routed.decision))
            result = routed.result
            yield CompletionResponse(text=text, delta="", raw={"usage": result.usage if result else None},
                                     additional_kwargs=self._extra(routed.decision, result))

        return gen()

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        opts = self._routing(kwargs)
        return self._complete_response(await self.router_.ainvoke(prompt, **opts))

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        opts = self._routing(kwargs)
        routed = await self.router_.astream(prompt, **opts)

        async def gen() -> CompletionResponseAsyncGen:
            text = ""
            async for chunk in routed:
                if chunk.text:
                    text += chunk.text
                    yield CompletionResponse(text=text, delta=chunk.text, additional_kwargs=self._extra(routed.decision))
            result = routed.result
            yield CompletionResponse(text=text, delta="", raw={"usage": result.usage if result else None},
                                     additional_kwargs=self._extra(routed.decision, result))

        return gen()

    # ------------------------------------------------------------------------------ chat
    # The whole conversation goes to the candidate as turns (not flattened into one prompt), and
    # the router scores the last user turn.
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        opts = self._routing(kwargs)
        return self._chat_response(self.router_.invoke(_to_messages(messages), **opts))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        opts = self._routing(kwargs)
        return self._chat_response(await self.router_.ainvoke(_to_messages(messages), **opts))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        opts = self._routing(kwargs)
        routed = self.router_.stream(_to_messages(messages), **opts)

        def gen() -> ChatResponseGen:
            text = ""
            for chunk in routed:
                if chunk.text:
                    text += chunk.text
                    yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
                                       delta=chunk.text, additional_kwargs=self._extra(routed.decision))
            yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta="",
                               additional_kwargs=self._extra(routed.decision, routed.result))

        return gen()

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        opts = self._routing(kwargs)
        routed = await self.router_.astream(_to_messages(messages), **opts)

        async def gen() -> ChatResponseAsyncGen:
            text = ""
            async for chunk in routed:
                if chunk.text:
                    text += chunk.text
                    yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
                                       delta=chunk.text, additional_kwargs=self._extra(routed.decision))
            yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta="",
                               additional_kwargs=self._extra(routed.decision, routed.result))

        return gen()
