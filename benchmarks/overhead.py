"""Router overhead on the hot path: how much a MixLLM router adds on top of its query encoder.

A router sits in front of every LLM call, so what matters is the time it adds beyond the one thing
it cannot avoid, embedding the query (the *floor*: ``HFEncoder.encode`` of the same text). In one
run, with a router fitted on the RouterBench train files (11 candidates, all-MiniLM-L6-v2,
embeddings from the on-disk cache), this measures:

- ``route`` latency p50/p99 of a short query and of a 256-token query (each a query never seen
  before, so the encoder runs), next to the encoder's forward pass alone on the same texts; the
  router's own overhead is ``route − encode`` per query (p50 of the paired differences);
- the same with the default on-disk embedding cache (a miss writes a shard);
- an embedding-cache hit (the same query routed again);
- batch throughput: ``route_batch`` of 64 fresh queries vs ``encode`` of the same 64;
- one feedback update applied inline (no journal; journal with fsync);
- checkpoint save / load time and size;
- ``import mixllm_router`` in a fresh interpreter (median of several);
- peak memory: tracemalloc peak of loading the fitted router from its checkpoint, and the
  process's max RSS (torch and the MiniLM weights included).

Targets (2 CPU cores): routing adds < 2 ms p50 beyond the encoder for 11 candidates; batch routing
within 1.3× of the encoder's batch throughput; import < 0.5 s; a cache hit routes in < 1 ms.
``--profile`` adds a cProfile of ``route`` (cache hits, so only the router's own work shows).

The machine may be shared: the load average is printed with the figures; compare rows of one run.

Run:  python benchmarks/overhead.py [--cache-dir DIR] [--repeats 200] [--json out.json] [--profile]

``--backends`` instead compares the encoder backends (torch, ONNX fp32, ONNX int8) side by side in
one run, as ratios to torch (``benchmarks/backends.py``; ``--contention`` adds a busy neighbour).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

TARGETS = {
    "overhead_p50_ms": 2.0,
    "batch_ratio": 1.3,
    "import_s": 0.5,
    "cache_hit_p50_ms": 1.0,
}


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": 1e3 * _pct(values, 50), "p99_ms": 1e3 * _pct(values, 99), "n": len(values)}


def import_time(runs: int = 7) -> dict[str, float]:
    """``import mixllm_router`` in fresh interpreters: median and min over ``runs`` (seconds)."""
    code = "import time; t=time.perf_counter(); import mixllm_router; print(time.perf_counter()-t)"
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip()))
    heavy = subprocess.run(
        [sys.executable, "-c", "import sys, mixllm_router; print(','.join(sorted(m for m in "
         "('torch','transformers','sklearn','scipy','openai','anthropic','langchain_core','llama_index',"
         "'pandas') if m in sys.modules)))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": runs, "heavy_modules": heavy}


def _texts(test_queries: list[str], count_tokens: Any, n: int, lo: int, hi: int | None, tag: str) -> list[str]:
    """``n`` distinct texts with ``lo <= tokens < hi``, built from real test prompts.

    Each gets a unique prefix so that no cache (memory or disk) has seen it before.
    """
    pool = [q for q in test_queries if count_tokens(q) >= lo and (hi is None or count_tokens(q) < hi)]
    if not pool:
        raise SystemExit(f"no test prompt with {lo} <= tokens < {hi}")
    stamp = f"{os.getpid()}-{time.time_ns()}"
    return [f"[{tag} {stamp} {i}] {pool[i % len(pool)]}" for i in range(n)]


def run(cache_dir: Path, repeats: int, profile: bool, threads: int | None = None,
        partial: Path | None = None) -> dict[str, Any]:
    from mixllm_router import MixLLMRouter, load_routerbench
    from mixllm_router.encoders import CachedEncoder, HFEncoder

    warnings.simplefilter("ignore")
    results: dict[str, Any] = {"load_avg_start": os.getloadavg(), "cpus": os.cpu_count()}

    def save_partial() -> None:  # a slow run on a busy machine keeps what it measured so far
        if partial is not None:
            partial.write_text(json.dumps(results, indent=2, default=str))

    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        results["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        pass

    t0 = time.perf_counter()
    train = load_routerbench(split="train")
    test = load_routerbench(split="test")
    inner = HFEncoder()
    disk = CachedEncoder(inner, cache_dir / "embeddings")
    emb, _ = MixLLMRouter(encoder=disk).embed(train.queries)  # cache hits after the first run
    results["setup_s"] = time.perf_counter() - t0

    # route with a memory-only cache in front of the encoder: every fresh query runs the encoder
    router = MixLLMRouter(encoder=CachedEncoder(inner, None))
    t0 = time.perf_counter()
    router.fit(train, embeddings=emb, calibrate=False)
    results["fit_s"] = time.perf_counter() - t0
    results["candidates"] = len(router.candidate_names)
    results["bank_rows"] = int(router.bank_.shape[0])

    inner.encode(["warm up the model"])
    router.route("warm up the router")
    test_q = test.queries

    # -- single queries: route vs the encoder alone on the same text -----------------------------
    for label, lo, hi in (("short", 4, 40), ("256-token", 300, None)):
        texts = _texts(test_q, inner.count_tokens, 2 * repeats, lo, hi, label)
        enc_t, route_t, diff, cdiff, cenc = [], [], [], [], []
        pt = time.process_time  # CPU time of the process: less sensitive to a shared machine's load
        for i in range(repeats):
            a, b = texts[2 * i], texts[2 * i + 1]
            c0, t0 = pt(), time.perf_counter()
            inner.encode([a])
            c1, t1 = pt(), time.perf_counter()
            router.route(a)  # a is new to the router's cache
            c2, t2 = pt(), time.perf_counter()
            # alternate the order so drift in machine load hits both sides alike
            router.route(b)
            c3, t3 = pt(), time.perf_counter()
            inner.encode([b])
            c4, t4 = pt(), time.perf_counter()
            enc_t += [t1 - t0, t4 - t3]
            route_t += [t2 - t1, t3 - t2]
            diff += [(t2 - t1) - (t1 - t0), (t3 - t2) - (t4 - t3)]
            cenc += [c1 - c0, c4 - c3]
            cdiff += [(c2 - c1) - (c1 - c0), (c3 - c2) - (c4 - c3)]
        tokens = [min(inner.count_tokens(t), inner.max_tokens) for t in texts[:10]]
        results[f"route_{label}"] = {
            "encode": _ms(enc_t), "route": _ms(route_t),
            "overhead_p50_ms": 1e3 * _pct(diff, 50), "overhead_p99_ms": 1e3 * _pct(diff, 99),
            "tokens_fed": int(np.median(tokens)),
            "encode_cpu_p50_ms": 1e3 * _pct(cenc, 50), "overhead_cpu_p50_ms": 1e3 * _pct(cdiff, 50),
        }

    save_partial()
    # -- the default setup: the on-disk cache (a miss writes a shard, compaction every 32) --------
    with tempfile.TemporaryDirectory() as tmp:
        disk_router = MixLLMRouter(encoder=CachedEncoder(inner, Path(tmp)))
        disk_router.predictors_, disk_router.bank_ = router.predictors_, router.bank_
        disk_router.pool = router.pool
        texts = _texts(test_q, inner.count_tokens, repeats, 4, 40, "disk")
        times = []
        for t in texts:
            t0 = time.perf_counter()
            disk_router.route(t)
            times.append(time.perf_counter() - t0)
        results["route_short_disk_cache"] = _ms(times)

    save_partial()
    # -- cache hit: the same query again ---------------------------------------------------------
    hit_texts = _texts(test_q, inner.count_tokens, 50, 4, 40, "hit")
    for t in hit_texts:
        router.route(t)
    times, cpu = [], []
    for _ in range(max(1, repeats // 50)):
        for t in hit_texts:
            c0, t0 = time.process_time(), time.perf_counter()
            router.route(t)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    results["route_cache_hit"] = {**_ms(times), "cpu_p50_ms": 1e3 * _pct(cpu, 50)}
    # where a hit's time goes: the tokenizer (count_tokens) and the rest
    times = []
    for t in hit_texts:
        t0 = time.perf_counter()
        router.encoder.count_tokens(t)
        times.append(time.perf_counter() - t0)
    results["count_tokens"] = _ms(times)
    # what a hit costs without the tokenizer call (route with a precomputed embedding)
    e1, _ = router.embed(hit_texts[:1])
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        router.route_batch(hit_texts[:1], embeddings=e1)
        times.append(time.perf_counter() - t0)
    results["route_given_embedding"] = _ms(times)

    save_partial()
    # -- batch throughput ------------------------------------------------------------------------
    n_batches = max(3, repeats // 40)
    texts = _texts(test_q, inner.count_tokens, 2 * 64 * n_batches, 0, None, "batch")
    enc_s = route_s = 0.0
    for b in range(n_batches):
        a, c = texts[128 * b : 128 * b + 64], texts[128 * b + 64 : 128 * b + 128]
        t0 = time.perf_counter()
        inner.encode(a)
        t1 = time.perf_counter()
        router.route_batch(c)
        t2 = time.perf_counter()
        enc_s += t1 - t0
        route_s += t2 - t1
    q = 64 * n_batches
    results["batch64"] = {
        "encode_qps": q / enc_s, "route_qps": q / route_s, "ratio": route_s / enc_s, "batches": n_batches,
    }

    save_partial()
    # -- one feedback update inline --------------------------------------------------------------
    fb: dict[str, Any] = {}
    if hasattr(router, "feedback"):
        fb_texts = _texts(test_q, inner.count_tokens, 200, 0, None, "fb")
        fb_emb, _ = router.embed(fb_texts)
        with tempfile.TemporaryDirectory() as tmp:
            for label, learning in (("no_journal", {}),
                                    ("journal_fsync", {"journal_path": str(Path(tmp) / "fb.jsonl")})):
                r = MixLLMRouter(config={"learning": learning}, encoder=router.encoder).fit(
                    train, embeddings=emb, calibrate=False)
                decisions = r.route_batch(fb_texts, embeddings=fb_emb)
                times = []
                for i, d in enumerate(decisions):
                    t0 = time.perf_counter()
                    r.feedback(d.decision_id, i % 2 == 0)
                    times.append(time.perf_counter() - t0)
                fb[label] = _ms(times)
                r.learning.close()
    results["feedback"] = fb or None

    save_partial()
    # -- checkpoint ------------------------------------------------------------------------------
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt"
        saves, loads = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            router.save(path)
            saves.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            loaded = MixLLMRouter.load(path, encoder=router.encoder)
            loads.append(time.perf_counter() - t0)
        size = sum(f.stat().st_size for f in path.iterdir())
        import tracemalloc

        tracemalloc.start()
        loaded = MixLLMRouter.load(path, encoder=router.encoder)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        state = loaded.bank_.nbytes + sum(
            v.nbytes for m in loaded.predictors_.values() for v in m.state_arrays().values())
        results["checkpoint"] = {
            "save_ms": 1e3 * statistics.median(saves), "load_ms": 1e3 * statistics.median(loads),
            "size_mb": size / 2**20, "load_peak_mb": peak / 2**20, "state_mb": state / 2**20,
        }

    import resource

    results["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["import"] = import_time()
    results["load_avg_end"] = os.getloadavg()

    if profile:
        import cProfile
        import io
        import pstats

        pr = cProfile.Profile()
        pr.enable()
        for _ in range(20):
            for t in hit_texts:
                router.route(t)
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(25)
        results["profile_cache_hit"] = s.getvalue()
    return results


def table(r: dict[str, Any]) -> str:
    def ok(value: float, target: float) -> str:
        return "yes" if value < target else "**no**"

    la0 = ", ".join(f"{x:.1f}" for x in r["load_avg_start"])
    la1 = ", ".join(f"{x:.1f}" for x in r["load_avg_end"])
    lines = [
        f"Router: {r['candidates']} candidates, bank {r['bank_rows']} rows, all-MiniLM-L6-v2 (384-d); "
        f"{r['cpus']} CPUs, torch threads {r.get('torch_threads', '?')}; "
        f"load average {la0} (start) / {la1} (end)",
        "",
        "| measure | router | floor (encoder alone) | router's own | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label in ("short", "256-token"):
        x = r[f"route_{label}"]
        lines.append(
            f"| route, {label} query, CPU time p50 | | {x['encode_cpu_p50_ms']:.2f} ms | "
            f"{x['overhead_cpu_p50_ms']:+.2f} ms | < 2 ms | {ok(x['overhead_cpu_p50_ms'], TARGETS['overhead_p50_ms'])} |")
        lines.append(
            f"| route, {label} query ({x['tokens_fed']} tokens fed), p50 | {x['route']['p50_ms']:.2f} ms | "
            f"{x['encode']['p50_ms']:.2f} ms | {x['overhead_p50_ms']:+.2f} ms | < 2 ms | "
            f"{ok(x['overhead_p50_ms'], TARGETS['overhead_p50_ms'])} |")
        lines.append(
            f"| route, {label} query, p99 | {x['route']['p99_ms']:.2f} ms | {x['encode']['p99_ms']:.2f} ms | "
            f"{x['overhead_p99_ms']:+.2f} ms | | |")
    d = r["route_short_disk_cache"]
    lines.append(f"| route, short, default disk cache (miss writes a shard), p50 / p99 | "
                 f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f} ms | | | | |")
    h = r["route_cache_hit"]
    lines.append(f"| route, embedding-cache hit, p50 / p99 | {h['p50_ms']:.3f} / {h['p99_ms']:.3f} ms | | | "
                 f"< 1 ms | {ok(h['p50_ms'], TARGETS['cache_hit_p50_ms'])} |")
    lines.append(f"| route, embedding-cache hit, CPU time p50 | {h['cpu_p50_ms']:.3f} ms | | | < 1 ms | "
                 f"{ok(h['cpu_p50_ms'], TARGETS['cache_hit_p50_ms'])} |")
    lines.append(f"| of which: tokenizer call for the prompt's token count (count_tokens), p50 | "
                 f"{r['count_tokens']['p50_ms']:.3f} ms | | | | |")
    g = r["route_given_embedding"]
    lines.append(f"| route_batch of 1 with its embedding given, p50 | {g['p50_ms']:.3f} ms | | | | |")
    b = r["batch64"]
    lines.append(f"| route_batch(64) throughput | {b['route_qps']:.0f} q/s | {b['encode_qps']:.0f} q/s | "
                 f"{b['ratio']:.2f}× the encoder's time | ≤ 1.3× | {ok(b['ratio'], TARGETS['batch_ratio'] + 1e-9)} |")
    if r.get("feedback"):
        for label, x in r["feedback"].items():
            lines.append(f"| feedback update inline ({label.replace('_', ' ')}), p50 / p99 | "
                         f"{x['p50_ms']:.2f} / {x['p99_ms']:.2f} ms | | | | |")
    c = r["checkpoint"]
    lines.append(f"| checkpoint save / load | {c['save_ms']:.0f} / {c['load_ms']:.0f} ms | | | | |")
    lines.append(f"| checkpoint size | {c['size_mb']:.1f} MB | | | | |")
    lines.append(f"| memory: fitted state / tracemalloc peak of load / process max RSS | "
                 f"{c['state_mb']:.1f} / {c['load_peak_mb']:.1f} / {r['max_rss_mb']:.0f} MB | | | | |")
    i = r["import"]
    lines.append(f"| `import mixllm_router` (fresh interpreter, median of {i['runs']}) | {i['median_s']:.3f} s "
                 f"(min {i['min_s']:.3f}) | | | < 0.5 s | {ok(i['median_s'], TARGETS['import_s'])} |")
    lines.append("")
    lines.append(f"Heavy modules loaded by the import: {i['heavy_modules'] or 'none'}. "
                 f"Fit (calibrate=False, cached embeddings): {r['fit_s']:.1f} s.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="embedding cache root (default: $MIXLLM_CACHE_DIR or ~/.cache/mixllm-router)")
    parser.add_argument("--repeats", type=int, default=200, help="queries per latency row")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of route on cache hits")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, = cores)")
    parser.add_argument("--backends", action="store_true", help="compare torch / onnx / onnx-int8 side by side")
    parser.add_argument("--contention", action="store_true", help="with --backends: also beside a busy process")
    args = parser.parse_args(argv)
    if args.cache_dir is None:
        from mixllm_router.encoders import default_cache_dir

        args.cache_dir = default_cache_dir()
    if args.backends:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import backends

        compared = backends.run(args.cache_dir, args.repeats, args.contention, args.json)
        print(backends.table(compared))
        if args.json:
            args.json.write_text(json.dumps(compared, indent=2, default=str))
        return
    results = run(args.cache_dir, args.repeats, args.profile, args.threads, args.json)
    print(table(results))
    if args.profile:
        print("\ncProfile of route() on embedding-cache hits:\n")
        print(results["profile_cache_hit"])
    if args.json:
        args.json.write_text(json.dumps({k: v for k, v in results.items()}, indent=2, default=str))


if __name__ == "__main__":
    main()
