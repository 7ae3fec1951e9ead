"""Candidate LLMs: what the router needs to know about each one, and the pool that holds them.

A candidate is described by data only (name, prices, context window, concurrency limit, whether it
accepts tool definitions). How to *call* it is a client, attached separately (``mixllm_router.clients``)
so that a checkpoint never holds credentials or live connections.

What was never said about a candidate is *unknown*, not zero: ``Candidate(name="gpt-4o")`` has
``unknown == ("context_window", "max_concurrency", "prices", "supports_tools")``. An unknown
field keeps its conservative default (prices 0, 8192 tokens, 8 requests, no tools), may be filled
from the client attached later (``MixLLMRouter.set_client``: tool support, context window) or set
with ``MixLLMRouter.update_candidate``, and unknown prices raise an :class:`UnknownPriceWarning`
when a cost is computed from them, instead of a silent $0.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ._exceptions import ConfigError, UnknownCandidateError

__all__ = ["Candidate", "CandidatePool", "UnknownPriceWarning", "METADATA_FIELDS"]

#: Field groups that may be unknown (``Candidate.unknown``); "prices" covers both prices.
METADATA_FIELDS = ("prices", "context_window", "max_concurrency", "supports_tools")
_GROUP_KEYS = {"prices": ("input_price", "output_price"), "context_window": ("context_window",),
               "max_concurrency": ("max_concurrency",), "supports_tools": ("supports_tools",)}


class UnknownPriceWarning(UserWarning):
    """A cost was computed for a candidate whose prices were never given (it counts as $0)."""


class Candidate(BaseModel):
    """One LLM the router may choose.

    Prices are USD per million tokens, as providers publish them. The cost of a call is
    ``input_price * t_in / 1e6 + output_price * t_out / 1e6``. ``unknown`` lists the metadata
    never given (see the module docstring); it is computed from the arguments unless passed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="Unique name; matches the `model` column of the training data.")
    input_price: float = Field(default=0.0, ge=0.0, description="USD per million prompt tokens.")
    output_price: float = Field(default=0.0, ge=0.0, description="USD per million completion tokens.")
    context_window: int = Field(default=8192, gt=0, description="Largest prompt + completion, in tokens.")
    max_concurrency: int = Field(default=8, gt=0, description="Requests the provider serves at once for us.")
    supports_tools: bool = Field(default=False, description="Accepts tool definitions and returns tool calls.")
    unknown: tuple[str, ...] = Field(default=(), description="Metadata never given: " + ", ".join(METADATA_FIELDS))

    @model_validator(mode="before")
    @classmethod
    def _find_unknown(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "unknown" in data:
            return data
        given = set(data)
        if given >= {"input_price", "output_price", "context_window", "max_concurrency", "supports_tools"}:
            # a checkpoint written before `unknown` existed dumps every field: values equal to the
            # defaults are what `fit` gave every candidate of the data, so they count as unknown
            # (pass unknown=() to declare a candidate whose every field is at its default)
            defaults = {"input_price": 0.0, "output_price": 0.0, "context_window": 8192, "max_concurrency": 8,
                        "supports_tools": False}
            given = {k for k in given if k not in defaults or data[k] != defaults[k]}
            if "input_price" in given or "output_price" in given:
                given |= {"input_price", "output_price"}
        unknown = tuple(g for g in METADATA_FIELDS if not any(k in given for k in _GROUP_KEYS[g]))
        return {**data, "unknown": unknown}

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("candidate name must not start or end with whitespace")
        return value

    @field_validator("unknown")
    @classmethod
    def _known_groups(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if v not in METADATA_FIELDS]
        if bad:
            raise ValueError(f"unknown= may list only {METADATA_FIELDS}, got {bad}")
        return tuple(g for g in METADATA_FIELDS if g in value)

    @property
    def prices_known(self) -> bool:
        return "prices" not in self.unknown

    def call_cost(self, input_tokens: float, output_tokens: float) -> float:
        """USD charged for a call with these token counts (0 with an :class:`UnknownPriceWarning`
        when the prices are unknown)."""
        if not self.prices_known:
            _warn_unknown_price(self.name)
        return (self.input_price * input_tokens + self.output_price * output_tokens) / 1e6

    def updated(self, **fields: Any) -> Candidate:
        """A copy with ``fields`` changed and validated; the groups they touch become known.

        Raises :class:`ConfigError` for a field that does not exist or a bad value.
        """
        for key in ("name", "unknown"):
            if key in fields:
                raise ConfigError(f"{key} cannot be updated")
        touched = {g for g in METADATA_FIELDS if any(k in fields for k in _GROUP_KEYS[g])}
        data = {**self.model_dump(), **fields, "unknown": tuple(g for g in self.unknown if g not in touched)}
        return _validated(data)

    def spec(self) -> dict[str, Any]:
        """The fields that were given (what a candidates file would say), without the unknown ones."""
        skip = {k for g in self.unknown for k in _GROUP_KEYS[g]} | {"unknown"}
        return {k: v for k, v in self.model_dump().items() if k not in skip}


def _validated(data: dict[str, Any]) -> Candidate:
    try:
        return Candidate.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "candidate"
        raise ConfigError(f"candidate {data.get('name')!r}: {where}: {first['msg']}") from None


_WARNED: set[str] = set()


def _warn_unknown_price(name: str) -> None:
    """Warn once per process per candidate: its costs are counted as $0."""
    if name in _WARNED:
        return
    _WARNED.add(name)
    warnings.warn(
        f"candidate {name!r} has no prices: its calls are counted as $0. Give them in a candidates file "
        f"(`mixllm train --candidates FILE`), with router.update_candidate({name!r}, input_price=..., "
        "output_price=...), or Candidate(..., input_price=0, output_price=0) for a free model",
        UnknownPriceWarning, stacklevel=3,
    )


class CandidatePool:
    """An ordered set of candidates keyed by name (insertion order is kept)."""

    def __init__(self, candidates: Iterable[Candidate | str] = ()) -> None:
        self._by_name: dict[str, Candidate] = {}
        for candidate in candidates:
            self.add(candidate)

    def add(self, candidate: Candidate | str) -> Candidate:
        if isinstance(candidate, str):
            candidate = Candidate(name=candidate)
        if not isinstance(candidate, Candidate):
            raise ConfigError(f"expected a Candidate or a name, got {type(candidate).__name__}")
        if candidate.name in self._by_name:
            raise ConfigError(f"candidate {candidate.name!r} is already in the pool")
        self._by_name[candidate.name] = candidate
        return candidate

    def replace(self, candidate: Candidate) -> Candidate:
        """Put ``candidate`` in the place of the one with its name (which must exist)."""
        self.get(candidate.name)
        self._by_name[candidate.name] = candidate
        return candidate

    def remove(self, name: str) -> Candidate:
        try:
            return self._by_name.pop(name)
        except KeyError:
            raise UnknownCandidateError(f"no candidate named {name!r}; known: {self.names}") from None

    def get(self, name: str) -> Candidate:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownCandidateError(f"no candidate named {name!r}; known: {self.names}") from None

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Candidate]:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"CandidatePool({self.names!r})"
