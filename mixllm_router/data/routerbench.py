"""RouterBench: its WIDE csv files (one row per prompt, a column pair per model) as a long table.

The wide layout is converted to the long one of :mod:`mixllm_router.data` and then validated like
any other table, so the shipped files' known flaws are reported as ordinary data issues (see
:func:`load_routerbench`).
"""

from __future__ import annotations

import ast
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._exceptions import DataError
from .dataset import RoutingDataset
from .validate import _MAX_EXAMPLES, DataIssue, OnError, _validate

__all__ = ["load_routerbench"]

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
