"""LangChain's standard integration suite for ChatMixLLM.

The candidates are real ``langchain_openai.ChatOpenAI`` models (real openai SDK, real HTTP) served
by a rule-based OpenAI-compatible server on 127.0.0.1 (tests/openai_compat_server.py), behind a
real router fitted on synthetic outcomes (tests/router_fixture.py).
"""

from __future__ import annotations

import atexit
import functools
from typing import Any

import openai
from langchain_mixllm import ChatMixLLM
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests

from tests.openai_compat_server import RuleBasedOpenAIServer
from tests.router_fixture import LARGE, SMALL, checkpoint_path


@functools.lru_cache(maxsize=1)
def server() -> RuleBasedOpenAIServer:
    srv = RuleBasedOpenAIServer().start()
    atexit.register(srv.stop)
    return srv


def candidate(name: str) -> ChatOpenAI:
    # SDK retries off: ChatMixLLM owns the retry / fallback loop. A fresh async HTTP client per model:
    # langchain-openai caches one per base URL, which breaks once its event loop has closed.
    return ChatOpenAI(model=name, api_key="local", base_url=server().base_url, max_retries=0, stream_usage=True,
                      http_async_client=openai.DefaultAsyncHttpxClient())


class TestChatMixLLMIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatMixLLM]:
        return ChatMixLLM

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"checkpoint_path": checkpoint_path(), "candidates": {SMALL: candidate(SMALL), LARGE: candidate(LARGE)}}

    @property
    def supports_json_mode(self) -> bool:
        # with_structured_output(method="json_mode") sends response_format to the candidates that take it
        return True

    @property
    def model_override_value(self) -> str:
        # `model=` pins the call to one candidate (no routing among the others).
        return LARGE
