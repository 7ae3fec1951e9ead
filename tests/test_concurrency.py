"""Concurrency: many threads and asyncio tasks routing, invoking, giving feedback and saving at once.

What must hold (docs/guarantees.md): no exception, no deadlock (every join has a timeout), no lost
update (every acknowledged feedback event is applied exactly once), every checkpoint written while
others route and learn loads, and async paths never block the event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mixllm_router import Candidate, MixLLMRouter, RoutingDataset
from mixllm_router.clients import FakeClient
from mixllm_router.encoders import CachedEncoder, HashingEncoder

ENC = HashingEncoder(dim=64)
MODELS = {"big": (0.9, 0.9, 1e-3), "math-small": (0.85, 0.15, 1e-4), "poet-small": (0.15, 0.85, 1e-4)}
TIMEOUT = 60.0  # a deadlock fails the test instead of hanging the suite


def synthetic(n: int = 80, seed: int = 0) -> RoutingDataset:
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        topic = "math" if i % 2 else "poem"
        words = "integral derivative sum proof" if topic == "math" else "rose sonnet verse rhyme"
        for model, (p_math, p_poem, price) in MODELS.items():
            p = p_math if topic == "math" else p_poem
            records.append({"query_id": f"q{i}", "query": f"{topic} {words} item {i}", "model": model,
                            "quality": float(rng.random() < p), "cost": price * (1 + rng.random())})
    return RoutingDataset.from_records(records)


DATA = synthetic()


def make_router(tmp_path: Path | None = None, *, feedback_weight: float = 0.5, encoder=ENC) -> MixLLMRouter:
    config = {"encoder": {"kind": "hashing", "use_cache": False}, "quality_model": "ridge+knn", "knn_k": 10,
              "feedback_weight": feedback_weight}
    if tmp_path is not None:
        config["learning"] = {"journal_path": str(tmp_path / "feedback.jsonl"), "journal_fsync": False}
    return MixLLMRouter([Candidate(name=m) for m in MODELS], config=config, encoder=encoder).fit(
        DATA, calibrate=False)


def run_threads(target, n: int, *args) -> list[BaseException]:
    """Start ``n`` threads on ``target(i, *args)``; join with a timeout; return their exceptions."""
    errors: list[BaseException] = []
    lock = threading.Lock()

    def wrap(i: int) -> None:
        try:
            target(i, *args)
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised by the test
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + TIMEOUT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t for t in threads if t.is_alive()]
    assert not alive, f"{len(alive)} thread(s) still running after {TIMEOUT}s: deadlock?"
    return errors


def test_threads_route_and_give_feedback_without_losing_updates(tmp_path: Path) -> None:
    router = make_router(tmp_path)
    n_train = router.bank_.shape[0]
    per_thread, n_threads = 40, 8
    acked: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for k in range(per_thread):
            d = router.route(f"{'math integral' if (i + k) % 2 else 'poem rose'} thread {i} query {k}")
            assert d.chosen in MODELS
            seq = router.feedback(d.decision_id, (i + k) % 3 != 0)
            with lock:
                acked.append(seq)

    errors = run_threads(worker, n_threads)
    assert not errors, errors[:3]
    total = n_threads * per_thread
    assert len(acked) == total and len(set(acked)) == total  # one sequence number each
    assert router.learning.n_events == total  # every acknowledged event applied exactly once
    assert router.bank_.shape[0] == n_train + total  # each event added exactly one kNN row
    assert router.learning.applied_seq == max(acked)
    assert sum(m.knn.targets.size for m in router.predictors_.values()) == n_train * len(MODELS) + total
    # the journal holds every acknowledged event, in sequence order
    router.learning.close()
    from mixllm_router.learning.learner import FeedbackJournal

    seqs = [e.seq for e in FeedbackJournal(tmp_path / "feedback.jsonl").read()]
    assert sorted(seqs) == sorted(acked)


def test_the_same_decision_rated_from_many_threads_counts_once() -> None:
    from mixllm_router import FeedbackError

    router = make_router()
    decision = router.route("math integral proof")
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        try:
            router.feedback(decision.decision_id, True)
            result = "ok"
        except FeedbackError:
            result = "refused"
        with lock:
            outcomes.append(result)

    assert not run_threads(worker, 16)
    assert outcomes.count("ok") == 1 and outcomes.count("refused") == 15
    assert router.learning.n_events == 1


def test_saving_while_routing_and_learning_writes_consistent_checkpoints(tmp_path: Path) -> None:
    """Every checkpoint written while other threads learn loads, and its bank matches its counters."""
    router = make_router()
    n_train = router.bank_.shape[0]
    stop = threading.Event()
    saved: list[Path] = []

    def learner(i: int) -> None:
        k = 0
        while not stop.is_set() and k < 400:
            d = router.route(f"learner {i} query {k} math integral")
            router.feedback(d.decision_id, k % 2 == 0)
            k += 1

    def saver(i: int) -> None:
        for k in range(15):
            path = tmp_path / f"ckpt-{i}-{k}"
            router.save(path)
            saved.append(path)
        stop.set()

    def work(i: int) -> None:
        (saver if i == 0 else learner)(i)

    errors = run_threads(work, 4)
    assert not errors, errors[:3]
    for path in saved:
        loaded = MixLLMRouter.load(path, encoder=ENC)
        n = loaded.learning.n_events
        # one bank row and one kNN target per applied event: a torn snapshot breaks these sums
        assert loaded.bank_.shape[0] == n_train + n, path
        assert sum(m.knn.targets.size for m in loaded.predictors_.values()) == n_train * len(MODELS) + n, path
        loaded.route("math integral proof")


def test_concurrent_saves_to_one_folder_leave_a_loadable_checkpoint(tmp_path: Path) -> None:
    """Several threads (and two routers) saving into the same folder: the folder always loads."""
    routers = [make_router(), make_router()]
    for r in routers:  # make their states differ, so every save writes a new arrays file
        for k in range(5):
            r.feedback(r.route(f"warm {k}").decision_id, True)
    path = tmp_path / "shared-ckpt"
    problems: list[str] = []

    def work(i: int) -> None:
        r = routers[i % 2]
        for k in range(20):
            d = r.route(f"saver {i} step {k}")
            r.feedback(d.decision_id, k % 2 == 0)
            r.save(path)
            try:
                MixLLMRouter.load(path, encoder=ENC)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{type(exc).__name__}: {exc}")

    errors = run_threads(work, 4)
    assert not errors, errors[:3]
    assert not problems, problems[:3]
    MixLLMRouter.load(path, encoder=ENC).route("math")


def test_invoke_from_many_threads_with_feedback_and_load_tracking() -> None:
    router = make_router()
    for name in MODELS:
        router.set_client(name, FakeClient(f"answer from {name}", model_name=name, latency_s=0.005, cycle=True))
    n_threads, per_thread = 8, 15
    responses = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for k in range(per_thread):
            resp = router.invoke(f"thread {i} asks question {k} about integrals")
            assert resp.text == f"answer from {resp.call.candidate}"
            router.feedback(resp.decision.decision_id, True)
            with lock:
                responses.append(resp)

    errors = run_threads(worker, n_threads)
    assert not errors, errors[:3]
    assert len(responses) == n_threads * per_thread
    assert router.learning.n_events == n_threads * per_thread
    # the load tracker saw every call start and finish: nothing is left in flight
    waits = router.load_tracker.waits(list(MODELS))
    assert np.all(np.isfinite(waits))
    for name in MODELS:
        assert router.load_tracker.in_flight(name) == 0


def test_cached_encoder_shared_by_threads_returns_the_inner_vectors(tmp_path: Path) -> None:
    cached = CachedEncoder(ENC, tmp_path / "cache", compact_at=4)
    texts = [f"text number {i % 25}" for i in range(200)]
    expected = ENC.encode(texts)
    results: dict[int, np.ndarray] = {}

    def worker(i: int) -> None:
        chunk = texts[i * 25:(i + 1) * 25]
        results[i] = cached.encode(chunk)

    assert not run_threads(worker, 8)
    got = np.concatenate([results[i] for i in range(8)])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # a fresh encoder on the same folder reads back every vector the threads wrote
    again = CachedEncoder(ENC, tmp_path / "cache").encode(texts[:25])
    np.testing.assert_allclose(again, expected[:25], atol=1e-6)


class SlowEncoder:
    """Wraps an encoder and sleeps in ``encode``: a stand-in for a slow forward pass."""

    def __init__(self, inner, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.threads: set[str] = set()

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def encode(self, texts, *, show_progress: bool = False):
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        return self.inner.encode(texts)


async def _ticker(stop: asyncio.Event, gaps: list[float], period: float = 0.005) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(period)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


async def test_ainvoke_never_blocks_the_event_loop() -> None:
    """A ticker keeps ticking while 20 concurrent ainvoke calls encode (slowly) and call clients."""
    router = make_router()
    slow = SlowEncoder(ENC, delay=0.3)
    router._encoder = slow
    for name in MODELS:
        router.set_client(name, FakeClient("ok", model_name=name, latency_s=0.05, cycle=True))
    stop, gaps = asyncio.Event(), []
    ticker = asyncio.create_task(_ticker(stop, gaps))
    main = threading.current_thread().name
    t0 = time.perf_counter()
    responses = await asyncio.wait_for(
        asyncio.gather(*(router.ainvoke(f"question {i} about sonnets") for i in range(20))), TIMEOUT)
    elapsed = time.perf_counter() - t0
    stop.set()
    await ticker
    assert len(responses) == 20 and all(r.text == "ok" for r in responses)
    assert main not in slow.threads  # the encoder never ran on the event loop's thread
    # 20 × (300 ms encode + 50 ms call) serially would be 7 s, and a loop blocked by an encode would
    # stall the ticker for ≥ 300 ms; the bounds leave room for a busy machine's scheduling noise
    assert len(gaps) >= 10
    assert max(gaps) < 0.25, f"event loop blocked for {max(gaps) * 1e3:.0f} ms"
    assert elapsed < 5.0
    await asyncio.wait_for(asyncio.gather(*(router.afeedback(r.decision.decision_id, True) for r in responses)), TIMEOUT)
    assert router.learning.n_events == 20


async def test_astream_and_afeedback_keep_the_loop_free() -> None:
    router = make_router()
    slow = SlowEncoder(ENC, delay=0.3)
    router._encoder = slow
    for name in MODELS:
        router.set_client(name, FakeClient("one two three", model_name=name, latency_s=0.05, cycle=True))
    stop, gaps = asyncio.Event(), []
    ticker = asyncio.create_task(_ticker(stop, gaps))

    async def one(i: int) -> str:
        stream = await router.astream(f"stream {i}")
        parts = [chunk.text async for chunk in stream]
        await router.afeedback(stream.decision.decision_id, 0.5)
        return "".join(parts)

    main_thread = threading.current_thread().name
    texts = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(10))), TIMEOUT)
    stop.set()
    await ticker
    assert texts == ["one two three"] * 10
    assert main_thread not in slow.threads
    assert max(gaps) < 0.25, f"event loop blocked for {max(gaps) * 1e3:.0f} ms"
    assert router.learning.n_events == 10


async def test_asyncio_tasks_and_threads_together(tmp_path: Path) -> None:
    """Async tasks invoking and rating while worker threads route, rate and save: no lost update."""
    router = make_router(tmp_path)
    for name in MODELS:
        router.set_client(name, FakeClient("ok", model_name=name, latency_s=0.002, cycle=True))
    n_async, n_thread_events = 30, 4 * 20

    def thread_work(i: int) -> None:
        for k in range(20):
            d = router.route(f"thread {i} item {k}")
            router.feedback(d.decision_id, k % 2 == 0)
            if k % 10 == 0:
                router.save(tmp_path / f"ckpt-{i}")

    async def task(i: int) -> None:
        resp = await router.ainvoke(f"task {i}")
        await router.afeedback(resp.decision.decision_id, i % 2 == 0)

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(4) as pool:
        threads = [loop.run_in_executor(pool, thread_work, i) for i in range(4)]
        await asyncio.wait_for(asyncio.gather(*threads, *(task(i) for i in range(n_async))), TIMEOUT)
    assert router.learning.n_events == n_async + n_thread_events
    router.save(tmp_path / "final")
    router.learning.close()
    # a fresh router from the last checkpoint plus the journal has seen every event
    loaded = MixLLMRouter.load(tmp_path / "final", encoder=ENC)
    assert loaded.learning.n_events == n_async + n_thread_events
    loaded.learning.close()


@pytest.mark.slow
def test_long_soak_threads_route_learn_save(tmp_path: Path) -> None:
    router = make_router(tmp_path)

    def worker(i: int) -> None:
        for k in range(400):
            d = router.route(f"soak {i} {k}")
            router.feedback(d.decision_id, (i * k) % 2 == 0)
            if k % 50 == 0:
                router.save(tmp_path / "soak-ckpt")

    assert not run_threads(worker, 8)
    assert router.learning.n_events == 8 * 400
    MixLLMRouter.load(tmp_path / "soak-ckpt", encoder=ENC).route("x")


def test_a_route_in_flight_when_a_candidate_is_removed() -> None:
    """Deterministic interleaving: the route has read the pool and waits for the lock; then a removal."""
    router = make_router()
    router.add_candidate(Candidate(name="extra"), prior="mean")
    result: dict[str, object] = {}

    def route() -> None:
        try:
            result["decision"] = router.route("math integral")
        except BaseException as exc:  # noqa: BLE001
            result["error"] = exc

    with router.learning.lock:  # hold the lock the route's prediction step waits for
        t = threading.Thread(target=route, daemon=True)
        t.start()
        time.sleep(0.3)  # the route has encoded the query and read the pool by now
        router.remove_candidate("extra")
    t.join(TIMEOUT)
    assert "error" not in result, repr(result.get("error"))
    assert result["decision"].chosen in MODELS


@pytest.mark.slow
def test_routing_while_candidates_are_added_and_removed() -> None:
    """Pool changes under traffic: a route sees the pool before or after a change, never half of it."""
    router = make_router()
    stop = threading.Event()

    def changer(i: int) -> None:
        for k in range(30):
            name = f"extra-{k}"
            router.add_candidate(Candidate(name=name), prior="mean")
            router.remove_candidate(name)
        stop.set()

    def route(i: int) -> None:
        k = 0
        while not stop.is_set() and k < 2000:
            d = router.route(f"router {i} step {k}")
            assert d.chosen in router.candidate_names or d.chosen.startswith("extra-")
            k += 1

    errors = run_threads(lambda i: (changer if i == 0 else route)(i), 4)
    assert not errors, "".join(traceback.format_exception(errors[0]))
    assert router.candidate_names == list(MODELS)
