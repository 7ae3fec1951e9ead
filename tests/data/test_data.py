"""Tests for mixllm_router.data: the long routing table, its validation, splits and the RouterBench loader."""

from __future__ import annotations

import ast
import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mixllm_router._exceptions import DataError, MixLLMError
from mixllm_router.data import DataIssue, RoutingDataset, load_routerbench

ROUTERBENCH = Path(__file__).parents[2].parent / "shared" / "data" / "routerbench"


@pytest.fixture(scope="module")
def routerbench_dir() -> Path:
    if not ROUTERBENCH.is_dir():
        pytest.skip(f"RouterBench data folder not found at {ROUTERBENCH}")
    return ROUTERBENCH


def records() -> list[dict[str, Any]]:
    """3 queries x 2 models with distinct values, rows deliberately not in query-major order."""
    return [
        {"query_id": "q1", "query": "one", "model": "a", "quality": 0.1, "cost": 1.0, "task": "t1"},
        {"query_id": "q2", "query": "two", "model": "b", "quality": 0.4, "cost": 4.0, "task": "t2"},
        {"query_id": "q1", "query": "one", "model": "b", "quality": 0.2, "cost": 2.0, "task": "t1"},
        {"query_id": "q3", "query": "three", "model": "a", "quality": 0.5, "cost": 5.0, "task": "t1"},
        {"query_id": "q2", "query": "two", "model": "a", "quality": 0.3, "cost": 3.0, "task": "t2"},
        {"query_id": "q3", "query": "three", "model": "b", "quality": 0.6, "cost": 6.0, "task": "t1"},
    ]


def big(n_queries: int = 40, models: tuple[str, ...] = ("a", "b", "c")) -> RoutingDataset:
    rng = np.random.default_rng(1)
    rows = [
        {"query_id": f"q{i}", "query": f"text {i}", "model": m, "quality": float(rng.random()),
         "cost": float(rng.random()), "task": "even" if i % 2 == 0 else ("odd" if i % 3 else "three")}
        for i in range(n_queries) for m in models
    ]
    return RoutingDataset.from_records(rows)


# -- construction ----------------------------------------------------------------------------


def test_from_records_builds_views_in_first_appearance_order() -> None:
    ds = RoutingDataset.from_records(records())
    assert len(ds) == 3
    assert ds.models == ["a", "b"]
    assert ds.query_ids == ["q1", "q2", "q3"]
    assert ds.queries == ["one", "two", "three"]
    assert ds.tasks == ["t1", "t2", "t1"]
    assert list(ds.frame.columns) == ["query_id", "query", "model", "quality", "cost", "task"]
    assert ds.issues == ()
    assert ds.has_column("task") and not ds.has_column("split")


def test_query_id_is_derived_from_text_when_absent_or_empty() -> None:
    rows = [{k: v for k, v in r.items() if k != "query_id"} for r in records()]
    rows[0]["query_id"] = None  # harmless: the column is absent from all others anyway
    ds = RoutingDataset.from_records(rows)
    expected = hashlib.sha256(b"one").hexdigest()[:16]
    assert ds.query_ids[0] == expected
    assert len(ds) == 3 and all(len(q) == 16 for q in ds.query_ids)


def test_pandas_csv_and_records_agree(tmp_path: Path) -> None:
    frame = pd.DataFrame(records())
    a = RoutingDataset.from_pandas(frame)
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    b = RoutingDataset.from_csv(path)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert b.source == str(path)
    np.testing.assert_array_equal(a.quality_matrix(), b.quality_matrix())


def test_input_frame_is_not_modified() -> None:
    frame = pd.DataFrame(records())
    frame.loc[0, "model"] = " a "
    before = frame.copy()
    ds = RoutingDataset(frame)
    pd.testing.assert_frame_equal(frame, before)
    assert ds.models == ["a", "b"]  # whitespace around model names is stripped


# -- bad data ------------------------------------------------------------------------------------


def _mutate(kind: str) -> list[dict[str, Any]]:
    rows = records()
    if kind == "nan_quality":
        rows[1]["quality"] = float("nan")
    elif kind == "quality_out_of_range":
        rows[1]["quality"] = 1.5
    elif kind == "negative_cost":
        rows[1]["cost"] = -0.01
    elif kind == "nan_cost":
        rows[1]["cost"] = None
    elif kind == "empty_query":
        rows[1]["query"] = "   "
        rows[1]["query_id"] = "q9"
    elif kind == "empty_model":
        rows[1]["model"] = ""
    elif kind == "non_numeric_quality":
        rows[1]["quality"] = "high"
    elif kind == "non_numeric_cost":
        rows[1]["cost"] = "free"
    elif kind == "negative_input_tokens":
        for r in rows:
            r["input_tokens"] = 10
        rows[1]["input_tokens"] = -3
    elif kind == "duplicate_row":
        rows.append(dict(rows[1], quality=0.9))
    elif kind == "conflicting_query_id":
        rows[1]["query"] = "two, but different"
    elif kind == "conflicting_split":
        for r in rows:
            r["split"] = "train"
        rows[1]["split"] = "test"
    else:  # pragma: no cover
        raise AssertionError(kind)
    return rows


ROW_KINDS = ["nan_quality", "quality_out_of_range", "negative_cost", "nan_cost", "empty_query", "empty_model",
             "non_numeric_quality", "non_numeric_cost", "negative_input_tokens", "duplicate_row"]
QUERY_KINDS = ["conflicting_query_id", "conflicting_split"]


@pytest.mark.parametrize("kind", ROW_KINDS + QUERY_KINDS)
def test_bad_data_raises_with_kind_and_source(kind: str) -> None:
    with pytest.raises(DataError) as info:
        RoutingDataset(pd.DataFrame(_mutate(kind)), source="my-table")
    message = str(info.value)
    assert kind in message and "my-table" in message
    assert ("q9" if kind == "empty_query" else "q2") in message  # the example points at the offending query
    assert isinstance(info.value, MixLLMError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("kind", ROW_KINDS)
def test_bad_row_is_dropped_and_reported(kind: str) -> None:
    with pytest.warns(UserWarning, match=kind) as record:
        ds = RoutingDataset.from_records(_mutate(kind), on_error="drop")
    assert len([w for w in record if issubclass(w.category, UserWarning)]) == 1
    issue = next(i for i in ds.issues if i.kind == kind)
    assert issue.count == 1 and issue.action == "dropped" and issue.examples
    assert kind in str(issue)
    if kind == "duplicate_row":  # the first of the two rows is kept
        assert len(ds.frame) == 6
        assert ds.quality_matrix()[1, 1] == pytest.approx(0.4)
    elif kind == "empty_query":
        assert sorted(ds.query_ids) == ["q1", "q2", "q3"] and len(ds.frame) == 5
    else:
        assert len(ds.frame) == 5
        assert np.isnan(ds.quality_matrix()[ds.query_ids.index("q2"), ds.models.index("b")])
    # q2 lost model b, which require_complete=False only notes
    if kind != "duplicate_row":
        assert any(i.kind == "missing_model" and i.action == "kept" for i in ds.issues)


@pytest.mark.parametrize("kind", QUERY_KINDS)
def test_inconsistent_query_is_dropped_whole(kind: str) -> None:
    with pytest.warns(UserWarning, match=kind):
        ds = RoutingDataset.from_records(_mutate(kind), on_error="drop")
    assert ds.query_ids == ["q1", "q3"]
    issue = next(i for i in ds.issues if i.kind == kind)
    assert issue.examples == ("q2",) and issue.count == 1 and issue.action == "dropped"


def test_raise_lists_every_problem() -> None:
    rows = records()
    rows[0]["quality"] = -1.0
    rows[3]["cost"] = "n/a"
    with pytest.raises(DataError) as info:
        RoutingDataset.from_records(rows)
    message = str(info.value)
    assert "quality_out_of_range" in message and "non_numeric_cost" in message
    assert "2 kind(s)" in message


def test_csv_with_non_numeric_strings_reports_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("query,model,quality,cost\nhello,a,0.5,0.1\nhello,b,high,0.2\nbye,a,1,0.1\nbye,b,0,1e-3\n")
    with pytest.raises(DataError) as info:
        RoutingDataset.from_csv(path)
    assert "non_numeric_quality" in str(info.value) and "line 3" in str(info.value) and str(path) in str(info.value)
    with pytest.warns(UserWarning):
        ds = RoutingDataset.from_csv(path, on_error="drop", require_complete=True)
    assert ds.queries == ["bye"]
    np.testing.assert_allclose(ds.cost_matrix(), [[0.1, 1e-3]])


@pytest.mark.parametrize("on_error", ["raise", "drop"])
def test_missing_column_always_raises_naming_it(on_error: str) -> None:
    frame = pd.DataFrame(records()).drop(columns=["cost"])
    with pytest.raises(DataError) as info:
        RoutingDataset(frame, on_error=on_error)  # type: ignore[arg-type]
    message = str(info.value)
    assert "'cost'" in message and "quality" in message and "task" in message  # names what is there too


def test_empty_inputs_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no records"):
        RoutingDataset.from_records([])
    with pytest.raises(DataError, match="mapping"):
        RoutingDataset.from_records([("q", "a", 1, 0)])  # type: ignore[list-item]
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="nope.csv"):
        RoutingDataset.from_csv(missing)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv"):
        RoutingDataset.from_csv(empty)
    with pytest.raises(DataError, match="no usable rows"):
        RoutingDataset.from_records([{"query": "x", "model": "a", "quality": 2, "cost": 0}], on_error="drop")


def test_require_complete() -> None:
    rows = [r for r in records() if not (r["query_id"] == "q2" and r["model"] == "a")]
    kept = RoutingDataset.from_records(rows)
    assert kept.query_ids == ["q1", "q2", "q3"]
    assert [(i.kind, i.action, i.examples) for i in kept.issues] == [("missing_model", "kept", ("q2",))]
    assert np.isnan(kept.quality_matrix()[1, 0])
    with pytest.raises(DataError, match="missing_model"):
        RoutingDataset.from_records(rows, require_complete=True)
    with pytest.warns(UserWarning, match="missing_model"):
        dropped = RoutingDataset.from_records(rows, require_complete=True, on_error="drop")
    assert dropped.query_ids == ["q1", "q3"]
    assert not np.isnan(dropped.quality_matrix()).any()


# -- views -----------------------------------------------------------------------------------------


def test_matrix_alignment() -> None:
    ds = RoutingDataset.from_records(records()[:-1])  # q3 has no row for model b
    np.testing.assert_array_equal(ds.quality_matrix(), [[0.1, 0.2], [0.3, 0.4], [0.5, np.nan]])
    np.testing.assert_array_equal(ds.cost_matrix(["b", "a"]), [[2.0, 1.0], [4.0, 3.0], [np.nan, 5.0]])
    assert ds.matrix("quality").dtype == np.float64
    with pytest.raises(DataError, match="unknown model"):
        ds.matrix("cost", ["a", "zzz"])
    with pytest.raises(DataError, match="no column"):
        ds.matrix("latency_s")
    with pytest.raises(DataError, match="not numeric"):
        ds.matrix("query")


def test_subset_and_with_models() -> None:
    ds = RoutingDataset.from_records(records())
    sub = ds.subset(["q3", "q1"])
    assert sub.query_ids == ["q3", "q1"] and sub.queries == ["three", "one"]
    np.testing.assert_array_equal(sub.quality_matrix(), [[0.5, 0.6], [0.1, 0.2]])
    with pytest.raises(DataError, match="unknown query id"):
        ds.subset(["q1", "nope"])
    with pytest.raises(DataError, match="repeated"):
        ds.subset(["q1", "q1"])
    only_b = ds.with_models(["b"])
    assert only_b.models == ["b"] and len(only_b) == 3
    np.testing.assert_array_equal(only_b.cost_matrix(), [[2.0], [4.0], [6.0]])
    with pytest.raises(DataError, match="unknown model"):
        ds.with_models(["c"])
    assert len(ds.frame) == 6  # the parent is untouched


def test_frame_is_safe_to_mutate() -> None:
    ds = RoutingDataset.from_records(records())
    f = ds.frame
    f.loc[0, "quality"] = 0.99
    assert ds.quality_matrix()[0, 0] == pytest.approx(0.1)


def test_splits_by_column() -> None:
    rows = records()
    for r in rows:
        r["split"] = "test" if r["query_id"] == "q2" else "train"
    parts = RoutingDataset.from_records(rows).splits()
    assert list(parts) == ["train", "test"]
    assert parts["train"].query_ids == ["q1", "q3"] and parts["test"].query_ids == ["q2"]
    with pytest.raises(DataError, match="split"):
        RoutingDataset.from_records(records()).splits()


def test_train_test_split_by_query() -> None:
    ds = big(60)
    train, test = ds.train_test_split(0.25, seed=3)
    tr, te = set(train.query_ids), set(test.query_ids)
    assert not tr & te and tr | te == set(ds.query_ids)
    assert len(test) == pytest.approx(15, abs=2)
    # whole queries move: every test query keeps all three outcomes
    assert len(test.frame) == 3 * len(test) and len(train.frame) == 3 * len(train)
    # stratified by task: each task's share in test is close to 25%
    for task in set(ds.tasks):
        n_task = ds.tasks.count(task)
        assert test.tasks.count(task) == round(0.25 * n_task)
    # original order kept, deterministic per seed, different across seeds
    assert test.query_ids == [q for q in ds.query_ids if q in te]
    assert ds.train_test_split(0.25, seed=3)[1].query_ids == test.query_ids
    assert ds.train_test_split(0.25, seed=4)[1].query_ids != test.query_ids
    for bad in (0.0, 1.0, -0.1, 2):
        with pytest.raises(DataError):
            ds.train_test_split(bad)


def test_kfold_partitions_queries() -> None:
    ds = big(23)
    folds = list(ds.kfold(5, seed=0))
    assert len(folds) == 5
    seen: list[str] = []
    for train, test in folds:
        assert not set(train.query_ids) & set(test.query_ids)
        assert set(train.query_ids) | set(test.query_ids) == set(ds.query_ids)
        assert len(test) in (4, 5)
        seen.extend(test.query_ids)
    assert sorted(seen) == sorted(ds.query_ids)
    for bad in (1, 0, 24):
        with pytest.raises(DataError, match="n_splits"):
            list(ds.kfold(bad))


def test_to_csv_round_trip(tmp_path: Path) -> None:
    rows = records()
    for i, r in enumerate(rows):
        r.update(query_id="00" + r["query_id"], input_tokens=10 + i, output_tokens=None if i == 2 else 3,
                 latency_s=0.5 * i, split="train", response=None if i == 0 else f"answer, \"quoted\"\nline {i}",
                 extra_note="x")
    rows[3]["query"] = "multi\nline, with \"quotes\""
    rows[5]["query"] = rows[3]["query"]
    ds = RoutingDataset.from_records(rows)
    assert ds.frame["input_tokens"].dtype == "Int64"
    path = tmp_path / "out.csv"
    ds.to_csv(path)
    back = RoutingDataset.from_csv(path)
    pd.testing.assert_frame_equal(ds.frame.drop(columns="extra_note"), back.frame.drop(columns="extra_note"))
    assert back.query_ids[0] == "00q1"
    assert back.frame["response"].iloc[0] is None


def test_concat_revalidates() -> None:
    rows = records()
    first = RoutingDataset.from_records(rows[:3], source="first")
    second = RoutingDataset.from_records(rows[3:], source="second")
    both = first.concat(second)
    assert set(both.query_ids) == {"q1", "q2", "q3"} and len(both.frame) == 6
    assert both.source == "first + second"
    with pytest.raises(DataError, match="duplicate_row"):
        both.concat(first)


def test_summary_mentions_models_costs_and_issues() -> None:
    rows = records()
    rows[0]["cost"] = -1
    with pytest.warns(UserWarning):
        ds = RoutingDataset.from_records(rows, on_error="drop")
    text = ds.summary()
    assert "3 queries" in text and "negative_cost" in text and "missing_model" in text
    line_b = next(line for line in text.splitlines() if line.strip().startswith("b "))
    assert "0.4000" in line_b and "12.0000" in line_b  # mean of 0.2, 0.4, 0.6; 2 + 4 + 6


def test_data_issue_str() -> None:
    issue = DataIssue("nan_quality", 2, ("row 1", "row 4"), "dropped", "rows whose quality is missing or NaN")
    assert str(issue) == "nan_quality: 2 dropped - rows whose quality is missing or NaN; e.g. row 1, row 4"


# -- RouterBench -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def routerbench(routerbench_dir: Path) -> RoutingDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_routerbench(routerbench_dir)


@pytest.fixture(scope="module")
def raw_routerbench(routerbench_dir: Path) -> pd.DataFrame:
    files = sorted(routerbench_dir.glob("*_t*.csv"))
    return pd.concat([pd.read_csv(f).assign(_split=f.stem.rsplit("_", 1)[1]) for f in files], ignore_index=True)


def test_routerbench_counts_and_models(routerbench: RoutingDataset, raw_routerbench: pd.DataFrame) -> None:
    models = [c for c in raw_routerbench.columns if f"{c}|total_cost" in raw_routerbench.columns]
    assert len(models) == 11 and sorted(routerbench.models) == sorted(models)
    # the known flaws, measured on the raw files: rows with any NaN score belong to split sample_ids
    nan_rows = raw_routerbench[models].isna().any(axis=1)
    split_ids = raw_routerbench["sample_id"][raw_routerbench["sample_id"].duplicated(keep=False)].unique()
    assert set(raw_routerbench.loc[nan_rows, "sample_id"]) == set(split_ids)
    assert len(split_ids) == 14
    issues = {i.kind: i for i in routerbench.issues}
    assert set(issues) == {"nan_quality", "conflicting_query_id"}
    assert issues["nan_quality"].count == int(raw_routerbench[models].isna().sum().sum())
    assert issues["conflicting_query_id"].count == len(split_ids)
    assert all(i.action == "dropped" for i in routerbench.issues)
    # every other prompt survives, complete
    assert len(routerbench) == len(raw_routerbench) - int(nan_rows.sum()) == 3150
    counts = {k: len(v) for k, v in routerbench.splits().items()}
    assert counts == {"train": 2205, "test": 945}
    assert not set(routerbench.query_ids) & set(split_ids)
    assert not np.isnan(routerbench.quality_matrix()).any()
    assert len(routerbench.frame) == 11 * 3150


def test_routerbench_content(routerbench: RoutingDataset, raw_routerbench: pd.DataFrame) -> None:
    assert not any(q.startswith("['") or q.startswith('["') for q in routerbench.queries)
    assert set(routerbench.tasks) == {"arc-challenge", "winogrande", "mbpp"}
    costs = routerbench.cost_matrix()
    assert (costs > 0).all()
    assert set(np.unique(routerbench.quality_matrix())) <= {0.0, 1.0}
    # one prompt checked end to end against the raw row
    row = raw_routerbench[raw_routerbench["eval_name"] == "mbpp"].iloc[0]
    sub = routerbench.subset([row["sample_id"]])
    assert sub.queries == ["\n".join(ast.literal_eval(row["prompt"]))]
    j = sub.models.index("gpt-4-1106-preview")
    assert sub.cost_matrix()[0, j] == row["gpt-4-1106-preview|total_cost"]
    response = sub.frame.set_index("model").loc["gpt-4-1106-preview", "response"]
    assert response == "\n".join(ast.literal_eval(row["gpt-4-1106-preview|model_response"]))


def test_routerbench_test_split_reports_halves_as_missing_model(routerbench_dir: Path) -> None:
    with pytest.warns(UserWarning, match="missing_model"):
        test = load_routerbench(routerbench_dir, split="test")
    assert len(test) == 945 and set(test.splits()) == {"test"}
    kinds = {i.kind: i.count for i in test.issues}
    assert kinds["conflicting_query_id"] == 1 and kinds["missing_model"] == 6
    # the reference figure from the data README: GPT-4 on the test files
    j = test.models.index("gpt-4-1106-preview")
    assert test.quality_matrix()[:, j].mean() == pytest.approx(0.879, abs=5e-4)
    assert test.cost_matrix()[:, j].sum() == pytest.approx(4.73, abs=5e-3)


def test_routerbench_filters_and_errors(routerbench_dir: Path, tmp_path: Path) -> None:
    mbpp = load_routerbench(routerbench_dir, tasks=["mbpp"])  # clean task: no warning, no issues
    assert set(mbpp.tasks) == {"mbpp"} and mbpp.issues == () and len(mbpp) == 427
    wino = load_routerbench([routerbench_dir / "winograde_train.csv"], tasks=["winogrande"])
    assert set(wino.splits()) == {"train"} and set(wino.tasks) == {"winogrande"}
    with pytest.raises(DataError, match="unknown RouterBench task"):
        load_routerbench(routerbench_dir, tasks=["gsm8k"])
    with pytest.raises(DataError, match="conflicting_query_id"):
        load_routerbench(routerbench_dir / "arc_challenge_train.csv", on_error="raise")
    with pytest.raises(DataError, match="not found"):
        load_routerbench(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"_train.csv"):
        load_routerbench(tmp_path)  # an empty folder


def test_routerbench_unparsable_prompt_is_kept_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "toy_train.csv"
    pd.DataFrame({
        "sample_id": ["s1", "s2"], "prompt": ["['hello', 'world']", "__import__('os')"], "eval_name": ["toy", "toy"],
        "m1": [1.0, 0.0], "m1|total_cost": [0.1, 0.2], "m1|model_response": ["['hi']", "['no']"],
    }).to_csv(path, index=False)
    ds = load_routerbench(path)
    assert ds.queries == ["hello\nworld", "__import__('os')"]
    assert ds.models == ["m1"] and ds.frame["split"].tolist() == ["train", "train"]
    (issue,) = ds.issues
    assert issue.kind == "unparsed_prompt" and issue.examples == ("s2",) and issue.action == "kept"


def test_routerbench_file_without_a_split_suffix_has_no_split_column(routerbench_dir: Path, tmp_path: Path) -> None:
    import shutil

    whole = tmp_path / "mbpp_all.csv"
    shutil.copy(routerbench_dir / "mbpp_test.csv", whole)
    data = load_routerbench(whole)
    assert len(data) > 0 and not data.has_column("split")
    assert load_routerbench(routerbench_dir / "mbpp_test.csv").splits().keys() == {"test"}
