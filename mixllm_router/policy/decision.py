"""What a routing decision says, in a form a person (and a log line) can read."""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

__all__ = ["CandidateScore", "DecisionLog", "DecisionMirror", "DecisionRecord", "RoutingDecision", "new_decision_id"]


def new_decision_id() -> str:
    """A random id that identifies one decision (feedback is keyed on it)."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class CandidateScore:
    """Every term of the meta score of one candidate for one query."""

    name: str
    quality: float
    cost_usd: float
    uncertainty: float
    wait_s: float
    penalty: float
    feedback: float
    score: float
    eligible: bool
    reason: str = ""  # why a candidate was not eligible


@dataclass(frozen=True)
class RoutingDecision:
    """The chosen candidate and the scores of all of them.

    ``ranking`` lists eligible candidates best first: the order a caller falls back in.
    """

    decision_id: str
    chosen: str
    scores: tuple[CandidateScore, ...]
    cost_weight: float
    query_tokens: int
    created_at: float
    query: str = field(default="", repr=False)
    ranking: tuple[str, ...] = ()

    def score_of(self, name: str) -> CandidateScore:
        for s in self.scores:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def predicted_quality(self) -> float:
        return self.score_of(self.chosen).quality

    @property
    def predicted_cost_usd(self) -> float:
        return self.score_of(self.chosen).cost_usd

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``-inf`` scores become ``None``); the query text is left out."""
        out = asdict(self)
        out.pop("query")
        for s in out["scores"]:
            if not math.isfinite(s["score"]):
                s["score"] = None
        out["scores"] = list(out["scores"])
        out["ranking"] = list(out["ranking"])
        return out

    def explain(self) -> str:
        """A small table: one line per candidate, the chosen one marked with ``*``."""
        lines = [
            f"decision {self.decision_id[:8]}  λ={self.cost_weight:g} USD⁻¹  prompt≈{self.query_tokens} tokens",
            f"  {'candidate':<36} {'quality':>7} {'cost $':>10} {'unc.':>6} {'wait s':>7} {'score':>8}",
        ]
        for s in sorted(self.scores, key=lambda s: -s.score if math.isfinite(s.score) else math.inf):
            mark = "*" if s.name == self.chosen else " "
            score = f"{s.score:8.4f}" if math.isfinite(s.score) else f"{'—':>8}"
            note = f"  ({s.reason})" if s.reason else ""
            lines.append(
                f"{mark} {s.name:<36} {s.quality:7.3f} {s.cost_usd:10.6f} {s.uncertainty:6.3f} "
                f"{s.wait_s:7.2f} {score}{note}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.explain()


@dataclass
class DecisionRecord:
    """What the router remembers of a recent decision, so feedback can be applied to it later.

    ``answered_by`` is the candidate that actually produced the answer (it differs from
    ``chosen`` after a fallback); feedback teaches that candidate.
    """

    decision_id: str
    chosen: str
    embedding: Any  # np.ndarray (d,), float32
    input_tokens: float
    created_at: float
    answered_by: str | None = None
    output_tokens: int | None = None
    latency_s: float | None = None
    cost_usd: float | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form (the embedding as base64 little-endian float32), for a shared store."""
        import base64

        import numpy as np

        d = asdict(self)
        d["embedding"] = base64.b64encode(np.ascontiguousarray(self.embedding, dtype="<f4").tobytes()).decode("ascii")
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DecisionRecord:
        """Inverse of :meth:`to_json`; raises KeyError/ValueError/TypeError on a malformed record."""
        import base64

        import numpy as np

        fields = dict(d)
        fields["embedding"] = np.frombuffer(base64.b64decode(fields["embedding"]), dtype="<f4").astype(np.float32)
        return cls(**fields)


class DecisionMirror(Protocol):
    """A store shared by several processes that keeps a copy of each decision (see DecisionLog)."""

    def put_decision(self, record: DecisionRecord) -> None:
        """Store (or overwrite) a decision; may be written behind, must not raise."""

    def put_alias(self, alias: str, decision_id: str) -> None:
        """Store an alias of a decision; must not raise."""

    def fetch_decision(self, key: str) -> DecisionRecord | None:
        """A decision by id or alias stored by any process, or None; must not raise."""


class DecisionLog:
    """A bounded, thread-safe map of recent decisions (oldest evicted first).

    Aliases let a framework's own ids (a LangChain ``run_id``, a LlamaIndex event id) find the
    decision they belong to.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        import threading
        from collections import OrderedDict

        self.capacity = capacity
        self._records: OrderedDict[str, DecisionRecord] = OrderedDict()
        self._aliases: dict[str, str] = {}
        self._lock = threading.Lock()
        #: a shared copy (set by a shared state): writes go through to it, local misses are looked up there
        self.mirror: DecisionMirror | None = None

    def add(self, record: DecisionRecord) -> None:
        with self._lock:
            self._records[record.decision_id] = record
            while len(self._records) > self.capacity:
                old_id, _ = self._records.popitem(last=False)
                for alias in [a for a, d in self._aliases.items() if d == old_id]:
                    del self._aliases[alias]
        mirror = self.mirror
        if mirror is not None:
            mirror.put_decision(record)

    def alias(self, alias: str, decision_id: str) -> None:
        with self._lock:
            known = decision_id in self._records
            if known:
                self._aliases[str(alias)] = decision_id
        mirror = self.mirror
        if known and mirror is not None:
            mirror.put_alias(str(alias), decision_id)

    def get(self, key: str) -> DecisionRecord | None:
        """The decision with this id or alias: this process's first, then the shared copy's."""
        key = str(key)
        with self._lock:
            decision_id = self._aliases.get(key, key)
            record = self._records.get(decision_id)
        mirror = self.mirror
        if record is None and mirror is not None:
            record = mirror.fetch_decision(key)
        return record

    def update(self, decision_id: str, **fields: Any) -> None:
        with self._lock:
            record = self._records.get(decision_id)
            if record is not None:
                for k, v in fields.items():
                    setattr(record, k, v)
        mirror = self.mirror
        if record is not None and mirror is not None:
            mirror.put_decision(record)

    def __len__(self) -> int:
        return len(self._records)
