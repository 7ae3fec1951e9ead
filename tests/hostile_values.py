"""Hostile values for route options, feedback, every settings model and training tables.

Shared by ``tests/test_hostile_values.py`` (a few dozen examples per property, in the default run)
and ``benchmarks/hostile_inputs.py`` (≥ 10,000 examples, counted). Each ``check_*`` function runs
one input and returns ``"ok"`` or ``"refused"`` (an error of the library's own tree); anything else
escapes as the exception it is, which is what the callers count as a failure.

The contract checked (docs/guarantees.md): a result, or a :class:`~mixllm_router.MixLLMError`;
never a raw ``TypeError``/``OverflowError``/``ValueError``/``decimal.InvalidOperation``/
``MemoryError``; and a refused feedback event changes nothing (journal, counters, the decision
can be rated again).
"""

from __future__ import annotations

import decimal
import tempfile
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from mixllm_router import MixLLMError, MixLLMRouter, RouterConfig, RoutingDataset
from mixllm_router.config import EncoderSettings
from mixllm_router.encoders import HashingEncoder
from mixllm_router.learning.learner import LearningSettings
from mixllm_router.policy.load import LatencySettings
from mixllm_router.state.redis import RedisStateSettings

ENC = HashingEncoder(dim=16)
MODELS = ("big", "small")

# -- values ---------------------------------------------------------------------------------------
SPECIAL = [10**400, -(10**400), 2**63, 2**64, -(2**63) - 1, 10**5000, decimal.Decimal("sNaN"), decimal.Decimal("NaN"),
           decimal.Decimal("Infinity"), decimal.Decimal("1e-400"), decimal.Decimal("1e400"), float("inf"), float("-inf"),
           float("nan"), -0.0, 5e-324, 1e308, 1e-300, np.float32("nan"), np.float16(65504), np.int64(2**62),
           np.uint64(2**64 - 1), np.bool_(True), True, False, None, 1j, complex("nan"), "1", "nan", "", "\ud800", b"1",
           [1], (1,), {"a": 1}, object(), Fraction(1, 3), 0, 1, 0.5]


def numbers() -> st.SearchStrategy[Any]:
    """Any number Python or numpy can hand us, and the usual impostors."""
    return st.one_of(
        st.sampled_from(SPECIAL),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**450), max_value=10**450),
        st.decimals(allow_nan=True, allow_infinity=True),
        st.fractions(),
        st.complex_numbers(),
        st.text(max_size=6),
        st.booleans(),
    )


# -- routers --------------------------------------------------------------------------------------
def table(n: int = 12) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    return [{"query_id": f"q{i}", "query": f"query {i} about {'math' if i % 2 else 'poems'}", "model": m,
             "quality": float(rng.random() < 0.4 + 0.3 * j), "cost": 10.0 ** -(3 + j)}
            for i in range(n) for j, m in enumerate(MODELS)]


def small_router(journal: Path | None = None, **config: Any) -> MixLLMRouter:
    if journal is not None:
        config.setdefault("learning", {})["journal_path"] = str(journal)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MixLLMRouter(encoder=ENC, config={"calibration_folds": 2, **config}).fit(
            RoutingDataset.from_records(table()))


# -- checks ---------------------------------------------------------------------------------------
def _outcome(fn: Any) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
    except MixLLMError:
        return "refused"
    return "ok"


def check_route(router: MixLLMRouter, options: dict[str, Any]) -> str:
    """``route`` with hostile ``cost_weight`` / ``cost_share`` / ``max_cost_usd`` / ``candidates``."""
    return _outcome(lambda: router.route("a hostile query", **options))


def check_feedback(router: MixLLMRouter, score: Any, extra: dict[str, Any]) -> str:
    """``feedback`` with a hostile score / ``output_tokens`` / ``latency_s``: applied and journaled,
    or refused with nothing changed."""
    journal = router.learning.journal

    def lines() -> int:  # complete lines; the full parse is checked once at the end of a run
        return journal.path.read_bytes().count(b"\n") if journal is not None and journal.path.exists() else 0

    d = router.route("a question to rate")
    before = lines()
    events, applied = router.learning.n_events, router.learning.applied_seq
    result = _outcome(lambda: router.feedback(d.decision_id, score, **extra))
    now = lines()
    if result == "refused":
        assert (router.learning.n_events, router.learning.applied_seq) == (events, applied), "a refused event changed state"
        assert now == before, "a refused event reached the journal"
        router.feedback(d.decision_id, True)  # and the decision can still be rated
    else:
        assert router.learning.n_events == events + 1 and now == before + (journal is not None)
    return result


SETTINGS_MODELS = {"RouterConfig": RouterConfig, "EncoderSettings": EncoderSettings, "LatencySettings": LatencySettings,
                   "LearningSettings": LearningSettings, "RedisStateSettings": RedisStateSettings}


def field_values(model: type) -> st.SearchStrategy[dict[str, Any]]:
    """A dict of some of ``model``'s fields (and an unknown one) with hostile or boundary values."""
    names = sorted(model.model_fields) + ["bogus"]
    bounds = []
    for info in model.model_fields.values():
        for meta in info.metadata:
            for attr in ("ge", "gt", "le", "lt"):
                v = getattr(meta, attr, None)
                if v is not None:
                    bounds += [v, v * (1 + 1e-12) if v else 1e-300, v * (1 - 1e-12) if v else -1e-300, v + 1, v - 1]
    edge = st.sampled_from(bounds or [0])  # weighted: most examples sit on or next to a bound
    value = st.one_of(edge, edge, edge, numbers(), st.text(max_size=8),
                      st.sampled_from(["\x00", "a\x00b", "hashing", "ridge+knn", "ucb", "thompson", "head", "hf"]))
    return st.dictionaries(st.sampled_from(names), value, max_size=4)


def check_settings(model: type, values: dict[str, Any]) -> str:
    return _outcome(lambda: model(**values))


def check_config_lifecycle(values: dict[str, Any]) -> str:
    """A RouterConfig that validates must also fit, route, learn, save and load (``inf`` used to
    pass validation and break only at ``save``)."""
    values = {k: v for k, v in values.items() if k not in ("encoder",)}

    def cycle() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            values.setdefault("learning", {})
            if isinstance(values["learning"], dict):
                values["learning"] = {**values["learning"], "journal_path": str(Path(tmp) / "j.jsonl")}
            router = small_router(**values)
            for i in range(3):
                router.feedback(router.route(f"query {i} about math").decision_id, i % 2 == 0)
            router.save(Path(tmp) / "ckpt")
            router.learning.close()
            MixLLMRouter.load(Path(tmp) / "ckpt", encoder=ENC).route("after the reload")

    return _outcome(cycle)


TABLE_FIELDS = ("query_id", "query", "model", "quality", "cost", "output_tokens", "input_tokens", "latency_s", "task",
                "split")


def check_table(cells: list[tuple[int, str, Any]], how: str) -> str:
    """A routing table with hostile cells, built from records or from a DataFrame, then fitted."""
    rows = table(6)
    for i, field, value in cells:
        rows[i % len(rows)][field] = value

    def build_and_fit() -> None:
        ds = RoutingDataset.from_records(rows) if how == "records" else RoutingDataset.from_pandas(pd.DataFrame(rows))
        MixLLMRouter(encoder=ENC, calibration_folds=2).fit(ds).route("a query")

    return _outcome(build_and_fit)


def table_cells() -> st.SearchStrategy[list[tuple[int, str, Any]]]:
    return st.lists(st.tuples(st.integers(0, 11), st.sampled_from(TABLE_FIELDS), numbers()), min_size=1, max_size=4)


def route_options() -> st.SearchStrategy[dict[str, Any]]:
    names = st.one_of(st.sampled_from(["big", "small", "nope", ""]), numbers())
    cands = st.one_of(st.none(), st.lists(names, max_size=3), st.sampled_from(["big", b"big", [["big"]], {"big": 1},
                                                                               ("big",), 5, iter(["big"])]))
    return st.fixed_dictionaries({}, optional={"cost_weight": numbers(), "cost_share": numbers(),
                                               "max_cost_usd": numbers(), "candidates": cands})


def feedback_args() -> st.SearchStrategy[tuple[Any, dict[str, Any]]]:
    return st.tuples(numbers(), st.fixed_dictionaries({}, optional={"output_tokens": numbers(),
                                                                    "latency_s": numbers()}))
