"""collect(): the real openai SDK against the local server; the outcome CSV, retries, failures,
the spending cap, resuming without paying twice, bad rows, onboarding one candidate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servers import Reply, ScriptedServer  # noqa: E402

from mixllm_router import Candidate, RoutingDataset, ScoringError  # noqa: E402
from mixllm_router.clients import CallableClient, OpenAIClient  # noqa: E402
from mixllm_router.clients.fallback import FallbackCaller  # noqa: E402
from mixllm_router.scoring import (  # noqa: E402
    ExactMatch,
    FunctionScorer,
    LLMJudge,
    PairwiseJudge,
    collect,
    read_queries,
)
from mixllm_router.scoring.collection import results_path_for  # noqa: E402
from mixllm_router.scoring.results import ResultsFile  # noqa: E402

QUERIES = [
    {"query_id": "q1", "query": "Capital of France?", "reference": "Paris", "split": "train"},
    {"query_id": "q2", "query": "Capital of Italy?", "reference": "Rome", "split": "train"},
    {"query_id": "q3", "query": "Capital of Spain?", "reference": "Madrid", "split": "test"},
]
ANSWERS = {"good": {"France": "Paris", "Italy": "Rome", "Spain": "Madrid"},
           "bad": {"France": "Lyon", "Italy": "Rome", "Spain": "Sevilla"}}


@pytest.fixture(scope="module")
def server():
    s = ScriptedServer().start()
    yield s
    s.stop()


def _answer(model, body):
    text = body["messages"][-1]["content"]
    for country, answer in ANSWERS.get(model, {}).items():
        if country in text:
            return Reply.ok(answer, usage=(20, 4))
    return None


@pytest.fixture(autouse=True)
def _clean(server):
    server.reset()
    server.responder = _answer
    yield
    server.reset()


def _pairs(server, names=("good", "bad"), price=(1.0, 2.0)):
    return [(Candidate(name=n, input_price=price[0], output_price=price[1], max_concurrency=2),
             OpenAIClient(n, base_url=server.openai_url, api_key="sk-local")) for n in names]


def _caller():
    return FallbackCaller(sleep=lambda s: None, asleep=_no_wait, cooldown_s=0.0, max_attempts_per_candidate=3)


async def _no_wait(seconds):
    return None


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_collect_writes_the_outcome_csv_the_router_reads(server, tmp_path):
    out = tmp_path / "outcomes.csv"
    report = collect(_write_jsonl(tmp_path / "q.jsonl", QUERIES), _pairs(server), ExactMatch(), out,
                     caller=_caller(), progress=False)
    assert (report.planned, report.called, report.succeeded, report.failed) == (6, 6, 6, 0)
    frame = pd.read_csv(out)
    assert len(frame) == 6 and set(frame["split"]) == {"train", "test"}
    good = frame[frame.model == "good"].set_index("query_id").sort_index()  # rows come in completion order
    bad = frame[frame.model == "bad"].set_index("query_id").sort_index()
    assert good["quality"].tolist() == [1.0, 1.0, 1.0] and bad["quality"].tolist() == [0.0, 1.0, 0.0]
    assert (frame["input_tokens"] == 20).all() and (frame["output_tokens"] == 4).all()
    assert frame["cost"].tolist() == pytest.approx([(20 * 1.0 + 4 * 2.0) / 1e6] * 6)  # reported usage x prices
    assert (frame["latency_s"] > 0).all() and bad.loc["q1", "response"] == "Lyon"
    assert report.spent_usd == pytest.approx(6 * 28 / 1e6)
    data = RoutingDataset.from_csv(out)
    assert sorted(data.models) == ["bad", "good"] and len(data) == 3


def test_a_rerun_calls_nothing_again(server, tmp_path):
    out, queries = tmp_path / "o.csv", _write_jsonl(tmp_path / "q.jsonl", QUERIES)
    collect(queries, _pairs(server), ExactMatch(), out, caller=_caller(), progress=False)
    before = len(server.requests)
    again = collect(queries, _pairs(server), ExactMatch(), out, caller=_caller(), progress=False)
    assert len(server.requests) == before
    assert (again.already_done, again.called, again.rows_written) == (6, 0, 6)
    assert again.total_spent_usd == pytest.approx(6 * 28 / 1e6)


def test_429_is_retried_and_a_permanent_failure_is_reported_then_retried(server, tmp_path):
    server.script("good", Reply.error(429), Reply.error(503))
    server.script("bad", Reply.error(401, "no key"))
    out, queries = tmp_path / "o.csv", _write_jsonl(tmp_path / "q.jsonl", QUERIES)
    first = collect(queries, _pairs(server), ExactMatch(), out, caller=_caller(), progress=False, concurrency=1)
    assert first.failed == 1 and first.errors["PermanentClientError"] == 1 and first.succeeded == 5
    assert "PermanentClientError" in first.summary()
    assert len(pd.read_csv(out)) == 5
    second = collect(queries, _pairs(server), ExactMatch(), out, caller=_caller(), progress=False)
    assert (second.called, second.succeeded, second.in_flight_at_crash) == (1, 1, 0)
    assert len(pd.read_csv(out)) == 6


def test_spending_cap_stops_cleanly_and_a_larger_cap_finishes(server, tmp_path):
    out, queries = tmp_path / "o.csv", _write_jsonl(tmp_path / "q.jsonl", QUERIES)
    pairs = _pairs(server, price=(1000.0, 1000.0))  # $0.024 a call (20 + 4 tokens); estimated $0.015 at first
    report = collect(queries, pairs, ExactMatch(), out, max_spend_usd=0.1, max_tokens=10, concurrency=1,
                     caller=_caller(), progress=False)
    assert report.stopped_at_cap and report.not_started == 2 and report.called == 4
    assert report.total_spent_usd == pytest.approx(0.096) and "spending cap" in report.summary()
    assert len(pd.read_csv(out)) == report.succeeded
    rest = collect(queries, pairs, ExactMatch(), out, max_spend_usd=1.0, max_tokens=10, caller=_caller(),
                   progress=False)
    assert not rest.stopped_at_cap and rest.called == 6 - report.called and len(pd.read_csv(out)) == 6


def test_bad_rows_are_reported_not_fatal(server, tmp_path):
    path = tmp_path / "q.csv"
    pd.DataFrame([{"query_id": "q1", "query": "Capital of France?", "reference": "Paris"},
                  {"query_id": "q9", "query": "", "reference": "x"},
                  {"query_id": "q1", "query": "Another text, same id", "reference": "x"},
                  {"query_id": "q1", "query": "Capital of France?", "reference": "Paris"}]).to_csv(path, index=False)
    items, problems = read_queries(path)
    assert [i.query_id for i in items] == ["q1"]
    assert [p.line for p in problems] == [3, 4] and "empty" in problems[0].reason
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text('{"query": "Capital of Italy?", "reference": "Rome"}\n{not json\n[1, 2]\n')
    report = collect(jsonl, _pairs(server, ("good",)), ExactMatch(), tmp_path / "o.csv", caller=_caller(),
                     progress=False)
    assert report.succeeded == 1 and len(report.bad_rows) == 2 and "query rows skipped" in report.summary()
    with pytest.raises(ScoringError, match="'query' column"):
        read_queries(_write_csv(tmp_path / "x.csv", "prompt\nhello\n"))
    with pytest.raises(ScoringError, match="no such"):
        read_queries(tmp_path / "missing.csv")


def _write_csv(path, text):
    path.write_text(text)
    return path


def test_only_onboards_a_new_candidate_over_logged_queries(server, tmp_path):
    out, queries = tmp_path / "o.csv", _write_jsonl(tmp_path / "q.jsonl", QUERIES)
    collect(queries, _pairs(server, ("good",)), ExactMatch(), out, caller=_caller(), progress=False)
    ANSWERS["new"] = {"France": "Paris", "Italy": "Milan", "Spain": "Madrid"}
    try:
        logged = tmp_path / "logged.csv"
        pd.read_csv(out).to_csv(logged, index=False)  # an outcome CSV is a queries file (no reference: a scorer
        # that needs one would not grade), so give the references through the original file
        report = collect(queries, _pairs(server, ("good", "new")), ExactMatch(), out, only=["new"],
                         caller=_caller(), progress=False)
    finally:
        del ANSWERS["new"]
    assert (report.planned, report.called) == (3, 3)
    frame = pd.read_csv(out)
    assert sorted(set(frame.model)) == ["good", "new"] and len(frame) == 6
    new = frame[frame.model == "new"]  # rows are appended as calls finish, in any order
    assert dict(zip(new["query_id"], new["quality"])) == {"q1": 1.0, "q2": 0.0, "q3": 1.0}
    assert len(read_queries(logged)[0]) == 3  # one row per query and model: the repeats are skipped quietly
    with pytest.raises(ScoringError, match="not among"):
        collect(queries, _pairs(server, ("good",)), ExactMatch(), out, only=["nobody"], progress=False)


def test_an_unparsed_judgement_is_rescored_without_calling_again(server, tmp_path):
    replies = iter(["no verdict here", "Rating: [[10]]"])
    judge = LLMJudge(CallableClient(lambda messages: next(replies)))
    out, queries = tmp_path / "o.csv", _write_jsonl(tmp_path / "q.jsonl", QUERIES[:1])
    first = collect(queries, _pairs(server, ("good",)), judge, out, caller=_caller(), progress=False)
    assert first.unscored == 1 and first.rows_written == 0
    calls = len(server.requests)
    second = collect(queries, _pairs(server, ("good",)), judge, out, caller=_caller(), progress=False)
    assert len(server.requests) == calls and second.rescored == 1 and second.called == 0
    assert pd.read_csv(out)["quality"].tolist() == [1.0]


def test_reference_model_answers_are_the_pairwise_reference(server, tmp_path):
    def judge_fn(messages):  # prefers the answer that says Paris, shown in either position
        text = messages[-1].content
        first = text.split("[Answer A]\n", 1)[1].split("\n\n[Answer B]", 1)[0]
        second = text.split("[Answer B]\n", 1)[1].split("\n\n[Rubric]", 1)[0]
        if ("Paris" in first) == ("Paris" in second):
            return "[[C]]"
        return "[[A]]" if "Paris" in first else "[[B]]"

    out, queries = tmp_path / "o.csv", _write_jsonl(tmp_path / "q.jsonl", QUERIES[:1])
    collect(queries, _pairs(server), PairwiseJudge(CallableClient(judge_fn)), out, reference_model="good",
            caller=_caller(), progress=False)
    frame = pd.read_csv(out).set_index("model")
    assert frame.loc["good", "quality"] == 0.5 and frame.loc["bad", "quality"] == 0.0  # a tie with itself; a loss


def test_a_scorer_that_raises_keeps_the_answer(server, tmp_path):
    def broken(query, response, reference):
        raise RuntimeError("bug in my scorer")

    out = tmp_path / "o.csv"
    report = collect(_write_jsonl(tmp_path / "q.jsonl", QUERIES[:1]), _pairs(server, ("good",)),
                     FunctionScorer(broken), out, caller=_caller(), progress=False)
    assert report.unscored == 1
    results = ResultsFile(results_path_for(out))
    results.load()
    (record,) = results.done.values()
    assert record["response"] == "Paris" and "bug in my scorer" in record["score_error"]


def test_results_file_torn_line_is_cut_and_a_damaged_one_refused(tmp_path):
    path = tmp_path / "r.jsonl"
    results = ResultsFile(path)
    results.append({"key": "k1", "status": "started"}, durable=False)
    results.append({"key": "k1", "status": "done", "quality": 1.0}, durable=True)
    results.close()
    with path.open("ab") as fh:
        fh.write(b'{"key": "k2", "status": "do')  # killed mid-write
    again = ResultsFile(path)
    again.load()
    assert set(again.done) == {"k1"} and not again.in_flight
    again.append({"key": "k2", "status": "started"}, durable=False)
    again.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)
    path.write_text(lines[0] + "\nnot json\n" + lines[1] + "\n")
    with pytest.raises(ScoringError, match="line 2"):
        ResultsFile(path).load()


def test_bad_arguments(server, tmp_path):
    pairs = _pairs(server, ("good",))
    with pytest.raises(ScoringError):
        collect(["q"], pairs, "exact", tmp_path / "o.csv", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ScoringError):
        collect(["q"], [("a", object())], ExactMatch(), tmp_path / "o.csv", progress=False)  # type: ignore[list-item]
    with pytest.raises(ScoringError):
        collect(["q"], pairs + pairs, ExactMatch(), tmp_path / "o.csv", progress=False)
    with pytest.raises(ScoringError):
        collect(["q"], pairs, ExactMatch(), tmp_path / "o.csv", max_spend_usd=-1, progress=False)


async def test_collect_inside_an_event_loop_says_to_await_acollect(server, tmp_path):
    from mixllm_router.scoring import acollect

    with pytest.raises(ScoringError, match="acollect"):
        collect(["q"], _pairs(server, ("good",)), ExactMatch(), tmp_path / "o.csv", progress=False)
    report = await acollect(QUERIES[:1], _pairs(server, ("good",)), ExactMatch(), tmp_path / "o.csv",
                            caller=_caller(), progress=False)
    assert report.succeeded == 1


def test_collect_command_with_a_candidates_file(server, tmp_path, monkeypatch, capsys):
    from mixllm_router.cli.main import main

    monkeypatch.setenv("LOCAL_KEY", "sk-local")
    spec = {"candidates": [
        {"name": n, "input_price": 1.0, "output_price": 2.0, "max_concurrency": 2,
         "client": {"kind": "openai", "base_url": server.openai_url, "api_key_env": "LOCAL_KEY"}}
        for n in ("good", "bad")]}
    candidates = tmp_path / "candidates.json"
    candidates.write_text(json.dumps(spec))
    queries = _write_jsonl(tmp_path / "q.jsonl", QUERIES)
    out = tmp_path / "o.csv"
    assert main(["collect", "--queries", str(queries), "--candidates", str(candidates), "--scorer", "exact",
                 "--out", str(out), "--no-progress"]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 6 and frame["cost"].tolist() == pytest.approx([28 / 1e6] * 6)
    server.responder = lambda model, body: Reply.ok("Rating: [[10]]", usage=(50, 5)) if model == "good" \
        else _answer(model, body)
    out2 = tmp_path / "judged.csv"
    assert main(["collect", "--queries", str(queries), "--candidates", str(candidates), "--scorer", "judge:good",
                 "--only", "bad", "--out", str(out2), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert '"graded": 3' in err and "on scoring" in err
    assert pd.read_csv(out2)["quality"].tolist() == [1.0, 1.0, 1.0]
    spec["candidates"][1].pop("client")
    candidates.write_text(json.dumps(spec))
    assert main(["collect", "--queries", str(queries), "--candidates", str(candidates), "--scorer", "exact",
                 "--out", str(out), "--no-progress"]) == 2
    assert "no [candidates.client]" in capsys.readouterr().err


def test_the_three_commands_of_the_readme(server, tmp_path, monkeypatch, capsys):
    """collect (judge on a candidate's client) -> train -> route, from a queries file alone."""
    from mixllm_router.cli.main import main

    right = {"France": "Paris", "Italy": "Rome", "Spain": "Madrid"}

    def responder(model, body):
        msgs = body["messages"]
        if msgs[0]["role"] == "system" and "judge" in msgs[0]["content"]:
            text = msgs[-1]["content"]
            answer = text.split("[Answer to grade]\n", 1)[1].split("\n\n", 1)[0]
            ok = any(c in text.split("[Answer to grade]")[0] and a == answer for c, a in right.items())
            return Reply.ok(f"Rating: [[{9 if ok else 2}]]", usage=(80, 6))
        return _answer(model, body)

    server.responder = responder
    monkeypatch.setenv("LOCAL_KEY", "sk-local")
    spec = [{"name": n, "input_price": p, "output_price": p,
             "client": {"kind": "openai", "base_url": server.openai_url, "api_key_env": "LOCAL_KEY"}}
            for n, p in (("good", 5.0), ("bad", 0.5))]
    candidates = tmp_path / "candidates.json"
    candidates.write_text(json.dumps(spec))
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"query": f"Capital of {c}? (variant {i})"}) + "\n"
                               for i in range(8) for c in right))
    out, router_dir = tmp_path / "outcomes.csv", tmp_path / "router"
    assert main(["collect", "--queries", str(queries), "--candidates", str(candidates), "--scorer", "judge:good",
                 "--out", str(out), "--max-spend", "1", "--no-progress"]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 48 and set(frame["quality"].round(3)) <= {round(8 / 9, 3), round(1 / 9, 3)}
    assert main(["train", "--data", str(out), "--candidates", str(candidates), "--out", str(router_dir),
                 "--encoder", "hashing"]) == 0
    capsys.readouterr()
    assert main(["route", "--router", str(router_dir), "--encoder", "hashing", "--json", "Capital of Italy?"]) == 0
    decision = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert decision["chosen"] in {"good", "bad"}
