"""Answer from recorded responses: the whole library runs, end to end, with no API key.

RouterBench records every model's answer to every prompt; a :class:`ReplayClient` per candidate
turns those records back into calls, so routing, calling, cost accounting and feedback can be
demonstrated and tested offline (and a routing policy can be replayed on logged traffic).

The key is the text of the last user message (the query the router scored). Token counts come from
the record when it has them; otherwise they are estimated as ``ceil(chars * tokens_per_char)``
and the completion is flagged ``usage_estimated=True`` (cost derived from it is then an estimate).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._exceptions import ConfigError, DataError, PermanentClientError
from .base import (
    BaseChatClient,
    CallOptions,
    Completion,
    MessagesInput,
    ToolSpec,
    last_user_text,
    messages_text,
    normalize_messages,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ReplayClient"]


class ReplayClient(BaseChatClient):
    """Replay ``responses`` (``{query: answer}``, answers ``str`` or :class:`Completion`, or a
    function ``query -> answer | None``) as model ``model_name``. An unknown query gets ``default``
    when given, else :class:`~mixllm_router.PermanentClientError` (retrying will not help)."""

    supports_tools = False

    def __init__(
        self,
        responses: Mapping[str, str | Completion] | Callable[[str], str | Completion | None],
        *,
        model_name: str,
        default: str | None = None,
        tokens_per_char: float = 0.25,
    ) -> None:
        if not model_name:
            raise ConfigError("ReplayClient needs a model_name")
        if tokens_per_char <= 0:
            raise ConfigError("tokens_per_char must be positive")
        if not callable(responses) and not isinstance(responses, Mapping):
            raise ConfigError("responses must be a mapping {query: answer} or a function query -> answer")
        self.model = model_name
        self.default = default
        self.tokens_per_char = float(tokens_per_char)
        self._fn = responses if callable(responses) else None
        self._map: dict[str, str | Completion] = {} if self._fn else dict(responses)  # type: ignore[arg-type]
        # Second chance for whitespace differences (a stripped prompt vs the recorded one).
        self._stripped = {k.strip(): v for k, v in self._map.items()}

    @classmethod
    def from_dataset(cls, dataset: Any, model: str, *, default: str | None = None,
                     tokens_per_char: float = 0.25) -> ReplayClient:
        """Replay ``model``'s recorded answers from a :class:`~mixllm_router.data.RoutingDataset`
        (or a pandas DataFrame in the same long format: ``query``, ``model``, ``response`` and,
        optionally, ``input_tokens`` / ``output_tokens``)."""
        frame = getattr(dataset, "frame", dataset)
        columns = getattr(frame, "columns", None)
        if columns is None or not {"query", "model"} <= set(columns):
            raise DataError("from_dataset needs a RoutingDataset or a DataFrame with 'query' and 'model' columns")
        if "response" not in columns:
            raise DataError("the dataset has no 'response' column: nothing to replay")
        rows = frame[frame["model"] == model]
        if rows.empty:
            known = sorted(set(frame["model"]))
            raise DataError(f"no rows for model {model!r} in the dataset; models: {known}")
        responses: dict[str, str | Completion] = {}
        for rec in rows.to_dict("records"):
            text = rec.get("response")
            if not isinstance(text, str):
                continue  # no recorded answer (NaN/None): the query stays unknown
            tin, tout = _int_or_none(rec.get("input_tokens")), _int_or_none(rec.get("output_tokens"))
            if tin is not None and tout is not None:
                responses[rec["query"]] = Completion(text=text, input_tokens=tin, output_tokens=tout, model=model)
            else:
                responses[rec["query"]] = text
        return cls(responses, model_name=model, default=default, tokens_per_char=tokens_per_char)

    def __len__(self) -> int:
        return len(self._map)

    def __repr__(self) -> str:
        size = "callable" if self._fn else f"{len(self._map)} responses"
        return f"ReplayClient(model={self.model!r}, {size})"

    def _lookup(self, query: str) -> str | Completion | None:
        if self._fn is not None:
            return self._fn(query)
        found = self._map.get(query)
        return found if found is not None else self._stripped.get(query.strip())

    def _estimate(self, text: str) -> int:
        return math.ceil(len(text) * self.tokens_per_char)

    def complete(self, messages: MessagesInput, *, tools: Sequence[ToolSpec] | None = None,
                 **options: Unpack[CallOptions]) -> Completion:
        self._check_call(tools, options)
        msgs = normalize_messages(messages)
        query = last_user_text(msgs)
        found = self._lookup(query)
        if found is None:
            found = self.default
        if found is None:
            raise PermanentClientError(
                f"ReplayClient({self.model!r}) has no recorded response for the query {query[:60]!r}",
                candidate=self.model,
            )
        if isinstance(found, Completion):
            out = found.model_copy()
            out.model = out.model or self.model
            if out.input_tokens is None or out.output_tokens is None:
                out.input_tokens = out.input_tokens if out.input_tokens is not None else self._estimate(messages_text(msgs))
                out.output_tokens = out.output_tokens if out.output_tokens is not None else self._estimate(out.text)
                out.usage_estimated = True
            return out
        return Completion(
            text=str(found), input_tokens=self._estimate(messages_text(msgs)), output_tokens=self._estimate(str(found)),
            finish_reason="stop", model=self.model, usage_estimated=True,
        )


def _int_or_none(value: Any) -> int | None:
    try:
        if value is None or value != value:  # NaN
            return None
        return int(value)
    except (TypeError, ValueError):
        return None
