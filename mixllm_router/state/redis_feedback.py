"""Feedback given at any worker reaches the one learner: shared decisions, and the feedback stream.

**Decisions.** Each decision (its embedding, the candidate that answered, tokens, cost) is copied
to ``{ns}:decision:<id>`` (and framework aliases such as LangChain run ids to ``{ns}:alias:<alias>``)
by a writer thread, so routing never waits on it, and expires after ``decision_ttl_s``. Feedback
can then arrive at any worker, not only the one that routed; about 2 KB per decision with MiniLM.

**Feedback.** ``router.feedback`` validates the event (finding the decision locally or in Redis),
then appends it to the stream ``{ns}:feedback`` instead of applying it; a marker
``{ns}:rated:<id>`` set in the same script makes "each decision is rated once" hold across
workers. The stream entry id, which Redis makes strictly increasing, gives the event its sequence
number ``seq = milliseconds · 10⁶ + counter``. One :class:`~mixllm_router.state.FeedbackLearner` consumes the
stream in a consumer group, applies each event, publishes a new checkpoint version and only then
acknowledges the events; the checkpoint carries ``applied_seq``, so an event delivered again after a
learner crash is skipped (``seq ≤ applied_seq``): every event is applied exactly once in the
published state. While Redis is unreachable, events wait in memory (``feedback_buffer``) and go
out in order when it answers again.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import TYPE_CHECKING

from .._exceptions import FeedbackError
from .redis_connection import Skipped
from .redis_settings import seq_from_stream_id

if TYPE_CHECKING:
    from ..learning.journal import FeedbackEvent
    from ..policy.decision import DecisionRecord
    from .redis_connection import RedisConnection

__all__ = ["FeedbackStream", "SharedDecisions"]

# Append a feedback event unless its decision was already rated (by any worker).
# KEYS: rated marker, feedback stream   ARGV: payload, marker ttl seconds.  Returns the entry id or false.
_FEEDBACK = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then return false end
return redis.call('XADD', KEYS[2], '*', 'event', ARGV[1])
"""

_WRITE_COALESCE_S = 0.01  # the decision writer waits this long after a wake-up before writing


class SharedDecisions:
    """This worker's decisions (and aliases), written behind to Redis; the others', read on demand.

    The writer thread runs until ``stop`` (the backend's) is set.
    """

    def __init__(self, connection: RedisConnection, stop: threading.Event) -> None:
        self._conn = connection
        self._stop = stop
        self._lock = threading.Lock()  # guards the two queues
        self._unsent_decisions: dict[str, DecisionRecord] = {}
        self._unsent_aliases: dict[str, str] = {}
        self._write = threading.Event()
        self._writer: threading.Thread | None = None

    def put(self, record: DecisionRecord) -> None:
        """Queue a copy of the decision for the writer thread (routing never waits on Redis)."""
        with self._lock:
            self._unsent_decisions[record.decision_id] = record
        self._write.set()

    def put_alias(self, alias: str, decision_id: str) -> None:
        with self._lock:
            self._unsent_aliases[alias] = decision_id
        self._write.set()

    def wake(self) -> None:
        """Have the writer write what is queued now (after an outage, or when closing)."""
        self._write.set()

    def ensure_writer(self, worker_id: str) -> None:
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._write_loop, name=f"mixllm-redis-writer-{worker_id}",
                                            daemon=True)
            self._writer.start()

    @property
    def writer(self) -> threading.Thread | None:
        return self._writer

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            if not self._write.wait(timeout=1.0):
                continue
            # gather what arrives in the next few ms into one pipeline: one round trip per burst, not
            # per route, and the routing threads are not interrupted once per decision
            self._stop.wait(_WRITE_COALESCE_S)
            self._write.clear()
            if not self._conn.is_down():
                self.write_queued()

    def write_queued(self) -> None:
        """Write the queued decisions and aliases in one pipeline; kept for the next try on failure."""
        with self._lock:
            records, self._unsent_decisions = self._unsent_decisions, {}
            aliases, self._unsent_aliases = self._unsent_aliases, {}
        if not records and not aliases:
            return
        conn = self._conn
        ttl = int(conn.settings.decision_ttl_s)

        def write() -> None:
            pipe = conn.client.pipeline(transaction=False)
            for decision_id, record in records.items():
                pipe.set(conn.key("decision", decision_id), json.dumps(record.to_json(), separators=(",", ":")), ex=ttl)
            for alias, decision_id in aliases.items():
                pipe.set(conn.key("alias", alias), decision_id, ex=ttl)
            pipe.execute()

        if isinstance(conn.guard("share decisions", write), Skipped):
            with self._lock:  # keep them for the next try, newer versions first
                self._unsent_decisions = {**records, **self._unsent_decisions}
                self._unsent_aliases = {**aliases, **self._unsent_aliases}

    def fetch(self, key: str) -> DecisionRecord | None:
        """A decision another worker made, by id or alias (None when unknown, expired or unreachable)."""
        from ..policy.decision import DecisionRecord

        conn = self._conn

        def fetch() -> bytes | None:
            target = conn.client.get(conn.key("alias", key))
            return conn.client.get(conn.key("decision", target.decode() if target else key))

        raw = conn.guard("fetch a decision", fetch)
        if isinstance(raw, Skipped) or raw is None:
            return None
        try:
            return DecisionRecord.from_json(json.loads(raw))
        except (KeyError, ValueError, TypeError) as exc:
            conn.note_error(f"malformed shared decision {key!r}: {exc}")
            return None


class FeedbackStream:
    """Appends validated feedback to ``{ns}:feedback``, buffering it in order while Redis is down."""

    def __init__(self, connection: RedisConnection) -> None:
        self._conn = connection
        self._script = connection.client.register_script(_FEEDBACK)
        self._lock = threading.Lock()  # guards the buffer
        self._buffer: deque[tuple[str, str]] = deque()  # (decision id, feedback payload) waiting for the store

    @property
    def key(self) -> str:
        return self._conn.key("feedback")

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def publish(self, event: FeedbackEvent) -> int:
        """Append the event to the shared stream; its entry id gives the sequence number.

        Raises :class:`FeedbackError` when another worker already sent feedback for the same
        decision, or when Redis is down and the buffer is full; returns 0 when buffered.
        """
        payload = json.dumps(event.to_json(), separators=(",", ":"))
        if self._buffer:  # keep the order: older buffered events go first
            self.flush()
        if not self._buffer:
            entry_id = self._conn.guard("feedback", lambda: self._append(event.decision_id, payload))
            if entry_id is None:
                raise FeedbackError(f"decision {event.decision_id} already received feedback (in some worker); "
                                    "each decision is rated once")
            if not isinstance(entry_id, Skipped):
                return seq_from_stream_id(entry_id)
        with self._lock:
            if len(self._buffer) >= self._conn.settings.feedback_buffer:
                raise FeedbackError(
                    f"Redis at {self._conn.url} is unreachable and {len(self._buffer)} feedback events are already "
                    "buffered (feedback_buffer); this one was not recorded"
                )
            self._buffer.append((event.decision_id, payload))
        return 0

    def _append(self, decision_id: str, payload: str) -> bytes | None:
        return self._script(
            keys=[self._conn.key("rated", decision_id), self.key],
            args=[payload, int(self._conn.settings.decision_ttl_s)])

    def flush(self) -> None:
        """Send the buffered events, oldest first, until the buffer is empty or the store fails."""
        while True:
            with self._lock:
                if not self._buffer:
                    return
                decision_id, payload = self._buffer[0]
            # a decision rated elsewhere meanwhile comes back None: dropped, like any double rating
            def send(d: str = decision_id, p: str = payload) -> bytes | None:
                return self._append(d, p)

            if isinstance(self._conn.guard("feedback", send), Skipped):
                return
            with self._lock:
                if self._buffer and self._buffer[0][1] is payload:
                    self._buffer.popleft()
