"""The replay simulation of online learning (``mixllm_router.evaluation.online``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixllm_router import ConfigError, DataError, RoutingDataset
from mixllm_router.encoders import HashingEncoder
from mixllm_router.evaluation.online import drift_outcomes, simulate_online

ENC = HashingEncoder(dim=64)
# model -> (P(correct) on math, P(correct) on poems, USD per query)
MODELS = {"big": (0.95, 0.95, 2e-3), "math-small": (0.9, 0.1, 1e-4), "poet-small": (0.1, 0.9, 1e-4)}


def toy(n: int, split: str, seed: int) -> RoutingDataset:
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        topic = "math" if rng.random() < 0.5 else "poem"
        words = rng.choice(["integral derivative", "sum proof lemma", "matrix algebra"]) if topic == "math" \
            else rng.choice(["rose sonnet", "verse rhyme", "ode to the moon"])
        query = f"{topic} {words} {split} {i}"
        for model, (p_math, p_poem, price) in MODELS.items():
            p = p_math if topic == "math" else p_poem
            records.append({"query_id": f"{split}{i}", "query": query, "model": model, "split": split,
                            "quality": float(rng.random() < p), "cost": price})
    return RoutingDataset.from_records(records)


@pytest.fixture(scope="module")
def data() -> tuple[RoutingDataset, RoutingDataset]:
    return toy(300, "train", 0), toy(120, "test", 1)


def test_simulation_report_structure_and_files(data, tmp_path: Path) -> None:
    train, test = data
    report = simulate_online(train, test, shares=(0.1, 0.3), cost_share=0.5, encoder=ENC, reference="big",
                             holdout="poet-small", holdout_share=0.1, holdout_prior="mean", eval_every=50,
                             config={"encoder": {"kind": "hashing", "use_cache": False}})
    assert [r.offline_share for r in report.shares] == [0.1, 0.3]
    for r in report.shares:
        n_stream = len(train) - r.n_offline + len(test)
        assert len(r.online.quality) == len(r.frozen.quality) == n_stream
        assert r.auc_events[0] == 0 and r.auc_events[-1] == r.n_stream_train
        s = r.summary()
        assert s["feedback_events"] == n_stream and np.isfinite(s["gain_at_equal_cost"])
        assert 0 < s["frozen_cost"] <= 100 and 0 < s["online_cost"] <= 100
    h = report.holdout
    assert h is not None and h.prior == "mean" and h.events[0] == 0
    assert h.auc_with > 0 and len(h.auc) == len(h.events)
    text = report.table()
    assert "online Q" in text and "poet-small added live" in text
    written = report.write(tmp_path)
    assert {p.name for p in written} >= {"online.json", "online.txt"}
    payload = json.loads((tmp_path / "online.json").read_text())
    assert len(payload["shares"]) == 2 and payload["holdout"]["candidate"] == "poet-small"


def test_online_learning_beats_frozen_on_a_toy_stream(data) -> None:
    """With 10% offline data the small models' specialities are barely known; feedback teaches them.

    At equal cost (the frozen router's λ swept on the test queries), the online router must be
    better on the test part of the stream. It can fail: a learner that does not learn, or learns
    the wrong candidate, ends below the frozen router.
    """
    train, test = data
    report = simulate_online(train, test, shares=(0.1,), cost_share=0.3, encoder=ENC, reference="big",
                             eval_every=1000, config={"encoder": {"kind": "hashing", "use_cache": False}})
    s = report.shares[0].summary()
    assert s["gain_at_equal_cost"] > 1.0, report.table()
    assert s["online_cost"] <= s["frozen_cost"], report.table()


def test_thompson_exploration_and_the_full_information_ceiling(data) -> None:
    """Thompson-sampling exploration runs through the public API; the ceiling and interval are reported.

    On the toy stream the full-information refit (every candidate's outcome for every training
    query) must be at least as good as the frozen offline fit, and the bootstrap interval must
    contain the point estimate. (No gain is asserted: 120 test queries give an interval of about
    ±9 points, see the table this prints on failure.)
    """
    train, test = data
    report = simulate_online(train, test, shares=(0.1,), cost_share=0.3, encoder=ENC, reference="big",
                             eval_every=1000, thompson=0.5,
                             config={"encoder": {"kind": "hashing", "use_cache": False}})
    r = report.shares[0]
    s = r.summary()
    assert s["auc_full_info"] >= s["auc_frozen"] - 1e-9, report.table()
    assert s["gain_at_equal_cost_lo"] <= s["gain_at_equal_cost"] <= s["gain_at_equal_cost_hi"]
    counts = r.choice_counts()
    assert sum(counts["online_test"].values()) == len(test)
    assert len(counts["online_train"]) == 3  # sampling tried every candidate
    assert "Thompson" in report.table() and report.to_json()["thompson"] == 0.5


def test_label_noise_is_validated(data) -> None:
    from mixllm_router import ConfigError

    with pytest.raises(ConfigError):
        simulate_online(*data, label_noise=0.7, encoder=ENC)
    with pytest.raises(ConfigError):
        simulate_online(*data, shares=(1.5,), encoder=ENC)


def test_bad_holdout_or_reference_fails_before_any_streaming(data, monkeypatch) -> None:
    """A typo must not cost the user a whole replay first: the check runs before the first route."""
    from mixllm_router import ConfigError, DataError, MixLLMRouter

    def no_routing(*args, **kwargs):  # pragma: no cover - reached only if validation comes too late
        raise AssertionError("routed before validating the arguments")

    monkeypatch.setattr(MixLLMRouter, "route_batch", no_routing)
    with pytest.raises(DataError, match="hold-out candidate 'nope'"):
        simulate_online(*data, encoder=ENC, reference="big", holdout="nope")
    with pytest.raises(ConfigError, match="reference"):
        simulate_online(*data, encoder=ENC, reference="big", holdout="big")
    with pytest.raises(DataError, match="reference model 'gpt-9'"):
        simulate_online(*data, encoder=ENC, reference="gpt-9")


def test_cli_simulate_online(data, tmp_path: Path) -> None:
    from mixllm_router.cli.main import main

    train, test = data
    path = tmp_path / "toy.csv"
    train.concat(test).to_csv(path)
    code = main(["simulate-online", "--data", str(path), "--shares", "0.2", "--encoder", "hashing",
                 "--reference-model", "big", "--cost-share", "0.5", "--eval-every", "500", "--out", str(tmp_path / "out")])
    assert code == 0
    assert (tmp_path / "out" / "online.json").exists()


def test_drift_outcomes_swaps_one_candidates_quality_only(data) -> None:
    _, test = data
    drifted = drift_outcomes(test, "math-small", "poet-small")
    assert drifted.queries == test.queries and drifted.models == test.models
    before = {m: test.matrix("quality", [m])[:, 0] for m in test.models}
    np.testing.assert_array_equal(drifted.matrix("quality", ["math-small"])[:, 0], before["poet-small"])
    for m in ("big", "poet-small"):
        np.testing.assert_array_equal(drifted.matrix("quality", [m])[:, 0], before[m])
    np.testing.assert_array_equal(drifted.matrix("cost", test.models), test.matrix("cost", test.models))
    with pytest.raises(DataError, match="nope"):
        drift_outcomes(test, "nope", "big")
    with pytest.raises(ConfigError):
        drift_outcomes(test, "big", "big")


def test_feedback_reveals_a_candidate_that_drifted(data) -> None:
    """From the first test query on, math-small answers like poet-small (bad at math).

    The frozen router keeps sending math to it; the online router, taught by feedback on the
    training part of the stream and then on the drifted test part, must notice and do better at
    equal cost. A learner that ignores feedback, or a drift that was not applied, fails this.
    """
    train, test = data
    report = simulate_online(
        train, test, shares=(0.3,), cost_share=0.3, encoder=ENC, reference="big", drift=("math-small", "poet-small"),
        eval_every=1000, config={"encoder": {"kind": "hashing", "use_cache": False}})
    s = report.shares[0].summary()
    assert report.drift == ("math-small", "poet-small")
    assert "answers like poet-small" in report.table()
    assert report.to_json()["drift"] == {"candidate": "math-small", "like": "poet-small"}
    # the frozen router's test quality is scored on the drifted outcomes
    r = report.shares[0]
    part = r.test_slice()
    drifted = drift_outcomes(test, "math-small", "poet-small").matrix("quality", r.names)
    np.testing.assert_array_equal(r.frozen.quality[part], drifted[np.arange(len(test)), r.frozen.chosen[part]])
    assert s["gain_at_equal_cost"] > 1.0, report.table()


def test_auto_drift_is_chosen_on_training_data_and_bad_drift_fails_early(data) -> None:
    train, test = data
    with pytest.raises(DataError, match="nope"):
        simulate_online(train, test, encoder=ENC, reference="big", drift=("nope", "big"))
    with pytest.raises(ConfigError):
        simulate_online(train, test, encoder=ENC, reference="big", drift="sometimes")
    report = simulate_online(train, test, shares=(0.3,), cost_share=0.3, encoder=ENC, reference="big", drift="auto",
                             eval_every=1000, config={"encoder": {"kind": "hashing", "use_cache": False}})
    assert report.drift is not None
    candidate, like = report.drift
    assert candidate != "big" and like != candidate and like in train.models


def test_cli_drift_and_change_detection(data, tmp_path: Path, capsys) -> None:
    from mixllm_router.cli.main import main

    train, test = data
    path = tmp_path / "toy.csv"
    train.concat(test).to_csv(path)
    out = tmp_path / "out"
    code = main(["simulate-online", "--data", str(path), "--shares", "0.3", "--encoder", "hashing",
                 "--reference-model", "big", "--cost-share", "0.3", "--eval-every", "500", "--out", str(out),
                 "--drift", "math-small=poet-small", "--no-change-detection"])
    assert code == 0
    report = json.loads((out / "online.json").read_text())
    assert report["drift"] == {"candidate": "math-small", "like": "poet-small"}
    assert report["config"]["learning"]["change_detection"] is False
    assert report["shares"][0]["changes_detected"] == 0
    assert report["shares"][0]["changes_detected"] >= 0
    assert main(["simulate-online", "--data", str(path), "--encoder", "hashing", "--drift", "math-small"]) == 2
    assert "CANDIDATE=LIKE" in capsys.readouterr().err
