"""Taggers: query texts → short open-set tags ("python list manipulation", "physical science").

Why tags: the MixLLM paper clusters fine-grained tags into *domains* and fine-tunes the query
encoder so that queries of one domain sit together (see :mod:`.tag_enhanced`). A tag names what a
query asks for independently of its wording and few-shot boilerplate, which a generic sentence
embedding mixes in.

Every tagger follows one small protocol, ``tag(queries) -> list[list[str]]`` (one list per query,
possibly empty), and has a ``fingerprint`` that changes whenever its tags could change, so tags can
be cached on disk (:class:`CachedTagger`, key ``sha256(fingerprint + "\\0" + text)``).

- :class:`LLMTagger`: asks any chat model with an InsTag-style prompt for a strict JSON answer.
  A malformed answer, a timeout or a transient error is retried once; then the query is skipped
  (no tags) with a :class:`TaggingWarning`. Tagging never raises on a model's failure, so it never
  breaks training.
- :class:`OfflineTagger`: no LLM. TF-IDF keyphrases (1–3-grams) of the end of each query, where
  few-shot prompts put the real question; phrases must occur in at least ``min_df`` queries so
  that tags are shared (a tag seen once cannot define a domain) and in at most ``max_df`` of them
  (boilerplate such as "print only a single choice" is dropped).
- :class:`LabelTagger`: labels the data already carries (e.g. RouterBench's ``task`` column).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._exceptions import ConfigError, EncoderError, PermanentClientError

__all__ = [
    "Tagger",
    "TaggingWarning",
    "LLMTagger",
    "OfflineTagger",
    "LabelTagger",
    "CachedTagger",
    "INSTAG_PROMPT",
    "parse_tags",
    "tagger_fingerprint",
    "default_tag_cache_dir",
]


class TaggingWarning(UserWarning):
    """Some queries could not be tagged (bad answers, timeouts); they were left without tags."""


@runtime_checkable
class Tagger(Protocol):
    """Anything that tags query texts. A ``fingerprint`` attribute (optional) enables caching."""

    def tag(self, queries: Sequence[str]) -> list[list[str]]: ...


def tagger_fingerprint(tagger: Any) -> str:
    """The tagger's ``fingerprint`` if it has one, else its class name (cache keys, encoder info)."""
    fp = getattr(tagger, "fingerprint", None)
    return str(fp) if fp else type(tagger).__name__


def _check_queries(queries: Sequence[str]) -> list[str]:
    if isinstance(queries, str):
        raise EncoderError("tag() expects a list of strings, got a single str; wrap it: [text]")
    items = list(queries)
    for i, q in enumerate(items):
        if not isinstance(q, str):
            raise EncoderError(f"tag() expects str items; item {i} is {type(q).__name__}")
    return items


# ----------------------------------------------------------------------------------- LLM tagger
#: InsTag's prompt (Lu et al., 2023, "#InsTag: Instruction Tagging for Analyzing Supervised
#: Fine-tuning of LLMs"), asking for the intentions and topics of a query as JSON.
INSTAG_PROMPT = (
    "You are a helpful assistant. Please identify tags of user intentions in the following user "
    "query and provide an explanation for each tag. Tags are short, fine-grained phrases naming "
    "the task, skill, topic or domain the query needs (for example \"python programming\", "
    "\"list manipulation\", \"commonsense reasoning\", \"physics\"). Give at most {max_tags} tags. "
    "Answer with JSON only, no other text, in exactly this format: "
    '{{"tags": [{{"tag": str, "explanation": str}}]}}'
)

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


def parse_tags(text: str, *, max_tags: int = 10) -> list[str]:
    """Parse a tagger's answer: ``{"tags": [{"tag", "explanation"}, ...]}`` or a list of strings.

    Also accepted: ``{"tags": ["a", "b"]}``, a list of ``{"tag": ...}`` objects, and the same inside
    a Markdown code fence (chat models add one even when told not to). Anything else raises
    ``ValueError`` (the caller retries). Tags are stripped, empty ones dropped, duplicates removed.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected text, got {type(text).__name__}")
    fenced = _FENCE.match(text)
    data = json.loads(fenced.group(1) if fenced else text)
    items = data.get("tags") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError("the answer has no list of tags")
    tags: list[str] = []
    for item in items:
        value = item.get("tag") if isinstance(item, dict) else item
        if not isinstance(value, str):
            raise ValueError(f"a tag must be a string, got {value!r:.60}")
        value = " ".join(value.split())
        if value and value not in tags:
            tags.append(value)
    return tags[:max_tags]


def _as_chat_client(chat: Any) -> Any:
    """A ChatClient as is; a LangChain chat model wrapped in :class:`LangChainClient`."""
    if callable(getattr(chat, "complete", None)):
        return chat
    if callable(getattr(chat, "invoke", None)):
        from ..clients.langchain import LangChainClient

        return LangChainClient(chat)
    raise ConfigError(
        f"LLMTagger needs a mixllm_router ChatClient or a LangChain chat model, got {type(chat).__name__}"
    )


class LLMTagger:
    """Tag queries with any chat model (InsTag-style prompt, strict JSON answer).

    ``chat``: a :class:`~mixllm_router.clients.ChatClient` (e.g.
    ``OpenAIClient("qwen2.5-7b", base_url="http://localhost:8000/v1")``) or a LangChain chat model.
    Each query is sent once as the user message (its last ``max_query_chars`` characters: few-shot
    prompts put the real question last); a malformed answer or a transient error/timeout is retried
    ``retries`` times, then the query gets no tags and a :class:`TaggingWarning` is emitted (one
    warning per ``tag`` call, counting the skipped queries). A permanent error (bad key, unknown
    model) is not retried. ``max_workers`` queries are tagged concurrently (threads).
    """

    def __init__(
        self,
        chat: Any,
        *,
        max_tags: int = 8,
        max_query_chars: int = 2000,
        retries: int = 1,
        timeout: float | None = 60.0,
        max_tokens: int = 400,
        max_workers: int = 4,
        prompt: str = INSTAG_PROMPT,
    ) -> None:
        if max_tags < 1 or max_query_chars < 1 or retries < 0 or max_workers < 1:
            raise ConfigError("max_tags, max_query_chars and max_workers must be >= 1, retries >= 0")
        self.client = _as_chat_client(chat)
        self.max_tags = int(max_tags)
        self.max_query_chars = int(max_query_chars)
        self.retries = int(retries)
        self.timeout = timeout
        self.max_tokens = int(max_tokens)
        self.max_workers = int(max_workers)
        self.prompt = prompt
        self.last_failures: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"LLMTagger({self.client!r}, max_tags={self.max_tags})"

    @property
    def fingerprint(self) -> str:
        model = str(getattr(self.client, "model", "") or type(self.client).__name__)
        digest = hashlib.sha256(f"{self.prompt}\0{self.max_tags}\0{self.max_query_chars}".encode()).hexdigest()[:12]
        return f"llm:{model}:{digest}"

    def _one(self, query: str) -> tuple[list[str], str | None]:
        """Tags of one query, or ``([], reason)`` after the retries are spent."""
        messages = [
            {"role": "system", "content": self.prompt.format(max_tags=self.max_tags)},
            {"role": "user", "content": query[-self.max_query_chars:]},
        ]
        reason = "no attempt"
        for _ in range(self.retries + 1):
            try:
                answer = self.client.complete(
                    messages, max_tokens=self.max_tokens, temperature=0.0, timeout=self.timeout
                )
                return parse_tags(answer.text or "", max_tags=self.max_tags), None
            except PermanentClientError as exc:
                return [], f"{type(exc).__name__}: {exc}"
            except (ValueError, AttributeError) as exc:  # malformed answer (JSONDecodeError is a ValueError)
                reason = f"malformed answer ({exc})"
            except Exception as exc:  # timeouts, transient errors, anything a foreign model raises
                reason = f"{type(exc).__name__}: {exc}"
        return [], reason

    def tag_with_status(self, queries: Sequence[str], *, show_progress: bool = False) -> tuple[list[list[str]], list[bool]]:
        """Tags per query and whether tagging succeeded (a skipped query must not be cached)."""
        items = _check_queries(queries)
        results: list[tuple[list[str], str | None]]
        if self.max_workers == 1 or len(items) <= 1:
            it: Any = items
            if show_progress:
                from tqdm.auto import tqdm

                it = tqdm(items, desc="tagging", unit="query")
            results = [self._one(q) for q in it]
        else:
            with ThreadPoolExecutor(self.max_workers) as pool:
                mapped: Any = pool.map(self._one, items)
                if show_progress:
                    from tqdm.auto import tqdm

                    mapped = tqdm(mapped, total=len(items), desc="tagging", unit="query")
                results = list(mapped)
        self.last_failures = {i: r for i, (_, r) in enumerate(results) if r is not None}
        if self.last_failures:
            first = next(iter(self.last_failures.values()))
            warnings.warn(
                f"LLMTagger: {len(self.last_failures)} of {len(items)} queries were left without tags "
                f"after {self.retries + 1} attempt(s) each (first reason: {first})",
                TaggingWarning,
                stacklevel=3,
            )
        return [t for t, _ in results], [r is None for _, r in results]

    def tag(self, queries: Sequence[str], *, show_progress: bool = False) -> list[list[str]]:
        return self.tag_with_status(queries, show_progress=show_progress)[0]


# ------------------------------------------------------------------------------- offline tagger
class OfflineTagger:
    """Keyphrase tags without an LLM: the top TF-IDF n-grams of the end of each query.

    The IDF is learned from a corpus (:meth:`fit`; ``tag`` fits on its own input when unfitted),
    so the ``fingerprint`` includes a digest of that corpus: cached tags never mix corpora.
    ``tail_chars``: only the last characters of a query are tagged (0: the whole text); few-shot
    prompts carry their worked examples first and the real question last. A phrase becomes a tag
    when it occurs in ``min_df`` or more queries and in at most a ``max_df`` share of them; each
    query keeps its ``top_k`` best phrases (by TF-IDF weight).
    """

    def __init__(
        self,
        *,
        top_k: int = 5,
        ngram_range: tuple[int, int] = (1, 2),
        min_df: int = 3,
        max_df: float = 0.2,
        tail_chars: int = 600,
    ) -> None:
        if top_k < 1 or min_df < 1 or not 0 < max_df <= 1 or tail_chars < 0:
            raise ConfigError("OfflineTagger: top_k, min_df >= 1, 0 < max_df <= 1, tail_chars >= 0")
        self.top_k = int(top_k)
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
        self.min_df = int(min_df)
        self.max_df = float(max_df)
        self.tail_chars = int(tail_chars)
        self._vectorizer: Any = None
        self._corpus_digest: str | None = None

    def __repr__(self) -> str:
        return f"OfflineTagger(top_k={self.top_k}, ngram_range={self.ngram_range}, tail_chars={self.tail_chars})"

    @property
    def is_fitted(self) -> bool:
        return self._vectorizer is not None

    @property
    def fingerprint(self) -> str:
        if self._corpus_digest is None:
            raise EncoderError("OfflineTagger has no fingerprint before fit(corpus)")
        lo, hi = self.ngram_range
        return (f"offline-tfidf:v1:{self.top_k}:{lo}-{hi}:{self.min_df}:{self.max_df}:"
                f"{self.tail_chars}:{self._corpus_digest}")

    def _focus(self, text: str) -> str:
        return text[-self.tail_chars:] if self.tail_chars else text

    def fit(self, corpus: Sequence[str]) -> OfflineTagger:
        from sklearn.feature_extraction.text import TfidfVectorizer

        docs = [self._focus(t) for t in _check_queries(corpus)]
        min_df = min(self.min_df, max(1, len(docs)))
        max_df = max(self.max_df, min(1.0, min_df / max(len(docs), 1)))
        self._vectorizer = TfidfVectorizer(
            ngram_range=self.ngram_range, min_df=min_df, max_df=max_df, stop_words="english",
            sublinear_tf=True, lowercase=True, token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b",
        )
        try:
            self._vectorizer.fit(docs)
        except ValueError:  # empty vocabulary (tiny or odd corpus): tag nothing rather than fail
            self._vectorizer = _EmptyVectorizer()
        h = hashlib.sha256()
        for t in sorted(set(corpus)):
            h.update(hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest())
        self._corpus_digest = h.hexdigest()[:16]
        return self

    def tag(self, queries: Sequence[str], *, show_progress: bool = False) -> list[list[str]]:
        items = _check_queries(queries)
        if not self.is_fitted:
            self.fit(items)
        if not items:
            return []
        x = self._vectorizer.transform([self._focus(t) for t in items]).tocsr()
        vocab = self._vectorizer.get_feature_names_out()
        out: list[list[str]] = []
        for i in range(x.shape[0]):
            row = x.getrow(i)
            order = np.argsort(-row.data, kind="stable")
            out.append([str(vocab[row.indices[j]]) for j in order[: self.top_k]])
        return out


class _EmptyVectorizer:
    def transform(self, docs: Sequence[str]) -> Any:
        from scipy.sparse import csr_matrix

        return csr_matrix((len(docs), 0))

    def get_feature_names_out(self) -> np.ndarray:
        return np.array([], dtype=object)


class LabelTagger:
    """Labels the data already carries: ``labels`` maps a query text to one label or a list.

    Queries missing from the mapping get no tags. :meth:`from_dataset` uses a
    :class:`~mixllm_router.RoutingDataset`'s ``task`` column (RouterBench has one; user data may not).
    """

    def __init__(self, labels: Mapping[str, str | Sequence[str]]) -> None:
        self.labels = {q: ([v] if isinstance(v, str) else [str(x) for x in v]) for q, v in labels.items()}
        h = hashlib.sha256()
        for q in sorted(self.labels):
            h.update(hashlib.sha256(q.encode("utf-8", "surrogatepass")).digest() + json.dumps(self.labels[q]).encode())
        self._digest = h.hexdigest()[:16]

    @classmethod
    def from_dataset(cls, data: Any) -> LabelTagger:
        labels = {q: t for q, t in zip(data.queries, data.tasks) if t}
        if not labels:
            raise ConfigError("the dataset has no task labels; use the offline or an LLM tagger instead")
        return cls(labels)

    @property
    def fingerprint(self) -> str:
        return f"labels:{self._digest}"

    def tag(self, queries: Sequence[str], *, show_progress: bool = False) -> list[list[str]]:
        return [list(self.labels.get(q, [])) for q in _check_queries(queries)]


# ------------------------------------------------------------------------------------ tag cache
def default_tag_cache_dir() -> Path:
    """``<cache root>/tags``, next to ``<cache root>/embeddings`` (root: ``$MIXLLM_CACHE_DIR``)."""
    from .cache import default_cache_dir

    return default_cache_dir() / "tags"


class CachedTagger:
    """Tags on disk, one JSON file per tagger fingerprint: ``<dir>/<sha256(fingerprint)[:16]>.json``.

    The file holds ``{"version", "fingerprint", "tags": {sha256(fingerprint + "\\0" + text): [...]}}``.
    New tags are merged under a file lock and written atomically (temporary file + ``os.replace``),
    so concurrent runs never lose each other's work and a reader never sees half a file. Queries
    an :class:`LLMTagger` had to skip are not cached (they are retried next time). Cache trouble
    (unreadable file, read-only folder) warns and tags without the cache.
    """

    def __init__(self, tagger: Any, cache_dir: str | os.PathLike[str] | None = None) -> None:
        if not callable(getattr(tagger, "tag", None)):
            raise ConfigError(f"CachedTagger needs a tagger with tag(queries), got {type(tagger).__name__}")
        self.tagger = tagger
        self.directory = Path(cache_dir).expanduser() if cache_dir is not None else default_tag_cache_dir()
        self.hits = 0
        self.misses = 0

    @property
    def fingerprint(self) -> str:
        return tagger_fingerprint(self.tagger)

    def _path(self, fp: str) -> Path:
        return self.directory / f"{hashlib.sha256(fp.encode()).hexdigest()[:16]}.json"

    @staticmethod
    def key(fp: str, text: str) -> str:
        return hashlib.sha256(fp.encode() + b"\0" + text.encode("utf-8", "surrogatepass")).hexdigest()

    def _read(self, path: Path, fp: str) -> dict[str, list[str]]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            warnings.warn(f"tag cache {path} is unreadable ({exc}); ignoring it", TaggingWarning, stacklevel=4)
            return {}
        if not isinstance(data, dict) or data.get("fingerprint") != fp or not isinstance(data.get("tags"), dict):
            warnings.warn(f"tag cache {path} does not match this tagger; ignoring it", TaggingWarning, stacklevel=4)
            return {}
        return {k: [str(t) for t in v] for k, v in data["tags"].items() if isinstance(v, list)}

    def _write(self, path: Path, fp: str, new: dict[str, list[str]]) -> None:
        from filelock import FileLock

        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with FileLock(str(path) + ".lock", timeout=60):
                merged = self._read(path, fp)
                merged.update(new)
                blob = json.dumps({"version": 1, "fingerprint": fp, "tags": merged}, ensure_ascii=False)
                fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{path.name}.", suffix=".tmp")
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as fh:
                        fh.write(blob)
                    os.replace(tmp, path)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
        except Exception as exc:  # read-only folder, disk full, lock timeout
            warnings.warn(f"could not write the tag cache {path} ({exc}); tags were not cached",
                          TaggingWarning, stacklevel=4)

    def tag(self, queries: Sequence[str], *, show_progress: bool = False) -> list[list[str]]:
        items = _check_queries(queries)
        fit: Callable[[Sequence[str]], Any] | None = getattr(self.tagger, "fit", None)
        if fit is not None and not getattr(self.tagger, "is_fitted", True):
            fit(items)  # the fingerprint of a corpus-fitted tagger exists only after fit
        fp = self.fingerprint
        path = self._path(fp)
        stored = self._read(path, fp)
        keys = [self.key(fp, q) for q in items]
        out: list[list[str] | None] = [stored.get(k) for k in keys]
        first: dict[str, int] = {}
        for i, (q, t) in enumerate(zip(items, out)):
            if t is None:
                first.setdefault(q, i)
        todo = list(first.items())
        self.hits += len(items) - sum(1 for t in out if t is None)
        if todo:
            texts = [q for q, _ in todo]
            self.misses += len(texts)
            with_status = getattr(self.tagger, "tag_with_status", None)
            if with_status is not None:
                tags, ok = with_status(texts, show_progress=show_progress)
                tags = [list(t) for t in tags]
            else:
                tags = _call_tag(self.tagger, texts, show_progress)
                ok = [True] * len(texts)
            if len(tags) != len(texts):
                raise EncoderError(f"{type(self.tagger).__name__}.tag returned {len(tags)} lists for {len(texts)} queries")
            found = dict(zip(texts, tags))
            out = [t if t is not None else list(found[q]) for q, t in zip(items, out)]
            new = {self.key(fp, q): list(t) for q, t, good in zip(texts, tags, ok) if good}
            if new:
                self._write(path, fp, new)
        return [list(t or []) for t in out]


def _call_tag(tagger: Any, queries: list[str], show_progress: bool) -> list[list[str]]:
    """``tagger.tag(queries)``, passing ``show_progress`` only to taggers that accept it."""
    try:
        params = inspect.signature(tagger.tag).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    takes = "show_progress" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    tags = tagger.tag(queries, show_progress=show_progress) if takes else tagger.tag(queries)
    return [list(t) for t in tags]
