"""Online scoring: off the caller's path, failures contained, the queue bound, sampling and budget,
scores journaled as feedback and back after a restart, shadow calls teaching unchosen candidates."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from mixllm_router import Candidate, MixLLMRouter, RoutingDataset, ScoringError
from mixllm_router.clients import FakeClient
from mixllm_router.encoders import HashingEncoder
from mixllm_router.learning.learner import FeedbackJournal
from mixllm_router.scoring import FunctionScorer, LLMJudge

ENC = HashingEncoder(dim=64)
MODELS = ("big", "small")


def _data() -> RoutingDataset:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        query = f"{'math integral' if i % 2 else 'poem sonnet'} question {i}"
        for m, p in (("big", 0.9), ("small", 0.5)):
            rows.append({"query": query, "model": m, "quality": float(rng.random() < p),
                         "cost": (1e-3 if m == "big" else 1e-4) * (1 + rng.random())})
    return RoutingDataset.from_records(rows)


def _router(tmp_path: Path | None = None) -> MixLLMRouter:
    config: dict = {"encoder": {"kind": "hashing", "use_cache": False}}
    if tmp_path is not None:
        config["learning"] = {"journal_path": str(tmp_path / "feedback.jsonl")}
    router = MixLLMRouter([Candidate(name=m, input_price=1.0, output_price=2.0) for m in MODELS],
                          config=config, encoder=ENC).fit(_data())
    for m in MODELS:
        router.set_client(m, FakeClient(f"answer from {m}", model_name=m))
    return router


def test_a_slow_scorer_does_not_hold_up_the_answer():
    router = _router()
    started, release = threading.Event(), threading.Event()

    def slow(query, response, reference):
        started.set()
        assert release.wait(30), "the test never released the scorer"
        return 1.0

    online = router.attach_scorer(FunctionScorer(slow))
    reply = router.invoke("math integral question 1")  # returns while the scorer is still blocked
    assert reply.text.startswith("answer from")
    assert started.wait(60) and not release.is_set()
    assert online.stats.get("feedback", 0) == 0
    release.set()
    assert online.drain(60)
    assert online.stats["feedback"] == 1 and router.learning.stats["applied"] == 1
    router.detach_scorer(online)
    assert router.answer_listeners == []


def test_a_failing_scorer_never_reaches_the_caller():
    router = _router()

    def broken(query, response, reference):
        raise RuntimeError("scorer bug")

    online = router.attach_scorer(FunctionScorer(broken))
    for i in range(3):
        assert router.invoke(f"poem sonnet {i}").text
    assert online.drain(60)
    assert online.stats["failed"] == 3 and online.stats.get("feedback", 0) == 0
    assert router.learning.stats["applied"] == 0
    online.close()


def test_the_queue_bound_holds_and_drops_are_counted():
    router = _router()
    release = threading.Event()
    online = router.attach_scorer(FunctionScorer(lambda q, r, ref: release.wait(30) and 1.0), max_queue=3)
    for i in range(12):
        router.invoke(f"math integral {i}")
    stats = online.stats
    assert stats["max_queue_seen"] <= 3 and stats["queued"] <= 3
    # one job may already be with the worker, so 3 or 4 were taken; the rest were dropped
    assert stats["dropped"] in (8, 9) and stats["submitted"] == 12
    release.set()
    assert online.drain(60)
    assert online.stats["feedback"] == 12 - online.stats["dropped"]
    online.close()


def test_sampling_and_budget_limit_the_work():
    router = _router()
    none = router.attach_scorer(FunctionScorer(lambda q, r, ref: 1.0), sample_rate=0.0)
    router.invoke("poem sonnet 1")
    assert none.stats["sampled_out"] == 1 and none.drain(60)
    router.detach_scorer(none)
    judge = LLMJudge(FakeClient("Rating: [[10]]"),
                     judge_candidate=Candidate(name="judge", input_price=1000.0, output_price=1000.0))
    online = router.attach_scorer(judge, budget_usd=1e-9)  # the first judgement spends it all
    router.invoke("poem sonnet 2")
    assert online.drain(60)
    router.invoke("poem sonnet 3")
    assert online.drain(60)
    stats = online.stats
    assert stats["scored"] == 1 and stats["over_budget"] == 1 and stats["spent_usd"] > 1e-9
    online.close()
    with pytest.raises(ScoringError):
        router.attach_scorer(FunctionScorer(lambda q, r, ref: 1.0), sample_rate=2.0)
    with pytest.raises(ScoringError):
        router.attach_scorer("exact")


def test_unscored_answers_are_not_fed_back_and_user_feedback_comes_first():
    router = _router()
    online = router.attach_scorer(FunctionScorer(lambda q, r, ref: None))
    router.invoke("poem sonnet 1")
    assert online.drain(60) and online.stats["unscored"] == 1
    router.detach_scorer(online)
    gate = threading.Event()
    online = router.attach_scorer(FunctionScorer(lambda q, r, ref: gate.wait(30) and 0.0))
    reply = router.invoke("poem sonnet 2")
    router.feedback(reply.decision_id, True)  # the user is faster than the scorer
    gate.set()
    assert online.drain(60)
    assert online.stats["feedback_refused"] == 1 and router.learning.stats["applied"] == 1
    online.close()


def test_scored_feedback_is_journaled_and_survives_a_restart(tmp_path):
    router = _router(tmp_path)
    router.save(tmp_path / "ckpt")
    online = router.attach_scorer(FunctionScorer(lambda q, r, ref: 1.0 if "math" in q else 0.0))
    for i in range(6):
        router.invoke(f"{'math integral' if i % 2 else 'poem sonnet'} new {i}")
    assert online.drain(60) and online.stats["feedback"] == 6
    events = FeedbackJournal(tmp_path / "feedback.jsonl").read()
    assert [e.score for e in events] == [0.0, 1.0] * 3
    online.close()
    router.learning.close()
    loaded = MixLLMRouter.load(tmp_path / "ckpt", encoder=ENC, journal_path=tmp_path / "feedback.jsonl")  # replays it
    assert loaded.learning.applied_seq == 6
    for name in MODELS:
        np.testing.assert_allclose(loaded.predictors_[name].linear.a_inv, router.predictors_[name].linear.a_inv)


def test_shadow_calls_teach_the_candidate_that_was_not_chosen():
    router = _router()
    online = router.attach_scorer(FunctionScorer(lambda q, r, ref: 1.0 if "small" in r else 0.5), shadow_rate=1.0)
    reply = router.invoke("math integral shadow")
    assert online.drain(60)
    other = next(m for m in MODELS if m != reply.candidate)
    stats = online.stats
    assert stats["feedback"] == 1 and stats["shadow_calls"] == 1 and stats["shadow_feedback"] == 1
    assert router.learning.stats["applied"] == 2
    record = router.decisions.get(f"{reply.decision_id}:shadow:{other}")
    assert record is not None and record.answered_by == other and record.cost_usd > 0
    assert stats["shadow_spent_usd"] == pytest.approx(record.cost_usd)
    online.close()


def test_shadow_budget_and_the_candidates_it_may_use():
    router = _router()
    online = router.attach_scorer(FunctionScorer(lambda q, r, ref: 1.0), shadow_rate=1.0, shadow_budget_usd=0.0)
    router.invoke("poem sonnet budget")
    assert online.drain(60) and online.stats["shadow_over_budget"] == 1 and online.stats.get("shadow_calls", 0) == 0
    router.detach_scorer(online)
    with pytest.raises(ScoringError, match="not in the pool"):
        router.attach_scorer(FunctionScorer(lambda q, r, ref: 1.0), shadow_candidates=["nobody"])


async def test_async_invoke_and_streams_are_scored():
    router = _router()
    online = router.attach_scorer(FunctionScorer(lambda q, r, ref: 1.0))
    await router.ainvoke("math integral async")
    stream = router.stream("poem sonnet streamed")
    assert "".join(c.text for c in stream)
    assert online.drain(60) and online.stats["feedback"] == 2
    online.close()


def test_chat_mixllm_answers_reach_the_attached_scorer():
    pytest.importorskip("langchain_core")
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_mixllm import ChatMixLLM

    router = _router()
    online = router.attach_scorer(FunctionScorer(lambda q, r, ref: 1.0 if r == "from langchain" else 0.0))
    llm = ChatMixLLM(router=router, candidates={m: FakeListChatModel(responses=["from langchain"]) for m in MODELS})
    assert llm.invoke("math integral via langchain").content == "from langchain"
    assert online.drain(60) and online.stats["feedback"] == 1 and router.learning.stats["applied"] == 1
    online.close()
