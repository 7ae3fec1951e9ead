"""ChatMixLLM without any model call: lazy loading, configuration errors, serialisation."""

from __future__ import annotations

import pytest
from langchain_core.load import dumpd, load
from langchain_mixllm import ChatMixLLM
from langchain_openai import ChatOpenAI

from mixllm_router import CheckpointError, ConfigError, UnknownCandidateError


def _candidate(name: str) -> ChatOpenAI:
    return ChatOpenAI(model=name, api_key="test", base_url="http://127.0.0.1:9/v1", max_retries=0)


def test_construction_does_not_load_the_router(tmp_path: pytest.TempPathFactory) -> None:
    llm = ChatMixLLM(checkpoint_path=str(tmp_path / "missing"), candidates={"a": _candidate("a")})
    assert llm._router is None  # nothing loaded yet: the folder does not even exist
    with pytest.raises(CheckpointError, match="missing"):
        _ = llm.router_


def test_needs_a_router_or_a_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIXLLM_CHECKPOINT", raising=False)
    llm = ChatMixLLM(candidates={"a": _candidate("a")})
    with pytest.raises(ConfigError, match="checkpoint_path"):
        llm.invoke("hello")


def test_checkpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXLLM_CHECKPOINT", "/some/where")
    assert ChatMixLLM().checkpoint_path == "/some/where"


def test_router_must_be_a_router() -> None:
    with pytest.raises(ConfigError, match="MixLLMRouter"):
        _ = ChatMixLLM(router=object()).router_


def test_state_is_shared_as_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from mixllm_router.state import InProcessState
    from tests.router_fixture import fit_router

    monkeypatch.setenv("MIXLLM_STATE", "redis://example.invalid:6379/0")
    assert ChatMixLLM().state == "redis://example.invalid:6379/0"
    monkeypatch.delenv("MIXLLM_STATE")
    assert isinstance(ChatMixLLM(router=fit_router(), state="memory://").router_.state, InProcessState)
    with pytest.raises(ConfigError, match="unknown state"):
        _ = ChatMixLLM(router=fit_router(), state="http://not-redis").router_


def test_unknown_candidate_name_is_rejected() -> None:
    from tests.router_fixture import fit_router

    llm = ChatMixLLM(router=fit_router(), candidates={"not-a-candidate": _candidate("x")})
    with pytest.raises(UnknownCandidateError):
        _ = llm.router_


def test_standard_params_reach_tracing() -> None:
    llm = ChatMixLLM(checkpoint_path="ck", temperature=0.2, max_tokens=7, stop=["END"])
    params = llm._get_ls_params()
    assert params == {"ls_provider": "mixllm", "ls_model_name": "mixllm", "ls_model_type": "chat",
                      "ls_temperature": 0.2, "ls_max_tokens": 7, "ls_stop": ["END"]}
    generation = llm._generation(None, {"model": "a", "tools": [1], "cost_weight": 3.0, "top_p": 0.5})
    assert generation == {"temperature": 0.2, "max_tokens": 7, "stop": ["END"], "top_p": 0.5}


def test_serialisation_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    llm = ChatMixLLM(checkpoint_path="router-ckpt", candidates={"a": _candidate("a"), "b": _candidate("b")},
                     cost_share=0.3, max_retries=1, stop=["END"])
    data = dumpd(llm)
    assert "test" not in str(data)  # the candidates' keys are secrets: never serialised
    back = load(data, allowed_objects=[ChatMixLLM, ChatOpenAI], secrets_from_env=True,
                valid_namespaces=["langchain_mixllm"])
    assert isinstance(back, ChatMixLLM)
    assert (back.checkpoint_path, back.cost_share, back.max_retries, back.stop) == ("router-ckpt", 0.3, 1, ["END"])
    assert sorted(back.candidates) == ["a", "b"]
    assert back.candidates["b"].model_name == "b"
