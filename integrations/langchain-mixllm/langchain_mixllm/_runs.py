"""Which LangChain run a ``ChatMixLLM`` call belongs to, and the callbacks of the candidate's run.

The candidate's run nests under the ``ChatMixLLM`` run (``parent_run_id`` = our run id). With
``invoke`` LangChain hands ``_generate`` the run manager; with ``stream`` it does not (it emits the
tokens itself), so :meth:`ChatMixLLM.stream` fixes the run id first and hands it down in a private
call keyword (:data:`PARENT_KW`, a :class:`Parent`). Which handlers the nested run gets is
``nested_callbacks``' choice (see :mod:`langchain_mixllm._calling`, :func:`observes`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config

from langchain_mixllm._calling import observes

__all__ = ["LC_ID_PREFIX", "PARENT_KW", "Parent", "child_callbacks", "message_ids", "run_id", "run_key",
           "with_parent"]

#: How LangChain prefixes the message id it derives from a run id (``lc_run--<run id>``).
LC_ID_PREFIX = "lc_run--"

#: Private call kwarg by which ``stream``/``astream`` tell ``_stream``/``_astream`` their run (see
#: :meth:`ChatMixLLM.stream`); stripped from the invocation params, so tracing never sees it.
PARENT_KW = "_mixllm_parent"


@dataclass(frozen=True)
class Parent:
    """The ChatMixLLM run a stream belongs to: its id and the config its callbacks came from."""

    run_id: uuid.UUID
    config: RunnableConfig


def run_id(run_manager: Any, kwargs: Mapping[str, Any]) -> uuid.UUID | None:
    """The id of the ChatMixLLM run of this call (``None`` outside a LangChain run)."""
    if run_manager is not None:
        return run_manager.run_id
    parent = kwargs.get(PARENT_KW)
    return parent.run_id if isinstance(parent, Parent) else None


def message_ids(run: uuid.UUID) -> tuple[str, str]:
    """The ids LangChain gives the answer's message in run ``run``: streamed, invoked."""
    return f"{LC_ID_PREFIX}{run}", f"{LC_ID_PREFIX}{run}-0"


def run_key(key: Any) -> str:
    """The run id a decision is found by, from a run id or from a message id (``lc_run--<run id>``,
    in a batch ``lc_run--<run id>-<index>``)."""
    key = str(key)
    if key.startswith(LC_ID_PREFIX):
        key = key[len(LC_ID_PREFIX):len(LC_ID_PREFIX) + 36]  # the run id (a UUID), without a batch index
    return key


def with_parent(config: RunnableConfig | None) -> tuple[RunnableConfig, Parent]:
    """``config`` with its run id fixed (a new one when it has none), and the :class:`Parent` to
    hand down to ``_stream`` / ``_astream``."""
    config = ensure_config(config)
    run = config.get("run_id") or uuid.uuid4()
    config = RunnableConfig(**{**config, "run_id": run})
    return config, Parent(run_id=run, config=config)


def child_callbacks(model: BaseChatModel, mode: str, run_manager: Any, kwargs: Mapping[str, Any], *,
                    is_async: bool) -> BaseCallbackManager | None:
    """Callbacks for the candidate's run under ``model``'s run: a child of ours (``parent_run_id =
    our run_id``) with the handlers ``mode`` (``nested_callbacks``) lets through."""
    from langchain_core.callbacks import AsyncCallbackManager, CallbackManager

    run = run_id(run_manager, kwargs)
    if run is None or mode == "none":
        return None
    if run_manager is None:  # a stream: rebuild what LangChain configured for our run
        parent: Parent = kwargs[PARENT_KW]
        run_manager = CallbackManager.configure(
            parent.config.get("callbacks"), model.callbacks, model.verbose,
            parent.config.get("tags"), model.tags, parent.config.get("metadata"), model.metadata,
        )
    handlers = list(run_manager.inheritable_handlers)
    if mode == "tracers":
        handlers = [h for h in handlers if observes(h)]
    manager_cls = AsyncCallbackManager if is_async else CallbackManager
    child = manager_cls(handlers=handlers, inheritable_handlers=handlers, parent_run_id=run)
    child.add_tags(run_manager.inheritable_tags)
    child.add_metadata(run_manager.inheritable_metadata)
    return child
