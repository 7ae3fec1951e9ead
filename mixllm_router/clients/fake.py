"""A scripted client shipped in the library, for tests and docs (like httpx's ``MockTransport``).

``FakeClient("hi")`` always answers ``"hi"``. A list is played in order, one item per call::

    FakeClient(["first", TransientClientError("429"), Completion(text="x", input_tokens=3, output_tokens=1)])

Items: a ``str``; a :class:`Completion`; an exception instance or class (raised); a list of
``str`` pieces (streamed one chunk each; an exception inside the list breaks the stream there,
``complete`` raises it); or a function ``messages -> item``. ``script`` may itself be such a
function. Every call is recorded in ``calls`` (messages and keyword arguments).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .._exceptions import PermanentClientError
from .base import (
    BaseChatClient,
    CallOptions,
    Completion,
    CompletionChunk,
    Message,
    MessagesInput,
    ToolSpec,
    estimate_tokens,
    messages_text,
    normalize_messages,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["FakeClient"]


class FakeClient(BaseChatClient):
    def __init__(
        self,
        script: Any,
        *,
        model_name: str = "fake",
        supports_tools: bool = True,
        report_usage: bool = True,
        cycle: bool = False,
        latency_s: float = 0.0,
    ) -> None:
        self.model = model_name
        self.supports_tools = supports_tools
        self.report_usage = report_usage
        self.cycle = cycle
        self.latency_s = latency_s
        self._fn: Callable[[list[Message]], Any] | None = None
        self._items: list[Any] = []
        if callable(script) and not isinstance(script, type):
            self._fn = script
        elif isinstance(script, (str, Completion)):
            self._items, self.cycle = [script], True
        else:
            self._items = list(script)
        self._next = 0
        self._lock = threading.Lock()
        self.calls: list[tuple[list[Message], dict[str, Any]]] = []

    def _take(self, msgs: list[Message], kwargs: dict[str, Any]) -> Any:
        with self._lock:
            self.calls.append((msgs, kwargs))
            if self._fn is not None:
                item = self._fn(msgs)
            else:
                if self._next >= len(self._items):
                    if not self.cycle or not self._items:
                        raise PermanentClientError(f"FakeClient({self.model!r}): script exhausted after "
                                                   f"{len(self._items)} call(s)", candidate=self.model)
                    self._next = 0
                item = self._items[self._next]
                self._next += 1
        if callable(item) and not isinstance(item, type):
            item = item(msgs)
        return item

    def _start(self, messages: MessagesInput, tools: Sequence[ToolSpec] | None,
               options: CallOptions) -> tuple[list[Message], Any]:
        """What every call does first: check and record it, take the next item, wait ``latency_s``."""
        given = self._check_call(tools, options)
        msgs = normalize_messages(messages)
        item = self._take(msgs, {"tools": tools, **given})
        if self.latency_s:
            time.sleep(self.latency_s)
        return msgs, item

    def _completion(self, text: str, msgs: list[Message]) -> Completion:
        if not self.report_usage:
            return Completion(text=text, model=self.model, finish_reason="stop")
        return Completion(text=text, model=self.model, finish_reason="stop",
                          input_tokens=estimate_tokens(messages_text(msgs)), output_tokens=estimate_tokens(text))

    @staticmethod
    def _raise_if_error(item: Any) -> None:
        if isinstance(item, BaseException) or (isinstance(item, type) and issubclass(item, BaseException)):
            raise item

    def complete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                 **options: Unpack[CallOptions]) -> Completion:
        msgs, item = self._start(messages, tools, options)
        self._raise_if_error(item)
        if isinstance(item, Completion):
            return item.model_copy()
        if isinstance(item, list):
            for piece in item:
                self._raise_if_error(piece)
            return self._completion("".join(item), msgs)
        return self._completion(str(item), msgs)

    def stream(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
               **options: Unpack[CallOptions]) -> Iterator[CompletionChunk]:
        msgs, item = self._start(messages, tools, options)
        self._raise_if_error(item)
        if isinstance(item, Completion):
            yield CompletionChunk(text=item.text, input_tokens=item.input_tokens, output_tokens=item.output_tokens,
                                  model=item.model, finish_reason=item.finish_reason)
            return
        pieces = item if isinstance(item, list) else [w for w in str(item).split(" ")]
        sep = "" if isinstance(item, list) else " "
        text = []
        for i, piece in enumerate(pieces):
            self._raise_if_error(piece)
            piece = piece if i == 0 else sep + piece
            text.append(piece)
            yield CompletionChunk(text=piece, model=self.model)
        done = self._completion("".join(text), msgs)
        yield CompletionChunk(input_tokens=done.input_tokens, output_tokens=done.output_tokens, finish_reason="stop")
