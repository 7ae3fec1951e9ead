"""Wrap a plain Python function as a client: ``fn(messages) -> str | Completion``.

For local models, rule-based answerers, or glue to an SDK we do not wrap. ``fn`` receives the
normalised :class:`~mixllm_router.clients.Message` list. An ``async def`` function is awaited on
the caller's loop by ``acomplete``; a plain function runs in a worker thread there (never blocking
the loop). A ``str`` answer has no usage: token counts stay ``None`` and the caller estimates cost.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._exceptions import ConfigError
from .base import BaseChatClient, CallOptions, Completion, MessagesInput, ToolSpec, normalize_messages

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["CallableClient"]


class CallableClient(BaseChatClient):
    def __init__(self, fn: Callable[..., Any], *, model_name: str | None = None, supports_tools: bool = False) -> None:
        if not callable(fn):
            raise ConfigError(f"CallableClient needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.model = model_name or str(getattr(fn, "__name__", type(fn).__name__))
        self.supports_tools = supports_tools
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)

    def _wrap(self, value: Any) -> Completion:
        if isinstance(value, Completion):
            return value
        if isinstance(value, str):
            return Completion(text=value, model=self.model)
        raise ConfigError(f"{self.model!r} returned {type(value).__name__}; expected str or Completion")

    def _args(self, messages: MessagesInput, tools: Sequence[ToolSpec] | None,
              options: CallOptions) -> tuple[Any, dict[str, Any]]:
        """(messages, keyword arguments) for ``fn``: it gets the tools, never the options."""
        self._check_call(tools, options)
        return normalize_messages(messages), ({"tools": list(tools)} if tools else {})

    def complete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                 **options: Unpack[CallOptions]) -> Completion:
        msgs, kw = self._args(messages, tools, options)
        if self._is_async:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return self._wrap(asyncio.run(self.fn(msgs, **kw)))
            raise ConfigError(f"{self.model!r} is an async function: use acomplete() inside an event loop")
        return self._wrap(self.fn(msgs, **kw))

    async def acomplete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                        **options: Unpack[CallOptions]) -> Completion:
        msgs, kw = self._args(messages, tools, options)
        if self._is_async:
            return self._wrap(await self.fn(msgs, **kw))
        return self._wrap(await asyncio.to_thread(self.fn, msgs, **kw))
