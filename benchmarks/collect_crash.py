"""Crash safety of `collect`: SIGKILL at random moments, rerun, count duplicate paid calls and lost results.

A local OpenAI-compatible server (tests/servers.py, real HTTP, replies delayed 20–80 ms) answers
three candidates. A child process runs `collect` on --queries queries through the real openai
SDK; the parent kills it with SIGKILL at a random moment (0–1 s after the run's first request
reaches the server), --kills times, then lets a last run finish. After each kill it reads the results file. It counts:

* lost results: a (query, model) finished before a kill (a `done` line) and missing afterwards;
* duplicate paid calls: a request the server received for a (query, model) whose result was
  already finished when that run started (must be 0);
* in-flight calls re-made: requests the server received in a killed run with no result recorded,
  made again by the next run. This is expected: whether the lost request was charged cannot be
  known from the client, and collect reports it (`in_flight_at_crash`).

    python benchmarks/collect_crash.py [--queries 60] [--kills 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

MODELS = ("m-a", "m-b", "m-c")


def child(url: str, queries: str, out: str) -> None:
    from mixllm_router import Candidate
    from mixllm_router.clients import OpenAIClient
    from mixllm_router.scoring import ExactMatch, collect

    pairs = [(Candidate(name=m, input_price=1.0, output_price=2.0, max_concurrency=4),
              OpenAIClient(m, base_url=url, api_key="sk-local")) for m in MODELS]
    collect(queries, pairs, ExactMatch(), out, progress=False)


def _qid(body: dict) -> str:
    messages = body.get("messages") or [{"content": "question ?"}]
    return "q" + str(messages[-1]["content"]).split()[-1]


def done_keys(results: Path) -> set[tuple[str, str]]:
    """(query_id, model) of every finished call in the results file (a torn last line skipped)."""
    out: set[tuple[str, str]] = set()
    if not results.exists():
        return out
    for line in results.read_bytes().split(b"\n"):
        try:
            r = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if r.get("status") == "done":
            out.add((r["query_id"], r["model"]))
    return out


def run(n_queries: int, kills: int, seed: int) -> dict[str, int]:
    from servers import Reply, ScriptedServer

    rng = random.Random(seed)
    server = ScriptedServer().start()
    server.responder = lambda model, body: Reply.ok(
        f"answer {_qid(body)[1:]}", usage=(30, 5), delay_s=rng.uniform(0.02, 0.08))
    tmp = Path(tempfile.mkdtemp(prefix="collect-crash-"))
    queries = tmp / "q.jsonl"
    queries.write_text("".join(json.dumps({"query_id": f"q{i}", "query": f"question {i}", "reference": f"answer {i}"})
                               + "\n" for i in range(n_queries)))
    out, results = tmp / "o.csv", tmp / "o.csv.calls.jsonl"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    counts: Counter[str] = Counter({k: 0 for k in ("lost_results", "duplicate_paid_calls", "in_flight_lost_in_kill")})
    finished_before: set[tuple[str, str]] = set()
    try:
        for attempt in range(kills + 1):
            seen = len(server.requests)
            proc = subprocess.Popen([sys.executable, __file__, "--child", server.openai_url, str(queries), str(out)],
                                    env=env)
            killed = False
            if attempt < kills:
                while proc.poll() is None and len(server.requests) == seen:  # imports done, calls begun
                    time.sleep(0.005)
                deadline = time.monotonic() + rng.uniform(0.0, 1.0)
                while proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.005)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    killed = True
            proc.wait()
            counts["runs"] += 1
            counts["killed"] += killed
            finished = done_keys(results)
            counts["lost_results"] += len(finished_before - finished)
            for _, _, body in server.requests[seen:]:
                if not body.get("messages"):  # the client died while sending it
                    counts["torn_requests"] += 1
                    continue
                key = (_qid(body), body["model"])
                counts["requests"] += 1
                if key in finished_before:
                    counts["duplicate_paid_calls"] += 1
                elif killed and key not in finished:
                    counts["in_flight_lost_in_kill"] += 1
            finished_before = finished
            if not killed and proc.returncode == 0:
                break
        counts["finished_results"] = len(finished_before)
        counts["expected_results"] = n_queries * len(MODELS)
        per_key = Counter((_qid(b), b["model"]) for _, _, b in server.requests if b.get("messages"))
        counts["pairs_called_more_than_once"] = sum(1 for v in per_key.values() if v > 1)
    finally:
        server.stop()
    return dict(counts)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--kills", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    counts = run(args.queries, args.kills, args.seed)
    for k, v in counts.items():
        print(f"{k:<32} {v}")


if __name__ == "__main__":
    main()
