"""Which candidates may serve a ``ChatMixLLM`` call, the text the router scores for it, and the
client each candidate is attached to the router with."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from mixllm_router import ClientError, MixLLMRouter
from mixllm_router.clients.base import ChatClient

__all__ = ["allowed", "client_for", "routing_text", "serves_tools", "stream_usage_kwargs"]


def routing_text(messages: Sequence[BaseMessage]) -> str:
    """The text the router scores: the last human turn (the question being asked now)."""
    for message in reversed(messages):
        if message.type == "human" and message.text:
            return message.text
    return "\n".join(m.text for m in messages if m.text)


def client_for(name: str, chat_model: BaseChatModel) -> ChatClient:
    """The router's client for a candidate: the mixllm client a ``ClientChatModel`` wraps, else
    the LangChain model itself through ``LangChainClient``."""
    from mixllm_router.clients import LangChainClient

    inner = getattr(chat_model, "client", None) if type(chat_model).__name__ == "ClientChatModel" else None
    return inner if inner is not None else LangChainClient(chat_model, model_name=name)


def serves_tools(model: BaseChatModel | None) -> bool:
    """Whether a candidate's chat model takes tools: it implements ``bind_tools`` (and, for a
    wrapped mixllm client, the client supports tools)."""
    if model is None or type(model).bind_tools is BaseChatModel.bind_tools:
        return False
    client = getattr(model, "client", None) if type(model).__name__ == "ClientChatModel" else None
    return client is None or bool(getattr(client, "supports_tools", False))


def stream_usage_kwargs(model: BaseChatModel | None) -> dict[str, Any]:
    """Ask a candidate that can report usage in streams to do so (``stream_usage=True`` for
    ChatOpenAI and others that have the field), so streamed answers are accounted too."""
    if model is not None and "stream_usage" in type(model).model_fields:
        return {"stream_usage": True}
    return {}


def allowed(router: MixLLMRouter, chat_model_of: Callable[[str], BaseChatModel | None], kwargs: Mapping[str, Any],
            pinned: str | None) -> list[str]:
    """Candidates that can serve this call: have a chat model (``chat_model_of(name)``), are the
    ones asked for (``model=`` / ``candidates=`` of the call, else the ``pinned`` model), take
    tools if tools are bound and ``response_format`` if it is given."""
    names = [n for n in router.candidate_names if chat_model_of(n) is not None]
    wanted = kwargs.get("model") or kwargs.get("candidates") or pinned
    if wanted:
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        for n in wanted:
            router.pool.get(n)  # unknown name -> UnknownCandidateError
        names = [n for n in names if n in wanted]
    if kwargs.get("tools"):
        names = [n for n in names if router.pool.get(n).supports_tools and serves_tools(chat_model_of(n))]
    if kwargs.get("response_format") is not None:
        from langchain_mixllm.structured import takes_response_format

        names = [n for n in names if takes_response_format(chat_model_of(n))]
        if not names:
            raise ClientError("no candidate takes response_format (JSON mode / json_schema): use "
                              "with_structured_output(method='function_calling')")
    if not names:
        need = " that supports tools (Candidate.supports_tools and a bind_tools model)" if kwargs.get("tools") else ""
        raise ClientError(f"no candidate{need} has a LangChain chat model: pass candidates={{name: chat_model}}")
    return names
