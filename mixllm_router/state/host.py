"""What a state backend needs from the router it is bound to: :class:`StateHost`.

The state layer sits below the router: ``MixLLMRouter.share_state`` builds a backend and binds
itself to it, so the backend must not import the router back (that would make one tangle of the
two). Instead the backend states here, as protocols, the few members it uses, and works with any
object that has them; :class:`~mixllm_router.MixLLMRouter` is the one the library binds.

Turning a fetched checkpoint folder into a router is the router's job too, so a backend takes a
:class:`CheckpointLoader` (``MixLLMRouter.load`` is one). Where none is passed it uses the class of
the router it knows (``type(host).load``), else the one the router package registered at import
(:func:`register_checkpoint_loader`): a plain ``RedisState(url).fetch_checkpoint()`` in a process
that never bound a router keeps working.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from typing_extensions import Self

    from ..encoders.base import QueryEncoder
    from ..learning.journal import FeedbackEvent
    from ..policy.decision import DecisionLog
    from ..policy.load import LoadTracker

__all__ = [
    "CheckpointLoader",
    "FeedbackApplier",
    "LearnerHost",
    "StateHost",
    "default_checkpoint_loader",
    "register_checkpoint_loader",
]


class StateHost(Protocol):
    """The router a backend serves, as far as the backend is concerned."""

    @property
    def load_tracker(self) -> LoadTracker:
        """Reports this process's requests to the backend; the backend feeds it the others'."""

    @property
    def decisions(self) -> DecisionLog:
        """The backend mirrors it (``decisions.mirror``) so feedback can reach any worker."""

    @property
    def encoder(self) -> QueryEncoder:
        """A published checkpoint is loaded with the encoder this router already holds."""

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint folder (what :meth:`RedisState.publish_checkpoint` publishes)."""

    def adopt(self, other: Self) -> None:
        """Take the learnt model of a newer checkpoint in one step under the router's lock."""

    @classmethod
    def load(cls, path: str | Path, *, encoder: QueryEncoder | None = None) -> Self:
        """Load a checkpoint folder written by :meth:`save`."""


HostT_co = TypeVar("HostT_co", bound=StateHost, covariant=True)


class CheckpointLoader(Protocol[HostT_co]):
    """Turns a checkpoint folder into a router: ``loader(folder, encoder=...)``, e.g. ``MixLLMRouter.load``."""

    def __call__(self, path: Path, *, encoder: QueryEncoder | None = None) -> HostT_co: ...


class FeedbackApplier(Protocol):
    """The part of a router's online learner the :class:`~mixllm_router.state.FeedbackLearner` drives."""

    applied_seq: int

    def apply(self, router: Any, event: FeedbackEvent) -> None:
        """Apply one feedback event to ``router`` (events with ``seq <= applied_seq`` are skipped)."""


class LearnerHost(StateHost, Protocol):
    """The router a :class:`~mixllm_router.state.FeedbackLearner` teaches and publishes."""

    @property
    def learning(self) -> FeedbackApplier:
        """Its online learner (``applied_seq`` travels in every published checkpoint)."""


_default_loader: CheckpointLoader[Any] | None = None


def register_checkpoint_loader(loader: CheckpointLoader[Any]) -> None:
    """Make ``loader`` the one used where no router is known (the router package registers its own)."""
    global _default_loader
    _default_loader = loader


def default_checkpoint_loader() -> CheckpointLoader[Any] | None:
    """The loader given to :func:`register_checkpoint_loader`, None before any."""
    return _default_loader
