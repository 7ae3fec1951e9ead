"""The options of :class:`~mixllm_router.state.RedisState`, and how feedback sequence numbers are
read from the Redis stream.

They sit apart from the backend so that reading them (settings checks, documentation, the
sequence numbers the learner computes) needs neither the ``redis`` package nor a connection.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from .._settings import Settings

__all__ = ["RedisStateSettings", "seq_from_stream_id"]


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
