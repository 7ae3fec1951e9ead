"""What a failing candidate costs a ``ChatMixLLM`` call, now that it shares the router's cooldowns.

Four candidates behind a local HTTP server on 127.0.0.1 (``tests/servers.py``), real
``ChatOpenAI`` models (real openai SDK): the three ranked first answer 429, 500 and time out
(a 2 s reply against a 0.5 s timeout); the fourth answers. Each path makes ``--calls`` calls and
prints the seconds of each: ``ChatMixLLM.invoke`` and ``router.invoke`` (``OpenAIClient``s).

The first call pays for the failures (retries with backoff, then the next candidate); afterwards
the three are in cooldown (30 s by default) and are skipped, by both paths alike, since they share
one ``FallbackCaller``. Before issue #18 every ChatMixLLM call retried each failing candidate
(5.5–5.9 s per call, against 0.48 s through the router).

    python benchmarks/chat_cooldown.py [--calls 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "integrations" / "langchain-mixllm"))

from servers import Reply, ScriptedServer  # noqa: E402

from mixllm_router import Candidate, MixLLMRouter, RoutingDataset  # noqa: E402
from mixllm_router.clients import OpenAIClient  # noqa: E402

BAD = {"rate-limited": Reply.error(429, "slow down"), "broken": Reply.error(500, "oops"),
       "stuck": Reply.slow(2.0, "too late")}
GOOD = "healthy"


def fitted_router() -> MixLLMRouter:
    """The failing candidates are predicted best, so they are ranked first on every query."""
    rows = []
    for i in range(40):
        for j, name in enumerate([*BAD, GOOD]):
            rows.append({"query": f"question number {i}", "model": name, "quality": 0.95 - 0.1 * j, "cost": 1e-4})
    pool = [Candidate(name=n, input_price=1.0, output_price=1.0, context_window=32_000) for n in [*BAD, GOOD]]
    router = MixLLMRouter(pool, config={"encoder": {"kind": "hashing", "use_cache": False}, "cost_weight": 0.0})
    return router.fit(RoutingDataset.from_records(rows), calibrate=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()

    from langchain_mixllm import ChatMixLLM
    from langchain_openai import ChatOpenAI

    server = ScriptedServer().start()
    for name, reply in BAD.items():
        server.default[name] = reply
    server.default[GOOD] = Reply.ok("fine")
    try:
        chat_router = fitted_router()
        llm = ChatMixLLM(router=chat_router, candidates={
            n: ChatOpenAI(model=n, api_key="local", base_url=server.openai_url, max_retries=0, timeout=0.5)
            for n in [*BAD, GOOD]})
        plain = fitted_router()
        for n in [*BAD, GOOD]:
            plain.set_client(n, OpenAIClient(n, base_url=server.openai_url, api_key="local", timeout=0.5))
        for label, call in (("ChatMixLLM.invoke", lambda: llm.invoke("question number 3").response_metadata["model_name"]),
                            ("router.invoke", lambda: plain.invoke("question number 3").candidate)):
            times = []
            for _ in range(args.calls):
                t0 = time.perf_counter()
                answered = call()
                times.append(time.perf_counter() - t0)
                assert answered == GOOD, answered
            print(f"{label:<18} seconds per call: " + "  ".join(f"{t:.2f}" for t in times))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
