"""Routing datasets: recorded outcomes of several LLMs on the same queries.

A router learns, for every candidate ``l``, how good (``q_l``) and how expensive (``c_l``) its
answer to a query would be. The training data is therefore a set of *outcomes*: query ``x`` was
sent to model ``l``, the answer scored ``q`` and cost ``c`` USD. :class:`RoutingDataset` holds
them as a LONG table, one row per (query, model) outcome, because that layout survives every
real-world irregularity (a model added later, a model that was not run on every query, extra
per-call measurements) where a wide table would need one column per model and metric.

The long CSV format
-------------------
One header line, then one row per (query, model) outcome. Column order does not matter; unknown
columns are kept as they are.

=================  ========  ===================================================================
column             required  meaning
=================  ========  ===================================================================
``query``          yes       the query text, exactly as the model saw it (not stripped)
``model``          yes       the candidate's name (surrounding whitespace is stripped); must
                             match ``Candidate.name`` in the pool
``quality``        yes       score of the answer, a float in [0, 1] (1 = best)
``cost``           yes       USD actually charged for this call, >= 0
``query_id``       no        a stable id of the query; where absent or empty it is derived as
                             the first 16 hex digits of ``sha256(query.encode("utf-8"))``
``split``          no        e.g. ``train`` / ``test``; one value per query
``task``           no        a label of the query (e.g. RouterBench ``eval_name``); one per query
``input_tokens``   no        prompt tokens, integer >= 0 (empty = unknown)
``output_tokens``  no        completion tokens, integer >= 0 (empty = unknown)
``latency_s``      no        seconds until the full answer, >= 0 (empty = unknown)
``response``       no        the model's answer text (used by the replay client)
=================  ========  ===================================================================

Example::

    query_id,query,model,quality,cost,split
    q1,What is 2+2?,gpt-4o,1.0,0.00031,train
    q1,What is 2+2?,gpt-4o-mini,1.0,0.00002,train
    q2,"Prove that sqrt(2) is irrational.",gpt-4o,0.9,0.0042,test
    q2,"Prove that sqrt(2) is irrational.",gpt-4o-mini,0.4,0.0003,test

Validation
----------
Every constructor validates a copy of its input. A problem is described by a :class:`DataIssue`
(``kind``, ``count``, a few ``examples``, ``action``). With ``on_error="raise"`` (the default for
your own data) one :class:`~mixllm_router.DataError` lists *all* problems found; with
``on_error="drop"`` the offending rows (or whole queries) are removed, the issues are kept in
``dataset.issues`` and one warning summarises them. The checks, in order (a row dropped by an
earlier check is not looked at again):

1. row level: ``empty_query``, ``empty_model``, ``non_numeric_<column>``, ``nan_quality``,
   ``quality_out_of_range``, ``nan_cost``, ``infinite_cost``, ``negative_cost``,
   ``negative_<column>`` / ``non_integer_<column>`` for the optional numeric columns;
2. query level: ``conflicting_query_id`` (one id, several texts), ``conflicting_split``,
   ``conflicting_task`` -- every row of such a query is removed, since we cannot tell which is right;
3. ``duplicate_row``: a second row for the same (query_id, model); the first is kept;
4. ``missing_model``: a query without a usable outcome for every model. A problem only with
   ``require_complete=True`` (then the query is removed); otherwise it is noted with action "kept".

A missing required column always raises, whatever ``on_error`` says: there is nothing to drop.
"""

from __future__ import annotations

import ast
import decimal
import hashlib
import math
import numbers
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._exceptions import DataError

__all__ = ["OnError", "DataIssue", "RoutingDataset", "load_routerbench", "REQUIRED_COLUMNS", "CANONICAL_COLUMNS"]

OnError = Literal["raise", "drop"]

REQUIRED_COLUMNS: tuple[str, ...] = ("query", "model", "quality", "cost")
#: Known columns in the order the validated frame keeps them; other columns follow in input order.
CANONICAL_COLUMNS: tuple[str, ...] = (
    "query_id", "query", "model", "quality", "cost",
    "input_tokens", "output_tokens", "latency_s", "task", "split", "response",
)
_TEXT_OPTIONAL = ("task", "split", "response")
_INT_OPTIONAL = ("input_tokens", "output_tokens")
_FLOAT_OPTIONAL = ("latency_s",)
_MAX_EXAMPLES = 5


@dataclass(frozen=True)
class DataIssue:
    """One kind of problem found while validating a routing table.

    ``count`` is in rows for row-level kinds and in queries for query-level kinds (``detail``
    says which); ``examples`` holds a few row labels or query ids; ``action`` is what was done:
    ``"dropped"``, ``"kept"`` (noted only) or ``"raised"``.
    """

    kind: str
    count: int
    examples: tuple[str, ...]
    action: str
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.kind}: {self.count} {self.action}"
        if self.detail:
            text += f" - {self.detail}"
        if self.examples:
            text += "; e.g. " + ", ".join(self.examples)
        return text


def query_id_for(text: str) -> str:
    """The id derived for a query without one: first 16 hex digits of its text's SHA-256.

    Lone surrogates (a broken JSON escape) are hashed as they are (``surrogatepass``), so such a
    text still gets an id, the same one every time.
    """
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _is_missing(v: Any) -> bool:
    """None, NaN (float, numpy, Decimal) or pandas' NA/NaT, without comparisons that raise on
    ``Decimal('sNaN')`` (pandas' own ``isna`` does)."""
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, (float, np.floating)):
        return bool(np.isnan(v))
    if isinstance(v, decimal.Decimal):
        return v.is_nan()
    return False


def _valid_unicode(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD (a name must be printable and encodable)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _text_of(v: Any) -> str:
    """``str(v)`` for a cell of a text column, also for an int beyond Python's 4300-digit limit
    for decimal conversion (written in hex) and for an object whose ``__str__`` fails."""
    try:
        return str(v)
    except Exception:  # noqa: BLE001 - a cell must not take the validation down
        return f"{v:#x}" if isinstance(v, int) else f"<{type(v).__name__}>"


def _one_number(v: Any) -> Any:
    """One cell of a numeric column, made safe for ``pd.to_numeric``: numbers become floats
    (``±inf`` when too large for a float, NaN-marked ``"bad"`` when not real), strings stay."""
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, (bool, np.bool_)):
        return float(v)
    if isinstance(v, (numbers.Real, decimal.Decimal, np.integer, np.floating)):
        try:
            return float(v)
        except OverflowError:
            return math.inf if v > 0 else -math.inf
        except (ValueError, decimal.InvalidOperation):  # Decimal('sNaN')
            return _BAD
    return _BAD  # complex, bytes, lists, dicts, arbitrary objects


_BAD = "<not a number>"


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


class _Collector:
    """Accumulates issues while a table is being cleaned (always as if dropping)."""

    def __init__(self, row_label: Callable[[int], str]) -> None:
        self.row_label = row_label
        self.problems: list[DataIssue] = []
        self.notes: list[DataIssue] = []

    def rows(self, kind: str, mask: np.ndarray, frame: pd.DataFrame, detail: str) -> np.ndarray:
        """Record rows under ``mask`` as a problem; returns the mask of rows to keep."""
        n = int(mask.sum())
        if n:
            positions = np.flatnonzero(mask)[:_MAX_EXAMPLES]
            examples = []
            for p in positions:
                label = self.row_label(int(frame["_row"].iat[p]))
                qid, model = frame["query_id"].iat[p], frame["model"].iat[p]
                examples.append(f"{label} ({qid}, {model})" if isinstance(qid, str) and qid else label)
            self.problems.append(DataIssue(kind, n, tuple(examples), "dropped", f"rows whose {detail}"))
        return ~mask

    def queries(self, kind: str, ids: Sequence[str], detail: str, *, problem: bool = True) -> None:
        if len(ids):
            issue = DataIssue(
                kind, len(ids), tuple(str(i) for i in ids[:_MAX_EXAMPLES]),
                "dropped" if problem else "kept", f"queries whose {detail}",
            )
            (self.problems if problem else self.notes).append(issue)


def _as_text(series: pd.Series) -> pd.Series:
    """Object Series of str or None (NaN/None -> None; non-strings -> str)."""
    values = series.to_numpy(dtype=object)
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if _is_missing(v):
            out[i] = None
        else:
            # ids read as floats (a numeric column with gaps) come back as "7", not "7.0"
            text = v if isinstance(v, str) else str(int(v)) if isinstance(v, float) and v.is_integer() else _text_of(v)
            out[i] = _valid_unicode(text)
    return pd.Series(out, index=series.index, dtype=object)


def _to_number(series: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Float Series and a mask of entries that were present but not numbers (e.g. ``"high"``)."""
    if pd.api.types.is_bool_dtype(series):
        series = series.astype(float)
    if pd.api.types.is_numeric_dtype(series):
        return series.astype("float64"), np.zeros(len(series), dtype=bool)
    raw = series.astype(object)
    blank = raw.map(lambda v: _is_missing(v) or (isinstance(v, str) and not v.strip()))
    cells = raw.map(_one_number).where(~blank, np.nan)
    parsed = pd.to_numeric(cells, errors="coerce").astype("float64")
    bad = (parsed.isna() & ~blank).to_numpy(dtype=bool)
    return parsed, bad


def _validate(
    frame: pd.DataFrame,
    *,
    on_error: OnError,
    require_complete: bool,
    source: str,
    row_label: Callable[[int], str] = lambda i: f"row {i}",
    pre_issues: Sequence[DataIssue] = (),
    stacklevel: int = 3,
) -> tuple[pd.DataFrame, tuple[DataIssue, ...]]:
    if on_error not in ("raise", "drop"):
        raise DataError(f"on_error must be 'raise' or 'drop', got {on_error!r}")
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: missing required column(s) {missing}; columns present: {[str(c) for c in frame.columns]}. "
            f"A routing table needs {list(REQUIRED_COLUMNS)} (see mixllm_router.data for the format)."
        )
    if frame.columns.duplicated().any():
        dup = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise DataError(f"{source}: duplicated column name(s) {dup}")
    if len(frame) == 0:
        raise DataError(f"{source}: the table has no rows")

    col = _Collector(row_label)
    df = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    df["_row"] = np.arange(len(frame))
    df["query"] = _as_text(frame["query"].reset_index(drop=True))
    df["model"] = _as_text(frame["model"].reset_index(drop=True)).map(lambda v: v.strip() if v else v)

    # query_id: given, or derived from the text (cached: RouterBench repeats each text 11 times)
    cache: dict[str, str] = {}

    def derive(text: str | None) -> str | None:
        if text is None:
            return None
        if text not in cache:
            cache[text] = query_id_for(text)
        return cache[text]

    derived = df["query"].map(derive)
    if "query_id" in frame.columns:
        given = _as_text(frame["query_id"].reset_index(drop=True)).map(lambda v: v.strip() if v else None)
        df["query_id"] = given.where(given.notna(), derived)
    else:
        df["query_id"] = derived

    keep = np.ones(len(df), dtype=bool)

    def check(kind: str, mask: np.ndarray, detail: str) -> None:
        nonlocal keep
        mask = np.asarray(mask, dtype=bool) & keep
        keep &= col.rows(kind, mask, df, detail)

    check("empty_query", df["query"].map(lambda v: v is None or not v.strip()).to_numpy(bool),
          "query text is missing or blank")
    check("empty_model", df["model"].map(lambda v: not v).to_numpy(bool), "model name is missing or blank")

    quality, bad = _to_number(frame["quality"].reset_index(drop=True))
    check("non_numeric_quality", bad, "quality is not a number")
    check("nan_quality", quality.isna().to_numpy(), "quality is missing or NaN")
    check("quality_out_of_range", ~quality.between(0.0, 1.0).to_numpy(), "quality lies outside [0, 1]")
    df["quality"] = quality

    cost, bad = _to_number(frame["cost"].reset_index(drop=True))
    check("non_numeric_cost", bad, "cost is not a number")
    check("nan_cost", cost.isna().to_numpy(), "cost is missing or NaN")
    check("infinite_cost", np.isinf(cost.to_numpy()), "cost is infinite")
    check("negative_cost", (cost < 0).to_numpy(), "cost (USD) is negative")
    df["cost"] = cost

    for name in _INT_OPTIONAL + _FLOAT_OPTIONAL:
        if name not in frame.columns:
            continue
        values, bad = _to_number(frame[name].reset_index(drop=True))
        check(f"non_numeric_{name}", bad, f"{name} is not a number")
        v = values.to_numpy()
        check(f"negative_{name}", v < 0, f"{name} is negative")
        if name in _INT_OPTIONAL:
            check(f"non_integer_{name}", np.isinf(v) | (np.isfinite(v) & (v != np.round(v))),
                  f"{name} is not a whole number")
            whole = np.isfinite(v) & (v == np.round(v))
            df[name] = pd.array(np.where(whole, v, np.nan), dtype="Float64").astype("Int64")
        else:
            check(f"infinite_{name}", np.isinf(v), f"{name} is infinite")
            df[name] = values
    for name in _TEXT_OPTIONAL:
        if name in frame.columns:
            text = _as_text(frame[name].reset_index(drop=True))
            if name != "response":
                text = text.map(lambda v: v.strip() if v else None)
            else:
                text = text.map(lambda v: v if v else None)
            df[name] = text
    extra = [c for c in frame.columns if c not in CANONICAL_COLUMNS]
    for name in extra:
        df[name] = frame[name].reset_index(drop=True)

    df = df[keep]

    # query-level consistency: one text, one split, one task per query id
    for name, kind in (("query", "conflicting_query_id"), ("split", "conflicting_split"), ("task", "conflicting_task")):
        if name not in df.columns or df.empty:
            continue
        codes = pd.Series(pd.factorize(df[name], use_na_sentinel=False)[0], index=df.index)
        counts = codes.groupby(df["query_id"].to_numpy(), sort=False).nunique()
        bad_ids = counts.index[counts > 1].tolist()
        col.queries(kind, bad_ids, f"id carries more than one {'text' if name == 'query' else name}", problem=True)
        if bad_ids:
            df = df[~df["query_id"].isin(bad_ids)]

    dup = df.duplicated(subset=["query_id", "model"], keep="first").to_numpy()
    if dup.any():
        col.rows("duplicate_row", dup, df, "(query_id, model) repeats an earlier row (the first is kept)")
        df = df[~dup]

    if not df.empty:
        models = pd.unique(df["model"])
        per_query = df.groupby("query_id", sort=False)["model"].nunique()
        incomplete = per_query.index[per_query < len(models)].tolist()
        col.queries("missing_model", incomplete,
                    f"outcomes miss some of the {len(models)} models", problem=require_complete)
        if require_complete and incomplete:
            df = df[~df["query_id"].isin(incomplete)]

    problems = col.problems
    if on_error == "raise" and problems:
        lines = "\n".join(f"  - {DataIssue(i.kind, i.count, i.examples, 'raised', i.detail)}" for i in problems)
        raise DataError(
            f"{source}: {len(problems)} kind(s) of bad data found:\n{lines}\n"
            "Fix the data, or pass on_error='drop' to remove these rows/queries and keep a record of it."
        )
    issues = tuple(pre_issues) + tuple(problems) + tuple(col.notes)
    if df.empty:
        raise DataError(f"{source}: no usable rows left after validation:\n" + "\n".join(f"  - {i}" for i in issues))
    if problems:
        summary = "; ".join(f"{i.kind}: {i.count}" for i in problems)
        warnings.warn(f"{source}: dropped bad data ({summary}); see dataset.issues", UserWarning, stacklevel=stacklevel)

    order = [c for c in CANONICAL_COLUMNS if c in df.columns] + extra
    out = df[order].reset_index(drop=True)
    for name in ("query_id", "query", "model", *_TEXT_OPTIONAL):  # text: object dtype, None = missing
        if name in out.columns:
            out[name] = pd.Series(out[name].to_numpy(dtype=object, na_value=None), dtype=object)
    return out, issues


# --------------------------------------------------------------------------------------------
# the dataset
# --------------------------------------------------------------------------------------------


class RoutingDataset:
    """A validated long table of (query, model) outcomes; see the module docstring for the format.

    Queries are identified by ``query_id``; ``len(ds)`` is the number of queries, not rows. The
    object is immutable in practice: every operation returns a new dataset.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        on_error: OnError = "raise",
        require_complete: bool = False,
        source: str = "<frame>",
    ) -> None:
        validated, issues = _validate(
            frame, on_error=on_error, require_complete=require_complete, source=source, stacklevel=3
        )
        self._set(validated, issues, source)

    # -- construction --------------------------------------------------------------------------

    def _set(self, frame: pd.DataFrame, issues: tuple[DataIssue, ...], source: str) -> None:
        self._frame = frame
        self.issues: tuple[DataIssue, ...] = issues
        self.source: str = source
        codes, uniques = pd.factorize(frame["query_id"], sort=False)
        self._query_codes = codes
        self._query_ids: list[str] = [str(u) for u in uniques]
        first = np.unique(codes, return_index=True)[1]  # first row of each query, in code order
        self._queries: list[str] = frame["query"].to_numpy(dtype=object)[first].tolist()
        if "task" in frame.columns:
            self._tasks: list[str | None] = frame["task"].to_numpy(dtype=object)[first].tolist()
        else:
            self._tasks = [None] * len(self._query_ids)
        self._models: list[str] = [str(m) for m in pd.unique(frame["model"])]

    @classmethod
    def _from_validated(cls, frame: pd.DataFrame, issues: tuple[DataIssue, ...], source: str) -> RoutingDataset:
        obj = cls.__new__(cls)
        obj._set(frame.reset_index(drop=True), issues, source)
        return obj

    @classmethod
    def from_pandas(cls, frame: pd.DataFrame, **kw: Any) -> RoutingDataset:
        """Validate a long :class:`pandas.DataFrame` (same keywords as the constructor)."""
        return cls._build(frame, kw, "<DataFrame>")

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], **kw: Any) -> RoutingDataset:
        """Validate an iterable of dicts, one per (query, model) outcome."""
        if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
            raise DataError(f"records must be an iterable of mappings (one per outcome), got {type(records).__name__}")
        rows = list(records)
        for i, r in enumerate(rows):
            if not isinstance(r, Mapping):
                raise DataError(f"record {i} is a {type(r).__name__}, expected a mapping of column -> value")
        if not rows:
            raise DataError("no records given")
        return cls._build(pd.DataFrame.from_records(rows), kw, "<records>")

    @classmethod
    def _build(cls, frame: pd.DataFrame, kw: dict[str, Any], default_source: str) -> RoutingDataset:
        """Validate for a public classmethod (so a drop warning points at the caller's line)."""
        unknown = set(kw) - {"on_error", "require_complete", "source"}
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}")
        source = kw.get("source", default_source)
        validated, issues = _validate(
            frame, on_error=kw.get("on_error", "raise"), require_complete=kw.get("require_complete", False),
            source=source, stacklevel=4,
        )
        return cls._from_validated(validated, issues, source)

    @classmethod
    def from_csv(
        cls, path: str | os.PathLike[str], *, on_error: OnError = "raise", require_complete: bool = False
    ) -> RoutingDataset:
        """Read a long CSV (see the module docstring). Problems name the file and its line numbers.

        Every cell is read as text and converted by the validator, so a stray ``"n/a"`` in a numeric
        column becomes a reported problem instead of a pandas error, and ids like ``007`` stay text.
        """
        p = Path(path)
        try:
            frame = pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[])
        except FileNotFoundError:
            raise DataError(f"routing data file not found: {p}") from None
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"cannot read routing data file {p}: {exc}") from exc
        validated, issues = _validate(
            frame, on_error=on_error, require_complete=require_complete, source=str(p),
            row_label=lambda i: f"line {i + 2}", stacklevel=3,
        )
        return cls._from_validated(validated, issues, str(p))

    # -- views ---------------------------------------------------------------------------------

    @property
    def frame(self) -> pd.DataFrame:
        """The validated long table, columns in canonical order. A (copy-on-write) shallow copy."""
        return self._frame.copy(deep=False)

    @property
    def models(self) -> list[str]:
        """Model names in order of first appearance."""
        return list(self._models)

    @property
    def query_ids(self) -> list[str]:
        """Unique query ids in order of first appearance."""
        return list(self._query_ids)

    @property
    def queries(self) -> list[str]:
        """Query texts aligned with :attr:`query_ids`."""
        return list(self._queries)

    @property
    def tasks(self) -> list[str | None]:
        """Task labels aligned with :attr:`query_ids` (all ``None`` without a ``task`` column)."""
        return list(self._tasks)

    def __len__(self) -> int:
        return len(self._query_ids)

    def __repr__(self) -> str:
        return (f"RoutingDataset(source={self.source!r}, queries={len(self)}, models={len(self._models)}, "
                f"rows={len(self._frame)})")

    def has_column(self, name: str) -> bool:
        return name in self._frame.columns

    def matrix(self, column: str, models: Sequence[str] | None = None) -> np.ndarray:
        """``(n_queries, n_models)`` float64 array of ``column``; NaN where a query lacks that model.

        Rows follow :attr:`query_ids`, columns follow ``models`` (default :attr:`models`).
        """
        if column not in self._frame.columns:
            raise DataError(f"{self.source}: no column {column!r}; columns: {list(self._frame.columns)}")
        series = self._frame[column]
        if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            raise DataError(f"{self.source}: column {column!r} is not numeric")
        names = self._check_models(models)
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        col_of = pd.Index(names).get_indexer(self._frame["model"])
        rows = self._query_codes
        out = np.full((len(self), len(names)), np.nan)
        sel = col_of >= 0
        out[rows[sel], col_of[sel]] = values[sel]
        return out

    def quality_matrix(self, models: Sequence[str] | None = None) -> np.ndarray:
        return self.matrix("quality", models)

    def cost_matrix(self, models: Sequence[str] | None = None) -> np.ndarray:
        return self.matrix("cost", models)

    def _check_models(self, models: Sequence[str] | None) -> list[str]:
        if models is None:
            return list(self._models)
        if isinstance(models, str):
            raise DataError("models must be a sequence of names, not a single string")
        names = list(models)
        unknown = [m for m in names if m not in self._models]
        if unknown:
            raise DataError(f"{self.source}: unknown model(s) {unknown}; known: {self._models}")
        if len(set(names)) != len(names):
            raise DataError(f"models contains duplicates: {names}")
        return names

    # -- derived datasets ----------------------------------------------------------------------

    def _take_queries(self, codes: np.ndarray, source: str) -> RoutingDataset:
        """Rows of the queries with these codes, queries in the order given."""
        rank = np.full(len(self), -1)
        rank[codes] = np.arange(len(codes))
        row_rank = rank[self._query_codes]
        sel = np.flatnonzero(row_rank >= 0)
        sel = sel[np.argsort(row_rank[sel], kind="stable")]
        return RoutingDataset._from_validated(self._frame.iloc[sel], self.issues, source)

    def subset(self, query_ids: Sequence[str]) -> RoutingDataset:
        """The queries with these ids, in the order given. Unknown or repeated ids raise DataError."""
        if isinstance(query_ids, str):
            raise DataError("query_ids must be a sequence of ids, not a single string")
        ids = [str(q) for q in query_ids]
        if not ids:
            raise DataError("subset() needs at least one query id")
        codes = pd.Index(self._query_ids).get_indexer(ids)
        unknown = [q for q, c in zip(ids, codes) if c < 0]
        if unknown:
            raise DataError(f"{self.source}: unknown query id(s) {unknown[:_MAX_EXAMPLES]} ({len(unknown)} in all)")
        if len(set(ids)) != len(ids):
            raise DataError("subset() got repeated query ids")
        return self._take_queries(codes, f"{self.source}[subset]")

    def with_models(self, models: Sequence[str]) -> RoutingDataset:
        """Only these models' rows (queries left without any row disappear)."""
        names = self._check_models(models)
        if not names:
            raise DataError("with_models() needs at least one model")
        sel = np.flatnonzero(self._frame["model"].isin(names).to_numpy())
        sel = sel[np.argsort(self._query_codes[sel], kind="stable")]  # keep the parent's query order
        return RoutingDataset._from_validated(self._frame.iloc[sel], self.issues, f"{self.source}[models]")

    def splits(self) -> dict[str, RoutingDataset]:
        """One dataset per value of the ``split`` column, in order of first appearance."""
        if "split" not in self._frame.columns:
            raise DataError(f"{self.source}: no 'split' column; use train_test_split() or kfold()")
        split = self._frame["split"]
        if split.isna().any():
            n = self._frame.loc[split.isna(), "query_id"].nunique()
            raise DataError(f"{self.source}: {n} queries have no split value")
        return {
            str(name): RoutingDataset._from_validated(self._frame[split == name], self.issues, f"{self.source}[{name}]")
            for name in pd.unique(split)
        }

    def train_test_split(
        self, test_size: float = 0.2, *, seed: int = 0, stratify_by_task: bool = True
    ) -> tuple[RoutingDataset, RoutingDataset]:
        """Split by QUERY (never by row): every outcome of a query lands on the same side.

        With ``stratify_by_task`` and a ``task`` column, ``round(test_size * n_t)`` queries of each
        task ``t`` go to the test side, so both sides keep the task mix. Both keep the original
        query order.
        """
        if not (isinstance(test_size, (int, float)) and 0.0 < float(test_size) < 1.0):
            raise DataError(f"test_size must be a fraction in (0, 1), got {test_size!r}")
        rng = np.random.default_rng(seed)
        groups = self._task_groups() if stratify_by_task else [np.arange(len(self))]
        test: list[np.ndarray] = []
        for g in groups:
            k = int(round(test_size * len(g)))
            test.append(rng.permutation(g)[:k])
        is_test = np.zeros(len(self), dtype=bool)
        is_test[np.concatenate(test)] = True
        if is_test.all() or not is_test.any():
            raise DataError(f"{len(self)} queries are too few to split with test_size={test_size}")
        return (self._take_queries(np.flatnonzero(~is_test), f"{self.source}[train]"),
                self._take_queries(np.flatnonzero(is_test), f"{self.source}[test]"))

    def kfold(self, n_splits: int = 5, *, seed: int = 0) -> Iterator[tuple[RoutingDataset, RoutingDataset]]:
        """Yield ``n_splits`` (train, test) pairs; each query is in exactly one test fold.

        Folds are by query and, when a ``task`` column exists, stratified by task (queries of each
        task are shuffled and dealt round-robin to the folds).
        """
        if not isinstance(n_splits, (int, np.integer)) or n_splits < 2 or n_splits > len(self):
            raise DataError(f"n_splits must be an integer in [2, {len(self)}] (the number of queries), got {n_splits!r}")
        rng = np.random.default_rng(seed)
        order = np.concatenate([rng.permutation(g) for g in self._task_groups()])
        fold = np.empty(len(self), dtype=int)
        fold[order] = np.arange(len(order)) % n_splits
        for k in range(int(n_splits)):
            yield (self._take_queries(np.flatnonzero(fold != k), f"{self.source}[fold {k} train]"),
                   self._take_queries(np.flatnonzero(fold == k), f"{self.source}[fold {k} test]"))

    def _task_groups(self) -> list[np.ndarray]:
        if "task" not in self._frame.columns:
            return [np.arange(len(self))]
        labels = np.array(["" if t is None else t for t in self._tasks], dtype=object)
        return [np.flatnonzero(labels == t) for t in pd.unique(labels)]

    def concat(self, *others: RoutingDataset, on_error: OnError = "raise", require_complete: bool = False) -> RoutingDataset:
        """A new dataset of this one's rows followed by ``others``' rows, validated again.

        An instance method: ``train.concat(extra)``. Re-validation catches what only shows once the
        tables meet (the same query id with two texts, the same outcome twice). The result's
        ``issues`` are the inputs' dropped-row issues followed by the new validation's.
        """
        for o in others:
            if not isinstance(o, RoutingDataset):
                raise DataError(f"concat() takes RoutingDatasets, got {type(o).__name__}")
        parts = (self, *others)
        frame = pd.concat([p._frame for p in parts], ignore_index=True, sort=False)
        source = " + ".join(p.source for p in parts)
        earlier = tuple(i for p in parts for i in p.issues if i.action == "dropped")
        validated, issues = _validate(frame, on_error=on_error, require_complete=require_complete,
                                      source=source, pre_issues=earlier, stacklevel=3)
        return RoutingDataset._from_validated(validated, issues, source)

    # -- output --------------------------------------------------------------------------------

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the long CSV; :meth:`from_csv` reads it back to an equal frame."""
        p = Path(path)
        try:
            self._frame.to_csv(p, index=False)
        except OSError as exc:
            raise DataError(f"cannot write routing data file {p}: {exc}") from exc

    def summary(self) -> str:
        """Queries, models, mean quality and total cost per model, and the issues found."""
        q = self.quality_matrix()
        c = self.cost_matrix()
        width = max(len(m) for m in self._models)
        lines = [f"RoutingDataset from {self.source}: {len(self)} queries, {len(self._models)} models, "
                 f"{len(self._frame)} outcomes"]
        if "split" in self._frame.columns:
            counts = self._frame.groupby("split", sort=False)["query_id"].nunique()
            lines.append("splits: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        lines.append(f"  {'model':<{width}}  {'n':>6}  {'mean quality':>12}  {'total cost $':>12}")
        for j, m in enumerate(self._models):
            n = int(np.isfinite(q[:, j]).sum())
            lines.append(f"  {m:<{width}}  {n:>6}  {np.nanmean(q[:, j]):>12.4f}  {np.nansum(c[:, j]):>12.4f}")
        if self.issues:
            lines.append("issues:")
            lines.extend(f"  - {i}" for i in self.issues)
        else:
            lines.append("issues: none")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# RouterBench
# --------------------------------------------------------------------------------------------

_SPLIT_SUFFIXES = {"_train.csv": "train", "_test.csv": "test"}


def _default_routerbench_dir() -> Path:
    candidates = [
        Path.cwd() / ".." / "shared" / "data" / "routerbench",
        Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "routerbench",
    ]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    raise DataError(
        "RouterBench data not found; looked in "
        + ", ".join(str(c.resolve()) for c in candidates)
        + ". Pass load_routerbench(path=...) a folder holding *_train.csv / *_test.csv files, or a file."
    )


def _split_of(path: Path) -> str | None:
    for suffix, split in _SPLIT_SUFFIXES.items():
        if path.name.endswith(suffix):
            return split
    return None


def _prefix_of(path: Path) -> str:
    for suffix in _SPLIT_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def _parse_listish(raw: Any) -> tuple[str | None, bool]:
    """``"['a', 'b']"`` -> ``"a\\nb"``. Returns (text, ok); on failure the raw text and False.

    Only Python *literals* are evaluated (``ast.literal_eval``), never code.
    """
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None, True
    text = str(raw)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return text, False
    if isinstance(value, str):
        return value, True
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "\n".join(value), True
    return text, False


def load_routerbench(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    *,
    split: Literal["train", "test"] | None = None,
    tasks: Sequence[str] | None = None,
    on_error: OnError = "drop",
    require_complete: bool = True,
) -> RoutingDataset:
    """Load RouterBench's WIDE csv files (one row per prompt) as a long :class:`RoutingDataset`.

    ``path``: ``None`` looks for the folder ``../shared/data/routerbench`` first relative to the
    current working directory, then relative to the root of this package's checkout; a folder
    loads every ``*_train.csv`` / ``*_test.csv`` in it; a file or a list of files loads those.
    ``split`` keeps only files named ``*_<split>.csv``; ``tasks`` keeps the rows whose file prefix
    (``arc_challenge``, ``winograde``, ``mbpp``) or ``eval_name`` (``arc-challenge``,
    ``winogrande``, ``mbpp``) is listed.

    Mapping: ``sample_id`` -> ``query_id``; ``prompt`` (a Python ``str(list_of_str)``, parsed with
    ``ast.literal_eval`` and joined with newlines; kept raw and reported as ``unparsed_prompt``
    if that fails) -> ``query``; every column ``M`` that has a matching ``M|total_cost`` column is
    a model (read from the header, never hard-coded): ``M`` -> ``quality``, ``M|total_cost`` ->
    ``cost``, ``M|model_response`` (parsed like the prompt) -> ``response``; ``eval_name`` ->
    ``task``; the file name -> ``split`` (``*_train.csv`` / ``*_test.csv``; a file named otherwise,
    such as a whole benchmark in one file, gives no split column, and ``mixllm eval`` then holds
    out a share of its queries).

    Known flaws of the shipped files, and what happens to them with the defaults
    (``on_error="drop"``, ``require_complete=True``): 14 ARC ``sample_id`` s are *split records*
    -- two rows each, one holding 10 models' scores (NaN for ``gpt-3.5-turbo-1106``) and one holding
    only ``gpt-3.5-turbo-1106``'s score, whose prompt is the same question repeated twice (that
    model was sent a doubled prompt). 7 such pairs lie within the train files, 1 within the test
    files and 6 straddle train and test. The NaN cells are reported as ``nan_quality``; where both
    rows are loaded the two texts under one id are reported as ``conflicting_query_id``; where only
    one is loaded the query is reported as ``missing_model``. Either way the whole query is
    dropped: merging would compare gpt-3.5's answer to a different input with the others', and
    keeping one half would leave the table incomplete. Result: 2,205 train and 945 test queries (the
    945 matches the project's evaluation protocol, "drop rows with NaN"). With
    ``on_error="raise"`` these flaws raise :class:`~mixllm_router.DataError` instead.
    """
    if path is None:
        files = _folder_files(_default_routerbench_dir())
    elif isinstance(path, (str, os.PathLike)):
        p = Path(path)
        if p.is_dir():
            files = _folder_files(p)
        elif p.is_file():
            files = [p]
        else:
            raise DataError(f"RouterBench path not found: {p}")
    else:
        files = [Path(f) for f in path]
        if not files:
            raise DataError("load_routerbench() got an empty list of files")
        for f in files:
            if not f.is_file():
                raise DataError(f"RouterBench file not found: {f}")
    if split is not None:
        if split not in ("train", "test"):
            raise DataError(f"split must be 'train', 'test' or None, got {split!r}")
        files = [f for f in files if _split_of(f) == split]
        if not files:
            raise DataError(f"no RouterBench file named *_{split}.csv among the files given")

    wanted = None if tasks is None else {t for t in ([tasks] if isinstance(tasks, str) else tasks)}
    pieces: list[pd.DataFrame] = []
    unparsed_prompts: list[str] = []
    unparsed_responses = 0
    seen_tasks: set[str] = set()
    for f in files:
        try:
            wide = pd.read_csv(f)
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"cannot read RouterBench file {f}: {exc}") from exc
        for needed in ("sample_id", "prompt", "eval_name"):
            if needed not in wide.columns:
                raise DataError(f"{f}: not a RouterBench file, column {needed!r} missing; columns: {list(wide.columns)}")
        models = [c for c in wide.columns if "|" not in c and f"{c}|total_cost" in wide.columns]
        if not models:
            raise DataError(f"{f}: no model columns found (a model M needs columns 'M' and 'M|total_cost')")
        prefix = _prefix_of(f)
        seen_tasks.update({prefix, *wide["eval_name"].dropna().astype(str)})
        if wanted is not None:
            if prefix not in wanted:
                wide = wide[wide["eval_name"].astype(str).isin(wanted)]
            if wide.empty:
                continue
        prompts = []
        for sid, raw in zip(wide["sample_id"], wide["prompt"]):
            text, ok = _parse_listish(raw)
            if not ok:
                unparsed_prompts.append(str(sid))
            prompts.append(text)
        n = len(wide)
        base = {
            "query_id": wide["sample_id"].astype(str).to_numpy(dtype=object),
            "query": np.array(prompts, dtype=object),
            "task": wide["eval_name"].astype(str).to_numpy(dtype=object),
        }
        if _split_of(f) is not None:  # a file named *_train.csv / *_test.csv; otherwise no split column
            base["split"] = np.full(n, _split_of(f), dtype=object)
        for m in models:
            resp_col = f"{m}|model_response"
            if resp_col in wide.columns:
                responses = []
                for raw in wide[resp_col]:
                    text, ok = _parse_listish(raw)
                    unparsed_responses += not ok
                    responses.append(text)
            else:
                responses = [None] * n
            pieces.append(pd.DataFrame({
                **base,
                "model": np.full(n, m, dtype=object),
                "quality": wide[m].to_numpy(),
                "cost": wide[f"{m}|total_cost"].to_numpy(),
                "response": np.array(responses, dtype=object),
            }))
    if wanted is not None:
        unknown = sorted(wanted - seen_tasks)
        if unknown:
            raise DataError(f"unknown RouterBench task(s) {unknown}; available: {sorted(seen_tasks)}")
    if not pieces:
        raise DataError("no RouterBench rows left after filtering by split/tasks")

    # model-major within each file; query order (first appearance) still follows the files' rows
    long = pd.concat(pieces, ignore_index=True)
    pre: list[DataIssue] = []
    if unparsed_prompts:
        pre.append(DataIssue("unparsed_prompt", len(unparsed_prompts), tuple(unparsed_prompts[:_MAX_EXAMPLES]),
                             "kept", "prompt is not a Python list of strings; raw text kept"))
    if unparsed_responses:
        pre.append(DataIssue("unparsed_response", unparsed_responses, (), "kept",
                             "model_response is not a Python list of strings; raw text kept"))
    source = str(files[0]) if len(files) == 1 else f"RouterBench ({len(files)} files in {files[0].parent})"
    validated, issues = _validate(long, on_error=on_error, require_complete=require_complete, source=source,
                                  pre_issues=pre, stacklevel=3)
    return RoutingDataset._from_validated(validated, issues, source)


def _folder_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and _split_of(p) is not None)
    if not files:
        raise DataError(f"no *_train.csv / *_test.csv files in {folder}")
    return files
