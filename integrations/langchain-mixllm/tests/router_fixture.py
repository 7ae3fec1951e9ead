"""A small real router for the tests: fitted once per process on synthetic outcomes, saved to a
temporary checkpoint (removed at exit).

Two candidates: ``local-small`` (cheap, good at chit-chat and tool calls, poor at proofs and code)
and ``local-large`` (50x the price, good at everything). The HashingEncoder keeps it torch-free
and fitting takes a few seconds.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from mixllm_router import Candidate, MixLLMRouter, RoutingDataset

SMALL, LARGE = "local-small", "local-large"

_EASY = ["hello there", "hey how are you", "what is the weather like", "tell me a joke about cats",
         "what is magic_function(3)", "create a customer named Bob", "say hi politely", "thanks a lot"]
_HARD = ["prove that the square root of two is irrational", "write a python function for dijkstra shortest path",
         "derive the gradient of the softmax cross entropy loss", "implement a red black tree in rust",
         "prove the fundamental theorem of arithmetic", "write a sql query with window functions",
         "explain the proof of goedel incompleteness", "optimise this c++ code for cache locality"]


def training_records() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i in range(4):
        for text in _EASY:
            q = f"{text} (variant {i})"
            rows.append({"query": q, "model": SMALL, "quality": 0.92, "cost": 2e-5, "output_tokens": 40})
            rows.append({"query": q, "model": LARGE, "quality": 0.95, "cost": 1e-3, "output_tokens": 40})
        for text in _HARD:
            q = f"{text} (variant {i})"
            rows.append({"query": q, "model": SMALL, "quality": 0.15, "cost": 4e-5, "output_tokens": 300})
            rows.append({"query": q, "model": LARGE, "quality": 0.9, "cost": 2e-3, "output_tokens": 300})
    return rows


def fit_router() -> MixLLMRouter:
    candidates = [Candidate(name=SMALL, supports_tools=True, context_window=16_000),
                  Candidate(name=LARGE, supports_tools=True, context_window=128_000)]
    router = MixLLMRouter(candidates, config={"encoder": {"kind": "hashing", "use_cache": False}, "cost_weight": 300.0})
    return router.fit(RoutingDataset.from_records(training_records()), calibrate=False)


@functools.lru_cache(maxsize=1)
def checkpoint_path() -> str:
    folder = Path(tempfile.mkdtemp(prefix="langchain-mixllm-tests-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return str(fit_router().save(folder / "router"))
