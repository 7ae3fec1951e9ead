"""Rebuild a learned encoder saved inside a router checkpoint (JSON metadata + arrays, no pickle)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import CheckpointError

if TYPE_CHECKING:
    from ..config import EncoderSettings
    from .base import QueryEncoder

__all__ = ["restore_encoder"]


def restore_encoder(meta: dict[str, Any], arrays: dict[str, np.ndarray], settings: EncoderSettings) -> QueryEncoder:
    """Inverse of an encoder's ``checkpoint_state()``: ``meta["kind"]`` says which class to rebuild."""
    kind = meta.get("kind") if isinstance(meta, dict) else None
    raise CheckpointError(f"the checkpoint holds an encoder of unknown kind {kind!r}")
