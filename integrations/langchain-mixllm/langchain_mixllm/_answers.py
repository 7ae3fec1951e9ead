"""The candidate's answer as ``ChatMixLLM``'s own: who answered and the routing decision in
``response_metadata``, the candidate's run-derived message id dropped (LangChain then gives the
message the ``ChatMixLLM`` run's id), and for a stream the candidate's model name and position
moved to our last chunk."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from mixllm_router import RoutingDecision
from mixllm_router.clients.base import CompletionChunk
from mixllm_router.clients.fallback import CallResult

__all__ = ["chat_result", "failed_before", "last_chunk", "metadata", "our_chunk"]


def _is_run_id(message_id: str | None) -> bool:
    """Whether a message id is one LangChain derived from the candidate's run."""
    return bool(message_id) and str(message_id).startswith("lc_run-")


def failed_before(result: CallResult) -> dict[str, BaseException]:
    """The candidates that failed before the one that answered, with their last error."""
    return {a.candidate: a.error for a in result.attempts if a.error is not None}


def metadata(decision: RoutingDecision, name: str, provider_model: Any, errors: dict[str, BaseException],
             ) -> dict[str, Any]:
    """Our ``response_metadata``: the candidate that answered, the decision, who failed first."""
    info = decision.to_dict()
    info["answered_by"] = name
    info["failed"] = {k: f"{type(v).__name__}: {v}" for k, v in errors.items()}
    meta: dict[str, Any] = {"model_name": name, "model_provider": "mixllm", "mixllm": info}
    if provider_model:
        meta["provider_model_name"] = provider_model
    return meta


def chat_result(decision: RoutingDecision, result: CallResult) -> ChatResult:
    """The answer of an invoked call (the candidate's ``AIMessage``, with our metadata)."""
    message: AIMessage = result.completion.raw
    meta = dict(message.response_metadata or {})
    provider_model = meta.pop("model_name", None)
    meta.update(metadata(decision, result.candidate, provider_model, failed_before(result)))
    message = message.model_copy(update={"response_metadata": meta})
    if _is_run_id(message.id):
        message.id = None
    return ChatResult(generations=[ChatGeneration(message=message)],
                      llm_output={"model_name": result.candidate, "cost_usd": result.cost_usd})


def our_chunk(piece: CompletionChunk, provider: dict[str, Any]) -> ChatGenerationChunk:
    """The candidate's chunk as ours; its position and model name (kept in ``provider``) move to
    our last chunk."""
    raw: AIMessageChunk = piece.raw
    meta = dict(raw.response_metadata or {})
    if meta.get("model_name"):
        provider["model"] = meta.pop("model_name")
    meta.pop("model_provider", None)
    update: dict[str, Any] = {"response_metadata": meta, "chunk_position": None}
    if _is_run_id(raw.id):
        update["id"] = None
    return ChatGenerationChunk(message=raw.model_copy(update=update))


def last_chunk(decision: RoutingDecision, result: CallResult | None, provider: dict[str, Any]) -> ChatGenerationChunk:
    """Our last chunk: the metadata of the answer (none when the stream was closed early)."""
    if result is None:
        return ChatGenerationChunk(message=AIMessageChunk(content="", chunk_position="last"))
    meta = metadata(decision, result.candidate, provider.get("model"), failed_before(result))
    return ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata=meta, chunk_position="last"))
