"""Taggers (LLM against fake chat models and a real local OpenAI-compatible server, offline,
labels), the on-disk tag cache, and tag domains on a toy set with known structure."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from mixllm_router import ConfigError, EncoderError, PermanentClientError, TransientClientError
from mixllm_router.clients import FakeClient, OpenAIClient
from mixllm_router.encoders import HashingEncoder
from mixllm_router.encoders.domains import fit_domains, normalize_tag, normalize_tags
from mixllm_router.encoders.tagging import (
    CachedTagger,
    LabelTagger,
    LLMTagger,
    OfflineTagger,
    TaggingWarning,
    parse_tags,
)

GOOD = json.dumps({"tags": [{"tag": "Python programming", "explanation": "code"},
                            {"tag": "list manipulation", "explanation": "lists"}]})


# ------------------------------------------------------------------------------- parse_tags
@pytest.mark.parametrize("text", [
    GOOD,
    '{"tags": ["Python programming", "list manipulation"]}',
    '["Python programming", "list manipulation", "Python programming"]',
    '```json\n' + GOOD + '\n```',
])
def test_parse_tags_accepts_the_documented_shapes(text):
    assert parse_tags(text) == ["Python programming", "list manipulation"]


@pytest.mark.parametrize("text", ["not json", '{"labels": ["x"]}', '{"tags": [1, 2]}', '{"tags": "x"}', ""])
def test_parse_tags_rejects_malformed_answers(text):
    with pytest.raises(ValueError):
        parse_tags(text)


def test_parse_tags_caps_the_number_of_tags():
    assert parse_tags(json.dumps([f"t{i}" for i in range(20)]), max_tags=3) == ["t0", "t1", "t2"]


# ------------------------------------------------------------------------------- LLM tagger
def test_llm_tagger_good_json_sends_the_instag_prompt():
    chat = FakeClient(GOOD)
    tagger = LLMTagger(chat, max_workers=1)
    assert tagger.tag(["Write a function to reverse a list."]) == [["Python programming", "list manipulation"]]
    messages, kwargs = chat.calls[0]
    assert messages[0].role == "system" and "JSON" in messages[0].content and "tags" in messages[0].content
    assert messages[1].content == "Write a function to reverse a list."
    assert kwargs["temperature"] == 0.0


def test_llm_tagger_retries_a_malformed_answer_once():
    chat = FakeClient(["Sure! Here are the tags: python", GOOD])
    tagger = LLMTagger(chat, max_workers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a successful retry must not warn
        tags = tagger.tag(["q"])
    assert tags == [["Python programming", "list manipulation"]]
    assert len(chat.calls) == 2


def test_llm_tagger_skips_after_two_bad_answers_with_a_warning():
    chat = FakeClient(["oops", "{broken", GOOD])
    tagger = LLMTagger(chat, max_workers=1)
    with pytest.warns(TaggingWarning, match="1 of 2 queries were left without tags"):
        tags = tagger.tag(["first", "second"])
    assert tags == [[], ["Python programming", "list manipulation"]]
    assert len(chat.calls) == 3
    assert "malformed" in tagger.last_failures[0]


def test_llm_tagger_timeouts_are_retried_then_skipped():
    chat = FakeClient([TransientClientError("request timed out"), GOOD,
                       TransientClientError("timed out"), TimeoutError("read timed out")])
    tagger = LLMTagger(chat, max_workers=1)
    with pytest.warns(TaggingWarning, match="timed out"):
        tags = tagger.tag(["a", "b"])
    assert tags == [["Python programming", "list manipulation"], []]


def test_llm_tagger_does_not_retry_permanent_errors():
    chat = FakeClient([PermanentClientError("invalid api key"), GOOD])
    tagger = LLMTagger(chat, max_workers=1)
    with pytest.warns(TaggingWarning, match="invalid api key"):
        assert tagger.tag(["a"]) == [[]]
    assert len(chat.calls) == 1


def test_llm_tagger_threads_keep_query_order():
    chat = FakeClient(lambda msgs: json.dumps([msgs[-1].content.upper()]))
    tagger = LLMTagger(chat, max_workers=4)
    queries = [f"q{i}" for i in range(20)]
    assert tagger.tag(queries) == [[q.upper()] for q in queries]


def test_llm_tagger_takes_a_langchain_chat_model():
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    chat = FakeListChatModel(responses=["no json here", GOOD])
    tagger = LLMTagger(chat, max_workers=1)
    assert tagger.tag(["q"]) == [["Python programming", "list manipulation"]]
    assert tagger.fingerprint.startswith("llm:")


def test_llm_tagger_refuses_objects_that_cannot_chat():
    with pytest.raises(ConfigError):
        LLMTagger(object())


def test_llm_tagger_against_a_local_openai_compatible_server():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds servers.py
    from servers import Reply, ScriptedServer

    server = ScriptedServer().start()
    try:
        server.script("tagger-model", Reply.ok("not json"), Reply.ok(GOOD), Reply.slow(2.0, GOOD), Reply.slow(2.0, GOOD))
        client = OpenAIClient("tagger-model", base_url=server.openai_url, timeout=0.5)
        tagger = LLMTagger(client, max_workers=1, timeout=0.5)
        with pytest.warns(TaggingWarning):
            tags = tagger.tag(["Write a function.", "Another one."])
        assert tags[0] == ["Python programming", "list manipulation"]
        assert tags[1] == []  # two timeouts in a row: skipped, training goes on
        body = server.bodies("tagger-model")[0]
        assert body["messages"][0]["role"] == "system" and body["temperature"] == 0.0
    finally:
        server.stop()


# ------------------------------------------------------------------------------- offline / labels
CORPUS = (
    [f"Write a python function to sort a list of numbers, case {i}." for i in range(6)]
    + [f"Which planet in the solar system is the largest? Variant {i}." for i in range(6)]
    + [f"Print only a single choice. A recipe for tomato soup number {i}." for i in range(6)]
)


def test_offline_tagger_picks_shared_keyphrases_without_an_llm():
    tagger = OfflineTagger(top_k=4, min_df=3, max_df=0.5)
    tags = tagger.tag(CORPUS)
    assert len(tags) == len(CORPUS) and all(tags)
    for i, row in enumerate(tags):
        assert all(w in CORPUS[i].lower() for t in row for w in t.split())  # words of the query itself
    groups = [{t for row in tags[g * 6:(g + 1) * 6] for t in row} for g in range(3)]
    assert not (groups[0] & groups[1]) and not (groups[1] & groups[2]) and not (groups[0] & groups[2])
    vocab = {t for row in tags for t in row}
    assert all(sum(t in row for row in tags) >= 3 for t in vocab)  # every tag is shared (min_df)


def test_offline_tagger_is_deterministic_and_fingerprints_its_corpus():
    a, b = OfflineTagger().fit(CORPUS), OfflineTagger().fit(CORPUS)
    assert a.tag(CORPUS) == b.tag(CORPUS)
    assert a.fingerprint == b.fingerprint
    assert OfflineTagger().fit(CORPUS[:12]).fingerprint != a.fingerprint
    with pytest.raises(EncoderError):
        _ = OfflineTagger().fingerprint


def test_offline_tagger_focuses_on_the_end_of_long_prompts():
    shots = "Example: the capital of France is Paris. " * 20
    queries = [shots + f"Question: describe photosynthesis in plants {i}" for i in range(4)]
    tags = OfflineTagger(tail_chars=45, min_df=2, max_df=1.0).tag(queries)
    assert all(any("photosynthesis" in t or "plant" in t for t in row) for row in tags)
    assert not any("paris" in t for row in tags for t in row)


def test_offline_tagger_survives_a_corpus_with_no_usable_words():
    assert OfflineTagger().tag(["1 2 3", "4 5"]) == [[], []]


def test_label_tagger_from_a_dataset(synthetic_data):
    tagger = LabelTagger.from_dataset(synthetic_data)
    tags = tagger.tag(synthetic_data.queries[:1] + ["unknown query"])
    assert tags == [[synthetic_data.tasks[0]], []]


def test_taggers_refuse_a_bare_string():
    with pytest.raises(EncoderError):
        OfflineTagger().tag("one query")


# ------------------------------------------------------------------------------- cache
class CountingTagger:
    fingerprint = "counting:v1"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def tag(self, queries):
        self.seen.extend(queries)
        return [[q.split()[0]] for q in queries]


def test_cached_tagger_serves_repeat_queries_from_disk(tmp_path):
    inner = CountingTagger()
    first = CachedTagger(inner, tmp_path).tag(["alpha one", "beta two", "alpha one"])
    assert first == [["alpha"], ["beta"], ["alpha"]]
    assert inner.seen == ["alpha one", "beta two"]  # duplicates tagged once
    again = CachedTagger(inner, tmp_path)  # a new process would start like this
    assert again.tag(["beta two", "gamma three"]) == [["beta"], ["gamma"]]
    assert inner.seen[-1:] == ["gamma three"] and again.hits == 1 and again.misses == 1
    files = list(tmp_path.iterdir())
    assert [f.suffix for f in files if not f.name.endswith(".lock")] == [".json"]  # no temp files left
    data = json.loads(next(f for f in files if f.suffix == ".json").read_text())
    assert data["fingerprint"] == "counting:v1" and len(data["tags"]) == 3


def test_cached_tagger_does_not_cache_skipped_queries(tmp_path):
    chat = FakeClient(["bad", "bad", GOOD])
    tagger = LLMTagger(chat, max_workers=1)
    with pytest.warns(TaggingWarning):
        assert CachedTagger(tagger, tmp_path).tag(["q"]) == [[]]
    assert CachedTagger(tagger, tmp_path).tag(["q"]) == [["Python programming", "list manipulation"]]
    assert len(chat.calls) == 3


def test_cached_tagger_ignores_a_damaged_file(tmp_path):
    inner = CountingTagger()
    cached = CachedTagger(inner, tmp_path)
    cached.tag(["alpha one"])
    path = next(p for p in tmp_path.iterdir() if p.suffix == ".json")
    path.write_text("{ not json")
    with pytest.warns(TaggingWarning, match="unreadable"):
        assert CachedTagger(inner, tmp_path).tag(["alpha one"]) == [["alpha"]]
    assert json.loads(path.read_text())["tags"]  # rewritten whole


def test_cached_tagger_fits_a_corpus_tagger_first(tmp_path):
    tags = CachedTagger(OfflineTagger(top_k=3, min_df=3, max_df=0.5), tmp_path).tag(CORPUS)
    assert tags == OfflineTagger(top_k=3, min_df=3, max_df=0.5).tag(CORPUS)


# ------------------------------------------------------------------------------- domains
def test_normalize_tag():
    assert normalize_tag("  Python_Lists! ") == "python list"
    assert normalize_tag("Data-Queries") == "data query"
    assert normalize_tag("Physics") == "physics"
    assert normalize_tag("class") == "class"
    assert normalize_tag("...") == ""
    assert normalize_tags([["A", "a ", ""], []]) == [["a"], []]


def _toy_tags(n_per: int = 40, seed: int = 0) -> tuple[list[list[str]], np.ndarray]:
    rng = np.random.default_rng(seed)
    vocab = {
        d: [f"{topic} {w}" for w in words]
        for d, (topic, words) in enumerate([
            ("cooking", ["recipe", "pasta", "sauce", "dinner", "oven", "spice", "soup", "bread"]),
            ("football", ["match", "league", "score", "team", "goal", "coach", "fan", "player"]),
            ("python", ["code", "function", "list", "class", "loop", "module", "error", "string"]),
        ])
    }
    tags, truth = [], []
    for d, words in vocab.items():
        for _ in range(n_per):
            tags.append(list(rng.choice(words, size=3, replace=False)))
            truth.append(d)
    tags.append([])  # an untagged query
    truth.append(-1)
    return tags, np.array(truth)


def test_domains_recover_known_groups_and_choose_k_by_silhouette():
    from sklearn.metrics import adjusted_rand_score

    tags, truth = _toy_tags()
    domains = fit_domains(tags, HashingEncoder(dim=128), seed=0)
    assert domains.n_domains == 3
    assert domains.labels[-1] == -1
    assert adjusted_rand_score(truth[:-1], domains.labels[:-1]) == pytest.approx(1.0)
    assert max(domains.silhouette, key=domains.silhouette.get) == 3
    assert {frozenset(t.split()[0] for t in top) for top in domains.top_tags} == {
        frozenset({"cooking"}), frozenset({"football"}), frozenset({"python"})
    }


def test_domains_k_can_be_fixed_and_soft_mix_sums_to_one():
    from mixllm_router.encoders.domains import tag_profiles

    tags, _ = _toy_tags()
    enc = HashingEncoder(dim=128)
    domains = fit_domains(tags, enc, n_domains=2)
    assert domains.n_domains == 2 and domains.silhouette == {}
    profiles, has = tag_profiles(normalize_tags(tags), enc)
    w = domains.soft(profiles)
    assert np.allclose(w[has].sum(1), 1.0) and np.all(w[~has] == 0)
    with pytest.raises(ConfigError):
        fit_domains(tags, enc, n_domains=1000)
