"""The learner: consumes the shared feedback stream, applies each event once, publishes checkpoints.

Workers that share state through Redis do not apply feedback themselves: they append it to the
stream ``{ns}:feedback`` (:meth:`RedisState.publish_feedback`). One learner process reads the stream
in a consumer group and, per batch::

    read   → apply each event (Sherman–Morrison on the candidate's ridge, the feedback network, …)
           → every publish_every events or publish_interval_s seconds:
               publish a checkpoint version (it records applied_seq)
               XACK the events it contains

Exactly once. An event is acknowledged only after a checkpoint that contains it is published. If
the learner dies in between, the events stay pending in the group; the restarted learner loads the
latest published version (``applied_seq = N``) and reads its pending entries again: those with
``seq ≤ N`` are already in the published state and are skipped (``OnlineLearner.apply`` ignores
them), the rest are applied. So the published state contains every acknowledged event exactly
once, and no event is acknowledged before it is in a published state.

One learner at a time: it holds a lease ``{ns}:learner`` (renewed each step). A second learner
with another ``consumer`` name is refused with :class:`~mixllm_router.SharedStateError` until the
lease expires; a learner restarted under the *same* name takes over at once.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._exceptions import FeedbackError, SharedStateError
from .base import SharedStateWarning
from .redis import RedisState, seq_from_stream_id

if TYPE_CHECKING:
    from .host import LearnerHost

__all__ = ["FeedbackLearner"]

# Take the learner lease if it is free or already ours.  KEYS: lease key  ARGV: owner, lease ms
_TAKE_LEASE = """
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


class FeedbackLearner:
    """Apply the shared feedback stream to ``router`` and publish the result for the workers.

    ``router`` is the learner's own copy (fitted, or loaded from a checkpoint); if a newer version
    is already published, :meth:`start` continues from that one instead. ``consumer`` names this
    learner in the consumer group ``group``. With ``trim`` the stream is cut, after each
    publication, up to the last event acknowledged (it is in the published version), so it does
    not grow without bound; pass ``trim=False`` if other consumer groups read it too.

    ``router`` is typed as a :class:`~mixllm_router.state.host.LearnerHost` (a ``MixLLMRouter``
    is one): a published version is loaded with ``type(router).load``, so the learner continues
    with a router of the class it was given.
    """

    def __init__(
        self,
        router: LearnerHost,
        state: RedisState,
        *,
        group: str = "learners",
        consumer: str = "learner",
        publish_every: int = 100,
        publish_interval_s: float = 5.0,
        batch: int = 100,
        block_ms: int = 200,
        lease_s: float = 15.0,
        trim: bool = True,
    ) -> None:
        if not isinstance(state, RedisState):
            raise TypeError("FeedbackLearner needs a RedisState")
        if publish_every < 1 or batch < 1 or block_ms < 0 or publish_interval_s <= 0 or lease_s <= 0:
            from .._exceptions import ConfigError

            raise ConfigError("publish_every and batch must be >= 1, block_ms >= 0, publish_interval_s and lease_s > 0")
        self.router = router
        self.state = state
        self.group = group
        self.consumer = consumer
        self.publish_every = int(publish_every)
        self.publish_interval_s = float(publish_interval_s)
        self.batch = int(batch)
        self.block_ms = int(block_ms)
        self.lease_ms = int(lease_s * 1000)
        self.trim = trim
        self._take_lease = state.client.register_script(_TAKE_LEASE)
        self._unacked: list[bytes] = []
        self._backlog = True  # first drain this consumer's pending entries (id "0"), then new ones (">")
        self._last_publish = time.monotonic()
        self.version = 0
        self.applied = 0  # events applied by this learner object (skipped redeliveries not counted)
        self.skipped = 0  # redelivered events already in the published state
        self.malformed = 0
        self._started = False

    # -- life cycle ------------------------------------------------------------------------------------
    def start(self) -> int:
        """Take the lease, create the group, continue from the newest published version.

        Returns the version the learner continues from (publishing the given router as the first
        version when none exists yet).
        """
        self._lease()
        self.state.connection.strict("create the consumer group", self._create_group)
        latest = self.state.latest_version()
        if latest:
            version, published = self.state.fetch_checkpoint(latest, encoder=self.router.encoder,
                                                             loader=type(self.router).load)
            if published.learning.applied_seq >= self.router.learning.applied_seq:
                self.router = published
                self.version = version
        if not self.version:
            self.version = self.state.publish_checkpoint(self.router)
        self._claim_orphans()
        self._backlog = True
        self._last_publish = time.monotonic()
        self._started = True
        return self.version

    def _create_group(self) -> None:
        """The consumer group (and the stream), reading from the start; fine if it exists."""
        try:
            self.state.client.xgroup_create(self.state.feedback_stream, self.group, id="0", mkstream=True)
        except self.state.connection.redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _lease(self) -> None:
        ok = self.state.connection.strict("take the learner lease", lambda: self._take_lease(
            keys=[self.state.key("learner")], args=[self.consumer, self.lease_ms]))
        if not ok:
            owner = self.state.client.get(self.state.key("learner"))
            raise SharedStateError(
                f"another learner ({owner.decode() if owner else '?'}) holds {self.state.key('learner')}; "
                "run one learner per namespace (its lease expires if it dies)"
            )

    def _claim_orphans(self) -> None:
        """Entries delivered to other consumer names and never acknowledged become ours."""
        def claim() -> None:
            start = "0-0"
            while True:
                reply = self.state.client.xautoclaim(self.state.feedback_stream, self.group, self.consumer,
                                                     min_idle_time=0, start_id=start, count=1000)
                start = reply[0]
                if start in (b"0-0", "0-0"):
                    return

        self.state.connection.strict("claim pending feedback", claim)

    # -- the loop --------------------------------------------------------------------------------------
    def step(self) -> int:
        """Read one batch, apply it, publish and acknowledge when due.

        Returns the entries handled (applied, skipped as already published, or malformed); 0 means
        the stream had nothing for this learner within ``block_ms``.
        """
        if not self._started:
            self.start()
        self._lease()
        stream = self.state.feedback_stream
        read_id = "0" if self._backlog else ">"
        block = None if self._backlog else self.block_ms

        def read() -> Any:
            try:
                return self.state.client.xreadgroup(self.group, self.consumer, {stream: read_id},
                                                    count=self.batch, block=block)
            except self.state.connection.redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # the stream or the group is gone (a Redis without persistence restarted): start over
                self._create_group()
                return []

        reply = self.state.connection.strict("read feedback", read)
        entries = reply[0][1] if reply else []
        if self._backlog and not entries:
            self._backlog = False
        for entry_id, fields in entries:
            if fields:  # (a pending entry deleted from the stream meanwhile has none)
                self._apply(entry_id, fields)
            self._unacked.append(entry_id)
        due = len(self._unacked) >= self.publish_every or (
            self._unacked and time.monotonic() - self._last_publish >= self.publish_interval_s)
        if due:
            self.publish()
        elif not entries and self.state.latest_version() == 0:
            self.version = self.state.publish_checkpoint(self.router)  # the store was wiped: republish
        return len(entries)

    def _apply(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        from ..learning.journal import FeedbackEvent

        learning = self.router.learning
        try:
            event = FeedbackEvent.from_json(json.loads(fields[b"event"]))
        except (KeyError, ValueError, TypeError, FeedbackError) as exc:
            self.malformed += 1
            warnings.warn(f"feedback entry {entry_id!r} is malformed and was skipped: {exc}",
                          SharedStateWarning, stacklevel=3)
            return
        event = replace(event, seq=seq_from_stream_id(entry_id))
        if event.seq <= learning.applied_seq:
            self.skipped += 1  # already in the published state (redelivered after a crash)
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a removed candidate's event: apply skips it (and counts it here)
            learning.apply(self.router, event)
        self.applied += 1

    def publish(self) -> int:
        """Publish the current state as a new version, then acknowledge what it contains."""
        self.version = self.state.publish_checkpoint(self.router)
        if self._unacked:
            ids = self._unacked
            stream = self.state.feedback_stream

            def acknowledge() -> None:
                self.state.client.xack(stream, self.group, *ids)
                if self.trim:  # everything before the last acknowledged entry is in a published version
                    self.state.client.xtrim(stream, minid=max(ids, key=seq_from_stream_id))

            self.state.connection.strict("acknowledge feedback", acknowledge)
            self._unacked = []
        self._last_publish = time.monotonic()
        return self.version

    def run(self, *, stop: threading.Event | None = None, idle_exit_s: float | None = None,
            max_events: int | None = None) -> int:
        """Loop :meth:`step` until ``stop`` is set, no event came for ``idle_exit_s`` seconds, or
        ``max_events`` were applied; publishes what is left and returns events applied.

        Connection errors are retried every ``state.settings.retry_s`` (the learner outlives a
        Redis restart); a conflicting learner raises.
        """
        idle_since = time.monotonic()
        applied_at_start = self.applied
        while not (stop is not None and stop.is_set()):
            try:
                # the first steps start the learner (publishing may take longer than idle_exit_s) and
                # drain its backlog: they have not waited for new events yet
                draining = self._backlog or not self._started
                handled = self.step()
            except SharedStateError as exc:
                if "another learner" in str(exc):
                    raise
                warnings.warn(f"learner: {exc}; retrying", SharedStateWarning, stacklevel=2)
                time.sleep(self.state.settings.retry_s)
                continue
            if handled or draining:
                idle_since = time.monotonic()
            elif idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s and not self._unacked:
                break
            if max_events is not None and self.applied - applied_at_start >= max_events:
                break
        if self._unacked:
            self.publish()
        return self.applied - applied_at_start

    @property
    def stats(self) -> dict[str, int]:
        return {"version": self.version, "applied": self.applied, "skipped": self.skipped,
                "malformed": self.malformed, "unacknowledged": len(self._unacked),
                "applied_seq": self.router.learning.applied_seq}
