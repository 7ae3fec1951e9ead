"""Rebuild a learned encoder saved inside a router checkpoint (JSON metadata + arrays, no pickle).

The router's config says how to build the *base* encoder (``EncoderSettings``); the learned part
travels in the checkpoint. The base encoder's fingerprint is stored too: when the base built from
the settings differs (another model folder, other truncation) and the metadata describes a
torch-free base (``base_spec``), that one is built instead; otherwise a warning says predictions
may be off, as :meth:`MixLLMRouter.load` does for a user-supplied encoder.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import CheckpointError, ConfigError, EncoderError

if TYPE_CHECKING:
    from ..config import EncoderSettings
    from ..encoders.base import QueryEncoder

__all__ = ["restore_encoder"]


def _from_spec(spec: Any) -> QueryEncoder | None:
    if not isinstance(spec, dict) or spec.get("kind") != "hashing":
        return None
    from ..encoders.hashing import HashingEncoder

    lo, hi = spec.get("ngram_range", (1, 2))
    return HashingEncoder(int(spec.get("dim", 512)), (int(lo), int(hi)), int(spec.get("seed", 0)),
                          projection=bool(spec.get("projection", True)))


def restore_encoder(meta: dict[str, Any], arrays: dict[str, np.ndarray], settings: EncoderSettings) -> QueryEncoder:
    """Inverse of an encoder's ``checkpoint_state()``: ``meta["kind"]`` says which class to rebuild."""
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind != "tag_enhanced":
        raise CheckpointError(f"the checkpoint holds an encoder of unknown kind {kind!r}")
    if meta.get("version") != 1:
        raise CheckpointError(f"tag-enhanced encoder state version {meta.get('version')!r} is not supported")
    if "a" not in arrays or "b" not in arrays:
        raise CheckpointError("the tag-enhanced encoder state lacks its arrays 'encoder.a' / 'encoder.b'")
    from ..encoders.backends import build_encoder
    from ..encoders.tag_enhanced import TagEnhancedEncoder

    want = meta.get("base_fingerprint")
    base = build_encoder(settings)
    if want and base.fingerprint != want:
        alt = _from_spec(meta.get("base_spec"))
        if alt is not None and alt.fingerprint == want:
            base = alt
        else:
            warnings.warn(
                f"the base encoder built from the saved settings ({base.fingerprint}) differs from the one the "
                f"tag-enhanced projection was trained on ({want}); predictions may be off",
                stacklevel=4,
            )
    try:
        encoder = TagEnhancedEncoder(base, arrays["a"], arrays["b"], activation=meta.get("activation", "linear"),
                                     info=meta.get("info") or {})
    except (EncoderError, ConfigError) as exc:
        raise CheckpointError(f"invalid tag-enhanced encoder state: {exc}") from exc
    saved = meta.get("fingerprint")
    if saved and base.fingerprint == want and encoder.fingerprint != saved:
        raise CheckpointError("the tag-enhanced projection arrays do not match their recorded fingerprint")
    return encoder
