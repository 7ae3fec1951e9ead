"""Routing state shared by worker processes (and machines) through Redis.

What is shared, and how
-----------------------
**Requests in flight.** Each request a worker sends takes a *lease* in a sorted set per candidate,
``{ns}:inflight:<candidate>``, scored by its expiry on the Redis server's clock, with its start time
and expected length in the hash ``{ns}:inflight-info:<candidate>``. A heartbeat thread renews the
worker's live leases every ``lease_s / 3``; a finished request deletes its lease. A worker that dies
mid-request stops renewing, so its load is gone within ``lease_s`` (the sync script drops expired
leases). Before routing, a worker reads every other worker's live leases (one Lua script, one round
trip) and feeds them to its :class:`~mixllm_router.policy.load.LoadTracker` with their real ages: the
waiting time ``W_l`` and the penalty ``P_l`` then count the whole deployment's traffic, not one
process's. All times are the Redis server's (``TIME``), so machines need no synchronised clocks.

**Service times.** Each finished request is appended to a capped stream ``{ns}:service:<candidate>``;
workers read the others' entries and learn from them as if they had served them (the service
estimate and the recent finishes of the residual-time rule).

**Decisions and feedback.** Each decision is copied to Redis behind the route, so feedback can
arrive at any worker; feedback goes to one stream, rated once per decision across workers, and one
:class:`~mixllm_router.state.FeedbackLearner` applies it exactly once in the published state.
How: :mod:`mixllm_router.state.redis_feedback`.

**Checkpoints.** A learner publishes versions of an ordinary checkpoint folder; workers poll for
a newer one with the sync and swap it in without restarting, and notice a store that lost its
state. How: :mod:`mixllm_router.state.redis_checkpoints`.

When Redis is unreachable
-------------------------
Every call on the routing path is guarded: a connection error marks the store down for
``retry_s``, emits one :class:`~mixllm_router.state.SharedStateWarning` per outage, and routing
continues on this process's own load (remote leases are forgotten rather than trusted stale).
Feedback is buffered in memory (up to ``feedback_buffer`` events; beyond that ``feedback`` raises
:class:`~mixllm_router.FeedbackError`). When the store answers again, the heartbeat re-takes every
live lease, flushes the buffered feedback in order and syncs: the state converges. What an outage
can lose: buffered feedback of a worker that dies before Redis returns, and anything Redis itself
did not persist (run it with ``appendonly yes`` for durable feedback).

Keys sit under ``{namespace}`` in braces, a Redis Cluster hash tag, so one deployment's keys live
in one slot and the scripts may touch them together.

Where the parts live: the options and sequence numbers in :mod:`~mixllm_router.state.redis_settings`,
the client, the keys and the connection guard in :mod:`~mixllm_router.state.redis_connection`;
:class:`RedisState` here shares the load and composes the parts above. The backend never imports
the router: what it needs of it is the :class:`~mixllm_router.state.host.StateHost` protocol.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .base import SharedState, StateStatus
from .host import CheckpointLoader, StateHost
from .redis_checkpoints import RedisCheckpoints
from .redis_connection import RedisConnection, Skipped
from .redis_feedback import FeedbackStream, SharedDecisions
from .redis_settings import RedisStateSettings, seq_from_stream_id

if TYPE_CHECKING:
    from ..encoders.base import QueryEncoder
    from ..learning.journal import FeedbackEvent
    from ..policy.decision import DecisionRecord
    from ..policy.load import LoadTicket, LoadTracker

__all__ = ["RedisState", "RedisStateSettings", "seq_from_stream_id"]

# Take (or renew) one lease: ZADD with the expiry, and the start time if the lease is new. The start
# is the server's clock minus the age the worker measured, so a lease re-taken after an outage keeps
# its true start.  KEYS: zset, info hash   ARGV: member, lease seconds, age seconds, tokens ('' = unknown)
_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSETNX', KEYS[2], ARGV[1], string.format('%.6f', now - tonumber(ARGV[3])) .. '|' .. ARGV[4])
return tostring(now)
"""

# Drop expired leases of every candidate, then return the server time and every live lease.
# KEYS: zset_1, info_1, zset_2, info_2, ...   Returns {now, {field, value, ...} per candidate}.
_SYNC = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {tostring(now)}
for i = 1, #KEYS, 2 do
  local dead = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', now)
  for j = 1, #dead, 500 do
    redis.call('HDEL', KEYS[i + 1], unpack(dead, j, math.min(j + 499, #dead)))
  end
  if #dead > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
  out[#out + 1] = redis.call('HGETALL', KEYS[i + 1])
end
return out
"""

HostT = TypeVar("HostT", bound=StateHost)

_Remote = dict[str, list[tuple[float, float | None]]]  # candidate -> [(age s, expected tokens)]
_Finish = tuple[str, float, float | None, float | None, float | None]  # name, service s, tokens x2, ttft


def _text(value: float | None) -> str:
    """An optional number as stream/hash text ('' for None); :func:`_number` reads it back."""
    return "" if value is None else repr(float(value))


def _number(fields: dict[bytes, bytes], key: bytes) -> float | None:
    raw = fields.get(key, b"")
    return float(raw) if raw else None


class RedisState(SharedState):
    """Share load, feedback and checkpoints between processes through one Redis server.

    ``RedisState("redis://host:6379/0", namespace="prod")``, then ``router.share_state(state)``
    (or ``router.share_state("redis://...")``). Needs the ``redis`` package
    (``pip install 'mixllm-router[redis]'``). Create it in the worker process, after any fork.
    """

    shares_load = True
    shares_feedback = True

    def __init__(self, url: str = "redis://localhost:6379/0", *, client: Any = None, **settings: Any) -> None:
        self.settings = RedisStateSettings(**settings)
        #: the client, the namespace's keys and the connection guard (the learner uses it too)
        self.connection = RedisConnection(url, self.settings, client=client, on_down=self._forget_remote,
                                          on_up=self._catch_up)
        self.url = url
        self.client = self.connection.client
        self.worker_id = self._new_worker_id()
        self._stop = threading.Event()  # ends the heartbeat and the decision writer
        self._checkpoints = RedisCheckpoints(self.connection)
        self._decisions = SharedDecisions(self.connection, self._stop)
        self._feedback = FeedbackStream(self.connection)
        self._lease_script = self.client.register_script(_LEASE)
        self._sync_script = self.client.register_script(_SYNC)
        self._lock = threading.Lock()  # guards the fields below
        self._sync_lock = threading.Lock()  # one sync at a time; others skip (the hot path never queues)
        self._live: dict[int, tuple[LoadTicket, float]] = {}  # ticket id -> (ticket, monotonic start)
        self._service_ids: dict[str, bytes] = {}  # candidate -> last service-stream id read
        self._remote_counts: dict[str, int] = {}
        self._next_sync = 0.0
        self._next_poll = 0.0
        self._host: StateHost | None = None
        self._heartbeat: threading.Thread | None = None
        self._pid = os.getpid()

    def _new_worker_id(self) -> str:
        return self.settings.worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    # -- keys ----------------------------------------------------------------------------------------
    def key(self, *parts: str) -> str:
        """A key of this namespace, e.g. ``key("feedback")`` → ``{mixllm}:feedback``."""
        return self.connection.key(*parts)

    @property
    def feedback_stream(self) -> str:
        return self._feedback.key

    @property
    def checkpoint_version(self) -> int:
        """The checkpoint version this process routes with (0: the one it started with)."""
        return self._checkpoints.version

    @checkpoint_version.setter
    def checkpoint_version(self, version: int) -> None:
        self._checkpoints.version = version

    def _member(self, ticket: LoadTicket) -> str:
        return f"{self.worker_id}|{ticket.id}"

    def _lease_keys(self, name: str) -> list[str]:
        """The sorted set of lease expiries and the hash of lease details of candidate ``name``."""
        return [self.key("inflight", name), self.key("inflight-info", name)]

    # -- what the connection guard calls back ---------------------------------------------------------
    def _forget_remote(self) -> None:
        """The store became unreachable: stale remote leases are worse than none."""
        host = self._host
        if host is not None:
            host.load_tracker.set_remote({})

    def _catch_up(self) -> None:
        """After an outage: every live lease again, then the buffered feedback, then a sync."""
        self._renew_leases()
        self._feedback.flush()
        self._decisions.wake()  # decisions queued during the outage
        self._next_sync = self._next_poll = 0.0

    # -- binding and the heartbeat -------------------------------------------------------------------
    def bind(self, host: StateHost) -> None:
        self._host = host
        self._checkpoints.host = host
        if self.settings.share_decisions:
            host.decisions.mirror = self
        self._ensure_heartbeat()

    def _ensure_heartbeat(self) -> None:
        if self._pid != os.getpid():  # forked: the parent's thread and leases are not ours
            self._pid = os.getpid()
            self.worker_id = self._new_worker_id()
            self._live.clear()
            self._heartbeat = None
        if self._heartbeat is None or not self._heartbeat.is_alive():
            self._stop.clear()
            self._heartbeat = threading.Thread(target=self._beat, name=f"mixllm-redis-{self.worker_id}", daemon=True)
            self._heartbeat.start()
        if self.settings.share_decisions:
            self._decisions.ensure_writer(self.worker_id)

    def _beat(self) -> None:
        period = self.settings.lease_s / 3.0
        while not self._stop.wait(period):
            if self.connection.is_down():
                continue
            if not self.connection.connected:  # probe; success runs the catch-up
                self.connection.guard("ping", self.client.ping)
                continue
            self._renew_leases()
            self._feedback.flush()

    def close(self) -> None:
        """Write what is pending, stop the threads and drop this worker's leases (best effort)."""
        self._stop.set()
        self._decisions.wake()
        for thread in (self._heartbeat, self._decisions.writer):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=2.0)
        self._decisions.write_queued()
        with self._lock:
            live = list(self._live.values())
            self._live.clear()
        if live:
            self.connection.guard("close", lambda: self._drop_leases([ticket for ticket, _ in live]))
        host = self._host
        if host is not None and host.load_tracker.sharing is self:
            host.load_tracker.attach(None)
        if host is not None and host.decisions.mirror is self:
            host.decisions.mirror = None

    # -- load ----------------------------------------------------------------------------------------
    def _drop_lease(self, pipe: Any, ticket: LoadTicket) -> None:
        expiries, details = self._lease_keys(ticket.name)
        pipe.zrem(expiries, self._member(ticket))
        pipe.hdel(details, self._member(ticket))

    def _drop_leases(self, tickets: list[LoadTicket]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for ticket in tickets:
            self._drop_lease(pipe, ticket)
        pipe.execute()

    def _lease_args(self, ticket: LoadTicket, started: float) -> list[Any]:
        return [self._member(ticket), self.settings.lease_s, max(time.monotonic() - started, 0.0),
                _text(ticket.expected_tokens)]

    def started(self, ticket: LoadTicket) -> None:
        self._ensure_heartbeat()
        started = time.monotonic()
        with self._lock:
            self._live[ticket.id] = (ticket, started)
        self.connection.guard("lease", lambda: self._lease_script(keys=self._lease_keys(ticket.name),
                                                                  args=self._lease_args(ticket, started)))

    def finished(self, ticket: LoadTicket, service_s: float | None, output_tokens: float | None,
                 ttft_s: float | None) -> None:
        with self._lock:
            self._live.pop(ticket.id, None)

        def release() -> None:
            pipe = self.client.pipeline(transaction=False)
            self._drop_lease(pipe, ticket)
            if service_s is not None:
                fields = {"w": self.worker_id, "s": _text(service_s), "st": _text(ticket.expected_tokens),
                          "ot": _text(output_tokens), "ft": _text(ttft_s)}
                pipe.xadd(self.key("service", ticket.name), fields, maxlen=self.settings.service_window,
                          approximate=True)
            pipe.execute()

        self.connection.guard("release", release)

    def _renew_leases(self) -> None:
        with self._lock:
            live = list(self._live.values())
        if not live:
            return

        def renew() -> None:
            pipe = self.client.pipeline(transaction=False)
            for ticket, started in live:
                self._lease_script(keys=self._lease_keys(ticket.name), args=self._lease_args(ticket, started),
                                   client=pipe)
            pipe.execute()
            with self._lock:  # finished while we renewed: drop what we just re-took
                gone = [t for t, _ in live if t.id not in self._live]
            if gone:
                self._drop_leases(gone)

        self.connection.guard("renew", renew)

    def sync(self, tracker: LoadTracker) -> None:
        now = time.monotonic()
        if now < self._next_sync or self.connection.is_down(now):
            return
        if not self._sync_lock.acquire(blocking=False):
            return  # another thread is syncing right now; its result is as fresh as ours would be
        try:
            self._next_sync = now + self.settings.sync_interval_s
            names = tracker.names
            poll = self.settings.pick_up_checkpoints and self._host is not None and now >= self._next_poll
            if poll:
                self._next_poll = now + self.settings.checkpoint_poll_s
            result = self.connection.guard("sync", lambda: self._sync_round_trip(names, poll))
            if isinstance(result, Skipped):
                return
            remote, finishes, latest = result
            tracker.set_remote(remote)
            self._remote_counts = {name: len(entries) for name, entries in remote.items()}
            for name, service, started_tokens, out_tokens, ttft in finishes:
                with contextlib.suppress(Exception):  # a malformed entry from elsewhere teaches nothing
                    tracker.record_finish(name, service, started_tokens, out_tokens, ttft)
            self._checkpoints.after_sync(latest, poll)
        finally:
            self._sync_lock.release()

    def _sync_round_trip(self, names: list[str], poll: bool) -> tuple[_Remote, list[_Finish], int]:
        """One round trip: the others' live leases, their new service times, the latest version."""
        keys = [key for name in names for key in self._lease_keys(name)]
        pipe = self.client.pipeline(transaction=False)
        self._sync_script(keys=keys, args=[], client=pipe)
        streams = {self.key("service", name): self._service_ids.get(name, b"0-0") for name in names}
        if streams:
            pipe.xread(streams, count=self.settings.service_window)
        if poll:
            pipe.get(self.key("epoch"))
            pipe.get(self.key("ckpt", "latest"))
        replies = pipe.execute()
        server = replies[0]
        server_now = float(server[0])
        own = (self.worker_id + "|").encode()
        remote: _Remote = {}
        for name, flat in zip(names, server[1:], strict=True):
            entries = []
            for field, value in zip(flat[::2], flat[1::2], strict=True):
                if field.startswith(own):
                    continue
                start, _, tokens = value.decode(errors="replace").partition("|")
                with contextlib.suppress(ValueError):  # a malformed lease (another version?) counts for nothing
                    entries.append((server_now - float(start), float(tokens) if tokens else None))
            if entries:
                remote[name] = entries
        finishes: list[_Finish] = []
        by_key = {self.key("service", name): name for name in names}
        for stream, entries in (replies[1] or []) if streams else []:
            name = by_key[stream.decode() if isinstance(stream, bytes) else stream]
            for entry_id, fields in entries:
                self._service_ids[name] = entry_id
                if fields.get(b"w", b"").decode(errors="replace") != self.worker_id:
                    with contextlib.suppress(ValueError):
                        finish = (name, float(fields[b"s"]), _number(fields, b"st"), _number(fields, b"ot"),
                                  _number(fields, b"ft"))
                        finishes.append(finish)
        latest = 0
        if poll:
            self._checkpoints.check_epoch(replies[-2])
            latest = int(replies[-1]) if replies[-1] is not None else 0
        return remote, finishes, latest

    # -- decisions (DecisionMirror) and feedback (SharedDecisions, FeedbackStream) -------------------
    def put_decision(self, record: DecisionRecord) -> None:
        """Queue a copy of the decision for the writer thread (routing never waits on Redis)."""
        self._decisions.put(record)

    def put_alias(self, alias: str, decision_id: str) -> None:
        self._decisions.put_alias(alias, decision_id)

    def fetch_decision(self, key: str) -> DecisionRecord | None:
        """A decision another worker made, by id or alias (None when unknown, expired or unreachable)."""
        return self._decisions.fetch(key)

    def publish_feedback(self, event: FeedbackEvent) -> int:
        """Append the event to the shared stream; its entry id gives the sequence number.

        Raises :class:`FeedbackError` when another worker already sent feedback for the same
        decision, or when Redis is down and the buffer is full; returns 0 when buffered.
        """
        return self._feedback.publish(event)

    # -- checkpoints (RedisCheckpoints) -------------------------------------------------------------
    def latest_version(self) -> int:
        """The newest published checkpoint version (0: none). Raises :class:`SharedStateError`."""
        return self._checkpoints.latest_version()

    def publish_checkpoint(self, router: StateHost) -> int:
        """Save ``router`` and publish it as the next version; returns the version number.

        The files of the checkpoint folder go into one hash in one transaction with the new
        ``latest`` pointer, so a worker reads either the old version or the whole new one.
        """
        return self._checkpoints.publish(router)

    @overload
    def fetch_checkpoint(self, version: int | None = None, *, encoder: QueryEncoder | None = None,
                         loader: None = None) -> tuple[int, Any]: ...

    @overload
    def fetch_checkpoint(self, version: int | None = None, *, encoder: QueryEncoder | None = None,
                         loader: CheckpointLoader[HostT]) -> tuple[int, HostT]: ...

    def fetch_checkpoint(self, version: int | None = None, *, encoder: QueryEncoder | None = None,
                         loader: CheckpointLoader[Any] | None = None) -> tuple[int, Any]:
        """Load a published version (default: the latest) as a new router; ``(version, router)``.

        ``loader(folder, encoder=encoder)`` builds the router (e.g. ``MixLLMRouter.load``); by
        default the ``load`` of the bound router's class, else of the last router published
        through this state, else the one the router package registered. Raises
        :class:`SharedStateError` when the version is not there (or none is published).
        """
        return self._checkpoints.fetch(version, encoder=encoder, loader=loader)

    def wait_for_version(self, version: int, timeout_s: float = 30.0) -> bool:
        """Block until this worker routes with ``version`` or newer (tests, deploy scripts)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.checkpoint_version >= version:
                return True
            host = self._host
            if host is not None:
                self._next_poll = 0.0
                self._next_sync = 0.0
                self.sync(host.load_tracker)
            time.sleep(0.02)
        return self.checkpoint_version >= version

    # -- status --------------------------------------------------------------------------------------
    def status(self) -> StateStatus:
        conn = self.connection
        with self._lock:
            return StateStatus(
                backend="redis", connected=conn.connected, outages=conn.outages, errors=conn.errors,
                last_error=conn.last_error, buffered_feedback=self._feedback.buffered,
                checkpoint_version=self.checkpoint_version, remote_in_flight=dict(self._remote_counts),
                store_resets=self._checkpoints.resets,
            )

    def __repr__(self) -> str:
        return f"RedisState({self.url!r}, namespace={self.settings.namespace!r}, worker_id={self.worker_id!r})"
