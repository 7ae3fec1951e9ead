"""Live routing state: in this process (default) or shared by many through Redis.

::

    router.share_state("redis://localhost:6379/0", namespace="prod")   # in every worker
    FeedbackLearner(router, RedisState(url, namespace="prod")).run()  # in one learner process

See :mod:`mixllm_router.state.redis` for what is shared and how, and ``docs/shared_state.md``.
The Redis parts import the ``redis`` package only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import InProcessState, SharedState, SharedStateWarning, StateStatus

if TYPE_CHECKING:
    from .learner import FeedbackLearner
    from .redis import RedisState, RedisStateSettings

__all__ = [
    "FeedbackLearner",
    "InProcessState",
    "RedisState",
    "RedisStateSettings",
    "SharedState",
    "SharedStateWarning",
    "StateStatus",
    "connect",
]

_LAZY = {"FeedbackLearner": ".learner", "RedisState": ".redis", "RedisStateSettings": ".redis"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def connect(state: SharedState | str | None, **options: Any) -> SharedState:
    """A state backend from a URL (``redis://…``, ``rediss://…``, ``unix://…``), an instance, or None.

    None (or ``"memory://"``) gives the in-process default. Options go to the backend
    (:class:`~mixllm_router.state.redis.RedisStateSettings` for Redis).
    """
    from .._exceptions import ConfigError

    if state is None or state == "memory://":
        if options:
            raise ConfigError(f"the in-process state takes no options, got {sorted(options)}")
        return InProcessState()
    if isinstance(state, SharedState):
        if options:
            raise ConfigError("options apply to a URL, not to a state object that is already built")
        return state
    if isinstance(state, str) and state.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisState

        return RedisState(state, **options)
    raise ConfigError(f"unknown state {state!r}: give redis://host:port/db, memory://, or a SharedState")
