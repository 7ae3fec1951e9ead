"""An embedding cache: memory LRU in front, append-only safetensors shards on disk behind.

Why: embedding is the slow part of fitting and evaluating a router (a 256-token prompt costs about
25 ms on two cores), and the same training prompts come back run after run (semantic-router #336
asks for exactly this). A cached encoder returns the same vectors as its inner encoder; it only
sends the texts it has never seen to it.

Key of a text: ``sha256(fingerprint + "\\0" + text)``; the encoder's fingerprint changes with its
weights, truncation and max tokens, so stale vectors are never served. Layout on disk::

    <cache_dir>/<sha256(fingerprint)[:16]>/
        index.json                  {"version", "fingerprint", "dim", "shards": [{"file", "rows", "sha256"}]}
        shard-<uuid>.safetensors    tensors "keys" (rows, 32) uint8 and "embeddings" (rows, dim) float32
        .lock                       a filelock, held only while index.json is rewritten

Writes: a new shard goes to a temporary file and is renamed into place (``os.replace``); then,
under the lock, index.json is re-read, extended and replaced the same way, so two processes never
lose each other's shards and a reader never sees half a file. A shard whose size, checksum or
content does not match its index entry is skipped with a warning and dropped from the index; its
texts are simply embedded again. Cache trouble of any kind (unwritable folder, broken index) warns
and falls back to embedding: it never breaks routing. When more than ``compact_at`` small shards
pile up (a router embedding one new query per call writes one small shard each time), they are
merged into one.

Memory: all shards of the fingerprint are read into memory on first use (``rows × dim × 4`` bytes,
about 150 MB for 100k MiniLM embeddings); the LRU holds the most recent ``memory_items`` vectors
for the hot path of a repeated query.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._exceptions import EncoderError
from .base import QueryEncoder, count_tokens_of
from .hf import _check_texts

__all__ = ["CachedEncoder", "CacheWarning", "default_cache_dir"]

_INDEX_VERSION = 1
_SMALL_SHARD_ROWS = 4096


class CacheWarning(UserWarning):
    """The embedding cache could not be read or written; embedding went on without it."""


def default_cache_dir() -> Path:
    """``$MIXLLM_CACHE_DIR`` if set, else ``~/.cache/mixllm-router``."""
    env = os.environ.get("MIXLLM_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mixllm-router"


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class CachedEncoder:
    """Wrap any :class:`QueryEncoder` with a memory LRU and an on-disk shard cache.

    ``cache_dir=None`` keeps only the memory LRU. ``hits`` counts texts served from memory or disk,
    ``misses`` counts (distinct) texts sent to the inner encoder.
    """

    def __init__(
        self,
        encoder: QueryEncoder,
        cache_dir: str | os.PathLike[str] | None,
        *,
        memory_items: int = 10_000,
        compact_at: int = 32,
    ) -> None:
        if not isinstance(encoder, QueryEncoder):
            raise EncoderError(f"CachedEncoder needs a QueryEncoder, got {type(encoder).__name__}")
        self.encoder = encoder
        self.memory_items = int(memory_items)
        self.compact_at = int(compact_at)
        self.hits = 0
        self.misses = 0
        self._fp = encoder.fingerprint
        self._dir: Path | None = None
        if cache_dir is not None:
            digest = hashlib.sha256(self._fp.encode()).hexdigest()[:16]
            self._dir = Path(cache_dir).expanduser() / digest
        self._lru: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._disk: dict[bytes, tuple[np.ndarray, int]] = {}  # key → (shard embeddings, row)
        self._loaded: set[str] = set()  # shard files already read (or found broken)
        self._lock = threading.RLock()
        self._writable = True  # set False after the first failed write (warn once, not per query)

    def __repr__(self) -> str:
        return f"CachedEncoder({self.encoder!r}, cache_dir={str(self._dir) if self._dir else None!r})"

    # -- the contract: delegate ----------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def fingerprint(self) -> str:
        return self._fp

    @property
    def directory(self) -> Path | None:
        """The folder holding this encoder's shards (one per fingerprint), or ``None``."""
        return self._dir

    def count_tokens(self, text: str) -> int:
        return self.encoder.count_tokens(text)

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        return count_tokens_of(self.encoder, texts)

    def key(self, text: str) -> bytes:
        return hashlib.sha256(self._fp.encode() + b"\0" + text.encode("utf-8", "surrogatepass")).digest()

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed ``texts`` in input order, sending only never-seen texts to the inner encoder."""
        texts = _check_texts(texts)
        dim = self.dim
        out = np.empty((len(texts), dim), dtype=np.float32)
        with self._lock:
            keys = [self.key(t) for t in texts]
            todo: dict[bytes, list[int]] = {}
            for i, k in enumerate(keys):
                v = self._lru.get(k)
                if v is not None:
                    self._lru.move_to_end(k)
                    out[i] = v
                    self.hits += 1
                else:
                    todo.setdefault(k, []).append(i)
            if todo and self._dir is not None:
                self._refresh()
                for k in [k for k in todo if k in self._disk]:
                    arr, row = self._disk[k]
                    for i in todo.pop(k):
                        out[i] = arr[row]
                        self.hits += 1
                    self._remember(k, arr[row])
            if todo:
                miss_keys = list(todo)
                miss_texts = [texts[todo[k][0]] for k in miss_keys]
                new = np.asarray(self.encoder.encode(miss_texts, show_progress=show_progress))
                if new.shape != (len(miss_texts), dim):
                    raise EncoderError(
                        f"inner encoder returned shape {new.shape}, expected {(len(miss_texts), dim)}"
                    )
                new = new.astype(np.float32, copy=False)
                self.misses += len(miss_keys)
                for j, k in enumerate(miss_keys):
                    out[todo[k]] = new[j]
                    self._remember(k, new[j])
                if self._dir is not None and self._writable:
                    self._write(miss_keys, new)
        return out

    # -- memory ---------------------------------------------------------------------------------
    def _remember(self, key: bytes, vec: np.ndarray) -> None:
        if self.memory_items <= 0:
            return
        self._lru[key] = np.array(vec, dtype=np.float32, copy=True)
        self._lru.move_to_end(key)
        while len(self._lru) > self.memory_items:
            self._lru.popitem(last=False)

    def clear_memory(self) -> None:
        """Forget the in-memory LRU and loaded shards (the disk cache stays)."""
        with self._lock:
            self._lru.clear()
            self._disk.clear()
            self._loaded.clear()

    # -- disk -----------------------------------------------------------------------------------
    def _read_index(self) -> dict[str, Any]:
        assert self._dir is not None
        empty: dict[str, Any] = {"version": _INDEX_VERSION, "fingerprint": self._fp, "dim": self.dim, "shards": []}
        path = self._dir / "index.json"
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return empty
        except (OSError, ValueError) as exc:
            warnings.warn(f"embedding cache index {path} is unreadable ({exc}); ignoring it", CacheWarning, stacklevel=4)
            return empty
        if (
            not isinstance(index, dict) or index.get("version") != _INDEX_VERSION
            or index.get("fingerprint") != self._fp or index.get("dim") != self.dim
            or not isinstance(index.get("shards"), list)
        ):
            warnings.warn(f"embedding cache index {path} does not match this encoder; ignoring it", CacheWarning, stacklevel=4)
            return empty
        return index

    def _read_shard(self, entry: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Read and verify one shard → (keys (rows, 32) uint8, embeddings (rows, dim) float32)."""
        from safetensors.numpy import load

        assert self._dir is not None
        name = str(entry["file"])
        if "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"bad shard name {name!r}")
        data = (self._dir / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ValueError("checksum mismatch (truncated or corrupted file)")
        tensors = load(data)
        keys, emb = tensors["keys"], tensors["embeddings"]
        rows = int(entry["rows"])
        if keys.shape != (rows, 32) or emb.shape != (rows, self.dim) or emb.dtype != np.float32:
            raise ValueError(f"unexpected shapes keys {keys.shape}, embeddings {emb.shape}")
        return keys, emb

    def _refresh(self) -> None:
        """Load shards listed in index.json that this process has not read yet."""
        assert self._dir is not None
        if not self._dir.is_dir():
            return
        broken: list[str] = []
        for entry in self._read_index()["shards"]:
            name = str(entry.get("file", "")) if isinstance(entry, dict) else ""
            if name in self._loaded:
                continue
            try:
                keys, emb = self._read_shard(entry)
            except FileNotFoundError:
                continue  # compacted away by another process since we read the index
            except Exception as exc:
                warnings.warn(
                    f"embedding cache shard {self._dir / name} is unusable ({exc}); "
                    "its texts will be embedded again", CacheWarning, stacklevel=4,
                )
                self._loaded.add(name)
                broken.append(name)
                continue
            self._loaded.add(name)
            for row, k in enumerate(keys):
                self._disk[k.tobytes()] = (emb, row)
        if broken:
            self._update_index(remove=set(broken))

    def _write(self, keys: list[bytes], emb: np.ndarray) -> None:
        from safetensors.numpy import save

        assert self._dir is not None
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
            data = save({"keys": key_arr, "embeddings": np.ascontiguousarray(emb, dtype=np.float32)})
            name = f"shard-{uuid.uuid4().hex}.safetensors"
            _atomic_write(self._dir / name, data)
            entry = {"file": name, "rows": len(keys), "sha256": hashlib.sha256(data).hexdigest()}
            self._loaded.add(name)
            for row, k in enumerate(keys):
                self._disk[k] = (emb, row)
            self._update_index(add=[entry])
        except Exception as exc:  # disk full, read-only folder...
            self._writable = False
            warnings.warn(
                f"could not write the embedding cache in {self._dir} ({exc}); "
                "this encoder keeps going without writing to it", CacheWarning, stacklevel=3,
            )

    def _update_index(
        self, add: Sequence[dict[str, Any]] = (), remove: frozenset[str] | set[str] = frozenset()
    ) -> None:
        from filelock import FileLock

        assert self._dir is not None
        try:
            with FileLock(str(self._dir / ".lock"), timeout=60):
                index = self._read_index()
                shards = [s for s in index["shards"] if isinstance(s, dict) and s.get("file") not in remove]
                shards.extend(add)
                index["shards"] = shards
                _atomic_write(self._dir / "index.json", json.dumps(index, indent=0).encode())
                for name in remove:
                    try:
                        (self._dir / name).unlink()
                    except OSError:
                        pass
                small = [s for s in shards if int(s.get("rows", 0)) < _SMALL_SHARD_ROWS]
                if len(small) > self.compact_at:
                    self._compact_locked(index, small)
        except Exception as exc:
            warnings.warn(f"could not update the embedding cache index in {self._dir}: {exc}", CacheWarning, stacklevel=4)

    def _compact_locked(self, index: dict[str, Any], small: list[dict[str, Any]]) -> None:
        """Merge small shards into one (caller holds the file lock)."""
        from safetensors.numpy import save

        assert self._dir is not None
        keys, embs, merged = [], [], []
        for entry in small:
            try:
                k, e = self._read_shard(entry)
            except Exception:
                continue  # left in the index; _refresh will report it
            keys.append(k)
            embs.append(e)
            merged.append(entry["file"])
        if len(merged) < 2:
            return
        all_keys, all_embs = np.concatenate(keys), np.concatenate(embs)
        data = save({"keys": all_keys, "embeddings": all_embs})
        name = f"shard-{uuid.uuid4().hex}.safetensors"
        _atomic_write(self._dir / name, data)
        gone = set(merged)
        index["shards"] = [s for s in index["shards"] if s.get("file") not in gone] + [
            {"file": name, "rows": int(sum(len(k) for k in keys)), "sha256": hashlib.sha256(data).hexdigest()}
        ]
        _atomic_write(self._dir / "index.json", json.dumps(index, indent=0).encode())
        self._loaded.add(name)
        self._loaded.difference_update(gone)
        for row, k in enumerate(all_keys):  # point at the merged copy (frees the small arrays)
            self._disk[k.tobytes()] = (all_embs, row)
        for f in gone:
            try:
                (self._dir / f).unlink()
            except OSError:
                pass
