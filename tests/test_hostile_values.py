"""Hostile values (issue 15 item 7): route options, feedback numbers, every settings model and
training tables get a result or the library's own error, never a raw Python error; a refused
feedback event changes nothing. The long run (≥ 10,000 inputs) is ``benchmarks/hostile_inputs.py``."""

from __future__ import annotations

import decimal
from pathlib import Path

import pytest
from hostile_values import (
    SETTINGS_MODELS,
    check_config_lifecycle,
    check_feedback,
    check_route,
    check_settings,
    check_table,
    feedback_args,
    field_values,
    route_options,
    small_router,
    table_cells,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixllm_router import ConfigError, FeedbackError, MixLLMRouter
from mixllm_router.learning.learner import FeedbackJournal, FeedbackScoreNet

FEW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def router():
    return small_router()


@pytest.fixture(scope="module")
def journaled(tmp_path_factory):
    return small_router(tmp_path_factory.mktemp("journal") / "feedback.jsonl")


# ------------------------------------------------------------------------------ the cases
@pytest.mark.parametrize("options", [
    {"cost_weight": 10**400}, {"cost_share": 10**400}, {"max_cost_usd": 10**400},
    {"cost_weight": "1"}, {"cost_weight": 1j}, {"cost_weight": decimal.Decimal("NaN")},
    {"cost_share": "0.5"}, {"max_cost_usd": decimal.Decimal("sNaN")}, {"cost_weight": float("inf")},
    {"candidates": [["x"]]}, {"candidates": "big"}, {"candidates": [1]},
])
def test_route_options_of_the_wrong_kind_are_config_errors(router, options) -> None:
    with pytest.raises(ConfigError):
        router.route("x", **options)


def test_a_finite_decimal_or_fraction_is_a_number(router) -> None:
    from fractions import Fraction

    assert router.route("x", cost_weight=decimal.Decimal("0.5")).cost_weight == 0.5
    assert router.route("x", max_cost_usd=Fraction(1, 100), candidates=("big",)).chosen == "big"


@pytest.mark.parametrize("kw", [{}, {"output_tokens": 10**400}, {"latency_s": 10**400}, {"output_tokens": float("inf")}])
def test_huge_feedback_numbers_are_feedback_errors_and_change_nothing(journaled, kw) -> None:
    score = 10**400 if not kw else 1.0
    assert check_feedback(journaled, score, kw) == "refused"


def test_inf_in_any_float_setting_is_refused() -> None:
    floats = {"cost_weight", "exploration", "thompson_scale", "feedback_weight", "prior_strength", "mlp_alpha"}
    learning = {"learning_rate", "baseline_rate", "prior_variance", "prior_count", "epsilon", "change_threshold",
                "change_shift", "change_softening", "new_candidate_prior_weight"}
    for name in floats:
        with pytest.raises(ConfigError, match=name):
            MixLLMRouter(**{name: float("inf")})
    for name in learning:
        with pytest.raises(ConfigError, match=name):
            MixLLMRouter(learning={name: float("inf")})
    for name in ("tolerance_s", "weight", "eps"):
        with pytest.raises(ConfigError, match=name):
            MixLLMRouter(latency={name: float("inf")})


@pytest.mark.parametrize("overrides", [
    {"prior_strength": 1e-300}, {"learning": {"hidden": 10**7}}, {"learning": {"new_candidate_prior_weight": 1e-300}},
    {"knn_k": 2**63}, {"decision_log_size": 2**63}, {"mlp_hidden": 2**63}, {"seed": 2**64},
    {"learning": {"batch_size": 2**63}}, {"learning": {"remember_feedback_ids": 2**63}}, {"encoder": {"batch_size": 2**63}},
    {"learning": {"journal_path": "a\x00b"}}, {"encoder": {"cache_dir": "a\x00b"}}, {"learning": {"change_shift": 1e6}},
])
def test_settings_that_used_to_break_later_are_refused_at_construction(overrides) -> None:
    with pytest.raises(ConfigError):
        MixLLMRouter(config=overrides)


@pytest.mark.parametrize("name", sorted(SETTINGS_MODELS))
def test_each_settings_model_raises_config_error_itself(name) -> None:
    with pytest.raises(ConfigError):
        SETTINGS_MODELS[name](bogus=1)


def test_repeated_query_texts_with_the_smallest_prior_fit_and_learn(tmp_path: Path) -> None:
    from mixllm_router import RoutingDataset

    records = [{"query_id": f"q{i}", "query": "the same text", "model": m, "quality": float((i + j) % 2),
                "cost": 1e-4 * (j + 1)} for i in range(20) for j, m in enumerate(("a", "b"))]
    router = MixLLMRouter(encoder=small_router().encoder, prior_strength=1e-6, calibration_folds=2)
    router.fit(RoutingDataset.from_records(records))
    router.feedback(router.route("the same text").decision_id, True)
    router.save(tmp_path / "ckpt")


def test_a_failure_while_preparing_an_event_leaves_no_journal_line(tmp_path: Path, monkeypatch) -> None:
    """All or nothing: what can fail (here the network's allocation) fails before the journal."""
    router = small_router(tmp_path / "feedback.jsonl")
    d = router.route("first feedback of this router")

    def no_memory(*args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(FeedbackScoreNet, "__init__", no_memory)
    with pytest.raises(MemoryError):
        router.feedback(d.decision_id, True)
    assert not (tmp_path / "feedback.jsonl").exists() or not FeedbackJournal(tmp_path / "feedback.jsonl").read()
    assert router.learning.n_events == 0 and router.learning.net is None
    monkeypatch.undo()
    assert router.feedback(d.decision_id, True) == 1  # nothing was consumed: the same decision, seq 1


# ------------------------------------------------------------------------------ small properties
@FEW
@given(options=route_options())
def test_route_options_property(router, options) -> None:
    check_route(router, options)


@FEW
@given(args=feedback_args())
def test_feedback_property(journaled, args) -> None:
    check_feedback(journaled, *args)


@FEW
@given(name=st.sampled_from(sorted(SETTINGS_MODELS)), data=st.data())
def test_settings_property(name, data) -> None:
    check_settings(SETTINGS_MODELS[name], data.draw(field_values(SETTINGS_MODELS[name])))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=field_values(SETTINGS_MODELS["RouterConfig"]))
def test_a_config_that_validates_survives_the_whole_cycle(values) -> None:
    check_config_lifecycle(values)


@FEW
@given(cells=table_cells(), how=st.sampled_from(["records", "pandas"]))
def test_training_table_property(cells, how) -> None:
    check_table(cells, how)


def test_records_that_are_not_records() -> None:
    from mixllm_router import DataError, RoutingDataset

    for bad in (None, 5, "abc", {"query": "x"}):
        with pytest.raises(DataError):
            RoutingDataset.from_records(bad)


def test_scores_are_real_numbers_of_any_kind() -> None:
    from fractions import Fraction

    from mixllm_router.learning.learner import parse_score

    assert parse_score(decimal.Decimal("0.5")) == 0.5 and parse_score(Fraction(1, 4)) == 0.25
    for bad in ("1", 1j, decimal.Decimal("sNaN"), 10**400, [1]):
        with pytest.raises(FeedbackError):
            parse_score(bad)


@pytest.mark.parametrize("field", ["query", "model", "query_id", "task"])
def test_a_5000_digit_integer_in_a_text_column(field) -> None:
    """Found by benchmarks/hostile_inputs.py: str() of such an int raises ValueError (Python's
    4300-digit limit); the cell is now written in hex (an id) or reported."""
    from hostile_values import table

    from mixllm_router import DataError, RoutingDataset

    rows = table(4)
    rows[0][field] = 10**5000
    try:
        RoutingDataset.from_records(rows)
    except DataError:
        pass
