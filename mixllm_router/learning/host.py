"""What the learner needs from the router it serves, stated as protocols (the learner never imports
the router)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from ..model import FittedModel
    from ..policy.decision import DecisionLog
    from ..policy.load import LoadTracker
    from .journal import FeedbackEvent

__all__ = ["FeedbackSink", "LearnerHost"]


class FeedbackSink(Protocol):
    """Where feedback goes when workers share it (a :class:`~mixllm_router.state.SharedState`)."""

    @property
    def shares_feedback(self) -> bool: ...

    def publish_feedback(self, event: FeedbackEvent) -> int: ...


class LearnerHost(Protocol):
    """What the learner needs from the router it serves: the fitted model it updates, the decision
    log feedback is keyed on, where shared feedback goes, the load tracker a call's latency feeds,
    and the encoder (through ``embed``) for labelled examples of a new candidate."""

    model: FittedModel
    decisions: DecisionLog
    load_tracker: LoadTracker

    @property
    def state(self) -> FeedbackSink: ...

    def embed(self, queries: Sequence[str], *, show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]: ...
