"""Read a file of queries for :func:`~mixllm_router.scoring.collect`: CSV or JSON lines.

Columns (CSV header or JSON keys): ``query`` (required), ``query_id`` (default: the first 16 hex
digits of the text's SHA-256, as in the long outcome CSV), ``reference`` (a reference answer for
reference-based scorers), ``task`` and ``split`` (copied to the outcome CSV). Other columns are
ignored, so a long outcome CSV (one row per query *and model*) is a valid queries file: a row that
repeats a query already read (same id, same text) is skipped quietly.

A bad row is reported (:class:`QueryProblem`, with its line number) and skipped, never fatal:
an empty or missing query, a line that is not a JSON object, one id used for two different
texts. A file that cannot be read at all, or has no ``query`` column, raises
:class:`~mixllm_router.ScoringError`.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._exceptions import ScoringError
from ..data import query_id_for

__all__ = ["QueryItem", "QueryProblem", "read_queries", "items_from_rows", "PASSTHROUGH_COLUMNS"]

#: Query-level columns copied from the queries file into the outcome CSV.
PASSTHROUGH_COLUMNS = ("task", "split")


@dataclass(frozen=True)
class QueryItem:
    """One query to send to every candidate."""

    query_id: str
    query: str
    reference: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # task, split


@dataclass(frozen=True)
class QueryProblem:
    """A row that was skipped, and why (``line`` is 1-based, the header being line 1 of a CSV)."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    text = value if isinstance(value, str) else str(value)
    return text


def _rows(path: Path) -> tuple[list[tuple[int, Any]], list[QueryProblem]]:
    problems: list[QueryProblem] = []
    rows: list[tuple[int, Any]] = []
    try:
        if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            with path.open("r", encoding="utf-8") as fh:
                for number, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        rows.append((number, json.loads(line)))
                    except json.JSONDecodeError as exc:
                        problems.append(QueryProblem(number, f"not JSON: {exc.msg}"))
            return rows, problems
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # few-shot prompts are long
        with path.open("r", encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "query" not in reader.fieldnames:
                raise ScoringError(f"{path}: a queries CSV needs a 'query' column; header: {reader.fieldnames}")
            for row in reader:
                rows.append((reader.line_num, row))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ScoringError(f"cannot read the queries file {path}: {exc}") from exc
    return rows, problems


def read_queries(path: str | os.PathLike[str]) -> tuple[list[QueryItem], list[QueryProblem]]:
    """The queries of a CSV or JSONL file, in file order, and the rows that were skipped."""
    p = Path(path)
    if not p.is_file():
        raise ScoringError(f"no such queries file: {p}")
    rows, problems = _rows(p)
    items, more = items_from_rows(rows)
    return items, problems + more


def items_from_rows(rows: list[tuple[int, Any]]) -> tuple[list[QueryItem], list[QueryProblem]]:
    """Validate ``(line number, row)`` pairs into queries; see the module docstring."""
    problems: list[QueryProblem] = []
    items: list[QueryItem] = []
    seen: dict[str, str] = {}
    for line, row in rows:
        if not isinstance(row, dict):
            problems.append(QueryProblem(line, f"expected an object with a 'query' key, got {type(row).__name__}"))
            continue
        query = _text(row.get("query"))
        if query is None or not query.strip():
            problems.append(QueryProblem(line, "empty or missing query"))
            continue
        qid = _text(row.get("query_id"))
        qid = qid.strip() if qid and qid.strip() else query_id_for(query)
        if qid in seen:
            if seen[qid] != query:
                problems.append(QueryProblem(line, f"query_id {qid!r} was already used for another text"))
            continue  # the same query again (e.g. another model's row of an outcome CSV)
        seen[qid] = query
        reference = _text(row.get("reference"))
        extra = {c: str(row[c]) for c in PASSTHROUGH_COLUMNS if _text(row.get(c)) not in (None, "")}
        items.append(QueryItem(qid, query, reference if reference not in (None, "") else None, extra))
    return items, problems
