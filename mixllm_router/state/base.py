"""Where a router's live state lives: in this process (the default), or shared between processes.

A router's *live* state is what changes while it serves: the requests in flight per candidate and
their service times (the latency penalty's input), the feedback users give, and the learnt model
that feedback updates. One process keeps all of it in memory (:class:`InProcessState`). Several
worker processes, on one machine or many, need one view of it, or each worker believes the others'
traffic does not exist and they all pile onto the same "idle" candidate; and feedback given to one
worker must teach all of them. :class:`~mixllm_router.state.RedisState` shares it through Redis.

The interface (:class:`SharedState`) has three parts:

- **load** (:class:`~mixllm_router.policy.load.LoadSharing`): ``started`` / ``finished`` for each request
  of this process, ``sync`` to bring in the others';
- **feedback**: ``publish_feedback`` hands a validated event to the shared stream instead of
  applying it here, when :attr:`SharedState.shares_feedback` is true;
- **checkpoints**: a learner publishes new versions, workers pick them up without restarting.

Implementations never raise on the routing path: when the shared store is unreachable they fall
back to local state and say so (:meth:`SharedState.status`, a :class:`SharedStateWarning`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..learning.journal import FeedbackEvent
    from ..policy.load import LoadTicket, LoadTracker
    from .host import StateHost

__all__ = ["InProcessState", "SharedState", "SharedStateWarning", "StateStatus"]


class SharedStateWarning(RuntimeWarning):
    """The shared state became unreachable (routing goes on with local state) or came back."""


@dataclass
class StateStatus:
    """What a state backend reports about itself (for logs, metrics and health checks)."""

    backend: str
    connected: bool
    #: times the store became unreachable since this object was created
    outages: int = 0
    #: operations that failed and were skipped or deferred
    errors: int = 0
    last_error: str | None = None
    #: feedback events waiting for the store to come back
    buffered_feedback: int = 0
    #: checkpoint version this process routes with (0: the one it started with)
    checkpoint_version: int = 0
    #: requests of other processes seen in flight at the last sync, per candidate
    remote_in_flight: Mapping[str, int] | None = None
    #: times the store was seen to have lost this namespace's state (restarted empty, or restored
    #: from an older snapshot): its epoch changed, or its latest version fell below ours
    store_resets: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SharedState:
    """Base class of state backends; the in-process default overrides nothing of substance.

    A backend is bound to one router with :meth:`bind` (``MixLLMRouter.share_state`` does it);
    the router's :class:`~mixllm_router.policy.load.LoadTracker` then reports to it through the
    :class:`~mixllm_router.policy.load.LoadSharing` methods below. A backend knows the router only
    as a :class:`~mixllm_router.state.host.StateHost`: this layer never imports the router.
    """

    #: True when the load tracker should report to this state (``started``/``finished``/``sync``).
    shares_load: bool = False
    #: True when feedback goes to the shared store (and a learner) instead of being applied here.
    shares_feedback: bool = False

    def bind(self, host: StateHost) -> None:
        """Attach to ``host``, the router (its load tracker reports here from now on)."""

    def close(self) -> None:
        """Release connections and background threads; the router then runs on local state."""

    # -- load (LoadSharing) ------------------------------------------------------------------------
    def started(self, ticket: LoadTicket) -> None:
        """A request of this process started."""

    def finished(self, ticket: LoadTicket, service_s: float | None, output_tokens: float | None,
                 ttft_s: float | None) -> None:
        """A request of this process ended (``service_s`` None: it failed)."""

    def sync(self, tracker: LoadTracker) -> None:
        """Bring other processes' requests and finishes into ``tracker``."""

    # -- feedback ------------------------------------------------------------------------------------
    def publish_feedback(self, event: FeedbackEvent) -> int:
        """Hand a validated event to the shared stream; returns its sequence number (0: buffered).

        Only called when :attr:`shares_feedback` is true.
        """
        raise NotImplementedError(f"{type(self).__name__} does not share feedback")

    # -- status ----------------------------------------------------------------------------------------
    def status(self) -> StateStatus:
        return StateStatus(backend="in-process", connected=True)


class InProcessState(SharedState):
    """The default: load, feedback and the learnt model live in this router object only.

    Nothing is shared and nothing can be unreachable; feedback is applied (and journaled, with
    ``learning.journal_path``) by the router itself.
    """

    def __repr__(self) -> str:
        return "InProcessState()"
