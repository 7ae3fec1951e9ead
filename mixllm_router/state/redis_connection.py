"""One guarded connection to the Redis server of a :class:`~mixllm_router.state.RedisState`.

It holds the client, names the namespace's keys and decides what a failed call means, so the
parts of the backend (load sharing, feedback, decisions, checkpoints) state it once:

- on the routing path, :meth:`RedisConnection.guard`: a connection error marks the store down for
  ``retry_s`` (calls in between are skipped at once, they do not wait on a dead socket), emits one
  :class:`~mixllm_router.state.SharedStateWarning` per outage and tells the backend (``on_down``)
  so it forgets remote load it can no longer trust; the first call that succeeds again tells it
  too (``on_up``) so it re-takes its leases and flushes what it buffered. Nothing is raised.
- off the routing path (the learner, publishing or fetching a checkpoint), :meth:`strict`: the
  error is raised as :class:`~mixllm_router.SharedStateError`, since there is no local fallback.

Keys sit under ``{namespace}`` in braces, a Redis Cluster hash tag, so one deployment's keys live
in one slot and the Lua scripts may touch them together.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from .._exceptions import ConfigError, SharedStateError
from .base import SharedStateWarning
from .redis_settings import RedisStateSettings

__all__ = ["SKIP", "RedisConnection", "Skipped"]

T = TypeVar("T")


class Skipped:
    """What a guarded call returns when the store is down (or the call failed)."""


SKIP = Skipped()


class RedisConnection:
    """The client of one Redis URL, its namespace's keys, and the health of the link.

    ``on_down`` runs when the store becomes unreachable, ``on_up`` when it answers again (outside
    any lock; they may call :meth:`guard` themselves).
    """

    def __init__(self, url: str, settings: RedisStateSettings, *, client: Any = None,
                 on_down: Callable[[], None], on_up: Callable[[], None]) -> None:
        try:
            import redis
        except ImportError:  # pragma: no cover - depends on the environment
            raise ConfigError("RedisState needs the redis package: pip install 'mixllm-router[redis]'") from None
        self.redis = redis
        self.url = url
        self.settings = settings
        if client is None:
            if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigError(f"a Redis URL starts with redis://, rediss:// or unix://, got {url!r}")
            timeout = settings.socket_timeout_s
            try:
                client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
            except ValueError as exc:
                raise ConfigError(f"invalid Redis URL {url!r}: {exc}") from None
        self.client = client
        self._prefix = "{" + settings.namespace + "}"
        self._on_down = on_down
        self._on_up = on_up
        self._lock = threading.Lock()  # guards the fields below
        self._down_until = 0.0
        self.connected = True
        self.outages = 0
        self.errors = 0
        self.last_error: str | None = None

    def key(self, *parts: str) -> str:
        """A key of this namespace, e.g. ``key("feedback")`` → ``{mixllm}:feedback``."""
        return ":".join((self._prefix, *parts))

    def is_down(self, now: float | None = None) -> bool:
        """True while the store is left alone after a connection error (``retry_s``)."""
        return (time.monotonic() if now is None else now) < self._down_until

    def guard(self, what: str, fn: Callable[[], T]) -> T | Skipped:
        """Run ``fn`` unless the store is known down; a connection error marks it down."""
        if self.is_down():
            return SKIP
        try:
            result = fn()
        except (self.redis.ConnectionError, self.redis.TimeoutError, OSError) as exc:
            self._mark_down(what, exc)
            return SKIP
        except self.redis.RedisError as exc:
            self.note_error(f"{what}: {exc}")
            return SKIP
        if not self.connected:
            self._mark_up()
        return result

    def strict(self, what: str, fn: Callable[[], T]) -> T:
        """Off the routing path (learner, publishing): errors are raised, not absorbed."""
        try:
            return fn()
        except self.redis.RedisError as exc:
            raise SharedStateError(f"Redis at {self.url}: could not {what}: {type(exc).__name__}: {exc}") from exc

    def note_error(self, message: str) -> None:
        """Count a failed operation for ``status()``."""
        with self._lock:
            self.errors += 1
            self.last_error = message

    def _mark_down(self, what: str, exc: BaseException) -> None:
        self.note_error(f"{what}: {type(exc).__name__}: {exc}")
        with self._lock:
            self._down_until = time.monotonic() + self.settings.retry_s
            if not self.connected:
                return
            self.connected = False
            self.outages += 1
        warnings.warn(
            f"Redis at {self.url} is unreachable ({what}: {exc}); routing on this process's own load, "
            f"feedback buffered in memory until it returns",
            SharedStateWarning, stacklevel=4,
        )
        self._on_down()

    def _mark_up(self) -> None:
        with self._lock:
            if self.connected:
                return
            self.connected = True
        warnings.warn(f"Redis at {self.url} is reachable again; re-taking leases and flushing feedback",
                      SharedStateWarning, stacklevel=4)
        self._on_up()
