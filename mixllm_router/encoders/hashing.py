"""A torch-free query encoder: hashed word n-grams, sub-linear TF, signed random projection.

For installs without torch and for fast tests. It is WEAKER than MiniLM (it sees surface words,
not meaning; see ``benchmarks/truncation.py`` for numbers) and needs no fitting::

    x_j = log(1 + count_j)                    # j = hashed word / punctuation n-gram (2^20 buckets)
    e_k = Σ_j s_j x_j  over j with b_j = k    # b_j ∈ [0, dim), s_j ∈ {-1, +1} drawn from ``seed``
    e ← e / ‖e‖₂

The projection (a sparse Johnson-Lindenstrauss map) keeps inner products of the 2^20-dimensional
TF vectors approximately, in ``dim`` dimensions. With ``projection=False`` scikit-learn's own
signed hashing maps straight to ``dim`` buckets instead (``seed`` then has no effect). A text with
no tokens (e.g. ``""``) gets a fixed unit vector, so every row stays unit norm.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._exceptions import ConfigError
from .hf import _check_texts

__all__ = ["HashingEncoder"]

_TOKEN = r"(?u)\w+|[^\w\s]"
_N_FEATURES = 2**20


@functools.lru_cache(maxsize=8)
def _projection(dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket ``b_j`` and sign ``s_j`` of each of the 2^20 hashed features (shared, read-only)."""
    rng = np.random.default_rng(seed)
    buckets = rng.integers(0, dim, size=_N_FEATURES, dtype=np.int64)
    signs = rng.integers(0, 2, size=_N_FEATURES).astype(np.float64) * 2.0 - 1.0
    buckets.flags.writeable = False
    signs.flags.writeable = False
    return buckets, signs


class HashingEncoder:
    """Bag of hashed n-grams → ``dim`` unit vectors, with scikit-learn's ``HashingVectorizer``."""

    def __init__(
        self, dim: int = 512, ngram_range: tuple[int, int] = (1, 2), seed: int = 0, *,
        projection: bool = True,
    ) -> None:
        if not isinstance(dim, int) or dim < 2:
            raise ConfigError(f"dim must be an int >= 2, not {dim!r}")
        lo, hi = ngram_range
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise ConfigError(f"ngram_range must be (lo, hi) with 1 <= lo <= hi, not {ngram_range!r}")
        self._dim = dim
        self.ngram_range = (lo, hi)
        self.seed = int(seed)
        self.projection = projection
        self._vectorizer: Any = None
        self._proj: Any = None

    def __repr__(self) -> str:
        return f"HashingEncoder(dim={self._dim}, ngram_range={self.ngram_range}, seed={self.seed})"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        lo, hi = self.ngram_range
        proj = f"proj{self.seed}" if self.projection else "direct"
        return f"hashing:v1:{self._dim}:{lo}-{hi}:{proj}"

    def count_tokens(self, text: str) -> int:
        """Words and punctuation marks (a rough stand-in for a subword tokenizer's count)."""
        if not isinstance(text, str):
            from .._exceptions import EncoderError

            raise EncoderError(f"count_tokens expects a str, got {type(text).__name__}")
        return len(re.findall(_TOKEN, text))

    def _build(self) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        n_features = _N_FEATURES if self.projection else self._dim
        self._vectorizer = HashingVectorizer(
            n_features=n_features, ngram_range=self.ngram_range, token_pattern=_TOKEN,
            lowercase=True, alternate_sign=not self.projection, norm=None, dtype=np.float64,
        )
        if self.projection:
            self._proj = _projection(self._dim, self.seed)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        texts = _check_texts(texts)
        if self._vectorizer is None:
            self._build()
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        x = self._vectorizer.transform(texts)
        x.data = np.sign(x.data) * np.log1p(np.abs(x.data))  # sub-linear TF, sign kept
        if self.projection:
            buckets, signs = self._proj
            coo = x.tocoo()
            flat = np.bincount(
                coo.row.astype(np.int64) * self._dim + buckets[coo.col],
                weights=coo.data * signs[coo.col], minlength=len(texts) * self._dim,
            )
            dense = flat.reshape(len(texts), self._dim)
        else:
            dense = np.asarray(x.todense())
        norms = np.linalg.norm(dense, axis=1)
        empty = norms == 0
        dense[empty] = 1.0
        norms[empty] = np.sqrt(self._dim)
        return (dense / norms[:, None]).astype(np.float32)
