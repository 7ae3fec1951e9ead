"""Conversions between LlamaIndex chat turns / tools and the router's provider-neutral ones, and the
text a call is routed on.

Routing text: LlamaIndex fills prompt templates (a RAG ``text_qa_template`` wraps the user's
question in retrieved context and instructions) before the LLM sees them. Scoring that whole
prompt would route on the context, not on the question: "Say hello to Bob." becomes 177 tokens
of template through a query engine. ``MixLLM.predict`` and friends know the template's variables,
so they set :data:`ROUTE_ON` to the question (``query_str``, ``question``, ...) for the call they
make. Without it, a last user turn filled from one of LlamaIndex's default templates is routed on
the question it holds (:func:`question_in_prompt`), any other on its whole text.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole

__all__ = ["ROUTE_ON", "QUESTION_VARIABLES", "route_on", "to_messages", "tool_calls_of", "with_tool_calls"]

#: The text to route the current call on (set by MixLLM.predict & co.; None: the last user turn).
ROUTE_ON: ContextVar[str | None] = ContextVar("mixllm_route_on", default=None)

#: Template variables that hold the user's question, in the order they are looked for
#: (``query_str``: query engines and synthesizers; ``question``: condense-question chat engines).
QUESTION_VARIABLES = ("query_str", "question", "query", "message", "input")

_ROLES = {MessageRole.SYSTEM: "system", MessageRole.USER: "user", MessageRole.ASSISTANT: "assistant",
          MessageRole.TOOL: "tool", MessageRole.DEVELOPER: "system", MessageRole.CHATBOT: "assistant",
          MessageRole.MODEL: "assistant", MessageRole.FUNCTION: "tool"}


def question_of(prompt: Any, prompt_args: Mapping[str, Any]) -> str | None:
    """The user's question among a template's variables (those given now, and those already
    filled in with ``partial_format``, as synthesizers do with ``query_str``), if one is there."""
    values = {**(getattr(prompt, "kwargs", None) or {}), **prompt_args}
    for key in QUESTION_VARIABLES:
        value = values.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


#: Where LlamaIndex's default templates put the question, for prompts formatted before the LLM
#: sees them (condense-question chat engines call ``complete`` on a filled template).
_MARKERS = (re.compile(r"Follow Up Input:\s*(.+?)\s*\n\s*Standalone question:\s*$", re.S),
            re.compile(r"\nQuery:\s*(.+?)\s*\nAnswer:\s*$", re.S))


def question_in_prompt(text: str) -> str | None:
    """The question of a prompt filled from one of LlamaIndex's default templates, else None."""
    for marker in _MARKERS:
        found = marker.search(text)
        if found and found.group(1).strip():
            return found.group(1).strip()
    return None


@contextlib.contextmanager
def route_on(text: str | None) -> Iterator[None]:
    """Route the calls made inside on ``text`` (no change when it is None)."""
    if text is None:
        yield
        return
    token = ROUTE_ON.set(text)
    try:
        yield
    finally:
        ROUTE_ON.reset(token)


def _openai_calls(calls: Any) -> list[dict[str, Any]]:
    """Tool calls kept on an assistant turn (our dicts, or OpenAI SDK objects) in the OpenAI wire shape."""
    out = []
    for c in calls or []:
        if hasattr(c, "model_dump"):
            c = c.model_dump()
        if isinstance(c, Mapping):
            out.append(dict(c))
    return out


def to_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """LlamaIndex chat turns as the router's provider-neutral messages (text, tool calls, tool results)."""
    out = []
    for m in messages:
        role = _ROLES.get(m.role, "user")
        item: dict[str, Any] = {"role": role, "content": m.content or ""}
        if role == "assistant":
            calls = _openai_calls(m.additional_kwargs.get("tool_calls"))
            if calls:
                item["tool_calls"] = calls
                item["content"] = m.content or None
        if role == "tool":
            item["tool_call_id"] = str(m.additional_kwargs.get("tool_call_id") or "")
        out.append(item)
    return out


def with_tool_calls(calls: Sequence[Any]) -> dict[str, Any]:
    """``additional_kwargs`` of an assistant turn that made ``calls`` (mixllm ``ToolCall`` s)."""
    if not calls:
        return {}
    return {"tool_calls": [{"id": c.id, "type": "function",
                            "function": {"name": c.name, "arguments": json.dumps(c.arguments)}} for c in calls]}


def tool_calls_of(message: ChatMessage) -> list[tuple[str, str, dict[str, Any]]]:
    """``(id, name, arguments)`` of the tool calls an assistant turn carries."""
    out = []
    for c in _openai_calls(message.additional_kwargs.get("tool_calls")):
        fn = c.get("function") or {}
        raw = fn.get("arguments") or "{}"
        try:
            args = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except json.JSONDecodeError:
            args = {"_raw_arguments": raw}
        out.append((str(c.get("id") or ""), str(fn.get("name") or ""), args if isinstance(args, dict) else {}))
    return out
