"""The encoder backends side by side (torch, ONNX fp32, ONNX int8), in one run, as ratios to torch.

Called by ``python benchmarks/overhead.py --backends`` (or run directly). One router is fitted on
the RouterBench train files and saved; each backend then loads that checkpoint, with no embedding
cache in front of its encoder, and routes RouterBench test prompts as they are, so every route runs
the encoder. (An earlier version put a memory cache in front and a unique stamp before each prompt
to miss it; the stamp was about 16 tokens, which doubled a short prompt's 17.) The backends take
turns in blocks of ``BLOCK`` queries, so a change of load on a shared machine hits all of them alike.

Measured, per backend:

- ``route`` p50/p99 of a short query and of a 256-token query (memory cache only: every query new);
- batch-64 embedding throughput (``encode`` of 64 fresh prompts of mixed length);
- in a *fresh subprocess* that only loads the checkpoint and routes 30 short and 30 256-token
  queries: peak RSS (``VmHWM``), the time to load and route the first query (a cold start), and the
  route p50 of each length with no other backend's thread pool in the process (as a web worker runs
  one backend);
- cosine similarity of its embeddings to torch's on the RouterBench test prompts;
- with ``--contention``: the short-query route p50 while a second CPU-bound process spins on the
  same cores, for intra-op threads 1 and 2 (ONNX also with spinning threads), each in its own process.

Run:  python benchmarks/overhead.py --backends [--repeats 100] [--contention] [--json out.json]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

BACKENDS = ("torch", "onnx", "onnx-int8")
BLOCK = 10
REPO = Path(__file__).resolve().parents[1]
TARGETS = {"short": 0.35, "256-token": 0.5, "batch64": 3.0, "rss": 0.4}


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1e3


def _encoder(backend: str, threads: int | None = None, spin: bool = False) -> Any:
    from mixllm_router.config import EncoderSettings
    from mixllm_router.encoders.backends import text_encoder

    enc = text_encoder(EncoderSettings(backend=backend, num_threads=threads))  # type: ignore[arg-type]
    if spin and hasattr(enc, "spin"):
        enc.spin = True
    return enc


def _rotating(fns: dict[str, Any], items: list[Any], per_turn: int) -> dict[str, list[float]]:
    """Time ``fns[b](item)`` for every backend and item; backends take turns in blocks, order rotating."""
    times: dict[str, list[float]] = {b: [] for b in fns}
    names = list(fns)
    for turn, start in enumerate(range(0, len(items), per_turn)):
        block = items[start : start + per_turn]
        order = names[turn % len(names):] + names[: turn % len(names)]
        for b in order:
            for item in block:
                t0 = time.perf_counter()
                fns[b](item)
                times[b].append(time.perf_counter() - t0)
    return times


_CHILD = """
import json, os, resource, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
from mixllm_router import MixLLMRouter
from mixllm_router.config import EncoderSettings
from mixllm_router.encoders.backends import build_encoder
# encoder= explicitly: a checkpoint trained on fp32 vectors refuses to build an int8 encoder by itself
encoder = build_encoder(EncoderSettings(backend=os.environ["BENCH_BACKEND"], use_cache=False))
router = MixLLMRouter.load(sys.argv[1], encoder=encoder)
queries = json.loads(sys.argv[2])  # {"warm": [...], "short": [...], "256-token": [...]}
warm = queries.pop("warm")
router.route(warm[0])
cold = time.perf_counter() - t0
for q in warm[1:]:  # the first routes of a fresh process run slower (ONNX Runtime sizes its buffers)
    router.route(q)
p50 = {}
for label, qs in queries.items():
    times = []
    for q in qs:
        t = time.perf_counter(); router.route(q); times.append(time.perf_counter() - t)
    times.sort()
    p50[label] = 1e3 * times[len(times) // 2]
# VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across fork + exec
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
rss = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rss_mb": rss, "cold_s": cold, "p50_ms": p50, "torch_loaded": "torch" in sys.modules}))
"""


def _child(ckpt: Path, queries: dict[str, list[str]], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(ckpt), json.dumps(queries)], capture_output=True,
                         text=True, timeout=900, env={**os.environ, **env}, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _busy() -> subprocess.Popen[bytes]:
    """A second CPU-bound process on the same cores (pure Python arithmetic, one core's worth)."""
    return subprocess.Popen([sys.executable, "-c", "x = 0\nwhile True:\n    x = (x * 7 + 1) % 1000003"])


def run(cache_dir: Path, repeats: int, contention: bool, partial: Path | None = None) -> dict[str, Any]:
    from mixllm_router import MixLLMRouter, load_routerbench
    from mixllm_router.encoders import CachedEncoder

    warnings.simplefilter("ignore")
    res: dict[str, Any] = {"load_avg_start": os.getloadavg(), "cpus": os.cpu_count(), "repeats": repeats}

    def keep() -> None:  # a slow run on a busy machine keeps what it measured so far
        if partial is not None:
            partial.write_text(json.dumps(res, indent=2, default=str))
    train, test = load_routerbench(split="train"), load_routerbench(split="test")
    encoders = {b: _encoder(b) for b in BACKENDS}
    counter = encoders["onnx"]
    emb, _ = MixLLMRouter(encoder=CachedEncoder(counter, cache_dir / "embeddings")).embed(train.queries)
    # saved without the disk cache: the routing-only processes below embed every query, write nothing
    base = MixLLMRouter(config={"encoder": {"use_cache": False}}, encoder=counter)
    base.fit(train, embeddings=emb, calibrate=False)
    tmp = Path(tempfile.mkdtemp(prefix="mixllm-bench-"))
    ckpt = tmp / "ckpt"
    base.save(ckpt)
    # no embedding cache in front of the encoders, so every route runs the encoder on the prompt as it is
    routers = {b: MixLLMRouter.load(ckpt, encoder=encoders[b]) for b in BACKENDS}
    for r in routers.values():
        r.route("warm up the encoder and the router")
    res["threads"] = {"torch": __import__("torch").get_num_threads(), "onnx": "default (one per core)"}

    tokens = {q: counter.count_tokens(q) for q in test.queries}
    short = [q for q in test.queries if 4 <= tokens[q] < 40]
    long = [q for q in test.queries if tokens[q] >= 300]
    for label, pool in (("short", short), ("256-token", long)):
        items = [pool[i % len(pool)] for i in range(repeats)]
        t = _rotating({b: routers[b].route for b in BACKENDS}, items, BLOCK)
        res[f"route_{label}"] = {b: {"p50_ms": _p(v, 50), "p99_ms": _p(v, 99), "n": len(v)} for b, v in t.items()}
        keep()

    n_batches = max(3, repeats // 30)
    batches = [[test.queries[(64 * k + j) % len(test.queries)] for j in range(64)] for k in range(n_batches)]
    t = _rotating({b: encoders[b].encode for b in BACKENDS}, batches, 1)
    res["batch64_qps"] = {b: 64 * len(v) / sum(v) for b, v in t.items()}
    keep()

    sample = test.queries[:: max(1, len(test.queries) // 300)]
    ref = encoders["torch"].encode(sample)
    res["cosine_to_torch"] = {}
    for b in ("onnx", "onnx-int8"):
        cos = (encoders[b].encode(sample) * ref).sum(1)
        res["cosine_to_torch"][b] = {"mean": float(cos.mean()), "min": float(cos.min()), "n": len(sample)}

    keep()
    # one backend per process, as a web worker runs it: no other encoder's threads beside it
    queries = {"warm": short[40:51], "short": short[:30], "256-token": long[:30]}
    res["fresh_process"] = {b: _child(ckpt, queries, {"BENCH_BACKEND": b}) for b in BACKENDS}
    keep()

    if contention:
        res["contention"] = _contention(ckpt, short, long)
    res["load_avg_end"] = os.getloadavg()
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return res


_CONTENDED = """
import json, os, sys, time, warnings
warnings.simplefilter("ignore")
from mixllm_router import MixLLMRouter
sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))
from backends import _encoder
backend, threads, spin = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
if backend == "torch":
    import torch; torch.set_num_threads(threads)
enc = _encoder(backend, threads, spin)
router = MixLLMRouter.load(sys.argv[4], encoder=enc)
for q in json.loads(sys.argv[6]):  # the first routes of a fresh process run slower
    router.route(q)
out = {}
for label, qs in json.loads(sys.argv[5]).items():
    times = []
    for q in qs:
        t = time.perf_counter(); router.route(q); times.append(time.perf_counter() - t)
    times.sort()
    out[label] = 1e3 * times[len(times) // 2]
print(json.dumps(out))
"""


def _contention(ckpt: Path, short: list[str], long: list[str]) -> dict[str, Any]:
    """Route p50 per (backend, threads, spin) with one busy process beside it, and idle for reference."""
    settings = [("torch", 1, False), ("torch", 2, False), ("onnx", 1, False), ("onnx", 2, False),
                ("onnx", 2, True), ("onnx-int8", 1, False), ("onnx-int8", 2, False), ("onnx-int8", 2, True)]
    out: dict[str, Any] = {}
    for busy in (False, True):
        hog = _busy() if busy else None
        try:
            time.sleep(0.5 if busy else 0)
            for backend, threads, spin in settings:
                qs = {"short": short[:40], "256-token": long[:15]}
                r = subprocess.run([sys.executable, "-c", textwrap.dedent(_CONTENDED), backend, str(threads),
                                    "1" if spin else "0", str(ckpt), json.dumps(qs), json.dumps(short[40:50])],
                                   capture_output=True,
                                   text=True, timeout=900, cwd=REPO)
                if r.returncode != 0:
                    raise RuntimeError(r.stderr[-2000:])
                key = f"{backend} threads={threads}{' spin' if spin else ''}"
                out.setdefault(key, {})["busy" if busy else "idle"] = json.loads(r.stdout.strip().splitlines()[-1])
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    return out


def table(r: dict[str, Any]) -> str:
    la = ", ".join(f"{x:.1f}" for x in r["load_avg_start"]) + " → " + ", ".join(f"{x:.1f}" for x in r["load_avg_end"])
    lines = [f"{r['cpus']} CPUs, load average {la}; {r['repeats']} queries per latency row, backends taking turns "
             f"in blocks of {BLOCK}", "",
             "| measure | torch | onnx (fp32) | onnx-int8 | best ratio to torch | target |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]

    def row(name: str, values: dict[str, float], fmt: str, target: str, higher: bool = False) -> None:
        t = values["torch"]
        ratios = {b: (values[b] / t if not higher else values[b] / t) for b in ("onnx", "onnx-int8")}
        best = max(ratios.values()) if higher else min(ratios.values())
        cells = " | ".join(f"{values[b]:{fmt}} ({values[b] / t:.2f}×)" if b != "torch" else f"{t:{fmt}}"
                           for b in BACKENDS)
        lines.append(f"| {name} | {cells} | {best:.2f}× | {target} |")

    for label in ("short", "256-token"):
        x = r[f"route_{label}"]
        row(f"route, {label} query, p50 ms", {b: x[b]["p50_ms"] for b in BACKENDS}, ".2f",
            f"≤ {TARGETS[label]}×")
        row(f"route, {label} query, p99 ms", {b: x[b]["p99_ms"] for b in BACKENDS}, ".2f", "")
    row("batch-64 embedding, queries/s", r["batch64_qps"], ".0f", f"≥ {TARGETS['batch64']}×", higher=True)
    f = r["fresh_process"]
    row("routing-only process: peak RSS MB", {b: f[b]["rss_mb"] for b in BACKENDS}, ".0f", f"≤ {TARGETS['rss']}×")
    row("routing-only process: load + first route, s", {b: f[b]["cold_s"] for b in BACKENDS}, ".2f", "")
    for label in ("short", "256-token"):
        row(f"routing-only process: {label} route p50 ms (30 queries)", {b: f[b]["p50_ms"][label] for b in BACKENDS},
            ".2f", "")
    c = r["cosine_to_torch"]
    lines.append(f"| cosine to torch, mean / min ({c['onnx']['n']} test prompts) | 1 | "
                 f"{c['onnx']['mean']:.6f} / {c['onnx']['min']:.6f} | "
                 f"{c['onnx-int8']['mean']:.4f} / {c['onnx-int8']['min']:.4f} | | ≥ 0.999 (fp32), ≥ 0.99 |")
    if r.get("contention"):
        lines += ["", "Route p50 (ms), each setting in its own process; *busy*: a second CPU-bound process "
                  "spins on the same cores.", "",
                  "| backend, intra-op threads | short idle | short busy | 256-token idle | 256-token busy |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for key, v in r["contention"].items():
            lines.append(f"| {key} | {v['idle']['short']:.2f} | {v['busy']['short']:.2f} | "
                         f"{v['idle']['256-token']:.2f} | {v['busy']['256-token']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--contention", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    a = parser.parse_args()
    if a.cache_dir is None:
        from mixllm_router.encoders import default_cache_dir

        a.cache_dir = default_cache_dir()
    result = run(a.cache_dir, a.repeats, a.contention)
    print(table(result))
    if a.json:
        a.json.write_text(json.dumps(result, indent=2, default=str))
