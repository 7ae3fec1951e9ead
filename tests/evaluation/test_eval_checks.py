"""The evaluation's own defects on a user's data (issue #19, item 4): one test per defect."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from synthetic import make_synthetic

from mixllm_router import RoutingDataset
from mixllm_router.encoders import HashingEncoder
from mixllm_router.evaluation import evaluate
from mixllm_router.evaluation.tuning import tune
from mixllm_router.policy.tradeoff import bootstrap_summary, default_cost_weights


def _data(rows):
    return RoutingDataset.from_records(rows)


def _with_costs(rows, cost_of):
    """The same outcomes with other costs: ``cost_of(row) -> USD``."""
    return [{**r, "cost": cost_of(r)} for r in rows]


def _weak_expensive(rows):
    """Add ``legacy-xl``: the costliest model by far, and the weakest (quality 0.1 on average)."""
    rng = np.random.default_rng(5)
    extra = []
    for r in rows:
        if r["model"] == "cheap":
            extra.append({**r, "model": "legacy-xl", "quality": float(rng.random() < 0.1), "cost": 0.05})
    return rows + extra


@pytest.fixture(scope="module")
def base_rows():
    # make_synthetic numbers its queries from 0, so a second call repeats the training texts
    test = [{**r, "query": r["query"] + " (held out)"} for r in make_synthetic(20, seed=1)]
    return make_synthetic(60, seed=0), test


def _no_warnings():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("error")
    return ctx


def test_default_reference_is_the_best_quality_model_on_train_and_is_named(base_rows):
    train_rows, test_rows = base_rows
    train, test = _data(_weak_expensive(train_rows)), _data(_weak_expensive(test_rows))
    report = evaluate(train, test, encoder=HashingEncoder(), bootstrap=False)
    q = train.matrix("quality", train.models).mean(axis=0)
    best = train.models[int(np.argmax(q))]
    # the costliest (legacy-xl) would give shares far above 100%: the best-quality model is the default
    assert report.reference == best != "legacy-xl"
    assert f"reference {best}" in report.table()
    assert report.get(report.methods[0].name).summary()["auc"] < 120


def test_a_weak_reference_is_warned_about_not_printed_silently(base_rows):
    train_rows, test_rows = base_rows
    train, test = _data(_weak_expensive(train_rows)), _data(_weak_expensive(test_rows))
    with pytest.warns(UserWarning, match="legacy-xl.*below"):
        report = evaluate(train, test, encoder=HashingEncoder(), reference="legacy-xl", bootstrap=False)
    assert report.get(report.methods[0].name).summary()["auc"] > 150
    assert any("legacy-xl" in note for note in report.notes) and "warning" in report.table()


def test_tied_best_quality_reference_is_warned(base_rows):
    train_rows, test_rows = base_rows
    # poet and math-pro are symmetric: make them exactly equal on train by copying math-pro's scores
    by_query = {r["query_id"] if "query_id" in r else r["query"]: r for r in train_rows if r["model"] == "math-pro"}
    tied = [{**r, "quality": by_query[r["query"]]["quality"]} if r["model"] == "poet" else r for r in train_rows]
    with pytest.warns(UserWarning, match="tie"):
        report = evaluate(_data(tied), _data(test_rows), encoder=HashingEncoder(), bootstrap=False)
    assert report.reference in {"math-pro", "poet"}


@pytest.mark.parametrize("kind", ["equal", "zero"])
def test_quality_only_data_is_detected_and_reported_with_quality_metrics(base_rows, kind):
    train_rows, test_rows = base_rows
    cost_of = (lambda r: 0.001 * (1 + len(r["query"]) / 100)) if kind == "equal" else (lambda r: 0.0)
    train, test = _data(_with_costs(train_rows, cost_of)), _data(_with_costs(test_rows, cost_of))
    report = evaluate(train, test, encoder=HashingEncoder(), seed=0)
    assert report.quality_only
    table = report.table()
    assert "quality only" in table and "AUC" not in table and "Q@10%" not in table
    s = report.quality_summary(report.methods[0].name)
    # two specialists split the domains: routing by quality beats the best single model clearly
    assert s["quality"] > 110 and s["vs_best_single"] > 110
    assert "best single model" in table
    payload = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert payload["quality_only"] is True


def test_tune_on_quality_only_data_tunes_on_quality_not_the_first_setting(base_rows):
    train_rows, _ = base_rows
    train = _data(_with_costs(train_rows, lambda r: 0.002))
    # the useless setting first: on a flat AUC it would be taken by default
    grid = [{"quality_model": "ridge", "prior_strength": 1e6}, {"quality_model": "ridge", "prior_strength": 1.0}]
    result = tune(train, grid=grid, encoder=HashingEncoder(), folds=3)
    assert result.metric == "quality"
    assert result.best.prior_strength == 1.0
    scores = [row[1]["score"] for row in result.rows]
    assert scores[1] > scores[0] + 5
    assert "quality" in result.table() and "AUC" not in result.table()


def test_tied_prices_give_a_sensible_table_and_tuning(base_rows):
    train_rows, test_rows = base_rows
    # math-pro and poet at one price, and the weak legacy model at that same (top) price
    train = _data(_with_costs(_weak_expensive(train_rows), lambda r: 0.001 if r["model"] == "cheap" else 0.01))
    test = _data(_with_costs(_weak_expensive(test_rows), lambda r: 0.001 if r["model"] == "cheap" else 0.01))
    report = evaluate(train, test, encoder=HashingEncoder(), bootstrap=False)
    assert not report.quality_only and report.reference in {"math-pro", "poet"}
    assert 100 < report.get(report.methods[0].name).summary()["auc"] < 130
    grid = [{"quality_model": "ridge", "prior_strength": 1e6}, {"quality_model": "ridge", "prior_strength": 1.0}]
    assert tune(train, grid=grid, encoder=HashingEncoder(), folds=3).best.prior_strength == 1.0


def test_results_json_is_strict_with_reasons_for_nulls(base_rows, tmp_path):
    train_rows, test_rows = base_rows
    report = evaluate(_data(train_rows), _data(test_rows), encoder=HashingEncoder(), reference="math-pro")
    path = tmp_path / "results.json"
    report.write_json(path)

    def refuse(name):
        raise ValueError(f"bare {name} in results.json")

    payload = json.loads(path.read_text(), parse_constant=refuse)
    single = next(m for m in payload["methods"] if m["kind"] == "single")
    assert single["cost_weights"] == [None]
    assert "null" in json.dumps(payload["nulls"]) or payload["nulls"]


def test_c97_interval_when_some_resamples_never_reach_the_threshold():
    n = 60
    quality = np.column_stack([np.arange(n) % 10 != 0, np.arange(n) % 10 > 1]).astype(float)  # 0.9 and 0.8 ...
    quality[::20, 1] = 1.0  # the cheap model at 0.85: a share of 0.944 on average, above 0.9725 in some resamples
    cost = np.column_stack([np.full(n, 1.0), np.full(n, 0.1)])
    grid = default_cost_weights(0.5, n=50)
    ctx = _no_warnings()
    try:
        # the router always prefers the cheap model, whose quality share hovers around 0.9725
        pred = np.tile([0.5, 0.9], (n, 1))
        iv = bootstrap_summary(pred, cost, quality, cost, 0, grid, seed=0)
    finally:
        ctx.__exit__(None, None, None)
    lo, hi = iv["cost_to_97_25"]
    assert math.isfinite(lo) and math.isinf(hi)  # some resamples never reach 97.25%: the bound is "never"


def test_interval_print_never_shows_nan():
    from mixllm_router.evaluation.benchmark import EvalReport

    report = EvalReport(reference="a", n_train=1, n_test=1, methods=[], intervals={
        "auc": (90.0, 95.0), "quality_at_10": (80.0, 85.0), "quality_at_25": (88.0, 90.0),
        "cost_to_97_25": (12.9, float("inf"))})
    line = report.interval_line("mixllm")
    assert "nan" not in line and "12.9–never" in line


def test_a_tuned_run_names_its_setting_in_the_table(base_rows):
    train_rows, test_rows = base_rows
    report = evaluate(_data(train_rows), _data(test_rows), config={"quality_model": "ridge", "prior_strength": 3.0},
                      encoder=HashingEncoder(), bootstrap=False, setting={"quality_model": "ridge", "prior_strength": 3.0})
    assert "prior_strength=3.0" in report.methods[0].name and "tuned by CV" in report.methods[0].name
    assert "prior_strength=3.0" in report.table()


def test_test_queries_also_in_training_are_flagged(base_rows):
    train_rows, test_rows = base_rows
    fresh = test_rows  # 40 queries not in train
    first = {x["query"] for x in train_rows[:9]}  # 3 training queries (× 3 models)
    test = _data(fresh + [r for r in train_rows if r["query"] in first])
    with pytest.warns(UserWarning, match="3 of 43 test queries"):
        report = evaluate(_data(train_rows), test, encoder=HashingEncoder(), bootstrap=False)
    assert report.duplicate_test_queries == 3
    assert "3 of 43 test queries" in report.table()
    assert report.to_json()["duplicate_test_queries"] == 3


def test_decisions_hold_the_tables_grid_and_recompute_its_figures(base_rows):
    from mixllm_router.policy.tradeoff import TradeoffCurve

    train_rows, test_rows = base_rows
    train, test = _data(train_rows), _data(test_rows)
    report = evaluate(train, test, encoder=HashingEncoder(), bootstrap=False, decisions_at=None)
    lams = sorted({d["cost_weight"] for d in report.decisions})
    main = report.methods[0].curve
    assert len(lams) == len(main.cost_weights)
    names = test.models
    q, c = test.matrix("quality", names), test.matrix("cost", names)
    row = {qid: i for i, qid in enumerate(test.query_ids)}
    ref = names.index(report.reference)
    shares = {}
    for d in report.decisions:
        i, j = row[d["query_id"]], names.index(d["chosen"])
        acc = shares.setdefault(d["cost_weight"], [0.0, 0.0])
        acc[0] += c[i, j]
        acc[1] += q[i, j]
    cw = np.array(lams)
    curve = TradeoffCurve(cw, np.array([shares[x][0] for x in lams]) / c[:, ref].sum(),
                          np.array([shares[x][1] / len(row) for x in lams]) / q[:, ref].mean())
    assert curve.summary() == pytest.approx(main.summary())


def _write_long_csv(path, rows, split_at):
    import csv

    queries = list(dict.fromkeys(r["query"] for r in rows))
    split = {q: ("train" if i % 4 else "test") for i, q in enumerate(queries)} if split_at is None else split_at
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["query", "model", "quality", "cost", "split"])
        writer.writeheader()
        for r in rows:
            writer.writerow({"query": r["query"], "model": r["model"], "quality": r["quality"], "cost": r["cost"],
                             "split": split[r["query"]]})
    return path


@pytest.mark.parametrize("prices", ["varied", "equal"])
def test_mixllm_eval_tune_names_the_setting_and_writes_strict_json(tmp_path, capsys, prices):
    from mixllm_router.cli.main import main

    rows = make_synthetic(40, seed=2)
    if prices == "equal":
        rows = _with_costs(rows, lambda r: 1e-4 * len(r["query"]))  # costs follow the prompt's length
    data = _write_long_csv(tmp_path / "d.csv", rows, None)
    out = tmp_path / "eval"
    extra = ["--representations", "frozen,fine-tuned"] if prices == "varied" else []
    assert main(["eval", "--data", str(data), "--out", str(out), "--encoder", "hashing", "--tune", *extra]) == 0
    captured = capsys.readouterr()
    assert ("representation (out-of-fold" in captured.err) == bool(extra)  # the representation's CV table
    assert "tuned by CV" in captured.out and "quality_model=" in captured.out
    assert ("quality only" in captured.out) == (prices == "equal")
    assert ("quality only" in captured.err) == (prices == "equal")  # the tuning table says what it scored
    json.loads((out / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
