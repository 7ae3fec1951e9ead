"""Checkpoint versions shared through Redis: the learner publishes, workers pick them up.

A version is the files of an ordinary checkpoint folder (JSON manifest + safetensors) in the hash
``{ns}:ckpt:<version>``, with ``{ns}:ckpt:latest`` naming the newest. Version numbers are
``max(previous + 1, server time in µs)``: they increase with every publication and stay ordered
across a Redis that restarted empty (or was restored from an older snapshot), as stream ids do, so
a worker on version ``N`` adopts the first version published after a wipe instead of ignoring
versions ``1, 2, …`` as older than its own (and ``wait_for_version`` cannot report a version it
never loaded). A wipe is also *noticed*: the namespace carries a random epoch ``{ns}:epoch``
(created by the first worker or learner); a worker that sees it change, or sees the latest version
fall below its own, logs a warning, emits a :class:`SharedStateWarning` and counts it in
``status().store_resets``, and keeps routing with the model it has until a newer one is published.

Workers poll ``latest`` (every ``checkpoint_poll_s``, piggybacked on the load sync) and load a
newer version in a background thread, then swap it in with the router's ``adopt`` under the
router's lock: a route sees the old model or the new one, never half of each. The superseded
version expires after ``keep_old_s``, older ones are deleted at once, so Redis holds at most two
versions however often the learner publishes.

Turning the fetched folder into a router is the router's own ``load`` (a
:class:`~mixllm_router.state.host.CheckpointLoader`): this module never imports the router.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import SharedStateError
from .base import SharedStateWarning
from .host import CheckpointLoader, StateHost, default_checkpoint_loader

if TYPE_CHECKING:
    from ..encoders.base import QueryEncoder
    from .redis_connection import RedisConnection

__all__ = ["RedisCheckpoints"]

# the logger of the backend: the warnings a worker gives about a wiped store come from RedisState
logger = logging.getLogger("mixllm_router.state.redis")

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


class RedisCheckpoints:
    """The checkpoint versions of one namespace, and the version this process routes with.

    Part of a :class:`~mixllm_router.state.RedisState` (which forwards its public methods here):
    ``host`` is the router the state is bound to, the one newer versions are swapped into.
    """

    def __init__(self, connection: RedisConnection) -> None:
        self._conn = connection
        self._version_script = connection.client.register_script(_NEXT_VERSION)
        self._lock = threading.Lock()  # guards the counters and the fetching flag
        self.host: StateHost | None = None
        #: checkpoint version this process routes with (0: the one it started with)
        self.version = 0
        self._published_loader: CheckpointLoader[Any] | None = None  # of the last router published
        self._epoch: bytes | None = None  # the namespace's epoch as this process last saw it
        self.resets = 0
        self._lowest_latest_warned: int | None = None
        self._epoch_changed = False
        self._fetching = False

    # -- publishing and fetching -------------------------------------------------------------------
    def latest_version(self) -> int:
        """The newest published checkpoint version (0: none). Raises :class:`SharedStateError`."""
        conn = self._conn
        raw = conn.strict("read the latest checkpoint version", lambda: conn.client.get(conn.key("ckpt", "latest")))
        return int(raw) if raw is not None else 0

    def publish(self, router: StateHost) -> int:
        """Save ``router`` and publish it as the next version; returns the version number.

        The files of the checkpoint folder go into one hash in one transaction with the new
        ``latest`` pointer, so a worker reads either the old version or the whole new one.
        """
        with tempfile.TemporaryDirectory(prefix="mixllm-publish-") as tmp:
            folder = Path(tmp) / "checkpoint"
            router.save(folder)
            files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        self._published_loader = type(router).load
        conn, client, key = self._conn, self._conn.client, self._conn.key

        def publish() -> int:
            version = int(self._version_script(keys=[key("ckpt", "counter"), key("epoch")], args=[uuid.uuid4().hex]))
            previous = client.get(key("ckpt", "latest"))
            older = [int(v) for v in client.zrange(key("ckpt", "versions"), 0, -1)]
            older = [v for v in older if previous is None or v < int(previous)]
            pipe = client.pipeline(transaction=True)
            pipe.hset(key("ckpt", str(version)), mapping=files)
            pipe.set(key("ckpt", "latest"), version)
            pipe.zadd(key("ckpt", "versions"), {str(version): version})
            if previous is not None:  # a worker may be fetching it right now: it goes a little later
                pipe.expire(key("ckpt", previous.decode()), int(conn.settings.keep_old_s))
            for v in older:  # at most two versions are kept: memory stays bounded however often we publish
                pipe.delete(key("ckpt", str(v)))
                pipe.zrem(key("ckpt", "versions"), str(v))
            pipe.execute()
            return version

        version = conn.strict("publish a checkpoint", publish)
        self.version = max(self.version, version)
        return version

    def fetch(self, version: int | None = None, *, encoder: QueryEncoder | None = None,
              loader: CheckpointLoader[Any] | None = None) -> tuple[int, Any]:
        """Load a published version (default: the latest) with ``loader``; ``(version, router)``."""
        load = self._loader(loader)
        conn = self._conn
        version = self.latest_version() if version is None else int(version)
        if version <= 0:
            raise SharedStateError(f"no checkpoint is published under {conn.key('ckpt', 'latest')}")
        files = conn.strict("fetch a checkpoint", lambda: conn.client.hgetall(conn.key("ckpt", str(version))))
        if not files:
            raise SharedStateError(f"checkpoint version {version} is not in Redis (expired or never published)")
        with tempfile.TemporaryDirectory(prefix="mixllm-fetch-") as tmp:
            folder = Path(tmp)
            for raw_name, data in files.items():
                name = raw_name.decode()
                if "/" in name or "\\" in name or name in {".", ".."}:
                    raise SharedStateError(f"checkpoint version {version} holds a file with a bad name {name!r}")
                (folder / name).write_bytes(data)
            return version, load(folder, encoder=encoder)

    def _loader(self, given: CheckpointLoader[Any] | None) -> CheckpointLoader[Any]:
        """``given``, else the bound router's class, else the last published router's, else the default."""
        if given is not None:
            return given
        if self.host is not None:
            return type(self.host).load
        loader = self._published_loader or default_checkpoint_loader()
        if loader is None:
            raise SharedStateError("no router class is known to load the checkpoint with: pass "
                                   "loader=MixLLMRouter.load (or bind the state to a router first)")
        return loader

    # -- a worker picking up newer versions ----------------------------------------------------------
    def after_sync(self, latest: int, polled: bool) -> None:
        """What the load sync saw of ``latest`` (0: not polled or none): pick it up, or notice a wipe."""
        if latest and latest > self.version:
            self._pick_up(latest)
        elif polled and latest < self.version:
            self._versions_went_back(latest)
        self._epoch_changed = False

    def _pick_up(self, version: int) -> None:
        """Load ``version`` in a background thread and swap it into the bound router."""
        with self._lock:
            if self._fetching:
                return
            self._fetching = True

        def work() -> None:
            try:
                host = self.host
                if host is None:
                    return
                got, fresh = self.fetch(version, encoder=host.encoder, loader=type(host).load)
                if got > self.version:
                    host.adopt(fresh)
                    self.version = got
                    self._lowest_latest_warned = None
            except Exception as exc:  # noqa: BLE001 - a failed pick-up must not take the worker down
                self._conn.note_error(f"pick up checkpoint {version}: {type(exc).__name__}: {exc}")
                warnings.warn(f"could not load published checkpoint {version}: {exc}; still routing with "
                              f"version {self.version}", SharedStateWarning, stacklevel=2)
            finally:
                with self._lock:
                    self._fetching = False

        threading.Thread(target=work, name="mixllm-checkpoint-pickup", daemon=True).start()

    # -- noticing a wiped store ---------------------------------------------------------------------
    def check_epoch(self, seen: bytes | None) -> None:
        """Compare the namespace's epoch with the one seen before; a change means a wiped store."""
        conn = self._conn
        if seen is None:  # a fresh namespace, or a wiped one: the first to notice gives it an epoch
            mine = uuid.uuid4().hex.encode()
            conn.client.set(conn.key("epoch"), mine, nx=True)
            seen = conn.client.get(conn.key("epoch")) or mine
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
        self._reset_noticed(f"its latest checkpoint version is {latest or 'none'}, below the {self.version} "
                            "this worker routes with")

    def _reset_noticed(self, why: str) -> None:
        with self._lock:
            self.resets += 1
        conn = self._conn
        message = (f"Redis at {conn.url} lost the state of namespace {conn.settings.namespace!r} (restarted empty or "
                   f"restored from an older snapshot): {why}. Still routing with checkpoint version "
                   f"{self.version}; the next version published is newer and will be picked up")
        logger.warning(message)
        warnings.warn(message, SharedStateWarning, stacklevel=4)
