"""What a framework wrapper (LangChain's ``ChatMixLLM``, LlamaIndex's ``MixLLM``) does to get the
router it routes with, stated once for both.

A wrapper is configured with a fitted router or a checkpoint folder, an optional shared state
(``redis://...``) and its candidates as that framework's models: the three settings are the same
fields in both (:func:`router_field`, :func:`checkpoint_field`, :func:`state_field`, with the same
environment defaults). On first use a wrapper needs the router, shared through the state, with a
client attached to every candidate, built once even when threads race for it (:func:`lazy_router`,
over :func:`build_router`). Only how a framework's model becomes a
:class:`~mixllm_router.clients.ChatClient` differs, so that is the one thing a wrapper passes in
(``client_for``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import Field

from .router import MixLLMRouter

if TYPE_CHECKING:
    from .clients.base import ChatClient
    from .state.base import SharedState

__all__ = ["RouterWrapper", "build_router", "checkpoint_field", "lazy_router", "router_field", "state_field"]


def router_field() -> Any:
    """The wrapper's ``router`` field: a fitted router (not serialised)."""
    return Field(default=None, exclude=True, description="A fitted MixLLMRouter (else checkpoint_path).")


def checkpoint_field() -> Any:
    """The wrapper's ``checkpoint_path`` field, ``$MIXLLM_CHECKPOINT`` by default."""
    return Field(
        default_factory=lambda: os.environ.get("MIXLLM_CHECKPOINT") or None,
        description="Router checkpoint folder; default: $MIXLLM_CHECKPOINT. Loaded on first use.",
    )


def state_field() -> Any:
    """The wrapper's ``state`` field (a shared-state URL), ``$MIXLLM_STATE`` by default."""
    return Field(
        default_factory=lambda: os.environ.get("MIXLLM_STATE") or None,
        description="Share load, feedback and model versions between workers: redis://host:port/db "
        "(default: $MIXLLM_STATE; none: this process only). See mixllm-router's docs/shared_state.md.",
    )


def build_router(
    router: MixLLMRouter | None,
    checkpoint_path: str | Path | None,
    *,
    state: SharedState | str | None,
    owner: str,
    candidates: Mapping[str, Any],
    client_for: Callable[[str, Any], ChatClient],
) -> MixLLMRouter:
    """The router a wrapper was configured with (:meth:`MixLLMRouter.from_source`: ``router`` as
    given, else the checkpoint at ``checkpoint_path``, shared through ``state``), with every one
    of ``candidates`` attached: ``client_for(name, candidate)`` is the client that serves it.

    ``owner`` (the wrapper's class name) is named in the error when neither a router nor a
    checkpoint is given.
    """
    chosen = MixLLMRouter.from_source(router, checkpoint_path, state=state, owner=owner)
    for name, candidate in candidates.items():
        chosen.set_client(name, client_for(name, candidate))
    return chosen


class RouterWrapper(Protocol):
    """A wrapper as :func:`lazy_router` reads it: the three fields above, its ``candidates``, and
    two private attributes, the router once built (``None`` before) and the lock that guards it."""

    _router: MixLLMRouter | None
    _lock: Any  # a threading.Lock

    # read-only here (properties), so a wrapper's narrower field types fit
    @property
    def router(self) -> Any: ...

    @property
    def checkpoint_path(self) -> str | None: ...

    @property
    def state(self) -> str | None: ...

    @property
    def candidates(self) -> Mapping[str, Any]: ...


def lazy_router(wrapper: RouterWrapper, owner: str, client_for: Callable[[str, Any], ChatClient]) -> MixLLMRouter:
    """The wrapper's router: built by :func:`build_router` on first use (never at construction, so
    a wrapper can be made before its checkpoint exists), once, under the wrapper's lock."""
    with wrapper._lock:
        if wrapper._router is None:
            wrapper._router = build_router(wrapper.router, wrapper.checkpoint_path, state=wrapper.state, owner=owner,
                                           candidates=wrapper.candidates, client_for=client_for)
        return wrapper._router
