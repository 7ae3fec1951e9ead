"""Candidate metadata: the candidates file, ``mixllm train --candidates``, ``update_candidate``,
metadata taken from attached clients, checkpoints, and the warning for unknown prices."""

from __future__ import annotations

import json
import warnings

import pytest

from mixllm_router import (
    Candidate,
    ConfigError,
    MixLLMRouter,
    RoutingDataset,
    UnknownCandidateError,
    UnknownPriceWarning,
    candidates,
    load_candidates,
)
from mixllm_router.cli.main import main
from mixllm_router.clients import Completion, FakeClient

TOML = """
[[candidates]]
name = "big"
input_price = 2.5
output_price = 10.0
context_window = 128000
max_concurrency = 16
supports_tools = true

[candidates.client]
kind = "openai"
model = "gpt-4o"
base_url = "http://127.0.0.1:9/v1"

[[candidates]]
name = "small"
input_price = 0.15
output_price = 0.6
"""


@pytest.fixture(autouse=True)
def _fresh_price_warnings():
    candidates._WARNED.clear()  # the warning is once per candidate per process
    yield
    candidates._WARNED.clear()


def _router(pool=None) -> MixLLMRouter:
    records = []
    for i in range(24):
        for model, quality in (("big", 0.9), ("small", 0.5 + 0.4 * (i % 2))):
            records.append({"query": f"question {i} about {'code' if i % 2 else 'poems'}", "model": model,
                            "quality": quality, "cost": 1e-3 if model == "big" else 1e-4, "output_tokens": 50})
    router = MixLLMRouter(pool, config={"encoder": {"kind": "hashing", "use_cache": False}})
    return router.fit(RoutingDataset.from_records(records), calibrate=False)


def test_toml_and_json_give_the_same_candidates(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text(TOML)
    parsed = load_candidates(toml)
    as_json = tmp_path / "c.json"
    as_json.write_text(json.dumps(parsed.model_dump(exclude_none=True)))
    assert load_candidates(as_json) == parsed
    big, small = parsed.to_candidates()
    assert (big.input_price, big.output_price, big.context_window, big.max_concurrency, big.supports_tools) == (
        2.5, 10.0, 128000, 16, True)
    assert big.unknown == ()
    assert small.unknown == ("context_window", "max_concurrency", "supports_tools") and small.prices_known
    assert parsed.candidates[0].client.model == "gpt-4o"
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps([{"name": "x", "input_price": 1}]))
    [x] = load_candidates(bare).to_candidates()
    assert (x.input_price, x.output_price, x.prices_known) == (1.0, 0.0, True)


@pytest.mark.parametrize(("text", "suffix", "message"), [
    ('[[candidates]]\nname = "a"\ninput_prise = 1\n', ".toml", r"candidates\[0\] \('a'\)\.input_prise: Extra inputs"),
    ('[[candidates]]\nname = "a"\ninput_price = -1\n', ".toml", r"input_price: Input should be greater"),
    ('[[candidates]]\nname = "a"\n[[candidates]]\nname = "a"\n', ".toml", "appears twice"),
    ('[[candidates]]\nname = "a"\n[candidates.client]\nkind = "cohere"\n', ".toml", r"client\.kind"),
    ("[[candidates]\n", ".toml", "not valid TOML"),
    ('{"candidates": []}', ".json", "at least 1"),
    ("{nope", ".json", "not valid JSON"),
    ('{"candidates": 3}', ".json", "candidates: Input should be a valid list"),
    ("name = 'a'", ".yaml", "ends in .toml or .json"),
])
def test_bad_files_get_clear_errors(tmp_path, text, suffix, message):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_candidates(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no candidates file"):
        load_candidates(tmp_path / "nope.toml")


def test_train_with_candidates_file_keeps_metadata_in_the_checkpoint(tmp_path, capsys):
    import csv

    path = tmp_path / "outcomes.csv"

    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["query", "model", "quality", "cost", "output_tokens"])
        writer.writeheader()
        for i in range(24):
            for model in ("big", "small", "ignored"):
                writer.writerow({"query": f"question {i}", "model": model, "quality": 0.5 + 0.01 * i,
                                 "cost": 1e-3, "output_tokens": 40})
    cands = tmp_path / "candidates.toml"
    cands.write_text(TOML)
    out = tmp_path / "router"
    assert main(["train", "--data", str(path), "--out", str(out), "--encoder", "hashing",
                 "--candidates", str(cands)]) == 0
    router = MixLLMRouter.load(out)
    assert router.candidate_names == ["big", "small"]  # the file defines the pool
    big = router.pool.get("big")
    assert (big.input_price, big.context_window, big.supports_tools, big.unknown) == (2.5, 128000, True, ())
    router.set_client("big", FakeClient("hi"))
    assert router.load_tracker.snapshot()["big"]["max_concurrency"] == 16  # the limit reaches the tracker
    bad = tmp_path / "bad.toml"
    bad.write_text('[[candidates]]\nname = "big"\nsupports_tools = "maybe"\n')
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "r2"), "--encoder", "hashing",
                 "--candidates", str(bad)]) == 2
    assert "supports_tools" in capsys.readouterr().err


def test_router_trained_from_data_warns_about_unknown_prices_and_update_candidate_fixes_costs(tmp_path):
    router = _router()
    assert router.pool.get("big").unknown == ("prices", "context_window", "max_concurrency", "supports_tools")
    router.set_client("big", FakeClient(Completion(text="ok", input_tokens=1000, output_tokens=100),
                                        supports_tools=False))
    with pytest.warns(UnknownPriceWarning, match="'big' has no prices"):
        reply = router.invoke("question 1 about code", candidates=["big"])
    assert reply.cost_usd == 0.0

    updated = router.update_candidate("big", input_price=2.0, output_price=8.0, max_concurrency=3)
    assert updated.prices_known and router.pool.get("big") is updated
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownPriceWarning)
        reply = router.invoke("question 1 about code", candidates=["big"])
    assert reply.cost_usd == pytest.approx((2.0 * 1000 + 8.0 * 100) / 1e6)
    assert router.load_tracker.snapshot()["big"]["max_concurrency"] == 3

    back = MixLLMRouter.load(router.save(tmp_path / "ck"))
    assert back.pool.get("big").input_price == 2.0 and back.pool.get("big").prices_known
    assert back.pool.get("small").unknown[0] == "prices"

    with pytest.raises(ConfigError, match="input_price"):
        router.update_candidate("big", input_price=-1)
    with pytest.raises(ConfigError, match="unknown"):
        router.update_candidate("big", unknown=())
    with pytest.raises(ConfigError, match="colour"):
        router.update_candidate("big", colour="red")
    with pytest.raises(UnknownCandidateError):
        router.update_candidate("nope", input_price=1)
    assert router.pool.get("big").input_price == 2.0  # failed updates changed nothing


def test_free_candidate_is_not_warned_about():
    router = _router([Candidate(name="big", input_price=0, output_price=0), Candidate(name="small")])
    router.set_client("big", FakeClient(Completion(text="ok", input_tokens=10, output_tokens=1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownPriceWarning)
        assert router.invoke("question 2", candidates=["big"]).cost_usd == 0.0


def test_attached_client_fills_unknown_metadata_but_never_overrides_given_metadata():
    router = _router([Candidate(name="big", supports_tools=False), Candidate(name="small")])
    router.set_client("big", FakeClient("hi", supports_tools=True))
    router.set_client("small", FakeClient("hi", supports_tools=True))
    assert router.pool.get("big").supports_tools is False  # said explicitly: kept
    assert router.pool.get("small").supports_tools is True and "supports_tools" not in router.pool.get("small").unknown
    reply = router.invoke("question 3", tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
    assert reply.candidate == "small"


def test_legacy_checkpoint_specs_count_default_values_as_unknown():
    legacy = {"name": "m", "input_price": 0.0, "output_price": 0.0, "context_window": 8192, "max_concurrency": 8,
              "supports_tools": False}
    assert Candidate.model_validate(legacy).unknown == ("prices", "context_window", "max_concurrency",
                                                        "supports_tools")
    priced = {**legacy, "input_price": 1.0, "supports_tools": True}
    assert Candidate.model_validate(priced).unknown == ("context_window", "max_concurrency")


def test_candidates_file_apply_to_a_fitted_router(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(TOML + '\n[[candidates]]\nname = "absent"\n')
    router = _router()
    assert load_candidates(path).apply(router) == ["absent"]
    assert router.pool.get("small").input_price == 0.15 and router.pool.get("big").supports_tools


def test_a_file_entry_with_default_values_is_known_not_legacy(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[candidates]]\nname = "local"\ninput_price = 0\noutput_price = 0\ncontext_window = 8192\n'
                    'max_concurrency = 8\nsupports_tools = false\n')
    [local] = load_candidates(path).to_candidates()
    assert local.unknown == () and local.prices_known
    assert Candidate.model_validate(local.model_dump()) == local  # and through a checkpoint's dump
