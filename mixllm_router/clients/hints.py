"""What an attached client can tell about its candidate: tool support and context window.

``MixLLMRouter.set_client`` fills a candidate's *unknown* metadata (``Candidate.unknown``) from
these hints and never overrides what was given. Prices are never guessed: no client knows them.

Sources, in order: an explicit ``context_window`` attribute of the client; a LangChain model's
``profile["max_input_tokens"]`` (+ ``max_output_tokens``) and ``profile["tool_calling"]``; a
LlamaIndex LLM's ``metadata.context_window`` and ``metadata.is_function_calling_model``; the
client's own ``supports_tools``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["client_metadata"]


def _inner(client: Any) -> Any:
    return getattr(client, "inner", client)  # TrackedClient wraps the user's client


def client_metadata(client: Any) -> dict[str, Any]:
    """``{"supports_tools": bool, "context_window": int}``, each only where the client knows it."""
    client = _inner(client)
    out: dict[str, Any] = {}
    window = getattr(client, "context_window", None)
    chat_model = getattr(client, "chat_model", None)  # LangChainClient
    profile = getattr(chat_model, "profile", None) if chat_model is not None else None
    if isinstance(profile, dict):
        if isinstance(profile.get("max_input_tokens"), int) and window is None:
            window = profile["max_input_tokens"] + int(profile.get("max_output_tokens") or 0)
        if profile.get("tool_calling") is False:
            out["supports_tools"] = False
    llm = getattr(client, "llm", None)  # LlamaIndexClient
    meta = getattr(llm, "metadata", None) if llm is not None else None
    if meta is not None and window is None:
        window = getattr(meta, "context_window", None)
    if isinstance(window, int) and not isinstance(window, bool) and window > 0:
        out["context_window"] = window
    tools = getattr(client, "supports_tools", None)
    if isinstance(tools, bool) and "supports_tools" not in out:
        out["supports_tools"] = tools
    return out
