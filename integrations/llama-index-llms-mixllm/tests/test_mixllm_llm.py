"""MixLLM as a LlamaIndex LLM: metadata, complete/chat (sync, async, streaming), the decision in
additional_kwargs and in instrumentation events, ChatClient candidates and fallback."""

from __future__ import annotations

from typing import Any

import pytest
from li_testing import LARGE, SMALL, SelfNamingLLM
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent
from llama_index.llms.mixllm import MixLLM

from mixllm_router import ConfigError, MixLLMRouter

EASY = "what colour is the sky on a clear day?"
HARD = "prove that there are infinitely many prime numbers"


class Capture(BaseEventHandler):
    events: list[Any] = []

    @classmethod
    def class_name(cls) -> str:
        return "Capture"

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, (LLMCompletionEndEvent, LLMChatEndEvent)):
            self.events.append(event)

    def routed(self) -> list[Any]:
        """End events of MixLLM calls (the candidates' own LLM calls emit end events too)."""
        return [e for e in self.events if "decision_id" in e.response.additional_kwargs]


@pytest.fixture
def capture() -> Any:
    handler = Capture(events=[])
    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(handler)
    yield handler
    dispatcher.event_handlers.remove(handler)


def _llm(router: MixLLMRouter, **kw: Any) -> MixLLM:
    return MixLLM(router=router, candidates={SMALL: SelfNamingLLM(name=SMALL, window=4096),
                                             LARGE: SelfNamingLLM(name=LARGE, window=16384)}, **kw)


def test_metadata_has_the_smallest_window(router: MixLLMRouter) -> None:
    meta = _llm(router, num_output=128).metadata
    assert meta.context_window == 4096  # SelfNamingLLM small: 4096 < router pool windows (8000, 32000)
    assert (meta.num_output, meta.model_name, meta.is_chat_model) == (128, "mixllm", True)
    assert not meta.is_function_calling_model  # no candidate here takes tools


def test_needs_a_router(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIXLLM_CHECKPOINT", raising=False)
    with pytest.raises(ConfigError, match="checkpoint_path"):
        MixLLM().complete("hi")


def test_state_is_shared_as_configured(router: MixLLMRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXLLM_STATE", "redis://example.invalid:6379/0")
    assert MixLLM().state == "redis://example.invalid:6379/0"
    monkeypatch.delenv("MIXLLM_STATE")
    with pytest.raises(ConfigError, match="unknown state"):
        _llm(router, state="http://not-redis").complete("hi")


def test_complete_carries_the_decision(router: MixLLMRouter, capture: Capture) -> None:
    llm = _llm(router)
    for query, expected in ((EASY, SMALL), (HARD, LARGE)):
        response = llm.complete(query)
        extra = response.additional_kwargs
        assert extra["candidate"] == expected == extra["decision"]["chosen"]
        assert response.text.startswith(f"[{expected}]")
        assert extra["prompt_tokens"] >= len(query.split()) and extra["completion_tokens"] > 0  # measured by the candidate
        assert router.decisions.get(extra["decision_id"]).answered_by == expected
    ids = [e.response.additional_kwargs["decision_id"] for e in capture.routed()]
    assert len(ids) == 2 and all(router.decisions.get(i) is not None for i in ids)


def test_stream_complete(router: MixLLMRouter, capture: Capture) -> None:
    responses = list(_llm(router).stream_complete(HARD))
    assert "".join(r.delta for r in responses) == responses[-1].text
    assert responses[-1].text.startswith(f"[{LARGE}]")
    assert responses[-1].additional_kwargs["candidate"] == LARGE
    [event] = capture.routed()
    assert event.response.additional_kwargs["decision_id"] == responses[0].additional_kwargs["decision_id"]


def test_chat_keeps_the_turns(router: MixLLMRouter) -> None:
    messages = [ChatMessage(role="system", content="be brief"), ChatMessage(role="user", content=HARD),
                ChatMessage(role="assistant", content="ok"), ChatMessage(role="user", content=EASY)]
    response = _llm(router).chat(messages)
    assert response.additional_kwargs["candidate"] == SMALL  # routed on the last user turn
    assert response.message.content.startswith(f"[{SMALL}]") and EASY.split()[-1] in response.message.content
    streamed = list(_llm(router).stream_chat(messages))
    assert streamed[-1].message.content == response.message.content


async def test_async_variants(router: MixLLMRouter) -> None:
    llm = _llm(router)
    response = await llm.acomplete(HARD)
    assert response.additional_kwargs["candidate"] == LARGE
    pieces = [r async for r in await llm.astream_complete(EASY)]
    assert pieces[-1].text.startswith(f"[{SMALL}]") and pieces[-1].additional_kwargs["candidate"] == SMALL
    chat = await llm.achat([ChatMessage(role="user", content=HARD)])
    assert chat.message.content.startswith(f"[{LARGE}]")
    chunks = [c async for c in await llm.astream_chat([ChatMessage(role="user", content=EASY)])]
    assert chunks[-1].message.content.startswith(f"[{SMALL}]")


def test_chat_client_candidates_and_fallback(minilm: Any) -> None:
    from li_testing import fit_router

    from mixllm_router import TransientClientError
    from mixllm_router.clients import FakeClient

    router = fit_router(minilm)  # its own: the failing candidate cools down in this router only
    broken = FakeClient([TransientClientError("HTTP 503")] * 4, model_name=SMALL)
    llm = MixLLM(router=router, candidates={SMALL: broken, LARGE: SelfNamingLLM(name=LARGE)})
    response = llm.complete(EASY)  # SMALL is chosen and keeps failing: LARGE answers
    assert response.additional_kwargs["decision"]["chosen"] == SMALL
    assert response.additional_kwargs["candidate"] == LARGE and response.text.startswith(f"[{LARGE}]")
    assert router.decisions.get(response.additional_kwargs["decision_id"]).answered_by == LARGE
