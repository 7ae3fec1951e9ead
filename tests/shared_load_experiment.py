"""Do worker processes that share load through Redis avoid congesting a candidate?

The experiment behind ``benchmarks/shared_load.py`` and ``tests/state/test_shared_workers.py``.

Setup (all real parts, on 127.0.0.1):

- a *provider*: an OpenAI-compatible HTTP server (:class:`ProviderServer`) that serves each model
  with a GLOBAL concurrency limit (one semaphore per model) and a fixed service time, and records
  for every request its queue wait (arrival → slot). The strong model ``math-pro`` has few slots
  (default 2, 1 s each: capacity 2 q/s); the others have many fast slots.
- a router fitted on the synthetic table (``tests/synthetic.py``) with the torch-free
  :class:`~mixllm_router.encoders.HashingEncoder`, each candidate's ``max_concurrency`` equal to
  the provider's limit, and the latency rule on: tolerance τ, ξ, β, hard limit at τ.
- ``workers`` processes (multiprocessing, "spawn"), each loading the checkpoint, attaching a real
  :class:`~mixllm_router.clients.OpenAIClient` per candidate and sending math queries (which
  ``math-pro`` answers best) at a Poisson rate, every ``router.invoke`` in its own thread.

The offered load on the strong model (``workers × rate``) exceeds its capacity. Two modes, same
arrivals (same seed):

- ``per-process``: each worker's load tracker sees only its own requests; each believes it has
  the strong model's slots to itself, so together they keep ``workers × slots`` requests on it
  and the provider's queue makes users wait past τ.
- ``shared``: ``router.share_state(redis_url, ...)``: every worker sees every lease, the expected
  wait ``W`` counts the whole deployment's traffic and the hard limit sends the overflow to the
  other candidates before the wait passes τ.

Measured per mode: queries, share answered by the strong model, share of provider requests whose
queue wait exceeded τ, mean / p95 queue wait (all requests and the strong model's), the strong
model's mean expected wait at decision time against its mean actual wait, and a quality proxy
(the synthetic table's success probability of the model that answered: math-pro 0.9, cheap 0.5,
poet 0.2 on math).
"""

from __future__ import annotations

import importlib
import json
import multiprocessing as mp
import queue as queue_module
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MODES", "ExperimentSettings", "ModeResult", "ProviderServer", "fit_checkpoint", "run_experiment"]

STRONG = "math-pro"
MODES = ("per-process", "shared")
#: success probability on math queries of each model of the synthetic table (tests/synthetic.py)
MATH_SKILL = {"math-pro": 0.9, "poet": 0.2, "cheap": 0.5}
_TOPICS = ["integral", "derivative", "matrix", "prime number", "equation", "probability", "geometry", "algebra"]


@dataclass(frozen=True)
class ExperimentSettings:
    """Everything that defines a run; the same settings and seed give the same arrivals."""

    workers: int = 4
    rate_per_worker: float = 1.5  # queries per second, Poisson, per worker
    duration_s: float = 20.0  # each worker sends queries for this long, then waits for its answers
    tolerance_s: float = 2.0  # τ
    xi: float = 0.5  # ξ: the penalty starts at ξ·τ
    beta: float = 0.1  # β: weight of the penalty
    hard_limit: bool = True
    cost_weight: float = 1.0  # λ small: on math, quality decides (math-pro 0.9 vs cheap 0.5)
    strong_slots: int = 2
    strong_service_s: float = 1.0
    other_slots: int = 64
    other_service_s: float = 0.2
    lease_s: float = 5.0
    seed: int = 0

    def limits(self) -> dict[str, tuple[int, float]]:
        """``{model: (concurrency limit, service seconds)}`` of the provider (and the candidates)."""
        return {name: ((self.strong_slots, self.strong_service_s) if name == STRONG
                       else (self.other_slots, self.other_service_s)) for name in MATH_SKILL}


# ------------------------------------------------------------------------------------------------
# The provider: an OpenAI-compatible server with a global concurrency limit per model
# ------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection per client thread, not per request
    server: _HTTPServer

    def log_message(self, *args: Any) -> None:  # keep the output clean
        pass

    def do_POST(self) -> None:
        arrival = time.monotonic()
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        model = str(body.get("model", ""))
        provider = self.server.provider
        slot = provider.slots.get(model)
        if slot is None:
            self._send(404, {"error": {"message": f"unknown model {model!r}", "type": "invalid_request_error"}})
            return
        semaphore, service_s = slot
        with semaphore:
            wait = time.monotonic() - arrival
            time.sleep(service_s)
        provider.record(model, arrival, wait)
        self._send(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer from {model}"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 40, "total_tokens": 60},
        })

    def _send(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many clients connect at once; the default backlog (5) is too short
    provider: ProviderServer


class ProviderServer:
    """``POST /v1/chat/completions`` on 127.0.0.1 with ``limits = {model: (slots, service_s)}``.

    Each model serves at most ``slots`` requests at once across *all* clients (a semaphore); a
    request holds its slot for ``service_s`` seconds. :meth:`take_records` returns (and clears)
    ``(model, arrival, queue wait)`` of every request answered so far.
    """

    def __init__(self, limits: dict[str, tuple[int, float]]) -> None:
        self.slots = {m: (threading.BoundedSemaphore(n), float(s)) for m, (n, s) in limits.items()}
        self._records: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.provider = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> ProviderServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def record(self, model: str, arrival: float, wait: float) -> None:
        with self._lock:
            self._records.append((model, arrival, wait))

    def take_records(self) -> list[tuple[str, float, float]]:
        with self._lock:
            out, self._records = self._records, []
        return out


# ------------------------------------------------------------------------------------------------
# The router
# ------------------------------------------------------------------------------------------------


def fit_checkpoint(folder: Path, settings: ExperimentSettings) -> Path:
    """Fit a router on the synthetic table (hashing encoder) and save it under ``folder``."""
    from synthetic import make_synthetic

    from mixllm_router import Candidate, MixLLMRouter, RoutingDataset
    from mixllm_router.encoders import HashingEncoder
    from mixllm_router.policy.load import LatencySettings

    candidates = [Candidate(name=m, max_concurrency=n) for m, (n, _) in settings.limits().items()]
    latency = LatencySettings(tolerance_s=settings.tolerance_s, xi=settings.xi, weight=settings.beta,
                              hard_limit=settings.hard_limit)
    router = MixLLMRouter(candidates, encoder=HashingEncoder(), cost_weight=settings.cost_weight,
                          latency=latency, prior_strength=1.0, calibration_folds=3, seed=settings.seed)
    router.fit(RoutingDataset.from_records(make_synthetic(seed=settings.seed)), calibrate=False)
    return router.save(Path(folder) / "router")


def _arrivals(settings: ExperimentSettings, worker: int) -> list[tuple[float, str]]:
    """Poisson arrival offsets (seconds) and math queries of one worker; a function of the seed."""
    rng = np.random.default_rng([settings.seed, worker])
    out: list[tuple[float, str]] = []
    t = float(rng.exponential(1.0 / settings.rate_per_worker))
    while t < settings.duration_s:
        topic = _TOPICS[int(rng.integers(len(_TOPICS)))]
        n = int(rng.integers(1000, 100000))
        out.append((t, f"Solve this {topic} problem number {n}: compute the {topic} value step by step."))
        t += float(rng.exponential(1.0 / settings.rate_per_worker))
    return out


# ------------------------------------------------------------------------------------------------
# Workers
# ------------------------------------------------------------------------------------------------


def _run_mode(index: int, checkpoint: str, base_url: str, redis_url: str | None, task: dict[str, Any],
              barrier: Any) -> dict[str, Any]:
    from mixllm_router import MixLLMRouter
    from mixllm_router.clients import OpenAIClient
    from mixllm_router.encoders import HashingEncoder

    settings = ExperimentSettings(**task["settings"])
    router = MixLLMRouter.load(checkpoint, encoder=HashingEncoder())
    if task["mode"] == "shared":
        router.share_state(redis_url, namespace=task["namespace"], lease_s=settings.lease_s)
    for name in router.candidate_names:
        router.set_client(name, OpenAIClient(name, base_url=base_url, api_key="not-needed", timeout=120.0))
    router.route("warm up: solve this integral")  # first-call costs (vectorizer, projection) before the clock
    arrivals = _arrivals(settings, index)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def call(query: str) -> None:
        sent = time.monotonic()
        try:
            response = router.invoke(query, max_tokens=64)
        except Exception as exc:  # noqa: BLE001 - counted, never kills the worker
            with lock:
                results.append({"error": f"{type(exc).__name__}: {exc}"})
            return
        strong = next(s for s in response.decision.scores if s.name == STRONG)
        with lock:
            results.append({"chosen": response.decision.chosen, "answered": response.candidate,
                            "strong_wait_estimate_s": strong.wait_s, "latency_s": time.monotonic() - sent})

    barrier.wait(timeout=120)  # every worker is ready: start together
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=128, thread_name_prefix=f"worker{index}") as pool:
        for offset, query in arrivals:
            delay = start + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(call, query)
    router.state.close()  # drop the heartbeat and any lease (no-op for the in-process state)
    return {"worker": index, "mode": task["mode"], "results": results,
            "status": router.state.status().as_dict()}


def _worker(index: int, checkpoint: str, base_url: str, redis_url: str | None, tasks: Any, results: Any,
            barrier: Any) -> None:
    """A worker process: run each task (one mode) it is given, until it gets None."""
    # the imports (sklearn behind the hashing encoder, openai, redis) take seconds: do them while
    # the parent fits the checkpoint, not after the task arrives
    for module in ("openai", "redis", "mixllm_router.router", "mixllm_router.clients", "mixllm_router.encoders.hashing"):
        importlib.import_module(module)

    while True:
        task = tasks.get()
        if task is None:
            return
        try:
            results.put(_run_mode(index, checkpoint, base_url, redis_url, task, barrier))
        except BaseException as exc:  # noqa: BLE001 - report, so the parent never waits forever
            barrier.abort()
            results.put({"worker": index, "mode": task["mode"], "failed": f"{type(exc).__name__}: {exc}"})
            return


# ------------------------------------------------------------------------------------------------
# The experiment
# ------------------------------------------------------------------------------------------------


@dataclass
class ModeResult:
    """What one mode measured (JSON-serialisable with :meth:`as_dict`)."""

    mode: str
    queries: int
    errors: int
    strong_share: float  # of queries answered by the strong model
    past_tolerance_share: float  # of provider requests whose queue wait exceeded τ
    mean_wait_s: float
    p95_wait_s: float
    strong_mean_wait_s: float
    strong_p95_wait_s: float
    strong_past_tolerance_share: float  # of the strong model's requests
    strong_estimated_wait_s: float  # mean W of the strong model at decisions that chose it
    quality_proxy: float  # mean success probability of the model that answered
    mean_latency_s: float
    wall_s: float
    per_worker_queries: list[int] = field(default_factory=list)
    remote_seen: bool = False  # (shared) workers saw other workers' leases

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _summarise(mode: str, tau: float, reports: list[dict[str, Any]], records: list[tuple[str, float, float]],
               wall_s: float) -> ModeResult:
    calls = [r for rep in reports for r in rep["results"]]
    ok = [r for r in calls if "error" not in r]
    waits = np.array([w for _, _, w in records], dtype=np.float64)
    strong_waits = np.array([w for m, _, w in records if m == STRONG], dtype=np.float64)
    to_strong = [r for r in ok if r["answered"] == STRONG]

    def mean(x: Any) -> float:
        return float(np.mean(x)) if len(x) else float("nan")

    def p95(x: np.ndarray) -> float:
        return float(np.percentile(x, 95)) if x.size else float("nan")

    return ModeResult(
        mode=mode,
        queries=len(calls),
        errors=len(calls) - len(ok),
        strong_share=len(to_strong) / len(ok) if ok else float("nan"),
        past_tolerance_share=mean(waits > tau),
        mean_wait_s=mean(waits),
        p95_wait_s=p95(waits),
        strong_mean_wait_s=mean(strong_waits),
        strong_p95_wait_s=p95(strong_waits),
        strong_past_tolerance_share=mean(strong_waits > tau),
        strong_estimated_wait_s=mean([r["strong_wait_estimate_s"] for r in to_strong if r["chosen"] == STRONG]),
        quality_proxy=mean([MATH_SKILL[r["answered"]] for r in ok]),
        mean_latency_s=mean([r["latency_s"] for r in ok]),
        wall_s=wall_s,
        per_worker_queries=[len(rep["results"]) for rep in sorted(reports, key=lambda r: r["worker"])],
        remote_seen=any(rep.get("status", {}).get("backend") == "redis" and rep["status"].get("remote_in_flight")
                        for rep in reports),
    )


def run_experiment(redis_url: str, folder: Path, settings: ExperimentSettings = ExperimentSettings(), *,
                   modes: Sequence[str] = MODES, log: Any = None) -> dict[str, ModeResult]:
    """Run ``modes`` one after the other with the same worker processes, provider and arrivals.

    ``redis_url``: a running Redis (only the ``shared`` mode uses it; each run takes a fresh
    namespace). ``folder``: where the checkpoint goes. ``log``: a ``print``-like callable or None.
    """
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; modes: {MODES}")
    say = log or (lambda *a, **k: None)
    checkpoint = Path(folder) / "router"
    provider = ProviderServer(settings.limits()).start()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(settings.workers + 1)
    results_q = ctx.Queue()
    task_qs = [ctx.Queue() for _ in range(settings.workers)]
    procs = [ctx.Process(target=_worker, name=f"shared-load-worker-{i}", daemon=True,
                         args=(i, str(checkpoint), provider.base_url, redis_url, task_qs[i], results_q, barrier))
             for i in range(settings.workers)]
    out: dict[str, ModeResult] = {}
    try:
        for p in procs:
            p.start()  # they import while the checkpoint is fitted
        fit_checkpoint(Path(folder), settings)
        run_id = uuid.uuid4().hex[:8]
        for mode in modes:
            task = {"mode": mode, "namespace": f"shared-load-{run_id}-{mode}", "settings": asdict(settings)}
            for q in task_qs:
                q.put(task)
            barrier.wait(timeout=180)  # workers loaded and connected
            t0 = time.monotonic()
            provider.take_records()  # nothing before the start counts (there is nothing, but be sure)
            reports: list[dict[str, Any]] = []
            deadline = t0 + settings.duration_s + 180
            while len(reports) < settings.workers:
                try:
                    rep = results_q.get(timeout=1.0)
                except queue_module.Empty:
                    dead = [p.name for p in procs if not p.is_alive()]
                    if dead or time.monotonic() > deadline:
                        raise RuntimeError(f"{mode}: workers dead {dead} or past the deadline") from None
                    continue
                if "failed" in rep:
                    raise RuntimeError(f"{mode}: worker {rep['worker']} failed: {rep['failed']}")
                reports.append(rep)
            wall = time.monotonic() - t0
            out[mode] = _summarise(mode, settings.tolerance_s, reports, provider.take_records(), wall)
            say(f"{mode}: {out[mode].queries} queries in {wall:.1f} s", flush=True)
    finally:
        for q in task_qs:
            q.put(None)
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        provider.stop()
    return out
