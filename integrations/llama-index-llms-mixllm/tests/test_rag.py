"""A real LlamaIndex RAG pipeline: VectorStoreIndex over local documents embedded with the router's
own MiniLM encoder, queried through MixLLM (plain and streaming); the answer comes from the
chosen candidate and its decision id, carried by LlamaIndex's instrumentation events, reaches the
router's decision log and takes feedback."""

from __future__ import annotations

from typing import Any

import pytest
from li_testing import LARGE, SMALL, SelfNamingLLM, fit_router
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent
from llama_index.embeddings.mixllm import MixLLMEmbedding
from llama_index.llms.mixllm import MixLLM

from mixllm_router import FeedbackError

pytestmark = pytest.mark.encoder

DOCS = [
    Document(text="The city library opens at 9 am and closes at 6 pm from Monday to Saturday. "
                  "On Sundays the library is closed.", metadata={"source": "library.txt"}),
    Document(text="The swimming pool has lanes for adults in the morning; children's lessons run "
                  "on Wednesday afternoons.", metadata={"source": "pool.txt"}),
    Document(text="Recycling is collected every second Tuesday; glass goes in the green bin.",
                  metadata={"source": "recycling.txt"}),
]


class DecisionIds(BaseEventHandler):
    ids: list[str] = []

    @classmethod
    def class_name(cls) -> str:
        return "DecisionIds"

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)) and "decision_id" in event.response.additional_kwargs:
            self.ids.append(event.response.additional_kwargs["decision_id"])


@pytest.fixture
def decision_ids() -> Any:
    handler = DecisionIds(ids=[])
    get_dispatcher().add_event_handler(handler)
    yield handler
    get_dispatcher().event_handlers.remove(handler)


@pytest.fixture(scope="module")
def setup(minilm: Any) -> Any:
    router = fit_router(minilm)  # its own: feedback below changes it
    small, large = SelfNamingLLM(name=SMALL), SelfNamingLLM(name=LARGE)
    llm = MixLLM(router=router, candidates={SMALL: small, LARGE: large})
    embed_model = MixLLMEmbedding.from_router(router)
    assert embed_model.encoder is minilm  # one encoder for routing and retrieval
    index = VectorStoreIndex.from_documents(DOCS, embed_model=embed_model)
    return router, llm, index, {SMALL: small, LARGE: large}


def test_rag_query_is_answered_by_the_chosen_candidate(setup: Any, decision_ids: DecisionIds) -> None:
    router, llm, index, candidates = setup
    engine = index.as_query_engine(llm=llm, similarity_top_k=1)
    response = engine.query("When does the library open?")
    assert response.source_nodes[0].node.metadata["source"] == "library.txt"  # MiniLM retrieval
    [decision_id] = decision_ids.ids
    record = router.decisions.get(decision_id)
    assert record is not None and record.answered_by in (SMALL, LARGE)
    assert str(response).startswith(f"[{record.answered_by}]")
    assert "9 am" in candidates[record.answered_by].prompts[-1]  # the retrieved context reached it
    seq = router.feedback(decision_id, True)
    assert isinstance(seq, int)
    with pytest.raises(FeedbackError):
        router.feedback(decision_id, 0.0)  # one verdict per answer


def test_streaming_rag_query(setup: Any, decision_ids: DecisionIds) -> None:
    router, llm, index, _ = setup
    engine = index.as_query_engine(llm=llm, similarity_top_k=1, streaming=True)
    response = engine.query("Which bin does glass go in?")
    text = "".join(response.response_gen)
    assert response.source_nodes[0].node.metadata["source"] == "recycling.txt"
    [decision_id] = decision_ids.ids
    record = router.decisions.get(decision_id)
    assert record is not None and text.startswith(f"[{record.answered_by}]")
    router.feedback(decision_id, 0.5)


async def test_async_rag_query(setup: Any, decision_ids: DecisionIds) -> None:
    router, llm, index, _ = setup
    response = await index.as_query_engine(llm=llm, similarity_top_k=1).aquery("When is the pool open for children?")
    assert response.source_nodes[0].node.metadata["source"] == "pool.txt"
    [decision_id] = decision_ids.ids
    assert str(response).startswith(f"[{router.decisions.get(decision_id).answered_by}]")


def test_embedding_is_normalised_minilm(minilm: Any) -> None:
    embed = MixLLMEmbedding(encoder=minilm)
    q = embed.get_query_embedding("library opening hours")
    texts = embed.get_text_embedding_batch([d.text for d in DOCS])
    assert len(q) == minilm.dim == 384 and abs(sum(v * v for v in q) - 1) < 1e-4
    scores = [sum(a * b for a, b in zip(q, t)) for t in texts]
    assert max(range(3), key=scores.__getitem__) == 0
