"""What the checkpoint code needs from the router it saves or rebuilds, stated as a protocol.

The checkpoint layer sits below the :class:`~mixllm_router.MixLLMRouter` façade: it serialises the
fitted model (:class:`~mixllm_router.model.FittedModel`), the config and the learner's state, and
rebuilds a router through the class it is given, so it never imports the router module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..learning.host import LearnerHost

if TYPE_CHECKING:
    from ..config import RouterConfig
    from ..encoders.base import QueryEncoder
    from ..learning.learner import OnlineLearner

__all__ = ["CheckpointHost"]


class CheckpointHost(LearnerHost, Protocol):
    """A router as a checkpoint sees it: config, fitted model, learner and encoder (and what the
    learner needs, since its state is saved and restored through it)."""

    config: RouterConfig
    learning: OnlineLearner

    def __init__(self, *, config: Any = None, encoder: QueryEncoder | None = None) -> None: ...

    @property
    def encoder(self) -> QueryEncoder:
        """The encoder, built from ``config.encoder`` when none was given."""
        ...

    @property
    def built_encoder(self) -> QueryEncoder | None:
        """The encoder if one was given or already built; None, without building one, otherwise."""
        ...
