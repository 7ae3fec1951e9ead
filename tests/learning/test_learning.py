"""Online learning: feedback, the feedback-score network, the journal, a changing pool."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mixllm_router import Candidate, FeedbackError, MixLLMRouter, RoutingDataset, UnknownCandidateError
from mixllm_router._exceptions import CheckpointError, DataError
from mixllm_router.encoders import HashingEncoder
from mixllm_router.learning.learner import (
    FeedbackJournal,
    FeedbackScoreNet,
    LearningSettings,
    parse_score,
    thompson_scores,
)
from mixllm_router.predictors import features

ROOT = Path(__file__).resolve().parents[2]
ENC = HashingEncoder(dim=64)  # small and torch-free: keeps A⁻¹ at 66×66 and the tests fast
MODELS = {"big": (0.9, 0.9, 1e-3), "math-small": (0.85, 0.15, 1e-4), "poet-small": (0.15, 0.85, 1e-4)}


def synthetic(n: int = 120, seed: int = 0) -> RoutingDataset:
    """Two topics; each small model is good on one of them, the big one on both."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        topic = "math" if i % 2 else "poem"
        words = "integral derivative sum proof" if topic == "math" else "rose sonnet verse rhyme"
        query = f"{topic} {words} item {i}"
        for model, (p_math, p_poem, price) in MODELS.items():
            p = p_math if topic == "math" else p_poem
            records.append({"query_id": f"q{i}", "query": query, "model": model,
                            "quality": float(rng.random() < p), "cost": price * (1 + rng.random())})
    return RoutingDataset.from_records(records)


def make_router(tmp_path: Path | None = None, **overrides) -> MixLLMRouter:
    config = {"encoder": {"kind": "hashing", "use_cache": False}, "quality_model": "ridge+knn", "knn_k": 10}
    if tmp_path is not None:
        config["learning"] = {"journal_path": str(tmp_path / "feedback.jsonl"), **overrides.pop("learning", {})}
    config.update(overrides)
    return MixLLMRouter(config=config, encoder=ENC).fit(synthetic())


def snapshot(router: MixLLMRouter) -> dict[str, np.ndarray]:
    out = {f"{n}.{k}": v.copy() for n, m in router.predictors_.items() for k, v in m.state_arrays().items()}
    out["bank"] = router.bank_.copy()
    if router.learning.net is not None:
        out.update({f"net.{k}": v.copy() for k, v in router.learning.net.state()[1].items()})
    return out


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture
def router() -> MixLLMRouter:
    return make_router()


# ---------------------------------------------------------------------------------- feedback
def test_feedback_by_id_and_alias_updates_the_answering_candidate(router: MixLLMRouter) -> None:
    d1 = router.route("poem rose sonnet about spring")
    before = router.predictors_[d1.chosen].n_examples
    bank = router.bank_.shape[0]
    assert router.feedback(d1.decision_id, True) == 1
    assert router.predictors_[d1.chosen].n_examples == before + 1
    assert router.bank_.shape[0] == bank + 1
    np.testing.assert_allclose(router.bank_[-1], router.decisions.get(d1.decision_id).embedding)

    d2 = router.route("math integral proof")
    router.decisions.alias("langchain-run-42", d2.decision_id)
    router.decisions.update(d2.decision_id, answered_by="poet-small")  # a fallback answered
    n_poet = router.predictors_["poet-small"].n_examples
    assert router.feedback("langchain-run-42", 0.25) == 2
    assert router.predictors_["poet-small"].n_examples == n_poet + 1
    assert router.learning.applied_seq == 2


@pytest.mark.parametrize("score", [1.5, -0.1, float("nan"), float("inf"), "yes", None, [1]])
def test_bad_scores_are_rejected_without_changing_state(router: MixLLMRouter, score) -> None:
    d = router.route("poem rose")
    before = snapshot(router)
    with pytest.raises(FeedbackError, match="score"):
        router.feedback(d.decision_id, score)
    assert_same(before, snapshot(router))
    router.feedback(d.decision_id, 1.0)  # the decision can still be rated properly


def test_unknown_expired_duplicate_and_removed_feedback(tmp_path: Path) -> None:
    router = make_router(decision_log_size=2)
    with pytest.raises(FeedbackError, match="no routing decision"):
        router.feedback("does-not-exist", True)
    old = router.route("poem one")
    router.route("poem two")
    router.route("poem three")  # evicts `old`
    with pytest.raises(FeedbackError, match="expired"):
        router.feedback(old.decision_id, True)
    d = router.route("math integral")
    router.feedback(d.decision_id, False)
    with pytest.raises(FeedbackError, match="already"):
        router.feedback(d.decision_id, True)
    d = router.route("math derivative")
    with pytest.raises(FeedbackError, match="output_tokens"):
        router.feedback(d.decision_id, True, output_tokens=-3)
    with pytest.raises(FeedbackError, match="latency_s"):
        router.feedback(d.decision_id, True, latency_s=float("nan"))
    before = snapshot(router)
    router.remove_candidate(d.chosen)
    after_remove = snapshot(router)
    with pytest.raises(FeedbackError, match="removed"):
        router.feedback(d.decision_id, True)
    assert_same(after_remove, snapshot(router))
    assert before["bank"].shape == after_remove["bank"].shape


def test_parse_score() -> None:
    assert parse_score(True) == 1.0 and parse_score(False) == 0.0
    assert parse_score(np.float32(0.5)) == 0.5 and parse_score(1) == 1.0


async def test_afeedback(router: MixLLMRouter) -> None:
    d = router.route("poem verse")
    assert await router.afeedback(d.decision_id, 0.0) == 1
    with pytest.raises(FeedbackError):
        await router.afeedback("nope", 0.0)


def test_sherman_morrison_updates_equal_a_batch_refit(router: MixLLMRouter) -> None:
    name = "math-small"
    lin = router.predictors_[name].linear
    a0, b0 = np.linalg.inv(lin.a_inv), lin.b.copy()
    offset = np.array(getattr(lin, "offset", np.zeros(2)))
    xs, ys = [], []
    for i in range(25):
        d = router.route(f"math sum proof {i}", candidates=[name])
        router.decisions.update(d.decision_id, cost_usd=2e-4)
        score = float(i % 3 == 0)
        router.feedback(d.decision_id, score)
        rec = router.decisions.get(d.decision_id)
        xs.append(features(rec.embedding[None, :], np.array([rec.input_tokens]))[0])
        ys.append([score, np.log(2e-4 + 1e-7)])
    x, y = np.array(xs), np.array(ys)
    a = a0 + x.T @ x
    b = b0 + x.T @ (y - offset)
    np.testing.assert_allclose(lin.a_inv, np.linalg.inv(a), atol=1e-8, rtol=0)
    np.testing.assert_allclose(lin.b, b, atol=1e-8, rtol=0)
    np.testing.assert_allclose(lin.weights, np.linalg.solve(a, b), atol=1e-8, rtol=0)


def test_batched_updates_wait_for_the_batch(tmp_path: Path) -> None:
    router = make_router(learning={"batch_size": 3})
    n0 = sum(m.n_examples for m in router.predictors_.values())
    ids = [router.route(f"poem rose {i}").decision_id for i in range(4)]
    router.feedback(ids[0], True)
    router.feedback(ids[1], False)
    assert sum(m.n_examples for m in router.predictors_.values()) == n0
    assert router.learning.stats["pending"] == 2
    router.feedback(ids[2], True)
    assert sum(m.n_examples for m in router.predictors_.values()) == n0 + 3
    router.feedback(ids[3], True)
    assert router.learning.flush(router) == 1
    assert sum(m.n_examples for m in router.predictors_.values()) == n0 + 4


def test_save_applies_queued_feedback(tmp_path: Path) -> None:
    router = make_router(learning={"batch_size": 10})
    d = router.route("poem rose")
    router.feedback(d.decision_id, True)
    router.save(tmp_path / "ckpt")
    loaded = MixLLMRouter.load(tmp_path / "ckpt", encoder=ENC)
    assert loaded.learning.applied_seq == 1
    assert loaded.predictors_[d.chosen].n_examples == router.predictors_[d.chosen].n_examples


# ---------------------------------------------------------------------------------- exploration
def test_thompson_scores_sample_the_ridge_posterior() -> None:
    """σ = 0 is the greedy score; otherwise S̃ − (q − λc) ~ N(0, σ²u²), so the spread follows u."""
    q = np.array([[0.8, 0.7, 0.6]])
    c = np.array([[2e-3, 1e-4, 1e-4]])
    u = np.array([[0.01, 0.2, 0.0]])
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(thompson_scores(q, c, u, 50.0, 0.0, rng), q - 50.0 * c)
    draws = np.vstack([thompson_scores(q, c, u, 50.0, 0.5, rng) for _ in range(4000)]) - (q - 50.0 * c)
    np.testing.assert_allclose(draws.mean(axis=0), 0.0, atol=0.01)
    np.testing.assert_allclose(draws.std(axis=0), 0.5 * u[0], rtol=0.05, atol=1e-12)
    # the uncertain candidate (greedy score 0.69 vs 0.70) wins about half the time; the certain one never
    wins = np.bincount(np.argmax(draws + (q - 50.0 * c), axis=1), minlength=3) / len(draws)
    assert 0.3 < wins[1] < 0.6 and wins[2] == 0.0


def test_thompson_exploration_reaches_a_candidate_ucb_ignores() -> None:
    """A router that believes poet-small is bad at math never tries it greedily; sampling does."""
    router = make_router(quality_model="ridge")
    p = router.predict(["math integral derivative sum proof new"])
    rng = np.random.default_rng(0)
    greedy = np.argmax(thompson_scores(p.quality, p.cost, p.uncertainty, 0.0, 0.0, rng)[0])
    picks = {int(np.argmax(thompson_scores(p.quality, p.cost, 10 * p.uncertainty, 0.0, 1.0, rng)[0]))
             for _ in range(300)}
    assert len(picks) > 1 and greedy in picks


# ---------------------------------------------------------------------------------- score network
def test_policy_gradient_step_moves_probabilities_the_right_way() -> None:
    net = FeedbackScoreNet(4, LearningSettings(hidden=8, learning_rate=0.5), seed=1)
    names = ["a", "b", "c"]
    e = np.array([1.0, 0.0, 0.0, 0.0])
    p0 = net.policy(e, names)[0]
    net.step(e, names, "a", residual=+1.0)  # better than predicted: more of a here
    p1 = net.policy(e, names)[0]
    assert p1[0] > p0[0] and p1[1] < p0[1] and p1[2] < p0[2]
    net.step(e, names, "b", residual=-1.0)  # worse than predicted: less of b
    p2 = net.policy(e, names)[0]
    assert p2[1] < p1[1]


def test_policy_gradient_learns_a_contextual_toy_bandit() -> None:
    """'a' pays in context 1, 'b' in context 2; sampling from π, the policy must learn both."""
    rng = np.random.default_rng(0)
    net = FeedbackScoreNet(2, LearningSettings(hidden=0, learning_rate=0.2), seed=0)
    names = ["a", "b"]
    contexts = [np.array([1.0, 0.0]), np.array([0.0, 1.0])]
    for _ in range(400):
        k = int(rng.integers(2))
        p = net.policy(contexts[k], names)[0]
        a = int(rng.choice(2, p=p))
        reward = 1.0 if a == k else 0.0
        net.step(contexts[k], names, names[a], residual=reward - 0.5)
    assert net.policy(contexts[0], names)[0, 0] > 0.8
    assert net.policy(contexts[1], names)[0, 1] > 0.8


def test_confidence_is_lower_for_noisy_feedback() -> None:
    net = FeedbackScoreNet(3, LearningSettings(), seed=0)
    rng = np.random.default_rng(0)
    e = np.ones(3) / math.sqrt(3)
    for _ in range(200):
        net.step(e, ["steady", "noisy"], "steady", residual=0.1 + 0.01 * rng.standard_normal())
        net.step(e, ["steady", "noisy"], "noisy", residual=float(rng.choice([-0.9, 0.9])))
    kappa = net.confidence(["steady", "noisy", "unseen"])
    assert kappa[0] > kappa[1]
    assert kappa[2] == pytest.approx(1 / (0.25 + 0.01))


def test_routing_term_stays_bounded_when_the_logits_run_away() -> None:
    """Thousands of one-sided events grow the logits without bound; the routing term may not."""
    net = FeedbackScoreNet(3, LearningSettings(hidden=4, learning_rate=1.0), seed=0)
    names = ["a", "b", "c", "d"]
    e = np.array([1.0, 0.5, -0.2])
    assert np.allclose(net.routing_scores(e, names), 0.0)  # untrained: adds nothing
    for _ in range(3000):
        net.step(e, names, "a", residual=1.0)
    assert np.ptp(net.scores(e, names)) > 8  # the logits ran away (e^8: one candidate takes all of π)
    term = net.routing_scores(e, names)[0]
    m = len(names)
    assert np.all(term > -1 / m) and np.all(term < 1 - 1 / m)
    assert term.sum() == pytest.approx(0.0, abs=1e-12)
    assert np.argmax(term) == 0


def test_feedback_score_enters_the_meta_score() -> None:
    router = make_router(feedback_weight=0.02)
    for i in range(20):
        d = router.route(f"poem sonnet {i}", candidates=["poet-small"])
        router.feedback(d.decision_id, True)
    d = router.route("poem sonnet rhyme")
    s = d.score_of("poet-small")
    assert s.feedback != 0.0
    kappa = router.learning.net.confidence(["poet-small"])[0]
    base = s.quality - d.cost_weight * s.cost_usd + router.config.exploration * s.uncertainty
    assert s.score == pytest.approx(base + 0.02 * kappa * s.feedback, abs=1e-9)
    off = make_router()  # γ = 0: the term is off
    d0 = off.route("poem sonnet rhyme")
    assert all(c.feedback == 0.0 for c in d0.scores)


# ---------------------------------------------------------------------------------- pool changes
def test_remove_candidate_leaves_the_others_untouched(router: MixLLMRouter, tmp_path: Path) -> None:
    for i in range(6):
        d = router.route(f"math sum {i}")
        router.feedback(d.decision_id, i % 2 == 0)
    keep = {n: {k: v.copy() for k, v in router.predictors_[n].state_arrays().items()}
            for n in ("big", "poet-small")}
    heads = {n: router.learning.net.heads[n].copy() for n in ("big", "poet-small")}
    router.remove_candidate("math-small")
    assert "math-small" not in router.learning.net.heads
    router.save(tmp_path / "ckpt")
    loaded = MixLLMRouter.load(tmp_path / "ckpt", encoder=ENC)
    assert loaded.candidate_names == ["big", "poet-small"]
    for r in (router, loaded):
        for n, arrays in keep.items():
            assert_same(arrays, r.predictors_[n].state_arrays())
            np.testing.assert_array_equal(heads[n], r.learning.net.heads[n])
    assert loaded.route("math integral").chosen in ("big", "poet-small")


def test_add_candidate_with_a_prior_explores_and_survives_save_load(router: MixLLMRouter, tmp_path: Path) -> None:
    others = snapshot(router)
    source = router.add_candidate("generalist", prior="big")
    assert source == "big"
    assert {k: v for k, v in snapshot(router).items() if not k.startswith("generalist.")}.keys() == others.keys()
    for k, v in others.items():  # nothing else moved
        np.testing.assert_array_equal(v, snapshot(router)[k], err_msg=k)
    d = router.route("poem rose sonnet")
    new, big = d.score_of("generalist"), d.score_of("big")
    e, t = router.embed(["poem rose sonnet"])
    big_ridge = float(np.clip(router.predictors_["big"].linear.predict(features(e, t))[0, 0], 0, 1))
    assert new.quality == pytest.approx(big_ridge, abs=1e-9)  # the prior lends its ridge predictions
    x = features(e, t)[0]
    rho0 = router.config.prior_strength
    assert new.uncertainty == pytest.approx(math.sqrt(x @ x / rho0))  # ... but not its certainty: u is at its maximum
    assert new.uncertainty > big.uncertainty
    assert "generalist" in router.learning.warming  # kNN joins after knn_k own examples
    for i in range(4):
        d = router.route(f"poem verse {i}", candidates=["generalist"])
        router.feedback(d.decision_id, False)
    assert router.route("poem verse 9").score_of("generalist").quality < new.quality
    router.save(tmp_path / "ckpt")
    loaded = MixLLMRouter.load(tmp_path / "ckpt", encoder=ENC)
    assert loaded.candidate_names == router.candidate_names
    assert_same(snapshot(router), snapshot(loaded))
    assert loaded.learning.warming == {"generalist"} and loaded.learning.priors == {"generalist": "big"}
    q = "poem verse rose"
    assert loaded.route(q).score_of("generalist").score == pytest.approx(router.route(q).score_of("generalist").score)


def test_add_candidate_prior_choices(router: MixLLMRouter) -> None:
    assert router.add_candidate("a") == "mean"  # no prices anywhere: the average candidate
    with pytest.raises(UnknownCandidateError):
        router.add_candidate("b", prior="no-such-model")
    assert "b" not in router.candidate_names
    with pytest.raises(Exception, match="already"):
        router.add_candidate("a")
    priced = MixLLMRouter([Candidate(name=n, input_price=p, output_price=p) for n, p in
                           (("big", 10.0), ("math-small", 0.5), ("poet-small", 1.0))],
                          config={"encoder": {"kind": "hashing", "use_cache": False}}, encoder=ENC).fit(synthetic())
    assert priced.add_candidate(Candidate(name="cheap", input_price=0.4, output_price=0.6)) == "math-small"


def test_add_candidate_with_examples(router: MixLLMRouter) -> None:
    records = [{"query": f"poem rose sonnet verse {i}", "quality": 1.0, "cost": 1e-5} for i in range(30)]
    router.add_candidate("poet-pro", examples=records, prior="mean")
    d = router.route("poem rose sonnet verse")
    assert d.score_of("poet-pro").quality > 0.9
    assert d.score_of("poet-pro").cost_usd < 5e-5
    with pytest.raises(DataError):
        router.add_candidate("x", examples=[{"query": "q"}])
    with pytest.raises(DataError, match="no outcomes"):
        router.add_candidate("y", examples=synthetic(10))
    ds = synthetic(40).with_models(["big"])
    frame = ds.frame.assign(model="big-2")
    router.add_candidate("big-2", examples=RoutingDataset.from_pandas(frame), prior=None)
    assert router.predictors_["big-2"].n_examples == 40


# ---------------------------------------------------------------------------------- journal
def test_journal_replay_restores_what_the_checkpoint_lacks(tmp_path: Path) -> None:
    router = make_router(tmp_path)
    router.save(tmp_path / "ckpt")
    for i in range(5):
        d = router.route(f"poem rose {i}" if i % 2 else f"math sum {i}")
        router.feedback(d.decision_id, i % 2 == 0, output_tokens=10 + i)
    lines = (tmp_path / "feedback.jsonl").read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[-1])["e"]["seq"] == 5
    loaded = MixLLMRouter.load(tmp_path / "ckpt", encoder=ENC, journal_path=tmp_path / "feedback.jsonl")  # checkpoint has seq 0: all 5 replayed
    assert loaded.learning.applied_seq == 5
    assert_same(snapshot(router), snapshot(loaded))
    router.save(tmp_path / "ckpt")  # now the checkpoint includes them: nothing is applied twice
    again = MixLLMRouter.load(tmp_path / "ckpt", encoder=ENC, journal_path=tmp_path / "feedback.jsonl")
    assert_same(snapshot(router), snapshot(again))


def test_torn_last_line_is_ignored_and_cut(tmp_path: Path) -> None:
    router = make_router(tmp_path)
    router.save(tmp_path / "ckpt")
    for i in range(3):
        router.feedback(router.route(f"poem {i}").decision_id, True)
    router.learning.close()
    path = tmp_path / "feedback.jsonl"
    whole = path.read_bytes()
    last = whole.splitlines(keepends=True)[-1]
    path.write_bytes(whole + last[: len(last) // 2])  # a crash in the middle of a 4th line
    loaded = MixLLMRouter.load(tmp_path / "ckpt", encoder=ENC, journal_path=tmp_path / "feedback.jsonl")
    assert loaded.learning.applied_seq == 3
    loaded.feedback(loaded.route("math sum").decision_id, False)  # appends after cutting the torn tail
    events = FeedbackJournal(path).read()
    assert [e.seq for e in events] == [1, 2, 3, 4]


def test_damaged_middle_line_is_an_error(tmp_path: Path) -> None:
    router = make_router(tmp_path)
    router.save(tmp_path / "ckpt")
    for i in range(3):
        router.feedback(router.route(f"poem {i}").decision_id, True)
    router.learning.close()
    path = tmp_path / "feedback.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"score":1.0', '"score":0.0')  # checksum no longer matches
    path.write_text("".join(lines))
    with pytest.raises(FeedbackError, match="line 2 is damaged"):
        FeedbackJournal(path).read()
    with pytest.raises(CheckpointError, match="line 2 is damaged"):
        MixLLMRouter.load(tmp_path / "ckpt", encoder=ENC, journal_path=tmp_path / "feedback.jsonl")


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    router = make_router(tmp_path)
    router.feedback(router.route("poem").decision_id, True)
    other = make_router(tmp_path)
    d = other.route("poem rose")
    before = snapshot(other)
    with pytest.raises(FeedbackError, match="in use"):
        other.feedback(d.decision_id, True)
    assert_same(before, snapshot(other))
    router.learning.close()
    other.feedback(d.decision_id, True)  # the lock is free now
    assert [e.seq for e in FeedbackJournal(tmp_path / "feedback.jsonl").read()] == [1, 2]


CHILD = textwrap.dedent(
    """
    import sys
    from mixllm_router import MixLLMRouter
    from mixllm_router.encoders import HashingEncoder
    router = MixLLMRouter.load(sys.argv[1], encoder=HashingEncoder(dim=64), journal_path=sys.argv[2])
    i = 0
    while True:
        d = router.route(f"poem rose sonnet {i}" if i % 2 else f"math integral proof {i}")
        seq = router.feedback(d.decision_id, i % 3 != 0)
        print(seq, flush=True)  # acknowledged: it is on disk
        i += 1
    """
)


def test_journal_survives_sigkill_mid_stream(tmp_path: Path) -> None:
    # the change detector off: its softening would break the Σ xxᵀ bookkeeping checked at the end
    router = make_router(tmp_path, learning={"change_detection": False})
    ckpt = router.save(tmp_path / "ckpt")
    before = {n: (np.linalg.inv(m.linear.a_inv), m.n_examples) for n, m in router.predictors_.items()}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(ckpt), str(tmp_path / "feedback.jsonl")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    acked = 0
    deadline = time.monotonic() + 60
    try:
        while acked < 40 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)  # no clean-up, no flush: possibly mid-write
        proc.wait(timeout=10)
    assert acked >= 40, proc.stderr.read()
    loaded = MixLLMRouter.load(ckpt, encoder=ENC, journal_path=tmp_path / "feedback.jsonl")
    applied = loaded.learning.applied_seq
    assert applied >= acked  # nothing acknowledged is lost
    events = FeedbackJournal(tmp_path / "feedback.jsonl").read()
    assert [e.seq for e in events] == list(range(1, applied + 1))
    # independent check: each candidate's A equals its checkpointed A plus Σ xxᵀ of its events
    for name, (a0, n0) in before.items():
        mine = [e for e in events if e.candidate == name]
        x = features(np.array([e.embedding for e in mine]).reshape(-1, a0.shape[0] - 2),
                     np.array([e.input_tokens for e in mine]))
        np.testing.assert_allclose(loaded.predictors_[name].linear.a_inv, np.linalg.inv(a0 + x.T @ x), atol=1e-8)
        assert loaded.predictors_[name].n_examples == n0 + len(mine)
    # and the reloaded router keeps journaling after the crash
    loaded.feedback(loaded.route("poem").decision_id, True)
    assert FeedbackJournal(tmp_path / "feedback.jsonl").read()[-1].seq == applied + 1


# ---------------------------------------------------------------------------------- change detection
def test_cusum_stays_quiet_on_stable_outcomes_and_fires_on_a_shift() -> None:
    """Outcomes right 85% (or 97%) of the time against a slightly optimistic prediction raise false
    alarms no more often than the likelihood-ratio bound allows (each side about once in e^h
    events); a drop to 60% is caught within h / KL(p−‖p0) events, with room, and the statistics
    restart. The state survives a JSON round trip; malformed state is refused."""
    from mixllm_router.learning.learner import ResidualChangeDetector

    settings = LearningSettings(change_detection=True)
    det = ResidualChangeDetector(settings)
    rng = np.random.default_rng(0)
    n = 20_000
    for name, p in (("a", 0.85), ("skewed", 0.97)):
        for _ in range(n):
            det.update(name, float(rng.random() < p), p + 0.02)
    assert sum(det.alarms.values()) <= 2 * 2 * n * math.exp(-settings.change_threshold), det.alarms
    det = ResidualChangeDetector(settings)
    for _ in range(300):
        det.update("a", float(rng.random() < 0.85), 0.87)
    first = next(i for i in range(2000) if det.update("a", float(rng.random() < 0.6), 0.87))
    p0 = 0.85
    p1 = 1 / (1 + math.exp(-(math.log(p0 / (1 - p0)) - settings.change_shift)))
    kl = p1 * math.log(p1 / p0) + (1 - p1) * math.log((1 - p1) / (1 - p0))
    assert first <= 2 * settings.change_threshold / kl
    assert det.alarms == {"a": 1} and det.state["a"][0] == 0
    restored = ResidualChangeDetector(settings)
    restored.load_json(json.loads(json.dumps(det.to_json())))
    assert restored.alarms == det.alarms
    with pytest.raises(DataError):
        restored.load_json({"state": {"a": [1.0, 2.0]}})


def test_change_detection_lets_the_ridge_follow_a_changed_candidate(tmp_path: Path) -> None:
    """math-small stops being good at math. With detection, its predicted math quality follows
    the new outcomes within a few hundred events; without, it stays near its long history. The
    detector's state survives save/load; with detection off nothing is softened."""
    results = {}
    for on in (False, True):
        router = make_router(quality_model="ridge", learning={"change_detection": on})
        for _ in range(3):  # a long stable history first: 600 events on math-small
            for i in range(200):
                d = router.route(f"math integral derivative sum proof item {i}", candidates=["math-small"])
                router.feedback(d.decision_id, bool(np.random.default_rng(i).random() < 0.85))
        rng = np.random.default_rng(1)
        for i in range(300):  # then it fails math 85% of the time
            d = router.route(f"math integral derivative sum proof item {1000 + i}", candidates=["math-small"])
            router.feedback(d.decision_id, bool(rng.random() < 0.15))
        q = router.predict(["math integral derivative sum proof item 5000"]).quality
        results[on] = float(q[0, router.candidate_names.index("math-small")])
        assert (router.learning.stats["changes_detected"] >= 1) == on
        if on:
            router.save(tmp_path / "ckpt")
            loaded = MixLLMRouter.load(tmp_path / "ckpt", encoder=ENC)
            assert loaded.learning.detector.alarms == router.learning.detector.alarms
            np.testing.assert_array_equal(loaded.learning.detector.state["math-small"],
                                          router.learning.detector.state["math-small"])
    assert results[True] < 0.4 < results[False], results


def test_a_detected_change_trims_knn_and_drops_the_static_mlp(tmp_path: Path) -> None:
    """With ridge+knn+mlp, an alarm leaves kNN only the outcomes around it (kNN then waits for
    knn_k new ones, as a new candidate's does) and drops the MLP, which never learns online."""
    router = make_router(quality_model="ridge+knn+mlp", knn_k=40)  # more than the 30 outcomes kNN keeps
    model = router.predictors_["math-small"]
    assert model.mlp is not None and "knn" in model.kinds
    n_before = model.knn.targets.size
    rng = np.random.default_rng(2)
    for i in range(400):  # math-small was right 85% of the time on math; now 10%
        d = router.route(f"math integral derivative sum proof item {2000 + i}", candidates=["math-small"])
        router.feedback(d.decision_id, bool(rng.random() < 0.1))
        if router.learning.stats["changes_detected"]:
            break
    assert router.learning.stats["changes_detected"] == 1
    settings = router.learning.settings
    assert model.knn.targets.size == settings.change_warmup < n_before
    assert "knn" not in model.kinds and "math-small" in router.learning.warming and model.mlp is None
    for i in range(model.knn_k):  # kNN refills with new outcomes and rejoins the ensemble
        d = router.route(f"math integral derivative sum proof item {3000 + i}", candidates=["math-small"])
        router.feedback(d.decision_id, bool(rng.random() < 0.1))
    assert "knn" in model.kinds and "math-small" not in router.learning.warming
    router.save(tmp_path / "ckpt")
    loaded = MixLLMRouter.load(tmp_path / "ckpt", encoder=ENC)
    assert loaded.predictors_["math-small"].mlp is None
    np.testing.assert_array_equal(loaded.predict(["math sum"]).quality, router.predict(["math sum"]).quality)


# ---------------------------------------------------------------------------------- feedback vs pool changes
def test_feedback_racing_remove_candidate_is_applied_or_refused(tmp_path: Path) -> None:
    """Issue 15 item 5, as a deterministic interleaving: the feedback passes its checks, waits for
    the learner's lock while the candidate is removed, then goes on. It used to be journaled and
    acknowledged, then skipped at apply; it must be refused (nothing journaled) instead."""
    import threading

    router = make_router(tmp_path)
    d = router.route("math integral proof")
    router.feedback(router.route("poem rose").decision_id, True)  # the journal is open and holds seq 1
    outcome: dict[str, object] = {}

    def rate() -> None:
        try:
            outcome["seq"] = router.feedback(d.decision_id, True)
        except FeedbackError as exc:
            outcome["error"] = exc

    with router.learning.lock:
        thread = threading.Thread(target=rate)
        thread.start()
        time.sleep(0.3)  # the feedback is now blocked on the lock, its checks done
        router.remove_candidate(d.chosen)
    thread.join(30)
    assert "seq" not in outcome, "acknowledged although its candidate was removed"
    assert "removed" in str(outcome["error"])
    assert [e.seq for e in FeedbackJournal(tmp_path / "feedback.jsonl").read()] == [1]
    assert router.learning.n_events == 1


def test_queued_feedback_is_applied_before_its_candidate_is_removed(tmp_path: Path) -> None:
    router = make_router(tmp_path, learning={"batch_size": 10})
    d = router.route("math integral proof")
    router.feedback(d.decision_id, True)  # journaled, queued
    router.remove_candidate(d.chosen)
    assert router.learning.n_events == 1 and not router.learning.pending


def test_feedback_and_pool_changes_from_threads_lose_no_acknowledged_event(tmp_path: Path) -> None:
    """The issue's measurement, in small: threads rate while a candidate is removed and added back;
    every acknowledged event is applied (120 of 1,209 were dropped before)."""
    import threading

    router = make_router(tmp_path)
    acked: list[int] = []
    refused = 0
    lock = threading.Lock()

    def rate(k: int) -> None:
        nonlocal refused
        for i in range(15):
            d = router.route(f"math sum {k}-{i}" if i % 2 else f"poem rose {k}-{i}")
            try:
                seq = router.feedback(d.decision_id, i % 3 != 0)
                with lock:
                    acked.append(seq)
            except FeedbackError:
                with lock:
                    refused += 1

    for _ in range(3):
        threads = [threading.Thread(target=rate, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for name in ("math-small", "poet-small"):
            router.remove_candidate(name)
            router.add_candidate(Candidate(name=name), prior="big")
        for t in threads:
            t.join(60)
    assert router.learning.n_events == len(acked)
    assert sorted(e.seq for e in FeedbackJournal(tmp_path / "feedback.jsonl").read()) == sorted(acked)
