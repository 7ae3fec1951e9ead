"""Domains: cluster queries by their tags.

Steps (MixLLM §3.1, our formulas):

1. normalise each tag (:func:`normalize_tag`): lowercase, ``_``/``-`` → space, outer punctuation
   stripped, whitespace collapsed, a light plural → singular lemmatisation per word
   ("Lists" → "list", "queries" → "query"), so that spelling variants become one tag;
2. embed every distinct tag with the base encoder ``t_j`` (unit vectors) and describe query ``i``
   by the normalised mean of its tags' embeddings ``m_i = normalize(Σ_{j∈tags(i)} t_j)``;
3. k-means on the ``m_i`` (queries without tags take no part and get domain ``-1``); the number
   of domains ``K`` maximises the silhouette score over ``k_range`` unless given;
4. each query gets its domain ``argmin_k ||m_i − μ_k||`` and a soft mix
   ``w_ik = softmax_k(−||m_i − μ_k||² / T)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import ConfigError

if TYPE_CHECKING:
    from .base import QueryEncoder

__all__ = ["normalize_tag", "normalize_tags", "Domains", "fit_domains", "tag_profiles"]

_KEEP_S = ("ss", "us", "is", "ics", "ous", "sis", "ness")
_OUTER_PUNCT = " \t\n\r.,;:!?\"'`()[]{}<>#*"


def _singular(word: str) -> str:
    if len(word) <= 3 or not word.endswith("s") or word.endswith(_KEEP_S):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses", "zes")):
        return word[:-2]
    return word[:-1]


def normalize_tag(tag: str) -> str:
    """``"  Python_Lists! "`` → ``"python list"``; ``""`` when nothing is left."""
    text = re.sub(r"[_\-/]+", " ", str(tag).lower())
    text = " ".join(text.split()).strip(_OUTER_PUNCT)
    return " ".join(_singular(w) for w in text.split())


def normalize_tags(tags: Sequence[Sequence[str]]) -> list[list[str]]:
    """:func:`normalize_tag` on every tag; empty and duplicate tags of a query are dropped."""
    out = []
    for row in tags:
        seen: list[str] = []
        for t in row:
            n = normalize_tag(t)
            if n and n not in seen:
                seen.append(n)
        out.append(seen)
    return out


def tag_profiles(tags: Sequence[Sequence[str]], encoder: QueryEncoder) -> tuple[np.ndarray, np.ndarray]:
    """``(profiles (n, d), has_tags (n,))``: normalised mean tag embedding per query (zeros if none)."""
    vocab = sorted({t for row in tags for t in row})
    n = len(tags)
    profiles = np.zeros((n, encoder.dim), dtype=np.float32)
    has = np.array([len(row) > 0 for row in tags])
    if not vocab:
        return profiles, has
    emb = np.asarray(encoder.encode(vocab), dtype=np.float32)
    index = {t: j for j, t in enumerate(vocab)}
    for i, row in enumerate(tags):
        if row:
            v = emb[[index[t] for t in row]].sum(axis=0)
            norm = float(np.linalg.norm(v))
            profiles[i] = v / norm if norm > 0 else v
    return profiles, has


@dataclass
class Domains:
    """The domains found: centroids ``μ_k`` in tag-profile space, labels and the choice of K."""

    centroids: np.ndarray
    labels: np.ndarray  # (n,) domain per training query, -1 for queries without tags
    silhouette: dict[int, float] = field(default_factory=dict)  # K → silhouette score tried
    top_tags: list[list[str]] = field(default_factory=list)  # most frequent tags per domain

    @property
    def n_domains(self) -> int:
        return int(self.centroids.shape[0])

    def _sq_dist(self, profiles: np.ndarray) -> np.ndarray:
        return (
            (profiles**2).sum(1, keepdims=True) - 2 * profiles @ self.centroids.T + (self.centroids**2).sum(1)[None, :]
        )

    def assign(self, profiles: np.ndarray) -> np.ndarray:
        """Hard domain of each profile (nearest centroid); rows of zeros (no tags) get ``-1``."""
        labels = np.argmin(self._sq_dist(profiles), axis=1)
        labels[~np.any(profiles != 0, axis=1)] = -1
        return labels

    def soft(self, profiles: np.ndarray, temperature: float = 0.05) -> np.ndarray:
        """Soft mix ``w_ik = softmax_k(−||m_i − μ_k||² / T)``; rows of zeros (no tags) are all zero."""
        logits = -self._sq_dist(profiles) / max(float(temperature), 1e-6)
        logits -= logits.max(axis=1, keepdims=True)
        w = np.exp(logits)
        w /= w.sum(axis=1, keepdims=True)
        w[~np.any(profiles != 0, axis=1)] = 0.0
        return w

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description (kept in the encoder's checkpoint metadata)."""
        sizes = np.bincount(self.labels[self.labels >= 0], minlength=self.n_domains).tolist()
        return {
            "n_domains": self.n_domains,
            "sizes": sizes,
            "untagged": int((self.labels < 0).sum()),
            "silhouette": {str(k): round(v, 4) for k, v in self.silhouette.items()},
            "top_tags": self.top_tags,
        }


def fit_domains(
    tags: Sequence[Sequence[str]],
    encoder: QueryEncoder,
    *,
    n_domains: int | None = None,
    k_range: tuple[int, int] = (2, 20),
    seed: int = 0,
    silhouette_sample: int = 3000,
) -> Domains:
    """Cluster queries into domains by their (normalised) tags; see the module docstring.

    ``n_domains`` fixes K; otherwise K in ``k_range`` (inclusive) with the best silhouette wins
    (computed on at most ``silhouette_sample`` queries, seeded).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    norm = normalize_tags(tags)
    profiles, has = tag_profiles(norm, encoder)
    x = profiles[has]
    distinct = np.unique(np.round(x, 5), axis=0).shape[0] if len(x) else 0
    if n_domains is not None:
        if n_domains < 1:
            raise ConfigError(f"n_domains must be >= 1, not {n_domains}")
        if n_domains > distinct:
            raise ConfigError(f"n_domains={n_domains} but the tagged queries have only {distinct} distinct tag profiles")
        candidates = [int(n_domains)]
    else:
        lo, hi = k_range
        if lo < 2 or hi < lo:
            raise ConfigError(f"k_range must be (lo, hi) with 2 <= lo <= hi, not {k_range}")
        candidates = list(range(lo, min(hi, distinct, len(x) - 1) + 1))
    if not candidates:  # fewer than 2 distinct profiles: one domain (nothing to separate)
        centroids = x.mean(0, keepdims=True) if len(x) else np.zeros((1, encoder.dim), dtype=np.float32)
        labels = np.where(has, 0, -1)
        return Domains(centroids.astype(np.float32), labels, {}, _top_tags(norm, labels, 1))
    scores: dict[int, float] = {}
    best: tuple[float, Any] | None = None
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(x), size=min(silhouette_sample, len(x)), replace=False)
    for k in candidates:
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
        if len(candidates) == 1:
            best = (0.0, km)
            break
        s = float(silhouette_score(x[sample], km.labels_[sample])) if len(set(km.labels_[sample])) > 1 else -1.0
        scores[k] = s
        if best is None or s > best[0] + 1e-9:
            best = (s, km)
    assert best is not None
    km = best[1]
    labels = np.full(len(norm), -1, dtype=np.int64)
    labels[has] = km.labels_
    k = int(km.n_clusters)
    return Domains(km.cluster_centers_.astype(np.float32), labels, scores, _top_tags(norm, labels, k))


def _top_tags(tags: Sequence[Sequence[str]], labels: np.ndarray, k: int, n: int = 5) -> list[list[str]]:
    from collections import Counter

    counters = [Counter() for _ in range(k)]  # type: list[Counter[str]]
    for row, lab in zip(tags, labels):
        if lab >= 0:
            counters[int(lab)].update(row)
    return [[t for t, _ in c.most_common(n)] for c in counters]
