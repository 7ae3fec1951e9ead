"""Validation of a long routing table: every row and query checked, every problem recorded.

:func:`_validate` is the one gate every :class:`~mixllm_router.data.RoutingDataset` constructor and
:func:`~mixllm_router.data.load_routerbench` passes a table through; the checks, their order and
what ``on_error`` does are described in the docstring of :mod:`mixllm_router.data`. Cells are
parsed here by hand (:func:`_as_text`, :func:`_to_number`) rather than by pandas alone, because a
hostile cell (a lone surrogate, an int too long to print, ``Decimal('sNaN')``, an object whose
``__str__`` raises) must become a reported problem, never an exception from deep inside pandas.
"""

from __future__ import annotations

import decimal
import hashlib
import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._exceptions import DataError

__all__ = ["OnError", "DataIssue", "REQUIRED_COLUMNS", "CANONICAL_COLUMNS", "query_id_for"]

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
            return math.inf if v > 0 else -math.inf  # type: ignore[operator]  # numbers.Real has no __gt__ in typeshed
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
    """The cleaned frame (canonical columns first) and every issue found, ``pre_issues`` first.

    The checks always run as if dropping, so one :class:`DataError` can list every problem at once
    when ``on_error="raise"``. ``stacklevel`` points the drop warning at the caller's own line.
    """
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

