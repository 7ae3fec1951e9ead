"""The LLM judges end to end: the real openai SDK against the local OpenAI-compatible server.

What is checked: the rubric prompt that goes over the wire, the mapping of a 1-10 rating to [0, 1],
replies that do not parse (reported and counted, never a silent 0), the position swap of the
pairwise judge cancelling a judge that always prefers the first answer, retries of 429s, and
the judge's own cost from the usage the server reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servers import Reply, ScriptedServer  # noqa: E402

from mixllm_router import Candidate, ScoringError  # noqa: E402
from mixllm_router.clients import CallableClient, OpenAIClient  # noqa: E402
from mixllm_router.clients.fallback import FallbackCaller  # noqa: E402
from mixllm_router.scoring import DEFAULT_RUBRIC, LLMJudge, PairwiseJudge  # noqa: E402

JUDGE = Candidate(name="judge", input_price=1.0, output_price=2.0)  # USD per million tokens


@pytest.fixture(scope="module")
def server():
    s = ScriptedServer().start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _clean(server):
    server.reset()
    yield
    server.reset()


def _judge(server, cls=LLMJudge, **kw):
    client = OpenAIClient("judge-model", base_url=server.openai_url, api_key="sk-local")
    caller = FallbackCaller(sleep=lambda s: None, cooldown_s=0.0)
    return cls(client, judge_candidate=JUDGE, caller=caller, **kw)


def _user_text(body):
    return [m for m in body["messages"] if m["role"] == "user"][0]["content"]


def test_absolute_rating_prompt_and_cost(server):
    server.script("judge-model", Reply.ok("Correct and clear, a little terse.\nRating: [[8]]", usage=(300, 40)))
    judge = _judge(server)
    result = judge.score("What is 2 + 2?", "4")
    assert result.value == pytest.approx(7 / 9)
    assert result.details["rating"] == 8
    assert "terse" in (result.rationale or "")
    assert result.cost_usd == pytest.approx((300 * 1.0 + 40 * 2.0) / 1e6)
    body = server.bodies("judge-model")[0]
    assert body["messages"][0]["role"] == "system" and "impartial judge" in body["messages"][0]["content"]
    text = _user_text(body)
    assert "What is 2 + 2?" in text and "[Answer to grade]\n4" in text and DEFAULT_RUBRIC in text
    assert "Reference answer" not in text  # no reference given: no reference block
    assert body["temperature"] == 0.0 and body["max_tokens"] == 512
    stats = judge.stats
    assert stats["graded"] == 1 and stats["calls"] == 1 and stats["cost_usd"] == pytest.approx(result.cost_usd)


def test_reference_goes_into_the_prompt_and_messages_show_it(server):
    judge = _judge(server, rubric="Only correctness matters.")
    shown = judge.messages("Capital of France?", "Lyon", reference="Paris")
    assert "[Reference answer (known to be correct)]\nParis" in shown[1].content
    server.script("judge-model", Reply.ok("Wrong city. Rating: [[1]]"))
    result = judge.score("Capital of France?", "Lyon", reference="Paris")
    assert result.value == 0.0
    assert _user_text(server.bodies("judge-model")[0]) == shown[1].content


@pytest.mark.parametrize("reply", ["Looks fine to me, 8 out of 10.", "Rating: [[11]]", ""])
def test_unparsed_reply_is_reported_not_zero(server, reply):
    server.script("judge-model", Reply.ok(reply, usage=(100, 10)))
    judge = _judge(server)
    result = judge.score("q", "a")
    assert result.value is None and result.error
    assert result.cost_usd == pytest.approx((100 + 20) / 1e6)  # the failed judgement still cost money
    stats = judge.stats
    assert stats["parse_failures"] == 1 and stats["graded"] == 0 and stats["cost_usd"] > 0


def test_last_rating_counts(server):
    server.script("judge-model", Reply.ok("A [[3]] would be harsh; Rating: [[6]]"))
    assert _judge(server).score("q", "a").details["rating"] == 6


def test_429_is_retried_and_a_400_is_a_failed_call(server):
    server.script("judge-model", Reply.error(429), Reply.ok("Rating: [[10]]"))
    judge = _judge(server)
    assert judge.score("q", "a").value == 1.0
    assert len(server.bodies("judge-model")) == 2
    server.script("judge-model", Reply.error(400, "bad request"))
    failed = judge.score("q", "a")
    assert failed.value is None and "judge call failed" in (failed.error or "")
    assert judge.stats["call_failures"] == 1 and judge.stats["calls"] == 1


async def test_async_absolute(server):
    server.script("judge-model", Reply.ok("Rating: [[5]]", usage=(50, 5)))
    judge = _judge(server)
    result = await judge.ascore("q", "a")
    assert result.value == pytest.approx(4 / 9) and judge.stats["cost_usd"] == pytest.approx(60 / 1e6)


def test_template_override_is_used_and_checked(server):
    judge = _judge(server, template="Q: {query}\nA: {response}\nRate 1-10 as [[N]].")
    server.script("judge-model", Reply.ok("[[9]]"))
    assert judge.score("hello", "world").value == pytest.approx(8 / 9)
    assert _user_text(server.bodies("judge-model")[0]) == "Q: hello\nA: world\nRate 1-10 as [[N]]."
    with pytest.raises(ScoringError):
        _judge(server, template="Q: {query} only")  # no {response}
    with pytest.raises(ScoringError):
        _judge(server, template="{query} {response} {unknown}")
    needs_ref = _judge(server, template="{query} {response} {reference}")
    with pytest.raises(ScoringError, match="reference"):
        needs_ref.messages("q", "a")


# ------------------------------------------------------------------------------ pairwise
def _first_shown(body) -> str:
    text = _user_text(body)
    return text.split("[Answer A]\n", 1)[1].split("\n\n[Answer B]", 1)[0]


def test_position_swap_cancels_a_judge_that_always_prefers_the_first(server):
    server.default["judge-model"] = Reply.ok("The first is better. [[A]]", usage=(200, 10))
    judge = _judge(server, cls=PairwiseJudge)
    result = judge.score("Explain TCP.", "candidate answer", reference="reference answer")
    assert result.value == 0.5 and result.details["consistent"] is False
    bodies = server.bodies("judge-model")
    assert [_first_shown(b) for b in bodies] == ["candidate answer", "reference answer"]
    assert result.cost_usd == pytest.approx(2 * (200 + 20) / 1e6)
    assert judge.stats["calls"] == 2


def test_a_judge_that_reads_the_answers_is_kept(server):
    def responder(model, body):  # prefers the answer that mentions "handshake", wherever it is shown
        return Reply.ok("[[A]]" if "handshake" in _first_shown(body) else "[[B]]")

    server.responder = responder
    judge = _judge(server, cls=PairwiseJudge)
    win = judge.score("Explain TCP.", "a three-way handshake ...", reference="packets")
    assert win.value == 1.0 and win.details["verdicts"] == ("A", "B") and win.details["consistent"]
    loss = judge.score("Explain TCP.", "packets", reference="a three-way handshake ...")
    assert loss.value == 0.0


def test_pairwise_ties_and_parse_failures(server):
    server.script("judge-model", Reply.ok("[[C]]"), Reply.ok("[[C]]"))
    judge = _judge(server, cls=PairwiseJudge)
    assert judge.score("q", "a", reference="b").value == 0.5
    server.script("judge-model", Reply.ok("[[A]]"), Reply.ok("both are fine"))
    failed = judge.score("q", "a", reference="b")
    assert failed.value is None and "second order" in (failed.error or "")
    assert judge.stats["parse_failures"] == 1 and judge.stats["graded"] == 1
    assert judge.score("q", "a", reference=None).value is None  # no reference candidate's answer


async def test_async_pairwise_runs_both_orders(server):
    server.responder = lambda model, body: Reply.ok("[[B]]" if "good" in _user_text(body).split("[Answer B]")[1]
                                                    else "[[A]]")
    judge = _judge(server, cls=PairwiseJudge)
    result = await judge.ascore("q", "good answer", reference="poor answer")
    assert result.value == 1.0 and len(server.bodies("judge-model")) == 2


def test_judge_on_a_callable_client_costs_nothing_without_prices():
    seen = []

    def judge_fn(messages):
        seen.append(messages)
        return "Rating: [[7]]"

    judge = LLMJudge(CallableClient(judge_fn))
    result = judge.score("q", "a")
    assert result.value == pytest.approx(6 / 9) and result.cost_usd == 0.0
    assert seen[0][0].role == "system"
    with pytest.raises(ScoringError):
        LLMJudge(object())  # type: ignore[arg-type]
