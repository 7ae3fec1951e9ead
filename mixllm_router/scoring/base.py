"""The scorer interface: grade one response to one query in [0, 1].

Why one small interface of our own: the router learns from outcomes ``(query, model, quality)``
and almost no user has them. A scorer turns an answer into the ``quality`` the router trains on,
the same way offline (:func:`~mixllm_router.scoring.collect`) and online (scored feedback on live
traffic), whether it compares with a reference answer, checks a format, or asks another LLM.

A scorer implements :meth:`Scorer.score` (sync) and may override :meth:`Scorer.ascore` (async;
by default ``score`` runs in a worker thread so an event loop never blocks). Both return a
:class:`Score`. A response the scorer *cannot grade* (a judge's reply that does not parse, a
reference-based scorer called without its reference) is a ``Score`` whose ``value`` is ``None``
and whose ``error`` says why; it is never passed off as a 0.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import ScoringError

__all__ = ["Score", "Scorer", "as_score"]


@dataclass(frozen=True)
class Score:
    """One grade.

    ``value``: the quality in [0, 1] (1 = best), or ``None`` when the response could not be graded
    (then ``error`` holds the reason). ``rationale``: why, in words (a judge's explanation, the
    option extracted, the schema error). ``cost_usd``: what grading cost (an LLM judge's calls;
    0 for rule-based scorers), counted apart from the candidate's own cost. ``details``: anything
    else a scorer reports (the raw 1–10 rating, both orders of a pairwise judgement, ...).
    """

    value: float | None
    rationale: str | None = None
    error: str | None = None
    cost_usd: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.value is None:
            if not self.error:
                raise ScoringError("a Score without a value needs an error saying why it could not be graded")
            return
        if isinstance(self.value, bool):
            object.__setattr__(self, "value", 1.0 if self.value else 0.0)
        try:
            value = float(self.value)
        except (TypeError, ValueError):
            raise ScoringError(f"a score must be a number in [0, 1], got {self.value!r}") from None
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ScoringError(f"a score must be in [0, 1], got {self.value!r}")
        object.__setattr__(self, "value", value)

    @property
    def ok(self) -> bool:
        """Whether the response was graded (``value`` is a number)."""
        return self.value is not None

    @classmethod
    def failed(cls, reason: str, *, cost_usd: float = 0.0, **details: Any) -> Score:
        """A response that could not be graded, with the reason."""
        return cls(None, error=reason, cost_usd=cost_usd, details=details)


def as_score(value: Any) -> Score:
    """What a user function returned, as a :class:`Score`: a ``Score``, a bool, a number in
    [0, 1], ``None`` (not graded), or a pair ``(number, rationale)``."""
    if isinstance(value, Score):
        return value
    if value is None:
        return Score.failed("the scoring function returned None")
    if isinstance(value, tuple) and len(value) == 2 and (value[1] is None or isinstance(value[1], str)):
        return Score(value[0], rationale=value[1])
    if isinstance(value, (bool, int, float)) or hasattr(value, "__float__"):
        return Score(value)
    raise ScoringError(f"a scoring function must return a Score, a bool, a number in [0, 1], None or "
                       f"(number, rationale); got {type(value).__name__}")


class Scorer:
    """Base class of every scorer. Subclasses implement :meth:`score`; ``name`` labels it in
    reports; ``needs_reference`` says whether it grades against a reference answer."""

    name: str = "scorer"
    needs_reference: bool = False

    def score(self, query: str, response: str, reference: str | None = None) -> Score:
        """Grade ``response`` to ``query`` (against ``reference`` when the scorer uses one)."""
        raise NotImplementedError

    async def ascore(self, query: str, response: str, reference: str | None = None) -> Score:
        """Async :meth:`score`; by default the sync one runs in a worker thread."""
        return await asyncio.to_thread(self.score, query, response, reference)

    def _missing_reference(self, reference: str | None) -> Score | None:
        if self.needs_reference and (reference is None or not str(reference).strip()):
            return Score.failed(f"{self.name} needs a reference answer and got none")
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
