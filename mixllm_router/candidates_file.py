"""The candidates file: prices, context window, tool support, concurrency and client of each candidate.

A router trained from recorded outcomes knows each model's name and nothing else. The
candidates file says the rest, once, for ``mixllm train --candidates FILE`` (and ``mixllm
collect``). TOML (``.toml``; stdlib ``tomllib`` on Python 3.11+, ``tomli`` on 3.10) or JSON
(``.json``)::

    # candidates.toml
    [[candidates]]
    name = "gpt-4o"              # the `model` of the training data
    input_price = 2.5            # USD per million prompt tokens
    output_price = 10.0          # USD per million completion tokens
    context_window = 128000      # prompt + completion, tokens
    max_concurrency = 16         # requests the provider serves at once for us
    supports_tools = true

    [candidates.client]          # optional: how to call it
    kind = "openai"              # "openai" (any OpenAI-compatible server) or "anthropic"
    model = "gpt-4o-2024-08-06"  # default: the candidate's name
    base_url = "http://127.0.0.1:8000/v1"
    api_key_env = "OPENAI_API_KEY"   # the *name* of the variable; keys never go in the file
    timeout = 60

JSON holds the same, ``{"candidates": [{...}, ...]}`` (or the bare list). Every field but
``name`` is optional; a field left out stays *unknown* (``Candidate.unknown``), which is not the
same as zero: unknown prices warn when a cost is computed. Unknown keys, bad values and duplicate
names are a :class:`~mixllm_router.ConfigError` that names the file and the entry.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._exceptions import ConfigError
from .candidates import Candidate

if TYPE_CHECKING:
    from .clients.base import ChatClient
    from .router import MixLLMRouter

__all__ = ["CandidateEntry", "CandidatesFile", "ClientSpec", "load_candidates", "parse_candidates"]


class ClientSpec(BaseModel):
    """How to call a candidate: an SDK client of the library, configured without secrets."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["openai", "anthropic"]
    model: str | None = Field(default=None, min_length=1, description="Provider model id; default: the name.")
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, min_length=1, description="Environment variable with the key.")
    timeout: float | None = Field(default=None, gt=0)

    def build(self, name: str) -> ChatClient:
        """The client (``OpenAIClient`` / ``AnthropicClient``); the key is read from the environment."""
        kwargs: dict[str, Any] = {"base_url": self.base_url}
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigError(f"candidate {name!r}: ${self.api_key_env} is not set")
            kwargs["api_key"] = key
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        if self.kind == "openai":
            from .clients.openai import OpenAIClient

            return OpenAIClient(self.model or name, **kwargs)
        from .clients.anthropic import AnthropicClient

        return AnthropicClient(self.model or name, **kwargs)


class CandidateEntry(BaseModel):
    """One ``[[candidates]]`` entry: :class:`~mixllm_router.Candidate`'s fields plus a client."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    input_price: float | None = Field(default=None, ge=0.0)
    output_price: float | None = Field(default=None, ge=0.0)
    context_window: int | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, gt=0)
    supports_tools: bool | None = None
    client: ClientSpec | None = None

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("must not start or end with whitespace")
        return value

    def metadata(self) -> dict[str, Any]:
        """The metadata this entry gives (unset fields left out, so they stay unknown).

        One price given means the other is 0 (a model free on one side).
        """
        out = {k: v for k, v in self.model_dump(exclude={"name", "client"}).items() if v is not None}
        if "input_price" in out or "output_price" in out:
            out.setdefault("input_price", 0.0)
            out.setdefault("output_price", 0.0)
        return out

    def to_candidate(self) -> Candidate:
        from .candidates import _GROUP_KEYS, METADATA_FIELDS

        meta = self.metadata()
        unknown = tuple(g for g in METADATA_FIELDS if not any(k in meta for k in _GROUP_KEYS[g]))
        return Candidate(name=self.name, unknown=unknown, **meta)  # explicit: never read as a legacy dump


class CandidatesFile(BaseModel):
    """A parsed candidates file: entries in file order, names unique."""

    model_config = ConfigDict(extra="forbid")

    candidates: list[CandidateEntry] = Field(min_length=1)

    @field_validator("candidates")
    @classmethod
    def _unique(cls, value: list[CandidateEntry]) -> list[CandidateEntry]:
        seen: set[str] = set()
        for entry in value:
            if entry.name in seen:
                raise ValueError(f"candidate {entry.name!r} appears twice")
            seen.add(entry.name)
        return value

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.candidates]

    def to_candidates(self) -> list[Candidate]:
        return [e.to_candidate() for e in self.candidates]

    def clients(self) -> dict[str, ChatClient]:
        """A client per entry that names one (built now; keys from the environment)."""
        return {e.name: e.client.build(e.name) for e in self.candidates if e.client is not None}

    def apply(self, router: MixLLMRouter, *, attach_clients: bool = False) -> list[str]:
        """Set the metadata of the router's candidates from this file (``update_candidate``).

        Entries the router does not have are skipped and returned, so a caller can report them.
        With ``attach_clients`` the clients the file describes are attached too.
        """
        missing = []
        for entry in self.candidates:
            if entry.name not in router.pool:
                missing.append(entry.name)
                continue
            meta = entry.metadata()
            if meta:
                router.update_candidate(entry.name, **meta)
            if attach_clients and entry.client is not None:
                router.set_client(entry.name, entry.client.build(entry.name))
        return missing


def _where(loc: tuple[Any, ...], data: Any) -> str:
    """``candidates[1] ('gpt-4o').input_price`` for a pydantic error location."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            name = node[item].get("name") if isinstance(node, list) and item < len(node) and isinstance(
                node[item], Mapping) else None
            parts[-1] += f"[{item}]" + (f" ({name!r})" if name else "")
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, Mapping) else None
    return ".".join(parts)


def parse_candidates(data: Any, *, source: str = "candidates") -> CandidatesFile:
    """Validate already-decoded data (a mapping with ``candidates``, or the bare list)."""
    if isinstance(data, list):
        data = {"candidates": data}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a table with a 'candidates' list, got {type(data).__name__}")
    try:
        return CandidatesFile.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{source}: {_where(first['loc'], data) or 'file'}: {first['msg']}") from None


def _read_toml(text: str, source: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise ConfigError(f"{source}: reading TOML on Python 3.10 needs tomli (pip install tomli)") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None


def load_candidates(path: str | Path) -> CandidatesFile:
    """Read and validate a candidates file (``.toml`` or ``.json``; see the module docstring)."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no candidates file at {source}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the candidates file {source}: {exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        data = _read_toml(text, source)
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not valid JSON: {exc}") from None
    else:
        raise ConfigError(f"{source}: a candidates file ends in .toml or .json")
    return parse_candidates(data, source=source)
