"""Which runtime embeds with the bundled (or a local) BERT encoder: torch or ONNX Runtime.

``EncoderSettings.backend`` names it:

- ``"torch"``: :class:`~mixllm_router.encoders.HFEncoder` (torch + transformers), the reference;
- ``"onnx"``: :class:`~mixllm_router.encoders.OnnxEncoder` fp32 — the same vectors (≤ 1e-6 per
  coordinate), hence the same fingerprint: caches and checkpoints move freely between the two;
- ``"onnx-int8"``: dynamic int8 weights — fastest and smallest, cosine ≈ 0.994 to fp32; its own
  fingerprint, so its vectors never mix with fp32 ones in the cache, and a checkpoint trained with
  fp32 vectors loads with int8 only when the encoder is passed explicitly (with a warning that
  predictions may be off; they shift little, see docs/encoders.md);
- ``"auto"`` (default): ``"onnx"`` when onnxruntime, tokenizers and onnx are installed (the fastest
  backend that gives the torch path's vectors), else ``"torch"``. ``auto`` never picks int8 on its own:
  that would change the vectors behind the user's back.

``$MIXLLM_ENCODER_BACKEND``, when set, overrides the setting — the deployment knob for loading a
checkpoint saved with ``backend="torch"`` on a machine that has only ONNX Runtime.
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from typing import TYPE_CHECKING, Literal

from .._exceptions import ConfigError

if TYPE_CHECKING:
    from .base import QueryEncoder
    from .settings import EncoderSettings

__all__ = ["Backend", "BACKENDS", "resolve_backend", "text_encoder"]

Backend = Literal["torch", "onnx", "onnx-int8", "auto"]
BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8", "auto")
ENV_VAR = "MIXLLM_ENCODER_BACKEND"


def _installed(*modules: str) -> bool:
    try:
        return all(find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):  # a broken or blocked package counts as absent
        return False


def resolve_backend(backend: str) -> str:
    """The concrete backend (``torch``, ``onnx`` or ``onnx-int8``) that ``backend`` (or the env override) names."""
    chosen = os.environ.get(ENV_VAR) or backend
    if chosen not in BACKENDS:
        where = f"${ENV_VAR}" if os.environ.get(ENV_VAR) else "backend"
        raise ConfigError(f"{where} must be one of {', '.join(BACKENDS)}, not {chosen!r}")
    if chosen != "auto":
        return chosen
    if _installed("onnxruntime", "tokenizers", "onnx"):
        return "onnx"
    if _installed("torch", "transformers"):
        return "torch"
    # neither complete: ONNX Runtime with a graph cached earlier can still run without 'onnx'
    return "onnx" if _installed("onnxruntime", "tokenizers") else "torch"


def text_encoder(settings: EncoderSettings) -> QueryEncoder:
    """The (uncached) BERT encoder ``settings`` ask for (``kind`` ``minilm`` or ``hf``)."""
    model_path = settings.model_path if settings.kind == "hf" else None
    backend = resolve_backend(settings.backend)
    if backend == "torch":
        from .hf import HFEncoder

        return HFEncoder(model_path, max_tokens=settings.max_tokens, truncation=settings.truncation,
                         batch_size=settings.batch_size, num_threads=settings.num_threads)
    from .onnx_encoder import OnnxEncoder

    return OnnxEncoder(model_path, max_tokens=settings.max_tokens, truncation=settings.truncation,
                       batch_size=settings.batch_size, quantize="fp32" if backend == "onnx" else "int8",
                       cache_dir=settings.cache_dir, num_threads=settings.num_threads)


def build_encoder(settings: EncoderSettings) -> QueryEncoder:
    """The encoder a config asks for (wrapped in the on-disk cache when enabled)."""
    from pathlib import Path

    from .cache import CachedEncoder, default_cache_dir

    inner: QueryEncoder
    if settings.kind == "hashing":
        from .hashing import HashingEncoder

        inner = HashingEncoder()
    else:
        inner = text_encoder(settings)  # torch or ONNX Runtime, per settings.backend
    if settings.use_cache:
        root = Path(settings.cache_dir) if settings.cache_dir else default_cache_dir()
        return CachedEncoder(inner, root / "embeddings")
    return inner
