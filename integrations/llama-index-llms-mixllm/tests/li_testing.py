"""Test helpers: candidate LLMs that name themselves, and a small real router (MiniLM encoder)."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

from mixllm_router import Candidate, MixLLMRouter, RoutingDataset

SMALL, LARGE = "local-small", "local-large"

_EASY = ["hello there", "what colour is the sky", "what is the capital of france", "summarise this short note",
         "what does the document say about opening hours", "who wrote the report", "list the three fruits mentioned",
         "when does the library open"]
_HARD = ["prove that the square root of two is irrational", "write a python function for dijkstra shortest path",
         "derive the gradient of the softmax cross entropy loss", "implement a red black tree in rust",
         "prove the fundamental theorem of arithmetic", "write a sql query with window functions",
         "explain the proof of goedel incompleteness", "optimise this c++ code for cache locality"]


class SelfNamingLLM(CustomLLM):
    """A local LLM whose answer starts with its own name and quotes the end of its prompt.

    It reports usage in ``raw["usage"]`` (what LlamaIndexClient reads), one token per word.
    """

    name: str = "candidate"
    window: int = 4096
    prompts: list[str] = []  # every prompt this candidate answered (pydantic copies the default)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=self.window, num_output=256, model_name=self.name)

    def _answer(self, prompt: str) -> tuple[str, dict[str, int]]:
        self.prompts.append(prompt)
        tail = " ".join(prompt.split()[-12:])
        text = f"[{self.name}] Based on the context: {tail}"
        return text, {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text, usage = self._answer(prompt)
        return CompletionResponse(text=text, raw={"usage": usage})

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text, usage = self._answer(prompt)

        def gen() -> CompletionResponseGen:
            sofar = ""
            words = text.split(" ")
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                sofar += piece
                yield CompletionResponse(text=sofar, delta=piece, raw={"usage": usage} if i == len(words) - 1 else None)

        return gen()


def training_records() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i in range(4):
        for text in _EASY:
            q = f"{text} (variant {i})"
            rows.append({"query": q, "model": SMALL, "quality": 0.92, "cost": 2e-5})
            rows.append({"query": q, "model": LARGE, "quality": 0.95, "cost": 1e-3})
        for text in _HARD:
            q = f"{text} (variant {i})"
            rows.append({"query": q, "model": SMALL, "quality": 0.15, "cost": 4e-5})
            rows.append({"query": q, "model": LARGE, "quality": 0.9, "cost": 2e-3})
    return rows


def fit_router(encoder: Any) -> MixLLMRouter:
    candidates = [Candidate(name=SMALL, context_window=8_000), Candidate(name=LARGE, context_window=32_000)]
    router = MixLLMRouter(candidates, encoder=encoder, cost_weight=300.0, prior_strength=1.0)
    return router.fit(RoutingDataset.from_records(training_records()), calibrate=False)


def openai_compat_server() -> Any:
    """The rule-based OpenAI-compatible server of the LangChain integration's tests (127.0.0.1; it
    calls the tool a prompt names, fills JSON schemas, answers tool results), started."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "langchain-mixllm" / "tests" / "openai_compat_server.py"
    module = sys.modules.get("openai_compat_server")
    if module is None:
        spec = importlib.util.spec_from_file_location("openai_compat_server", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["openai_compat_server"] = module
        spec.loader.exec_module(module)
    return module.RuleBasedOpenAIServer().start()


class RouteSpy:
    """Records the text each ``router.route`` call scores (the real routing still runs)."""

    def __init__(self, router: MixLLMRouter) -> None:
        self.texts: list[str] = []
        inner = router.route

        def route(query: str, **kwargs: Any) -> Any:
            self.texts.append(query)
            return inner(query, **kwargs)

        router.route = route  # type: ignore[method-assign]
