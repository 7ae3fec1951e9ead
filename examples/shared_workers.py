"""Several workers, one router: shared load, feedback from any worker, a learner, live model updates.

What a deployment with several worker processes looks like (docs/shared_state.md), end to end on
RouterBench with replayed answers (no API keys):

1. train a router on the RouterBench train files and save it;
2. start a learner (here a thread of this process; in production ``mixllm learn``) that applies
   the shared feedback stream and publishes model versions;
3. start two worker processes that load the checkpoint and share state through Redis. Worker A
   answers test questions; worker B receives the users' thumbs up/down for A's answers (as a web
   app behind a load balancer would) and sends them to the stream;
4. both workers pick up the learner's new version without a restart.

    python examples/shared_workers.py --redis redis://localhost:6379/0 [--encoder hashing]

Needs a running redis-server (Debian: apt-get install redis-server).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import threading
import time
import uuid
from pathlib import Path

from mixllm_router import MixLLMRouter, load_routerbench
from mixllm_router.clients import ReplayClient
from mixllm_router.encoders import HashingEncoder
from mixllm_router.state import FeedbackLearner, RedisState

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routerbench"


def make_encoder(name: str) -> HashingEncoder | None:
    """``--encoder hashing``: a fast stand-in for tests; None: the checkpoint's own (MiniLM)."""
    return HashingEncoder() if name == "hashing" else None


def load_router(checkpoint: str, encoder: str) -> MixLLMRouter:
    return MixLLMRouter.load(checkpoint, encoder=make_encoder(encoder))


def worker_a(checkpoint: str, encoder: str, url: str, namespace: str, data: str, n: int, out: mp.Queue) -> None:
    """Answers questions; hands each decision id and the recorded verdict to the 'user' (worker B)."""
    router = load_router(checkpoint, encoder)
    state = router.share_state(url, namespace=namespace)
    test = load_routerbench(data, split="test")
    for name in router.candidate_names:
        router.set_client(name, ReplayClient.from_dataset(test, name, default="(no recorded answer)"))
    quality = dict(zip(test.query_ids, test.matrix("quality", router.candidate_names).tolist(), strict=True))
    verdicts = []
    for query_id, query in list(zip(test.query_ids, test.queries, strict=True))[:n]:
        reply = router.invoke(query, cost_share=0.25, max_tokens=64)
        recorded = quality[query_id][router.candidate_names.index(reply.candidate)]
        verdicts.append((reply.decision.decision_id, recorded >= 0.5))  # thumbs up when it was right
    # decisions reach Redis a few milliseconds after routing (a write-behind thread); users rate
    # later than that, here after close() has written the last of them
    state.close()
    for item in verdicts:
        out.put(item)
    out.put(None)


def worker_b(checkpoint: str, encoder: str, url: str, namespace: str, inbox: mp.Queue, out: mp.Queue) -> None:
    """Receives feedback for decisions it never made; then waits for a learner version holding it all."""
    router = load_router(checkpoint, encoder)
    state = router.share_state(url, namespace=namespace)
    sent = 0
    while (item := inbox.get()) is not None:
        decision_id, thumbs_up = item
        router.feedback(decision_id, thumbs_up)  # the decision is fetched from Redis
        sent += 1
    started_with = state.status().checkpoint_version
    deadline = time.monotonic() + 60
    while router.learning.n_events < sent and time.monotonic() < deadline:  # until a version holds them all
        state.wait_for_version(state.status().checkpoint_version + 1, timeout_s=5)
    out.put((sent, started_with, state.status().checkpoint_version, router.learning.n_events))
    state.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", required=True, help="redis://host:port/db")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--encoder", choices=["minilm", "hashing"], default="minilm")
    parser.add_argument("--questions", type=int, default=40)
    args = parser.parse_args()
    namespace = f"example-{uuid.uuid4().hex[:8]}"

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = str(Path(tmp) / "router")
        MixLLMRouter(encoder=make_encoder(args.encoder)).fit(load_routerbench(args.data, split="train")).save(checkpoint)
        print(f"trained and saved; sharing state under namespace {namespace!r} at {args.redis}")

        learner = FeedbackLearner(load_router(checkpoint, args.encoder), RedisState(args.redis, namespace=namespace),
                                  publish_every=args.questions, publish_interval_s=2.0)
        learner.start()  # version 1: the trained router
        stop = threading.Event()
        thread = threading.Thread(target=learner.run, kwargs={"stop": stop}, daemon=True)
        thread.start()

        ctx = mp.get_context("spawn")
        feedback, results = ctx.Queue(), ctx.Queue()
        a = ctx.Process(target=worker_a, args=(checkpoint, args.encoder, args.redis, namespace, args.data,
                                               args.questions, feedback))
        b = ctx.Process(target=worker_b, args=(checkpoint, args.encoder, args.redis, namespace, feedback, results))
        a.start(), b.start()
        sent, first, version, events = results.get(timeout=300)
        a.join(), b.join()
        stop.set()
        thread.join(timeout=30)
        print(f"worker B sent {sent} thumbs for worker A's answers")
        print(f"learner applied {learner.stats['applied']} events, published version {learner.version}")
        start = f"version {first}" if first else "the saved checkpoint"
        print(f"worker B started from {start} and now routes with published version {version} (no restart); "
              f"its model holds {events} feedback events")


if __name__ == "__main__":
    main()
