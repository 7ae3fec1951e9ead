"""The validated routing table: :class:`RoutingDataset` and the datasets derived from it.

Every way in (a frame, records, a CSV file) goes through :func:`.validate._validate`; every way
out (subsets, splits, folds, concatenation) returns a new dataset, so a dataset once built is
never changed in place and its ``issues`` always describe how its rows came to be.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._exceptions import DataError
from .validate import _MAX_EXAMPLES, DataIssue, OnError, _validate

__all__ = ["RoutingDataset"]


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
