"""Route and call: train on RouterBench's recorded outcomes, then answer questions through the router.

Each candidate is called through a real provider when its API key is set (OpenAI for the GPT
models, Anthropic for the Claude ones), and otherwise through a replay client that answers with the
model's recorded RouterBench response. So the script runs with no keys at all.

    python examples/route_and_call.py                      # replay only, MiniLM embeddings
    python examples/route_and_call.py --encoder hashing    # torch-free and fast
    OPENAI_API_KEY=... python examples/route_and_call.py   # GPT candidates answer for real
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mixllm_router import Candidate, MixLLMRouter, load_routerbench
from mixllm_router.clients import AnthropicClient, OpenAIClient, ReplayClient

# USD per million tokens (input, output): list prices of the RouterBench models, used for cost
# accounting of replayed calls. Replace them with your own contract prices.
PRICES = {
    "gpt-4-1106-preview": (10.0, 30.0),
    "gpt-3.5-turbo-1106": (1.0, 2.0),
    "claude-instant-v1": (0.8, 2.4),
    "claude-v1": (8.0, 24.0),
    "claude-v2": (8.0, 24.0),
    "meta/llama-2-70b-chat": (0.9, 0.9),
    "mistralai/mixtral-8x7b-chat": (0.6, 0.6),
    "zero-one-ai/Yi-34B-Chat": (0.8, 0.8),
    "WizardLM/WizardLM-13B-V1.2": (0.3, 0.3),
    "meta/code-llama-instruct-34b-chat": (0.776, 0.776),
    "mistralai/mistral-7b-chat": (0.2, 0.2),
}
# The live model that stands in for each recorded one when its provider's key is set.
LIVE = {
    "gpt-4-1106-preview": ("openai", "gpt-4-turbo"),
    "gpt-3.5-turbo-1106": ("openai", "gpt-3.5-turbo"),
    "claude-instant-v1": ("anthropic", "claude-3-5-haiku-latest"),
    "claude-v2": ("anthropic", "claude-3-5-sonnet-latest"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/routerbench"))
    parser.add_argument("--encoder", choices=["minilm", "hashing"], default="minilm")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N training prompts only")
    parser.add_argument("--cost-share", type=float, default=0.25)
    args = parser.parse_args()

    train = load_routerbench(args.data, split="train")
    test = load_routerbench(args.data, split="test")
    if args.limit:
        train = train.subset(train.query_ids[: args.limit])
    encoder = None
    if args.encoder == "hashing":
        from mixllm_router.encoders import HashingEncoder

        encoder = HashingEncoder()

    candidates = [Candidate(name=m, input_price=PRICES.get(m, (0, 0))[0], output_price=PRICES.get(m, (0, 0))[1])
                  for m in train.models]
    router = MixLLMRouter(candidates, encoder=encoder).fit(train)

    for name in router.candidate_names:
        provider, live_model = LIVE.get(name, (None, None))
        if provider == "openai" and os.environ.get("OPENAI_API_KEY"):
            router.set_client(name, OpenAIClient(live_model))
            print(f"{name:<36} -> OpenAI {live_model}")
        elif provider == "anthropic" and os.environ.get("ANTHROPIC_API_KEY"):
            router.set_client(name, AnthropicClient(live_model))
            print(f"{name:<36} -> Anthropic {live_model}")
        else:
            router.set_client(name, ReplayClient.from_dataset(test, name, default="(no recorded answer)"))
            print(f"{name:<36} -> replay of recorded answers")

    total = 0.0
    for query in test.queries[:3]:
        reply = router.invoke(query, cost_share=args.cost_share, max_tokens=256)
        total += reply.cost_usd
        question = query.strip().splitlines()[-3:]
        print("\n" + "=" * 80)
        print("question (end):", " / ".join(question)[:200])
        print(reply.decision.explain())
        print(f"answered by {reply.candidate} in {reply.latency_s * 1000:.1f} ms for ${reply.cost_usd:.6f}")
        print("answer:", reply.text.strip()[:200])
    print(f"\ntotal cost of the three calls: ${total:.6f}")


if __name__ == "__main__":
    main()
