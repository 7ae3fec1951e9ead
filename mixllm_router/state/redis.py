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
published state.

**Checkpoints.** A version is the files of an ordinary checkpoint folder (JSON manifest +
safetensors) in the hash ``{ns}:ckpt:<version>``, with ``{ns}:ckpt:latest`` naming the newest.
Version numbers are ``max(previous + 1, server time in µs)``: they increase with every publication
and stay ordered across a Redis that restarted empty (or was restored from an older snapshot), as
stream ids do, so a worker on version ``N`` adopts the first version published after a wipe
instead of ignoring versions ``1, 2, …`` as older than its own (and ``wait_for_version`` cannot
report a version it never loaded). A wipe is also *noticed*: the namespace carries a random epoch
``{ns}:epoch`` (created by the first worker or learner); a worker that sees it change, or sees the
latest version fall below its own, logs a warning, emits a :class:`SharedStateWarning` and counts
it in ``status().store_resets``, and keeps routing with the model it has until a newer one is
published.
Workers poll ``latest`` (every ``checkpoint_poll_s``, piggybacked on the sync) and load a newer
version in a background thread, then swap it in under the router's lock: a route sees the old model
or the new one, never half of each. The superseded version expires after ``keep_old_s``, older
ones are deleted at once, so Redis holds at most two versions however often the learner publishes.

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
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ConfigDict, Field, ValidationError

from .._exceptions import ConfigError, FeedbackError, SharedStateError
from .._settings import Settings
from .base import SharedState, SharedStateWarning, StateStatus

if TYPE_CHECKING:
    from ..encoders import QueryEncoder
    from ..learning.learner import FeedbackEvent
    from ..policy.decision import DecisionRecord
    from ..policy.load import LoadTicket, LoadTracker
    from ..router import MixLLMRouter

__all__ = ["RedisState", "RedisStateSettings", "seq_from_stream_id"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

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

# Append a feedback event unless its decision was already rated (by any worker).
# KEYS: rated marker, feedback stream   ARGV: payload, marker ttl seconds.  Returns the entry id or false.
_FEEDBACK = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then return false end
return redis.call('XADD', KEYS[2], '*', 'event', ARGV[1])
"""

# The next checkpoint version: max(counter + 1, server time in microseconds); also makes sure the
# namespace has an epoch.  KEYS: counter, epoch   ARGV: a new epoch id.  Returns the version as text.
_NEXT_VERSION = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local v = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') + 1, now)
redis.call('SET', KEYS[1], string.format('%d', v))
redis.call('SET', KEYS[2], ARGV[1], 'NX')
return string.format('%d', v)
"""

_WRITE_COALESCE_S = 0.01  # the decision writer waits this long after a wake-up before writing


class _Skipped:
    """What a guarded call returns when the store is down (or the call failed)."""


_SKIP = _Skipped()


_Remote = dict[str, list[tuple[float, float | None]]]  # candidate -> [(age s, expected tokens)]
_Finish = tuple[str, float, float | None, float | None, float | None]  # name, service s, tokens x2, ttft


def _text(value: float | None) -> str:
    """An optional number as stream/hash text ('' for None); :func:`_number` reads it back."""
    return "" if value is None else repr(float(value))


def _number(fields: dict[bytes, bytes], key: bytes) -> float | None:
    raw = fields.get(key, b"")
    return float(raw) if raw else None


def seq_from_stream_id(stream_id: bytes | str) -> int:
    """The feedback sequence number of a stream entry id ``"<ms>-<n>"``: ``ms · 10⁶ + n``.

    Stream ids strictly increase (Redis refuses to go back, even after a restart with persistence,
    and a wiped server starts again at the current time), so sequence numbers do too.
    """
    text = stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)
    ms, _, n = text.partition("-")
    return int(ms) * 1_000_000 + int(n or 0)


class RedisStateSettings(Settings):
    """Options of :class:`RedisState` (validated; a bad value raises :class:`ConfigError`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    namespace: str = Field(default="mixllm", min_length=1, description="Key prefix (one per deployment).")
    lease_s: float = Field(default=10.0, gt=0, description="A dead worker's load disappears within this time.")
    sync_interval_s: float = Field(default=0.0, ge=0,
                                   description="Read the others' load at most this often (0: every route).")
    checkpoint_poll_s: float = Field(default=1.0, gt=0, description="How often workers look for a newer checkpoint.")
    pick_up_checkpoints: bool = Field(default=True, description="Load newer published checkpoints in the background.")
    retry_s: float = Field(default=1.0, gt=0, description="After a connection error, leave the store alone this long.")
    socket_timeout_s: float = Field(default=0.5, gt=0, description="Per-command timeout of the Redis client.")
    feedback_buffer: int = Field(default=10_000, ge=0, description="Feedback events kept while the store is down.")
    service_window: int = Field(default=1000, ge=1, description="Finished requests kept per candidate stream.")
    keep_old_s: float = Field(default=60.0, gt=0,
                              description="The superseded version expires after this (older ones go at once).")
    share_decisions: bool = Field(default=True,
                                  description="Copy decisions to Redis so feedback works from any worker.")
    decision_ttl_s: float = Field(default=3600.0, gt=0,
                                  description="Shared decisions (and rated marks) expire after this.")
    worker_id: str | None = Field(default=None, description="This process's name in leases (default host-pid-random).")


class RedisState(SharedState):
    """Share load, feedback and checkpoints between processes through one Redis server.

    ``RedisState("redis://host:6379/0", namespace="prod")``, then ``router.share_state(state)``
    (or ``router.share_state("redis://...")``). Needs the ``redis`` package
    (``pip install 'mixllm-router[redis]'``). Create it in the worker process, after any fork.
    """

    shares_load = True
    shares_feedback = True

    def __init__(self, url: str = "redis://localhost:6379/0", *, client: Any = None, **settings: Any) -> None:
        try:
            self.settings = RedisStateSettings(**settings)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"invalid RedisState settings: {problems}") from None
        try:
            import redis
        except ImportError:  # pragma: no cover - depends on the environment
            raise ConfigError("RedisState needs the redis package: pip install 'mixllm-router[redis]'") from None
        self._redis = redis
        self.url = url
        if client is None:
            if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigError(f"a Redis URL starts with redis://, rediss:// or unix://, got {url!r}")
            timeout = self.settings.socket_timeout_s
            try:
                client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
            except ValueError as exc:
                raise ConfigError(f"invalid Redis URL {url!r}: {exc}") from None
        self.client = client
        self.worker_id = self._new_worker_id()
        self._prefix = "{" + self.settings.namespace + "}"
        self._lease_script = client.register_script(_LEASE)
        self._sync_script = client.register_script(_SYNC)
        self._feedback_script = client.register_script(_FEEDBACK)
        self._version_script = client.register_script(_NEXT_VERSION)
        self._lock = threading.Lock()  # guards the fields below
        self._sync_lock = threading.Lock()  # one sync at a time; others skip (the hot path never queues)
        self._live: dict[int, tuple[LoadTicket, float]] = {}  # ticket id -> (ticket, monotonic start)
        self._buffer: deque[tuple[str, str]] = deque()  # (decision id, feedback payload) waiting for the store
        self._service_ids: dict[str, bytes] = {}  # candidate -> last service-stream id read
        self._remote_counts: dict[str, int] = {}
        self._unsent_decisions: dict[str, DecisionRecord] = {}  # written behind by the writer thread
        self._unsent_aliases: dict[str, str] = {}
        self._write = threading.Event()
        self._writer: threading.Thread | None = None
        self._next_sync = 0.0
        self._next_poll = 0.0
        self._down_until = 0.0
        self._connected = True
        self._outages = 0
        self._errors = 0
        self._last_error: str | None = None
        self._router: MixLLMRouter | None = None
        self.checkpoint_version = 0
        self._epoch: bytes | None = None  # the namespace's epoch as this process last saw it
        self._resets = 0
        self._lowest_latest_warned: int | None = None
        self._epoch_changed = False
        self._fetching = False
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._pid = os.getpid()

    def _new_worker_id(self) -> str:
        return self.settings.worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    # -- keys ----------------------------------------------------------------------------------------
    def key(self, *parts: str) -> str:
        """A key of this namespace, e.g. ``key("feedback")`` → ``{mixllm}:feedback``."""
        return ":".join((self._prefix, *parts))

    @property
    def feedback_stream(self) -> str:
        return self.key("feedback")

    def _member(self, ticket: LoadTicket) -> str:
        return f"{self.worker_id}|{ticket.id}"

    def _lease_keys(self, name: str) -> list[str]:
        """The sorted set of lease expiries and the hash of lease details of candidate ``name``."""
        return [self.key("inflight", name), self.key("inflight-info", name)]

    # -- connection guard ----------------------------------------------------------------------------
    def _guard(self, what: str, fn: Callable[[], T]) -> T | _Skipped:
        """Run ``fn`` unless the store is known down; a connection error marks it down."""
        if time.monotonic() < self._down_until:
            return _SKIP
        try:
            result = fn()
        except (self._redis.ConnectionError, self._redis.TimeoutError, OSError) as exc:
            self._mark_down(what, exc)
            return _SKIP
        except self._redis.RedisError as exc:
            self._note_error(f"{what}: {exc}")
            return _SKIP
        if not self._connected:
            self._mark_up()
        return result

    def _note_error(self, message: str) -> None:
        """Count a failed operation for :meth:`status`."""
        with self._lock:
            self._errors += 1
            self._last_error = message

    def _mark_down(self, what: str, exc: BaseException) -> None:
        self._note_error(f"{what}: {type(exc).__name__}: {exc}")
        with self._lock:
            self._down_until = time.monotonic() + self.settings.retry_s
            if not self._connected:
                return
            self._connected = False
            self._outages += 1
        warnings.warn(
            f"Redis at {self.url} is unreachable ({what}: {exc}); routing on this process's own load, "
            f"feedback buffered in memory until it returns",
            SharedStateWarning, stacklevel=4,
        )
        router = self._router
        if router is not None:
            router.load_tracker.set_remote({})  # stale remote leases are worse than none

    def _mark_up(self) -> None:
        with self._lock:
            if self._connected:
                return
            self._connected = True
        warnings.warn(f"Redis at {self.url} is reachable again; re-taking leases and flushing feedback",
                      SharedStateWarning, stacklevel=4)
        self._catch_up()

    def _catch_up(self) -> None:
        """After an outage: every live lease again, then the buffered feedback, then a sync."""
        self._renew_leases()
        self._flush_feedback()
        self._write.set()  # decisions queued during the outage
        self._next_sync = self._next_poll = 0.0

    # -- binding and the heartbeat -------------------------------------------------------------------
    def bind(self, router: MixLLMRouter) -> None:
        self._router = router
        if self.settings.share_decisions:
            router.decisions.mirror = self
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
        if self.settings.share_decisions and (self._writer is None or not self._writer.is_alive()):
            self._writer = threading.Thread(target=self._write_loop, name=f"mixllm-redis-writer-{self.worker_id}",
                                            daemon=True)
            self._writer.start()

    def _beat(self) -> None:
        period = self.settings.lease_s / 3.0
        while not self._stop.wait(period):
            if time.monotonic() < self._down_until:
                continue
            if not self._connected:  # probe; success runs the catch-up
                self._guard("ping", self.client.ping)
                continue
            self._renew_leases()
            self._flush_feedback()

    def close(self) -> None:
        """Write what is pending, stop the threads and drop this worker's leases (best effort)."""
        self._stop.set()
        self._write.set()
        for thread in (self._heartbeat, self._writer):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=2.0)
        self._write_decisions()
        with self._lock:
            live = list(self._live.values())
            self._live.clear()
        if live:
            self._guard("close", lambda: self._drop_leases([ticket for ticket, _ in live]))
        router = self._router
        if router is not None and router.load_tracker.sharing is self:
            router.load_tracker.attach(None)
        if router is not None and router.decisions.mirror is self:
            router.decisions.mirror = None

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
        self._guard("lease", lambda: self._lease_script(keys=self._lease_keys(ticket.name),
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

        self._guard("release", release)

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

        self._guard("renew", renew)

    def sync(self, tracker: LoadTracker) -> None:
        now = time.monotonic()
        if now < self._next_sync or now < self._down_until:
            return
        if not self._sync_lock.acquire(blocking=False):
            return  # another thread is syncing right now; its result is as fresh as ours would be
        try:
            self._next_sync = now + self.settings.sync_interval_s
            names = tracker.names
            poll = self.settings.pick_up_checkpoints and self._router is not None and now >= self._next_poll
            if poll:
                self._next_poll = now + self.settings.checkpoint_poll_s
            result = self._guard("sync", lambda: self._sync_round_trip(names, poll))
            if isinstance(result, _Skipped):
                return
            remote, finishes, latest = result
            tracker.set_remote(remote)
            self._remote_counts = {name: len(entries) for name, entries in remote.items()}
            for name, service, started_tokens, out_tokens, ttft in finishes:
                with contextlib.suppress(Exception):  # a malformed entry from elsewhere teaches nothing
                    tracker.record_finish(name, service, started_tokens, out_tokens, ttft)
            if latest and latest > self.checkpoint_version:
                self._pick_up(latest)
            elif poll and latest < self.checkpoint_version:
                self._versions_went_back(latest)
            self._epoch_changed = False
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
            self._check_epoch(replies[-2])
            latest = int(replies[-1]) if replies[-1] is not None else 0
        return remote, finishes, latest

    # -- noticing a wiped store ---------------------------------------------------------------------
    def _check_epoch(self, seen: bytes | None) -> None:
        """Compare the namespace's epoch with the one seen before; a change means a wiped store."""
        if seen is None:  # a fresh namespace, or a wiped one: the first to notice gives it an epoch
            mine = uuid.uuid4().hex.encode()
            self.client.set(self.key("epoch"), mine, nx=True)
            seen = self.client.get(self.key("epoch")) or mine
        previous, self._epoch = self._epoch, seen
        if previous is not None and previous != seen:
            self._epoch_changed = True  # the same wipe: its lower latest version is not said again
            self._reset_noticed(f"its epoch changed from {previous.decode(errors='replace')} to "
                                f"{seen.decode(errors='replace')}")

    def _versions_went_back(self, latest: int) -> None:
        if self._lowest_latest_warned is not None and latest >= self._lowest_latest_warned:
            return  # already said for this (or a lower) latest version
        self._lowest_latest_warned = latest
        if self._epoch_changed:
            return
        self._reset_noticed(f"its latest checkpoint version is {latest or 'none'}, below the {self.checkpoint_version} "
                            "this worker routes with")

    def _reset_noticed(self, why: str) -> None:
        with self._lock:
            self._resets += 1
        message = (f"Redis at {self.url} lost the state of namespace {self.settings.namespace!r} (restarted empty or "
                   f"restored from an older snapshot): {why}. Still routing with checkpoint version "
                   f"{self.checkpoint_version}; the next version published is newer and will be picked up")
        logger.warning(message)
        warnings.warn(message, SharedStateWarning, stacklevel=4)

    # -- decisions (DecisionMirror) -----------------------------------------------------------------
    def put_decision(self, record: DecisionRecord) -> None:
        """Queue a copy of the decision for the writer thread (routing never waits on Redis)."""
        with self._lock:
            self._unsent_decisions[record.decision_id] = record
        self._write.set()

    def put_alias(self, alias: str, decision_id: str) -> None:
        with self._lock:
            self._unsent_aliases[alias] = decision_id
        self._write.set()

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            if not self._write.wait(timeout=1.0):
                continue
            # gather what arrives in the next few ms into one pipeline: one round trip per burst, not
            # per route, and the routing threads are not interrupted once per decision
            self._stop.wait(_WRITE_COALESCE_S)
            self._write.clear()
            if time.monotonic() >= self._down_until:
                self._write_decisions()

    def _write_decisions(self) -> None:
        with self._lock:
            records, self._unsent_decisions = self._unsent_decisions, {}
            aliases, self._unsent_aliases = self._unsent_aliases, {}
        if not records and not aliases:
            return
        ttl = int(self.settings.decision_ttl_s)

        def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            for decision_id, record in records.items():
                pipe.set(self.key("decision", decision_id), json.dumps(record.to_json(), separators=(",", ":")), ex=ttl)
            for alias, decision_id in aliases.items():
                pipe.set(self.key("alias", alias), decision_id, ex=ttl)
            pipe.execute()

        if isinstance(self._guard("share decisions", write), _Skipped):
            with self._lock:  # keep them for the next try, newer versions first
                self._unsent_decisions = {**records, **self._unsent_decisions}
                self._unsent_aliases = {**aliases, **self._unsent_aliases}

    def fetch_decision(self, key: str) -> DecisionRecord | None:
        """A decision another worker made, by id or alias (None when unknown, expired or unreachable)."""
        from ..policy.decision import DecisionRecord

        def fetch() -> bytes | None:
            target = self.client.get(self.key("alias", key))
            return self.client.get(self.key("decision", target.decode() if target else key))

        raw = self._guard("fetch a decision", fetch)
        if isinstance(raw, _Skipped) or raw is None:
            return None
        try:
            return DecisionRecord.from_json(json.loads(raw))
        except (KeyError, ValueError, TypeError) as exc:
            self._note_error(f"malformed shared decision {key!r}: {exc}")
            return None

    # -- feedback ------------------------------------------------------------------------------------
    def publish_feedback(self, event: FeedbackEvent) -> int:
        """Append the event to the shared stream; its entry id gives the sequence number.

        Raises :class:`FeedbackError` when another worker already sent feedback for the same
        decision, or when Redis is down and the buffer is full; returns 0 when buffered.
        """
        payload = json.dumps(event.to_json(), separators=(",", ":"))
        if self._buffer:  # keep the order: older buffered events go first
            self._flush_feedback()
        if not self._buffer:
            entry_id = self._guard("feedback", lambda: self._append_feedback(event.decision_id, payload))
            if entry_id is None:
                raise FeedbackError(f"decision {event.decision_id} already received feedback (in some worker); "
                                    "each decision is rated once")
            if not isinstance(entry_id, _Skipped):
                return seq_from_stream_id(entry_id)
        with self._lock:
            if len(self._buffer) >= self.settings.feedback_buffer:
                raise FeedbackError(
                    f"Redis at {self.url} is unreachable and {len(self._buffer)} feedback events are already "
                    "buffered (feedback_buffer); this one was not recorded"
                )
            self._buffer.append((event.decision_id, payload))
        return 0

    def _append_feedback(self, decision_id: str, payload: str) -> bytes | None:
        return self._feedback_script(  # type: ignore[no-any-return]
            keys=[self.key("rated", decision_id), self.feedback_stream],
            args=[payload, int(self.settings.decision_ttl_s)])

    def _flush_feedback(self) -> None:
        while True:
            with self._lock:
                if not self._buffer:
                    return
                decision_id, payload = self._buffer[0]
            # a decision rated elsewhere meanwhile comes back None: dropped, like any double rating
            def send(d: str = decision_id, p: str = payload) -> bytes | None:
                return self._append_feedback(d, p)

            if isinstance(self._guard("feedback", send), _Skipped):
                return
            with self._lock:
                if self._buffer and self._buffer[0][1] is payload:
                    self._buffer.popleft()

    # -- checkpoints ---------------------------------------------------------------------------------
    def latest_version(self) -> int:
        """The newest published checkpoint version (0: none). Raises :class:`SharedStateError`."""
        raw = self._strict("read the latest checkpoint version", lambda: self.client.get(self.key("ckpt", "latest")))
        return int(raw) if raw is not None else 0

    def _strict(self, what: str, fn: Callable[[], T]) -> T:
        """Off the routing path (learner, publishing): errors are raised, not absorbed."""
        try:
            return fn()
        except self._redis.RedisError as exc:
            raise SharedStateError(f"Redis at {self.url}: could not {what}: {type(exc).__name__}: {exc}") from exc

    def publish_checkpoint(self, router: MixLLMRouter) -> int:
        """Save ``router`` and publish it as the next version; returns the version number.

        The files of the checkpoint folder go into one hash in one transaction with the new
        ``latest`` pointer, so a worker reads either the old version or the whole new one.
        """
        with tempfile.TemporaryDirectory(prefix="mixllm-publish-") as tmp:
            folder = Path(tmp) / "checkpoint"
            router.save(folder)
            files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}

        def publish() -> int:
            version = int(self._version_script(keys=[self.key("ckpt", "counter"), self.key("epoch")],
                                               args=[uuid.uuid4().hex]))
            previous = self.client.get(self.key("ckpt", "latest"))
            older = [int(v) for v in self.client.zrange(self.key("ckpt", "versions"), 0, -1)]
            older = [v for v in older if previous is None or v < int(previous)]
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(self.key("ckpt", str(version)), mapping=files)
            pipe.set(self.key("ckpt", "latest"), version)
            pipe.zadd(self.key("ckpt", "versions"), {str(version): version})
            if previous is not None:  # a worker may be fetching it right now: it goes a little later
                pipe.expire(self.key("ckpt", previous.decode()), int(self.settings.keep_old_s))
            for v in older:  # at most two versions are kept: memory stays bounded however often we publish
                pipe.delete(self.key("ckpt", str(v)))
                pipe.zrem(self.key("ckpt", "versions"), str(v))
            pipe.execute()
            return version

        version = self._strict("publish a checkpoint", publish)
        self.checkpoint_version = max(self.checkpoint_version, version)
        return version

    def fetch_checkpoint(self, version: int | None = None, *, encoder: QueryEncoder | None = None
                         ) -> tuple[int, MixLLMRouter]:
        """Load a published version (default: the latest) as a new router; ``(version, router)``."""
        from ..router import MixLLMRouter

        version = self.latest_version() if version is None else int(version)
        if version <= 0:
            raise SharedStateError(f"no checkpoint is published under {self.key('ckpt', 'latest')}")
        files = self._strict("fetch a checkpoint", lambda: self.client.hgetall(self.key("ckpt", str(version))))
        if not files:
            raise SharedStateError(f"checkpoint version {version} is not in Redis (expired or never published)")
        with tempfile.TemporaryDirectory(prefix="mixllm-fetch-") as tmp:
            folder = Path(tmp)
            for raw_name, data in files.items():
                name = raw_name.decode()
                if "/" in name or "\\" in name or name in {".", ".."}:
                    raise SharedStateError(f"checkpoint version {version} holds a file with a bad name {name!r}")
                (folder / name).write_bytes(data)
            return version, MixLLMRouter.load(folder, encoder=encoder)

    def _pick_up(self, version: int) -> None:
        """Load ``version`` in a background thread and swap it into the bound router."""
        with self._lock:
            if self._fetching:
                return
            self._fetching = True

        def work() -> None:
            try:
                router = self._router
                if router is None:
                    return
                got, fresh = self.fetch_checkpoint(version, encoder=router.encoder)
                if got > self.checkpoint_version:
                    router.adopt(fresh)
                    self.checkpoint_version = got
                    self._lowest_latest_warned = None
            except Exception as exc:  # noqa: BLE001 - a failed pick-up must not take the worker down
                self._note_error(f"pick up checkpoint {version}: {type(exc).__name__}: {exc}")
                warnings.warn(f"could not load published checkpoint {version}: {exc}; still routing with "
                              f"version {self.checkpoint_version}", SharedStateWarning, stacklevel=2)
            finally:
                with self._lock:
                    self._fetching = False

        threading.Thread(target=work, name="mixllm-checkpoint-pickup", daemon=True).start()

    def wait_for_version(self, version: int, timeout_s: float = 30.0) -> bool:
        """Block until this worker routes with ``version`` or newer (tests, deploy scripts)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.checkpoint_version >= version:
                return True
            router = self._router
            if router is not None:
                self._next_poll = 0.0
                self._next_sync = 0.0
                self.sync(router.load_tracker)
            time.sleep(0.02)
        return self.checkpoint_version >= version

    # -- status --------------------------------------------------------------------------------------
    def status(self) -> StateStatus:
        with self._lock:
            return StateStatus(
                backend="redis", connected=self._connected, outages=self._outages, errors=self._errors,
                last_error=self._last_error, buffered_feedback=len(self._buffer),
                checkpoint_version=self.checkpoint_version, remote_in_flight=dict(self._remote_counts),
                store_resets=self._resets,
            )

    def __repr__(self) -> str:
        return f"RedisState({self.url!r}, namespace={self.settings.namespace!r}, worker_id={self.worker_id!r})"
