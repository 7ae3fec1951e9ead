"""What changes while :class:`~mixllm_router.MixLLMRouter` serves: pool changes, feedback, shared state.

Each method takes the learner's lock (``learning.lock``) so that a route in flight sees the model
before or after a change, never half of one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._exceptions import CheckpointError
from ._router_parts import RouterParts

if TYPE_CHECKING:
    from collections.abc import Mapping

    from typing_extensions import Self

    from .candidates import Candidate
    from .data import RoutingDataset
    from .state.base import SharedState

__all__ = ["LiveStateMixin"]


class LiveStateMixin(RouterParts):
    """Methods of :class:`~mixllm_router.MixLLMRouter` that change its live state; see that class."""


    # ------------------------------------------------------------------------------ pool changes
    def remove_candidate(self, name: str) -> None:
        """Stop routing to ``name``; every other candidate's state is left as it is.

        Takes ``learning.lock``, so a route in flight sees the pool before or after the removal,
        never half of it, and a feedback event for ``name`` is either applied (queued events are
        applied first) or refused with :class:`FeedbackError`, never acknowledged and dropped.
        """
        with self.learning.lock:
            self.learning.flush(self)  # queued feedback was acknowledged: apply it while its candidate exists
            self.pool.remove(name)
            self.model.predictors.pop(name, None)
            self._clients.pop(name, None)
            if name in self.load_tracker:
                self.load_tracker.unregister(name)
            self.learning.forget(name)

    def add_candidate(
        self,
        candidate: Candidate | str,
        *,
        examples: RoutingDataset | Iterable[Mapping[str, Any]] | None = None,
        prior: str | None = "similar",
    ) -> str:
        """Add a candidate to a fitted router without retraining the others.

        ``examples``: labelled outcomes for this candidate only (a RoutingDataset with its rows,
        or records ``{"query", "quality", "cost"?, "output_tokens"?}``), applied on top of the
        prior. ``prior``: ``"similar"`` (default; the candidate nearest in log prices;
        ``"mean"`` when prices are unknown), ``"mean"`` (average of all candidates),
        ``"fitted"`` (a mix of the other candidates fitted to the examples, opt-in: see
        ``mixllm_router.learning.onboarding`` and docs/scoring.md), a candidate's name, or ``None``. The prior sets the predictions; the uncertainty starts at its maximum so the
        exploration bonus ``α·u`` sends it traffic until feedback shows where it is good.
        Returns where the prior came from. See ``mixllm_router.learning.learner``.
        """
        with self.learning.lock:  # routes see the pool before or after the addition
            return self.learning.add_candidate(self, candidate, examples=examples, prior=prior)

    # ------------------------------------------------------------------------------ feedback
    def feedback(
        self,
        key: str,
        score: bool | float,
        *,
        output_tokens: int | None = None,
        latency_s: float | None = None,
    ) -> int:
        """Learn from a user's verdict on a routed answer; returns the event's sequence number.

        ``key``: ``RoutingDecision.decision_id`` or an alias (e.g. a LangChain run id).
        ``score``: ``True``/``False`` (thumbs up/down) or a grade in [0, 1]. The candidate that
        answered (after fallbacks) is taught. With ``config.learning.journal_path`` the event is
        on disk before this returns. Raises :class:`FeedbackError` for an unknown or expired
        key, a decision already rated, a removed candidate or a bad score; nothing changes then.
        """
        return self.learning.feedback(self, key, score, output_tokens=output_tokens, latency_s=latency_s).seq

    async def afeedback(
        self,
        key: str,
        score: bool | float,
        *,
        output_tokens: int | None = None,
        latency_s: float | None = None,
    ) -> int:
        """Async :meth:`feedback`: the journal write and update run in a worker thread."""
        import asyncio

        return await asyncio.to_thread(self.feedback, key, score, output_tokens=output_tokens, latency_s=latency_s)

    # ------------------------------------------------------------------------------ shared state
    def share_state(self, state: SharedState | str | None, **options: Any) -> SharedState:
        """Share load, feedback and published checkpoints with other processes (None: stop sharing).

        ``state``: a URL (``"redis://host:6379/0"``) with ``options`` for
        :class:`~mixllm_router.state.RedisState` (``namespace``, ``lease_s``, ...), or a built
        :class:`~mixllm_router.state.SharedState`. From then on every call this router makes holds
        a lease the other workers see, routing reads their leases, ``feedback`` goes to the shared
        stream for the :class:`~mixllm_router.state.FeedbackLearner`, and newer checkpoints the
        learner publishes are swapped in without a restart. Returns the state (``.status()``).
        """
        from .state import connect

        backend = connect(state, **options)
        previous = self.state
        if backend.shares_feedback:
            self.learning.flush(self)  # queued local feedback is applied here before it starts going out
        with self.learning.lock:
            for name in self.pool.names:  # so the others' leases on every candidate are heard from the start
                self._track(name)
            self.state = backend
            backend.bind(self)
            self.load_tracker.attach(backend if backend.shares_load else None)
        if previous is not backend:
            previous.close()
        return backend

    def adopt(self, other: Self) -> None:
        """Take the learnt model of ``other`` (a newer checkpoint) in one step under the lock.

        Kept: config, encoder, clients, load tracker, decision log (feedback for earlier decisions
        still works) and the shared-state binding. Replaced: pool, predictors, bank, calibration,
        and the learner's model (feedback network, applied_seq). A route holds the same lock, so
        it sees the old model or the new one, never a mix.
        """
        theirs, ours = other.model.encoder_fingerprint, self.model.encoder_fingerprint
        if theirs and ours and theirs != ours:
            raise CheckpointError(
                f"the published router was trained with encoder {theirs}, this one routes with {ours}: not swapped"
            )
        with self.learning.lock:
            removed = set(self.model.pool.names) - set(other.model.pool.names)
            self.model.take(other.model)
            self.learning.adopt(other.learning)
            for name in removed:
                self._clients.pop(name, None)

