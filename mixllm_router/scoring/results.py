"""The append-only results file of a collection: what makes ``collect`` resumable.

One JSON object per line. Each call writes two lines:

* ``{"key", "status": "started", ...}`` before the request goes out (flushed, so it survives the
  process being killed);
* ``{"key", "status": "done", "quality", "cost", "response", ...}`` once the answer is in and
  scored, flushed **and fsynced** before the call counts as finished; or ``"status": "failed"``
  with the error (the call is tried again on the next run).

``key`` identifies a call: SHA-256 of (query id, query text, candidate name, the generation
settings and system prompt). On a rerun every key with a ``done`` line is skipped: a finished
call is never paid for twice. A ``started`` key without a ``done`` line was in flight when the
process died; the rerun makes that call again and counts it (``in_flight_at_crash``), because
whether the provider charged for the lost request cannot be known from here.

A torn last line (the process died mid-write) is ignored on read and cut off before the next
append. Any other line that does not parse means the file was edited or damaged:
:class:`~mixllm_router.ScoringError`, naming the line, rather than paying again for calls whose
results would be dropped. A later ``done`` line for a key replaces an earlier one (a response
rescored after its first score failed).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .._exceptions import ScoringError

__all__ = ["ResultsFile", "call_key"]


def call_key(query_id: str, query: str, model: str, settings: dict[str, Any]) -> str:
    """The key of one (query, candidate, settings) call; 32 hex digits."""
    payload = json.dumps([query_id, query, model, settings], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


class ResultsFile:
    """Append-only JSON lines; :meth:`load` reads what a previous run finished."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._fh: Any = None
        self.done: dict[str, dict[str, Any]] = {}
        self.started: set[str] = set()
        self.failed: dict[str, str] = {}
        self.in_flight: set[str] = set()  # keys whose last line is "started": lost in a crash

    def load(self) -> None:
        """Read the file (if any): ``done`` (key -> record), ``started``, ``failed`` (key -> error)."""
        self.done, self.started, self.failed, self.in_flight = {}, set(), {}, set()
        if not self.path.exists():
            return
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise ScoringError(f"cannot read the results file {self.path}: {exc}") from exc
        lines = raw.split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            last = number == len(lines)  # no newline after it: possibly torn
            try:
                record = json.loads(line)
                key, status = record["key"], record["status"]
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                if last:
                    break
                raise ScoringError(f"{self.path}, line {number}: not a results record (damaged or edited); move "
                                   "the file aside to start over, or repair that line") from None
            if status == "started":
                self.started.add(key)
                self.in_flight.add(key)
                continue
            self.in_flight.discard(key)
            if status == "done":
                self.done[key] = record
                self.failed.pop(key, None)
            elif status == "failed":
                self.failed[key] = str(record.get("error", ""))

    def _open(self) -> None:
        if self._fh is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+b")  # noqa: SIM115 - held open for the run
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size:
            fh.seek(size - 1)
            if fh.read(1) != b"\n":  # a torn last line: cut it off before appending
                fh.seek(0)
                data = fh.read()
                fh.truncate(data.rfind(b"\n") + 1)
        fh.seek(0, os.SEEK_END)
        self._fh = fh

    def append(self, record: dict[str, Any], *, durable: bool) -> None:
        """Write one record as a line; ``durable``: fsync before returning (a finished call)."""
        self._open()
        line = json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"
        self._fh.write(line.encode("utf-8"))
        self._fh.flush()
        if durable and self.fsync:
            os.fsync(self._fh.fileno())
        status = record["status"]
        if status == "done":
            self.done[record["key"]] = record
        elif status == "started":
            self.started.add(record["key"])

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
