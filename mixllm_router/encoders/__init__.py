"""Query encoders: text → unit vector ``e``, plus the embedding cache.

Importing this package is light: torch and transformers load on the first
:meth:`HFEncoder.encode` / :meth:`HFEncoder.count_tokens` call, never at import.

- :class:`HFEncoder`: a local Hugging Face encoder folder (default all-MiniLM-L6-v2), the default.
- :class:`OnnxEncoder`: the same encoder run by ONNX Runtime (fp32: the same vectors; or int8), no torch;
  ``EncoderSettings.backend`` chooses between the two (:mod:`.backends`).
- :class:`HashingEncoder`: hashed n-grams with scikit-learn; no torch, weaker, good for tests.
- :class:`CachedEncoder`: memory LRU + on-disk safetensors shards in front of any encoder.
- :func:`default_encoder`: the cached MiniLM encoder most users want.
- :class:`TagEnhancedEncoder` / :func:`fit_tag_enhanced_encoder`: embeddings reshaped by tag
  domains (MixLLM's first mechanism), with :class:`LLMTagger` or the offline :class:`OfflineTagger`.
"""

from __future__ import annotations

import os
from typing import Any

from .base import QueryEncoder
from .cache import CachedEncoder, CacheWarning, default_cache_dir
from .hashing import HashingEncoder
from .hf import HFEncoder
from .onnx_encoder import OnnxEncoder
from .tag_enhanced import TagEnhancedEncoder, fit_tag_enhanced_encoder
from .tagging import LLMTagger, OfflineTagger

__all__ = [
    "QueryEncoder",
    "HFEncoder",
    "OnnxEncoder",
    "HashingEncoder",
    "CachedEncoder",
    "CacheWarning",
    "default_encoder",
    "TagEnhancedEncoder",
    "fit_tag_enhanced_encoder",
    "LLMTagger",
    "OfflineTagger",
    "default_cache_dir",
]


def default_encoder(
    model_path: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    memory_items: int = 10_000,
    **hf_options: Any,
) -> CachedEncoder:
    """The library's default encoder: :class:`HFEncoder` behind a :class:`CachedEncoder`.

    ``cache_dir`` defaults to ``$MIXLLM_CACHE_DIR`` or ``~/.cache/mixllm-router``; the embeddings
    live in ``<cache_dir>/embeddings``. ``hf_options`` go to :class:`HFEncoder` (``max_tokens``,
    ``truncation``, ``batch_size``, ``device``, ``num_threads``...). Cheap: nothing is loaded yet.
    """
    root = default_cache_dir() if cache_dir is None else cache_dir
    inner = HFEncoder(model_path, **hf_options)
    return CachedEncoder(inner, os.path.join(os.fspath(root), "embeddings"), memory_items=memory_items)
