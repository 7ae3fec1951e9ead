"""The parts of a :class:`~mixllm_router.MixLLMRouter` that its method groups share.

``router.py`` (fit, predict, route, save/load), ``router_calls.py`` (calling) and ``router_live.py``
(pool changes, feedback, shared state) are one class split by concern; this base states once what
``MixLLMRouter.__init__`` sets and the one helper all three use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    from typing_extensions import Self

    from .candidates import CandidatePool
    from .clients.base import ChatClient
    from .clients.fallback import FallbackCaller
    from .config import RouterConfig
    from .encoders.base import QueryEncoder
    from .learning.learner import OnlineLearner
    from .model import FittedModel
    from .policy.decision import DecisionLog, RoutingDecision
    from .policy.load import LoadTracker
    from .state.base import SharedState

__all__ = ["RouterParts"]


class RouterParts:
    """What ``MixLLMRouter.__init__`` sets, declared for the method groups built on it."""

    config: RouterConfig
    model: FittedModel
    learning: OnlineLearner
    load_tracker: LoadTracker
    decisions: DecisionLog
    state: SharedState
    answer_listeners: list[Any]
    _clients: dict[str, ChatClient]
    _caller: FallbackCaller | None
    _encoder: QueryEncoder | None

    if TYPE_CHECKING:  # methods one group calls and another defines (MixLLMRouter has them all)
        @property
        def clients(self) -> Mapping[str, ChatClient]: ...

        def embed(self, queries: Sequence[str], *, show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]: ...

        def route(self, query: str, *, cost_weight: float | None = None, cost_share: float | None = None,
                  max_cost_usd: float | None = None, candidates: Sequence[str] | None = None) -> RoutingDecision: ...

        def feedback(self, key: str, score: bool | float, *, output_tokens: int | None = None,
                     latency_s: float | None = None) -> int: ...

        @property
        def encoder(self) -> QueryEncoder: ...

        def save(self, path: str | Path) -> Path: ...

        @classmethod
        def load(cls, path: str | Path, *, encoder: QueryEncoder | None = None) -> Self: ...

    @property
    def pool(self) -> CandidatePool:
        """The candidates (the fitted model's pool)."""
        return self.model.pool

    @pool.setter
    def pool(self, value: CandidatePool) -> None:
        self.model.pool = value

    def _track(self, name: str) -> None:
        """Register candidate ``name`` with the load tracker (once) at its concurrency limit."""
        if name not in self.load_tracker:
            self.load_tracker.register(name, self.pool.get(name).max_concurrency)
