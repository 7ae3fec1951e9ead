"""Candidate LLMs: what the router needs to know about each one, and the pool that holds them.

A candidate is described by data only (name, prices, context window, concurrency limit, whether it
accepts tool definitions). How to *call* it is a client, attached separately (``mixllm_router.clients``)
so that a checkpoint never holds credentials or live connections.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._exceptions import ConfigError, UnknownCandidateError

__all__ = ["Candidate", "CandidatePool"]


class Candidate(BaseModel):
    """One LLM the router may choose.

    Prices are USD per million tokens, as providers publish them. The cost of a call is
    ``input_price * t_in / 1e6 + output_price * t_out / 1e6``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="Unique name; matches the `model` column of the training data.")
    input_price: float = Field(default=0.0, ge=0.0, description="USD per million prompt tokens.")
    output_price: float = Field(default=0.0, ge=0.0, description="USD per million completion tokens.")
    context_window: int = Field(default=8192, gt=0, description="Largest prompt + completion, in tokens.")
    max_concurrency: int = Field(default=8, gt=0, description="Requests the provider serves at once for us.")
    supports_tools: bool = Field(default=False, description="Accepts tool definitions and returns tool calls.")

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("candidate name must not start or end with whitespace")
        return value

    def call_cost(self, input_tokens: float, output_tokens: float) -> float:
        """USD charged for a call with these token counts."""
        return (self.input_price * input_tokens + self.output_price * output_tokens) / 1e6


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
