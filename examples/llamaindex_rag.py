"""A LlamaIndex RAG query engine with the router as LLM and the router's local encoder
(all-MiniLM-L6-v2, bundled, offline) as the embedding model; feedback by decision id.

    python examples/llamaindex_rag.py

The script writes three small documents to a temporary folder, indexes them and asks questions
(plain and streaming). Offline by default: the router is fitted on a few synthetic outcomes and the
candidates are local extractive answerers that quote the best-matching context sentence. With
``OPENAI_API_KEY`` set the candidates are gpt-4o-mini and gpt-4o, with ``ANTHROPIC_API_KEY``
Claude Haiku and Sonnet (through mixllm's own clients). ``MIXLLM_CHECKPOINT`` loads a trained router.

Needs: pip install -e integrations/llama-index-llms-mixllm  (and mixllm-router[encoder])
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import llama_index.core

# tiktoken (LlamaIndex's default tokenizer) would download its BPE files: use the bundled copy.
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache"))

from llama_index.core import SimpleDirectoryReader, VectorStoreIndex  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent  # noqa: E402
from llama_index.embeddings.mixllm import MixLLMEmbedding  # noqa: E402
from llama_index.llms.mixllm import MixLLM  # noqa: E402

from mixllm_router import Candidate, MixLLMRouter, RoutingDataset  # noqa: E402
from mixllm_router.clients import CallableClient, Message  # noqa: E402

DOCUMENTS = {
    "library.txt": "The city library opens at 9 am and closes at 6 pm from Monday to Saturday. "
                   "On Sundays the library is closed. Members may borrow twelve books at a time.",
    "pool.txt": "The swimming pool has adult lanes every morning. Children's lessons run on "
                "Wednesday afternoons. The sauna is open in the evenings.",
    "recycling.txt": "Recycling is collected every second Tuesday. Glass goes in the green bin and "
                     "paper in the blue bin. Batteries go back to the shop.",
}


def extractive_answerer(name: str) -> CallableClient:
    """Offline stand-in for an LLM: quotes the context sentence sharing most words with the query."""

    def answer(messages: list[Message]) -> str:
        prompt = messages[-1].content or ""
        query = prompt.rsplit("Query:", 1)[-1]
        words = set(re.findall(r"\w+", query.lower()))
        sentences = re.split(r"(?<=[.!?])\s+|\n+", prompt.rsplit("Query:", 1)[0])
        best = max(sentences, key=lambda s: len(words & set(re.findall(r"\w+", s.lower()))))
        return f"[{name}] {best.strip()}"

    return CallableClient(answer, model_name=name)


def candidates() -> dict[str, tuple[Candidate, Any]]:
    if os.environ.get("OPENAI_API_KEY"):
        from mixllm_router.clients import OpenAIClient

        return {"small": (Candidate(name="small", input_price=0.15, output_price=0.6, context_window=128_000),
                          OpenAIClient("gpt-4o-mini")),
                "large": (Candidate(name="large", input_price=2.5, output_price=10.0, context_window=128_000),
                          OpenAIClient("gpt-4o"))}
    if os.environ.get("ANTHROPIC_API_KEY"):
        from mixllm_router.clients import AnthropicClient

        return {"small": (Candidate(name="small", input_price=1.0, output_price=5.0, context_window=200_000),
                          AnthropicClient("claude-haiku-4-5")),
                "large": (Candidate(name="large", input_price=3.0, output_price=15.0, context_window=200_000),
                          AnthropicClient("claude-sonnet-4-5"))}
    return {"small": (Candidate(name="small", input_price=0, output_price=0, context_window=8_000),  # local: free
                      extractive_answerer("small")),
            "large": (Candidate(name="large", input_price=0, output_price=0, context_window=32_000),
                      extractive_answerer("large"))}


def build_router(pool: list[Candidate]) -> MixLLMRouter:
    """A checkpoint when given; else a router fitted on synthetic outcomes (a demo, not a benchmark)."""
    if os.environ.get("MIXLLM_CHECKPOINT"):
        return MixLLMRouter.load(os.environ["MIXLLM_CHECKPOINT"])
    easy = ["when does the shop open", "which bin does paper go in", "what day is the market",
            "summarise the opening hours in the note", "how many books can I borrow", "who runs the lessons"]
    hard = ["prove that the square root of two is irrational", "write a python function for dijkstra",
            "derive the gradient of the softmax loss", "implement a lock-free queue in rust",
            "compare three proofs of the prime number theorem", "optimise this sql query plan"]
    records = []
    for i in range(4):
        for q in easy:
            records += [{"query": f"{q} ({i})", "model": "small", "quality": 0.9, "cost": 2e-5},
                        {"query": f"{q} ({i})", "model": "large", "quality": 0.95, "cost": 1e-3}]
        for q in hard:
            records += [{"query": f"{q} ({i})", "model": "small", "quality": 0.2, "cost": 4e-5},
                        {"query": f"{q} ({i})", "model": "large", "quality": 0.9, "cost": 2e-3}]
    router = MixLLMRouter(pool, config={"encoder": {"kind": "minilm", "use_cache": False}},
                          cost_weight=300.0, prior_strength=1.0)
    return router.fit(RoutingDataset.from_records(records), calibrate=False)


class DecisionIds(BaseEventHandler):
    """Reads the decision id MixLLM puts in each completion's ``additional_kwargs``."""

    ids: list[str] = []

    @classmethod
    def class_name(cls) -> str:
        return "DecisionIds"

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)) and "decision_id" in event.response.additional_kwargs:
            self.ids.append(event.response.additional_kwargs["decision_id"])


def main() -> None:
    pool = candidates()
    router = build_router([cand for cand, _ in pool.values()])
    llm = MixLLM(router=router, candidates={name: client for name, (_, client) in pool.items()})
    embed_model = MixLLMEmbedding.from_router(router)  # the same MiniLM the router routes with

    events = DecisionIds(ids=[])
    get_dispatcher().add_event_handler(events)
    with tempfile.TemporaryDirectory() as folder:
        for name, text in DOCUMENTS.items():
            Path(folder, name).write_text(text, encoding="utf-8")
        documents = SimpleDirectoryReader(folder).load_data()
        index = VectorStoreIndex.from_documents(documents, embed_model=embed_model)

    engine = index.as_query_engine(llm=llm, similarity_top_k=1)
    response = engine.query("What time does the library open and close?")
    print(f"A: {response}\n   source: {response.source_nodes[0].node.metadata['file_name']}")
    decision_id = events.ids[-1]
    record = router.decisions.get(decision_id)
    print(f"   answered by {record.answered_by}, decision {decision_id}")
    if hasattr(router, "feedback"):
        print(f"   thumbs-up recorded (feedback event #{router.feedback(decision_id, True)})")

    streaming = index.as_query_engine(llm=llm, similarity_top_k=1, streaming=True)
    response = streaming.query("Which bin does glass go in?")
    print("A (streamed): ", end="")
    for piece in response.response_gen:
        print(piece, end="", flush=True)
    print(f"\n   source: {response.source_nodes[0].node.metadata['file_name']}, "
          f"answered by {router.decisions.get(events.ids[-1]).answered_by}")
    get_dispatcher().event_handlers.remove(events)


if __name__ == "__main__":
    main()
