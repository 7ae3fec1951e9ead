"""RedisState against a real redis-server: leases, shared service times, outages, checkpoints."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest

from mixllm_router import Candidate, ConfigError, FeedbackError, MixLLMRouter, SharedStateError
from mixllm_router.encoders import HashingEncoder
from mixllm_router.state import InProcessState, RedisState, SharedStateWarning, connect
from mixllm_router.state.redis import seq_from_stream_id

pytestmark = pytest.mark.filterwarnings("ignore::mixllm_router.state.SharedStateWarning")


@pytest.fixture()
def checkpoint(tmp_path, synthetic_data):
    """A fitted router on disk; math-pro serves one request at a time."""
    candidates = [Candidate(name="math-pro", max_concurrency=1), "poet", "cheap"]
    # the config names the encoder it was trained with, so a load without encoder= (from_source) gets it back
    router = MixLLMRouter(candidates, config={"encoder": {"kind": "hashing", "use_cache": False}},
                          encoder=HashingEncoder(), prior_strength=1.0, calibration_folds=3)
    router.fit(synthetic_data)
    return router.save(tmp_path / "ckpt")


def worker(checkpoint, url, **options):
    options.setdefault("namespace", "t")
    return MixLLMRouter.load(checkpoint, encoder=HashingEncoder(), state=url, **options)


# ---------------------------------------------------------------------------------------- config
def test_connect_chooses_the_backend_and_rejects_bad_input(redis_url):
    assert isinstance(connect(None), InProcessState)
    assert isinstance(connect("memory://"), InProcessState)
    state = connect(redis_url, namespace="x")
    assert isinstance(state, RedisState) and state.key("feedback") == "{x}:feedback"
    assert connect(state) is state
    with pytest.raises(ConfigError, match="unknown state"):
        connect("http://localhost:6379")
    with pytest.raises(ConfigError, match="lease_s"):
        RedisState(redis_url, lease_s=0)
    with pytest.raises(ConfigError, match="bogus"):
        RedisState(redis_url, bogus=1)
    with pytest.raises(ConfigError, match="no options"):
        connect(None, lease_s=3)


def test_stream_ids_become_increasing_sequence_numbers():
    assert seq_from_stream_id(b"1700000000000-0") == 1_700_000_000_000_000_000
    assert seq_from_stream_id("1700000000000-7") == 1_700_000_000_000_000_007
    ids = ["1-0", "1-1", "1-999", "2-0"]
    assert [seq_from_stream_id(i) for i in ids] == sorted(seq_from_stream_id(i) for i in ids)


# ---------------------------------------------------------------------------------------- load
def test_a_request_in_one_worker_makes_the_other_wait(checkpoint, redis_url):
    a, b = worker(checkpoint, redis_url), worker(checkpoint, redis_url)
    assert b.load_tracker.waits(["math-pro"])[0] == 0.0
    ticket = a.load_tracker.start("math-pro")
    wait = b.load_tracker.waits(["math-pro"])[0]
    assert wait > 0.0  # b's only slot of math-pro is taken by a's request
    assert b.state.status().remote_in_flight == {"math-pro": 1}
    decision = b.route("Solve this integral problem number 3: compute the integral value step by step.")
    assert decision.score_of("math-pro").wait_s == pytest.approx(wait, abs=0.5)
    a.load_tracker.finish(ticket, output_tokens=40)
    assert b.load_tracker.waits(["math-pro"])[0] == 0.0
    assert b.load_tracker.estimate("math-pro").n_obs == 1  # a's service time taught b
    a.state.close(), b.state.close()


def test_own_requests_are_not_counted_twice(checkpoint, redis_url):
    a = worker(checkpoint, redis_url)
    ticket = a.load_tracker.start("poet")
    a.load_tracker.waits(["poet"])
    assert a.load_tracker.in_flight("poet") == 1
    a.load_tracker.finish(ticket)
    a.state.close()


def test_a_killed_worker_leaves_no_load_after_its_lease(checkpoint, redis_url):
    """A worker SIGKILLed with requests in flight: its load is gone within lease_s."""
    lease = 1.0
    script = textwrap.dedent(f"""
        import sys, time
        from mixllm_router import MixLLMRouter
        from mixllm_router.encoders import HashingEncoder
        router = MixLLMRouter.load({str(checkpoint)!r}, encoder=HashingEncoder())
        router.share_state({redis_url!r}, namespace="t", lease_s={lease})
        for _ in range(3):
            router.load_tracker.start("math-pro")
        print("started", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        b = worker(checkpoint, redis_url)
        b.load_tracker.waits(["math-pro"])
        assert b.load_tracker.in_flight("math-pro") == 3
        time.sleep(lease * 1.5)  # still alive: the heartbeat renews the leases
        b.load_tracker.waits(["math-pro"])
        assert b.load_tracker.in_flight("math-pro") == 3
        proc.kill()
        proc.wait()
        killed = time.monotonic()
        while b.load_tracker.in_flight("math-pro") and time.monotonic() - killed < 5 * lease:
            time.sleep(0.05)
            b.load_tracker.waits(["math-pro"])
        gone_after = time.monotonic() - killed
        assert b.load_tracker.in_flight("math-pro") == 0
        assert gone_after <= lease + 0.5
        b.state.close()
    finally:
        proc.kill()


# ---------------------------------------------------------------------------------------- outages
def test_routing_survives_a_redis_restart_and_converges(checkpoint, redis_server, redis_url):
    a, b = worker(checkpoint, redis_url, retry_s=0.2, lease_s=0.6), worker(checkpoint, redis_url, retry_s=0.2, lease_s=0.6)
    ticket = a.load_tracker.start("math-pro")
    assert b.load_tracker.waits(["math-pro"])[0] > 0
    query = "Write a haiku poem number 4 about the sea, with a haiku rhyme scheme."
    decision = b.route(query)
    redis_server.stop()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(20):  # routing never fails while Redis is down
            b.route(query)
            a.route(query)
        seq = b.feedback(decision.decision_id, True)
    assert any(issubclass(w.category, SharedStateWarning) and "unreachable" in str(w.message) for w in caught)
    assert seq == 0 and b.state.status().buffered_feedback == 1
    status = b.state.status()
    assert not status.connected and status.outages == 1
    assert b.load_tracker.waits(["math-pro"])[0] == 0.0  # stale remote leases are dropped, not trusted
    redis_server.start()  # same port, same data folder (append-only file)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (b.state.status().buffered_feedback or not b.state.status().connected
                                           or b.load_tracker.waits(["math-pro"])[0] == 0.0):
        time.sleep(0.1)
        b.route(query)
    assert b.state.status().connected and b.state.status().buffered_feedback == 0
    assert b.load_tracker.waits(["math-pro"])[0] > 0  # a re-took its lease: b sees the load again
    import redis

    assert redis.Redis.from_url(redis_url).xlen(b.state.feedback_stream) == 1  # the buffered event arrived
    a.load_tracker.finish(ticket)
    a.state.close(), b.state.close()


def test_feedback_buffer_is_bounded(checkpoint, redis_url):
    a = worker(checkpoint, "redis://127.0.0.1:1/0", feedback_buffer=1, retry_s=30, socket_timeout_s=0.2)
    query = "Write a haiku poem number 4 about the sea, with a haiku rhyme scheme."
    first, second = a.route(query), a.route(query)
    assert a.feedback(first.decision_id, 1.0) == 0
    with pytest.raises(FeedbackError, match="buffered"):
        a.feedback(second.decision_id, 0.0)
    a.state.close()


# ---------------------------------------------------------------------------------------- checkpoints
def test_publish_and_fetch_round_trip(checkpoint, redis_url, synthetic_data):
    a = worker(checkpoint, redis_url)
    state: RedisState = a.state  # type: ignore[assignment]
    with pytest.raises(SharedStateError, match="no checkpoint"):
        state.fetch_checkpoint()
    v1 = state.publish_checkpoint(a)
    v2 = state.publish_checkpoint(a)
    assert 0 < v1 < v2 and state.latest_version() == v2  # time-based: ordered, not consecutive
    assert 0 < state.client.ttl(state.key("ckpt", str(v1))) <= 60  # superseded: expires soon
    v3 = state.publish_checkpoint(a)
    assert not state.client.exists(state.key("ckpt", str(v1)))  # two versions back: gone at once
    assert state.client.exists(state.key("ckpt", str(v2))) and state.client.exists(state.key("ckpt", str(v3)))
    version, loaded = state.fetch_checkpoint(encoder=HashingEncoder())
    queries = ["Solve this matrix problem number 1: compute the matrix value step by step."]
    assert version == v3
    np.testing.assert_allclose(loaded.predict(queries).quality, a.predict(queries).quality)
    a.state.close()


def test_fetch_builds_the_router_with_a_loader_not_the_router_module(checkpoint, redis_url, monkeypatch):
    """The state layer never imports the router: a fetched version is built by ``loader``, else by
    the bound router's class, else the last published router's, else the one registered at import."""
    from mixllm_router.state import host

    class Custom(MixLLMRouter):
        pass

    custom = Custom.load(checkpoint, encoder=HashingEncoder())
    publisher = RedisState(redis_url, namespace="t")
    version = publisher.publish_checkpoint(custom)
    folders: list[list[str]] = []

    def loader(folder, *, encoder=None):
        folders.append(sorted(p.name for p in folder.iterdir()))
        return MixLLMRouter.load(folder, encoder=encoder)

    got, loaded = RedisState(redis_url, namespace="t").fetch_checkpoint(encoder=HashingEncoder(), loader=loader)
    assert got == version and type(loaded) is MixLLMRouter and "manifest.json" in folders[0]
    assert type(publisher.fetch_checkpoint(encoder=HashingEncoder())[1]) is Custom  # the class it published
    monkeypatch.setattr(host, "_default_loader", None)  # as if the router package had registered none
    with pytest.raises(SharedStateError, match=r"loader=MixLLMRouter\.load"):
        RedisState(redis_url, namespace="t").fetch_checkpoint(encoder=HashingEncoder())
    bound = custom.share_state(RedisState(redis_url, namespace="t", pick_up_checkpoints=False))
    assert type(bound.fetch_checkpoint(encoder=HashingEncoder())[1]) is Custom  # the bound router's class
    bound.close()


def test_workers_swap_in_new_versions_while_routing(checkpoint, redis_url, synthetic_data):
    """A worker routing from several threads while versions are published: no route fails, and the
    worker ends on the newest version."""
    publisher = worker(checkpoint, redis_url)
    busy = worker(checkpoint, redis_url, checkpoint_poll_s=0.01)
    errors: list[BaseException] = []
    stop = threading.Event()
    queries = synthetic_data.queries[:20]

    def route_forever() -> None:
        while not stop.is_set():
            try:
                busy.route_batch(queries)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return

    threads = [threading.Thread(target=route_forever) for _ in range(3)]
    for t in threads:
        t.start()
    rng = np.random.default_rng(0)
    last = 0
    for _ in range(5):
        for model in publisher.predictors_.values():  # a visibly different model each time
            model.linear.b = model.linear.b + rng.normal(size=model.linear.b.shape)
        last = publisher.state.publish_checkpoint(publisher)
        time.sleep(0.1)
    assert busy.state.wait_for_version(last, timeout_s=10)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert busy.state.status().checkpoint_version == last
    np.testing.assert_allclose(busy.predict(queries).quality, publisher.predict(queries).quality)
    publisher.state.close(), busy.state.close()


def test_versions_stay_ordered_when_redis_restarts_empty(checkpoint, redis_server, redis_url, caplog):
    """Issue 15 item 6: after a restart with no data the counter started again at 1, a worker on
    version N ignored every new version, and wait_for_version reported success all the same."""
    import logging
    import shutil

    publisher = worker(checkpoint, redis_url)
    busy = worker(checkpoint, redis_url, checkpoint_poll_s=0.01, retry_s=0.05)
    queries = ["Solve this matrix problem number 1: compute the matrix value step by step."]
    rng = np.random.default_rng(0)

    def new_model() -> None:
        for model in publisher.predictors_.values():
            model.linear.b = model.linear.b + rng.normal(size=model.linear.b.shape)

    for _ in range(3):
        new_model()
        last = publisher.state.publish_checkpoint(publisher)
    assert busy.state.wait_for_version(last, timeout_s=10)
    redis_server.stop()  # restart empty: no append-only file, no snapshot
    for item in redis_server.folder.iterdir():
        if item.name != "redis.log":
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    redis_server.start()
    with caplog.at_level(logging.WARNING, logger="mixllm_router.state.redis"):
        deadline = time.monotonic() + 10
        while busy.state.status().store_resets == 0 and time.monotonic() < deadline:
            busy.route(queries[0])  # routing syncs (and polls): the worker notices the wipe
            time.sleep(0.02)
        assert busy.state.status().store_resets == 1
        assert any("lost the state" in r.getMessage() for r in caplog.records)
        new_model()
        after = RedisState(redis_url, namespace="t").publish_checkpoint(publisher)  # e.g. a restarted learner
        assert after > last
        assert busy.state.wait_for_version(after, timeout_s=10)
    assert busy.state.status().checkpoint_version == after
    np.testing.assert_allclose(busy.predict(queries).quality, publisher.predict(queries).quality)
    publisher.state.close(), busy.state.close()


# ---------------------------------------------------------------------------------------- decisions
def test_feedback_reaches_the_stream_from_a_worker_that_did_not_route(checkpoint, redis_url):
    import json

    import redis

    a, b = worker(checkpoint, redis_url), worker(checkpoint, redis_url)
    decision = a.route("Write a sonnet poem number 7 about the sea, with a sonnet rhyme scheme.")
    a.decisions.update(decision.decision_id, answered_by="cheap", output_tokens=33)
    a.decisions.alias("run-123", decision.decision_id)
    a.state.close()  # flushes the decision writer
    assert b.feedback("run-123", 0.75) > 0  # by the LangChain-style alias, in another worker
    with pytest.raises(FeedbackError, match="already received feedback"):
        worker(checkpoint, redis_url).feedback(decision.decision_id, 1.0)  # a third worker: still once
    (entry_id, fields), = redis.Redis.from_url(redis_url).xrange("{t}:feedback")
    event = json.loads(fields[b"event"])
    assert (event["decision_id"], event["candidate"], event["score"], event["output_tokens"]) == (
        decision.decision_id, "cheap", 0.75, 33)
    with pytest.raises(FeedbackError, match="no routing decision"):
        b.feedback("never-routed", 1.0)
    b.state.close()


# ---------------------------------------------------------------------------------------- hostile store
def test_garbage_in_redis_never_breaks_routing(checkpoint, redis_url):
    """Whatever another (buggy, older, hostile) writer left in the namespace: routes still work,
    bad entries count for nothing, and a bad checkpoint is refused without being loaded."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.hset("{t}:inflight-info:math-pro", "someone|1", "not-a-number|x")
    client.zadd("{t}:inflight:math-pro", {"someone|1": 1e12})
    client.xadd("{t}:service:math-pro", {"w": "someone", "s": "NaNish"})
    client.set("{t}:decision:bad", b"\xff\xfe not json")
    a = worker(checkpoint, redis_url)
    query = "Solve this integral problem number 3: compute the integral value step by step."
    assert a.route(query).chosen
    assert a.load_tracker.in_flight("math-pro") == 0  # the malformed lease is ignored
    with pytest.raises(FeedbackError, match="no routing decision"):
        a.feedback("bad", 1.0)
    assert a.state.status().errors >= 1

    # a published version holding a path-traversal file name, or a damaged manifest
    client.hset("{t}:ckpt:7", mapping={"../evil.json": b"{}", "manifest.json": b"{}"})
    with pytest.raises(SharedStateError, match="bad name"):
        a.state.fetch_checkpoint(7)
    client.delete("{t}:ckpt:7")
    client.hset("{t}:ckpt:8", mapping={"manifest.json": b"{not json"})
    client.set("{t}:ckpt:latest", 8)
    with pytest.warns(SharedStateWarning, match="could not load published checkpoint 8"):
        a.state.wait_for_version(8, timeout_s=1.0)
    assert a.state.status().checkpoint_version == 0  # still routing with what it had
    assert a.route(query).chosen
    a.state.close()


def test_from_source_shares_once_per_url(checkpoint, redis_url):
    router = MixLLMRouter.from_source(checkpoint_path=checkpoint, state=redis_url)
    first = router.state
    assert isinstance(first, RedisState)
    assert MixLLMRouter.from_source(router, state=redis_url).state is first  # a second wrapper: same connection
    first.close()
