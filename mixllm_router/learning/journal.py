"""The feedback journal: one JSON line per acknowledged event, one writer per file.

Line format: ``{"e": <entry>, "sha": <first 16 hex of sha256(canonical JSON of entry)>}\\n``; the
entry is :meth:`FeedbackEvent.to_json` (the embedding included: decisions live in memory only).

**One writer per file, whatever its name.** The first append opens the journal and takes an
exclusive ``flock`` on *that open file*, for the life of the router (released by :meth:`close` or
at exit). The lock belongs to the file's inode, not to the path string, so a second router that
reaches the same file through a relative path, ``..``, a symlink (to the file or to a folder above
it) or a hard link is refused with :class:`FeedbackError` instead of interleaving lines and reusing
sequence numbers. ``flock`` locks are per open file description, so this holds between two routers
of one process as well as between processes; an in-process registry keyed by ``(st_dev, st_ino)``
backs it up on file systems that emulate ``flock`` with per-process POSIX locks (NFS).

**Reading never drops an acknowledged event silently.** Reading stops at a torn *last* line (no
newline, bad JSON or bad checksum: a crash mid-write) and ignores it; the next append first cuts it
off. A damaged line that is *not* the last one is not a crash artefact and raises
:class:`FeedbackError` naming the line. Sequence numbers must strictly increase down the file: one
writer allocates them in order. A line that repeats the previous entry *exactly* (a copied line) is
the same event and is applied once; any other repeated or decreasing sequence number means two
writers shared the file (possible only with journals written before the per-file lock), and a
replay cannot tell which of the two events a checkpoint's ``applied_seq`` already covers, so it
raises :class:`FeedbackError` naming both lines rather than apply one and drop the other. The
file is left as it is, for an operator to renumber or split.

A write that fails half-way (disk full) closes the journal: the next append reopens it, cuts the
torn tail and starts on a clean line.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._exceptions import FeedbackError

__all__ = ["FeedbackEvent", "FeedbackJournal"]

_JOURNAL_VERSION = 1

#: Journals this process holds open for writing, by file identity (st_dev, st_ino).
_HELD: dict[tuple[int, int], str] = {}
_HELD_LOCK = threading.Lock()


@dataclass(frozen=True)
class FeedbackEvent:
    """One acknowledged feedback event, with everything needed to apply (or replay) it."""

    seq: int
    decision_id: str
    candidate: str
    score: float
    embedding: np.ndarray  # (d,) float32
    input_tokens: float
    output_tokens: float | None
    latency_s: float | None
    cost_usd: float | None
    created_at: float

    def to_json(self) -> dict[str, Any]:
        emb = np.ascontiguousarray(self.embedding, dtype="<f4")
        return {
            "v": _JOURNAL_VERSION,
            "seq": self.seq,
            "decision_id": self.decision_id,
            "candidate": self.candidate,
            "score": self.score,
            "embedding": base64.b64encode(emb.tobytes()).decode("ascii"),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "latency_s": self.latency_s,
            "cost_usd": self.cost_usd,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FeedbackEvent:
        if not isinstance(d, Mapping) or d.get("v") != _JOURNAL_VERSION:
            version = d.get("v") if isinstance(d, Mapping) else None
            raise FeedbackError(f"journal entry has version {version!r}; this library reads {_JOURNAL_VERSION}")
        try:
            emb = np.frombuffer(base64.b64decode(d["embedding"], validate=True), dtype="<f4").astype(np.float32)

            def opt(key: str) -> float | None:
                return None if d.get(key) is None else float(d[key])

            return cls(
                seq=int(d["seq"]),
                decision_id=str(d["decision_id"]),
                candidate=str(d["candidate"]),
                score=float(d["score"]),
                embedding=emb,
                input_tokens=float(d["input_tokens"]),
                output_tokens=opt("output_tokens"),
                latency_s=opt("latency_s"),
                cost_usd=opt("cost_usd"),
                created_at=float(d["created_at"]),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # binascii.Error is a ValueError
            raise FeedbackError(f"malformed journal entry (seq {d.get('seq')!r}): {type(exc).__name__}: {exc}") from None


def _canonical(entry: Mapping[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _lock_file(fd: int) -> bool:
    """Exclusive, non-blocking lock on the open file ``fd``; False when someone else holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: the in-process registry is all there is
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class FeedbackJournal:
    """Append-only JSON-lines journal of feedback events; one checksum per line (module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self.last_seq = 0

    # -- reading -------------------------------------------------------------------------------
    def _read_bytes(self) -> bytes | None:
        """The file's bytes (None when it does not exist); anything but a regular file is refused."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FeedbackError(f"cannot read the feedback journal {self.path}: {exc}") from exc
        try:
            self._check_regular(fd)
            return _read_all(fd)
        finally:
            os.close(fd)

    def _check_regular(self, fd: int) -> None:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FeedbackError(f"the feedback journal {self.path} is not a regular file")

    def _scan(self, data: bytes | None) -> tuple[list[dict[str, Any]], int, bool]:
        """(entries, byte length of the valid prefix, whether a torn tail was found)."""
        if not data:
            return [], 0, False
        entries: list[dict[str, Any]] = []
        offset = 0
        previous: tuple[int, int] | None = None  # (line number, seq) of the last entry kept
        lines = data.split(b"\n")
        for i, raw in enumerate(lines):
            if i == len(lines) - 1:  # text after the final newline (empty when the file is whole)
                return entries, offset, bool(raw)
            try:
                obj = json.loads(raw.decode("utf-8"))
                entry = obj["e"]
                ok = _checksum(_canonical(entry)) == obj["sha"]
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, RecursionError):
                ok = False
            if not ok:
                if i == len(lines) - 2 and not lines[-1]:
                    return entries, offset, True  # a damaged final line: a torn write
                raise FeedbackError(
                    f"{self.path}: line {i + 1} is damaged (bad JSON or checksum) and is not the last line; "
                    "the journal was modified or the disk is failing — move the file aside to start a new one"
                )
            seq = entry.get("seq") if isinstance(entry, dict) else None
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
                raise FeedbackError(f"{self.path}: line {i + 1} has no valid sequence number ({seq!r})")
            offset += len(raw) + 1
            if previous is not None and seq <= previous[1]:
                if seq == previous[1] and entry == entries[-1]:
                    continue  # the same event written twice: it is applied once
                raise FeedbackError(
                    f"{self.path}: line {i + 1} has sequence number {seq} after sequence number {previous[1]} on "
                    f"line {previous[0]}: two writers shared this journal, and replaying it would drop one of the "
                    "colliding events; renumber or split the file (nothing was applied from it)"
                )
            entries.append(entry)
            previous = (i + 1, seq)
        return entries, offset, False  # pragma: no cover - split always yields a last element

    def read(self) -> list[FeedbackEvent]:
        """Every intact entry, in order (a torn last line is ignored)."""
        entries, _, _ = self._scan(self._read_bytes())
        events = [FeedbackEvent.from_json(e) for e in entries]
        if events:
            self.last_seq = max(self.last_seq, events[-1].seq)
        return events

    # -- writing -------------------------------------------------------------------------------
    def _refuse(self, holder: str) -> FeedbackError:
        return FeedbackError(
            f"feedback journal {self.path} is in use by another router or process ({holder}); "
            "give each router its own journal_path"
        )

    def open(self) -> None:
        """Open the journal for appending (once): lock the file, check it, cut a torn tail."""
        if self._fd is None:
            self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise FeedbackError(f"cannot open the feedback journal {self.path}: {exc}") from exc
        registered = False
        try:
            self._check_regular(fd)
            st = os.fstat(fd)
            identity = (st.st_dev, st.st_ino)
            with _HELD_LOCK:
                if identity in _HELD:
                    raise self._refuse(f"this process already writes it as {_HELD[identity]}")
                if not _lock_file(fd):
                    raise self._refuse("its lock is held")
                _HELD[identity] = str(self.path)
                registered = True
            entries, valid, torn = self._scan(_read_all(fd))
            if torn:  # cut the torn tail so new lines start clean
                os.ftruncate(fd, valid)
                os.fsync(fd)
            if entries:
                self.last_seq = max(self.last_seq, int(entries[-1]["seq"]))
        except BaseException:
            if registered:
                with _HELD_LOCK:
                    _HELD.pop(identity, None)
            os.close(fd)  # also releases the flock
            raise
        self._fd, self._identity = fd, identity

    def append(self, event: FeedbackEvent) -> None:
        """Write one event and (with ``fsync``) force it to disk before returning.

        Raises :class:`FeedbackError` when the journal is held by another writer or damaged, and
        ``OSError`` when the write fails; the journal is then closed, and the next append cuts
        whatever part of this line reached the file.
        """
        self.open()
        assert self._fd is not None
        text = _canonical(event.to_json())
        line = ('{"e":' + text + ',"sha":"' + _checksum(text) + '"}\n').encode("utf-8")
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view):]
            if self.fsync:
                os.fsync(self._fd)
        except BaseException:
            self.close()
            raise
        self.last_seq = max(self.last_seq, event.seq)

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        """Close the file, which releases the lock."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._identity is not None:
            with _HELD_LOCK:
                _HELD.pop(self._identity, None)
            self._identity = None
