"""A LangChain chain with the router as its chat model, then a thumbs-up by LangChain run id.

    python examples/langchain_chain.py

Offline by default: the router is fitted on a few synthetic outcomes and the two candidates are
local stand-ins that say who they are. With ``OPENAI_API_KEY`` set (and ``langchain-openai``
installed) the candidates are gpt-4o-mini and gpt-4o; with ``ANTHROPIC_API_KEY`` (and
``langchain-anthropic``) Claude Haiku and Sonnet. Set ``MIXLLM_CHECKPOINT`` to a folder written by
``mixllm train`` / ``router.save`` to route with a router trained on real outcomes (its candidate
names must then match the ones below).

Needs: pip install -e integrations/langchain-mixllm
"""

from __future__ import annotations

import os
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_mixllm import ChatMixLLM

from mixllm_router import Candidate, MixLLMRouter, RoutingDataset


class OfflineChat(BaseChatModel):
    """Stand-in for a provider when no API key is set: answers with its own name."""

    name_: str
    words: int = 12

    @property
    def _llm_type(self) -> str:
        return "offline-stand-in"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        question = messages[-1].text
        text = f"[{self.name_}] " + " ".join(f"Answer to: {question}".split()[: self.words])
        usage = {"input_tokens": len(question.split()), "output_tokens": len(text.split()),
                 "total_tokens": len(question.split()) + len(text.split())}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text, usage_metadata=usage))])


def candidates() -> dict[str, tuple[Candidate, BaseChatModel]]:
    """(router candidates with prices per million tokens, the chat models that serve them)."""
    if os.environ.get("OPENAI_API_KEY"):
        from langchain_openai import ChatOpenAI

        return {"small": (Candidate(name="small", input_price=0.15, output_price=0.6),
                          ChatOpenAI(model="gpt-4o-mini", max_retries=0)),
                "large": (Candidate(name="large", input_price=2.5, output_price=10.0),
                          ChatOpenAI(model="gpt-4o", max_retries=0))}
    if os.environ.get("ANTHROPIC_API_KEY"):
        from langchain_anthropic import ChatAnthropic

        return {"small": (Candidate(name="small", input_price=1.0, output_price=5.0),
                          ChatAnthropic(model="claude-haiku-4-5", max_retries=0)),
                "large": (Candidate(name="large", input_price=3.0, output_price=15.0),
                          ChatAnthropic(model="claude-sonnet-4-5", max_retries=0))}
    return {"small": (Candidate(name="small", input_price=0, output_price=0), OfflineChat(name_="small")),  # local: free
            "large": (Candidate(name="large", input_price=0, output_price=0), OfflineChat(name_="large", words=40))}


def build_router(pool: list[Candidate]) -> MixLLMRouter:
    """A checkpoint when given; else a router fitted on synthetic outcomes (a demo, not a benchmark):
    "small" does well on greetings and facts and badly on proofs and code; "large" does well on all,
    at 50x the price."""
    if os.environ.get("MIXLLM_CHECKPOINT"):
        return MixLLMRouter.load(os.environ["MIXLLM_CHECKPOINT"])
    easy = ["say hello to the team", "what is the capital of italy", "translate thank you into french",
            "give me a synonym for happy"]
    hard = ["prove that the square root of two is irrational", "write a python function for dijkstra",
            "derive the gradient of the softmax loss", "implement a lock-free queue in rust"]
    records = []
    for i in range(6):
        for q in easy:
            records += [{"query": f"{q} ({i})", "model": "small", "quality": 0.9, "cost": 2e-5},
                        {"query": f"{q} ({i})", "model": "large", "quality": 0.95, "cost": 1e-3}]
        for q in hard:
            records += [{"query": f"{q} ({i})", "model": "small", "quality": 0.2, "cost": 4e-5},
                        {"query": f"{q} ({i})", "model": "large", "quality": 0.9, "cost": 2e-3}]
    router = MixLLMRouter(pool, config={"encoder": {"kind": "hashing", "use_cache": False}, "cost_weight": 300.0})
    return router.fit(RoutingDataset.from_records(records), calibrate=False)


class ChatRunIds(BaseCallbackHandler):
    """Collects the run id of every ChatMixLLM call: the key feedback is given with."""

    def __init__(self) -> None:
        self.run_ids: list[UUID] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if (serialized or {}).get("id", [""])[-1] == "ChatMixLLM":
            self.run_ids.append(run_id)


def main() -> None:
    pool = candidates()
    router = build_router([cand for cand, _ in pool.values()])
    llm = ChatMixLLM(router=router, candidates={name: model for name, (_, model) in pool.items()}, max_tokens=200)
    chain = ChatPromptTemplate.from_messages([("system", "Answer briefly."), ("human", "{question}")]) \
        | llm | StrOutputParser()

    for question in ("What is the capital of Italy?", "Prove that the square root of two is irrational."):
        runs = ChatRunIds()
        answer = chain.invoke({"question": question}, config={"callbacks": [runs]})
        run_id = runs.run_ids[-1]
        record = router.decisions.get(str(run_id))
        assert record is not None, "every ChatMixLLM run id finds its decision"
        print(f"Q: {question}\nA: {answer}\n   answered by {record.answered_by}, run id {run_id}")
        if hasattr(router, "feedback"):
            seq = router.feedback(str(run_id), True)  # the user liked this answer
            print(f"   thumbs-up recorded (feedback event #{seq})")

    # The routing decision also travels with each message, for logs and dashboards:
    message = llm.invoke("Say hello to the team.")
    info = message.response_metadata["mixllm"]
    print(f"\nmodel_name={message.response_metadata['model_name']}  decision_id={info['decision_id']}")
    for score in info["scores"]:
        print(f"   {score['name']:<6} quality={score['quality']:.3f} cost=${score['cost_usd']:.6f} "
              f"score={score['score']}")


if __name__ == "__main__":
    main()
