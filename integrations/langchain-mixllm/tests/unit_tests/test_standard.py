"""LangChain's standard unit suite for ChatMixLLM (construction, binding, params, serialisation).

No test here calls a model, so the checkpoint path does not have to exist: ChatMixLLM loads its
router on first use only (that is what ``test_init_time`` guards).
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_mixllm import ChatMixLLM
from langchain_openai import ChatOpenAI
from langchain_tests.unit_tests import ChatModelUnitTests

CHECKPOINT = "router-checkpoint"


def _candidate(name: str) -> ChatOpenAI:
    return ChatOpenAI(model=name, api_key="test", base_url="http://127.0.0.1:9/v1", max_retries=0)


class TestChatMixLLMUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatMixLLM]:
        return ChatMixLLM

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "checkpoint_path": CHECKPOINT,
            "candidates": {"local-small": _candidate("local-small"), "local-large": _candidate("local-large")},
        }

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        # The checkpoint folder may come from $MIXLLM_CHECKPOINT; OPENAI_API_KEY is what the
        # serialised ChatOpenAI candidates are reloaded with (secrets are never serialised).
        return (
            {"MIXLLM_CHECKPOINT": CHECKPOINT, "OPENAI_API_KEY": "test"},
            {"candidates": {"local-small": _candidate("local-small")}},
            {"checkpoint_path": CHECKPOINT},
        )

    @property
    def model_override_value(self) -> str:
        return "local-large"

    @pytest.mark.xfail(
        reason="langchain-core 1.8 load(allowed_objects='all') revives only the classes of its built-in "
        "allowlist (langchain_core.load.mapping), which no third-party package is in. The first half of "
        "this test (dumpd == snapshot) passes; the round trip with allowed_objects=[ChatMixLLM, ChatOpenAI] "
        "is tested in test_chat_mixllm.py::test_serialisation_round_trip.",
        strict=True,
    )
    def test_serdes(self, *args: Any, **kwargs: Any) -> None:
        super().test_serdes(*args, **kwargs)
