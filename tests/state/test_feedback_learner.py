"""FeedbackLearner against a real redis-server: exactly-once application across a learner crash."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest

from mixllm_router import MixLLMRouter, SharedStateError
from mixllm_router.encoders import HashingEncoder
from mixllm_router.learning.learner import FeedbackEvent
from mixllm_router.state import FeedbackLearner, RedisState
from mixllm_router.state.redis import seq_from_stream_id

pytestmark = pytest.mark.filterwarnings("ignore::mixllm_router.state.SharedStateWarning")


@pytest.fixture()
def checkpoint(tmp_path, synthetic_data):
    """A router whose config builds the encoder it was trained with (``mixllm learn --router``
    loads it without ``encoder=``, and a load checks the encoder's fingerprint)."""
    router = MixLLMRouter(config={"encoder": {"kind": "hashing", "use_cache": False}}, prior_strength=1.0,
                          calibration_folds=3)
    return router.fit(synthetic_data).save(tmp_path / "ckpt")


def give_feedback(checkpoint, url, queries, n, seed=0):
    """A worker routes ``n`` queries and rates each answer; returns the worker."""
    router = MixLLMRouter.load(checkpoint, encoder=HashingEncoder())
    router.share_state(url, namespace="t")
    rng = np.random.default_rng(seed)
    for i in range(n):
        decision = router.route(queries[i % len(queries)])
        assert router.feedback(decision.decision_id, bool(rng.random() < 0.5)) > 0
    return router


def reference(checkpoint, url):
    """The stream applied once, in order, in this process: what the published state must equal."""
    import redis

    router = MixLLMRouter.load(checkpoint, encoder=HashingEncoder())
    for entry_id, fields in redis.Redis.from_url(url).xrange("{t}:feedback"):
        event = FeedbackEvent.from_json(json.loads(fields[b"event"]))
        router.learning.apply(router, replace(event, seq=seq_from_stream_id(entry_id)))
    return router


def assert_same_model(a, b, queries):
    assert a.learning.n_events == b.learning.n_events
    assert a.learning.applied_seq == b.learning.applied_seq
    for name in a.pool.names:
        np.testing.assert_allclose(a.predictors_[name].linear.a_inv, b.predictors_[name].linear.a_inv, atol=1e-10)
        np.testing.assert_allclose(a.predictors_[name].linear.b, b.predictors_[name].linear.b, atol=1e-10)
    np.testing.assert_allclose(a.predict(queries).quality, b.predict(queries).quality, atol=1e-9)


def test_learner_applies_the_stream_and_workers_pick_it_up(checkpoint, redis_url, synthetic_data):
    queries = synthetic_data.queries
    worker = give_feedback(checkpoint, redis_url, queries, 30)
    expected = reference(checkpoint, redis_url)  # before the learner trims the stream
    learner = FeedbackLearner(MixLLMRouter.load(checkpoint, encoder=HashingEncoder()),
                              RedisState(redis_url, namespace="t"), publish_every=10, batch=4)
    assert learner.start() > 0  # the first version (time-based: versions stay ordered across a wipe)
    assert learner.run(idle_exit_s=0.5) == 30
    assert learner.stats["unacknowledged"] == 0
    import redis

    assert redis.Redis.from_url(redis_url).xpending("{t}:feedback", "learners")["pending"] == 0
    assert redis.Redis.from_url(redis_url).xlen("{t}:feedback") == 1  # trimmed up to the last acknowledged
    assert worker.state.wait_for_version(learner.version, timeout_s=10)
    assert worker.learning.n_events == 30
    assert_same_model(worker, expected, queries[:10])
    worker.state.close()


def test_a_second_learner_is_refused(checkpoint, redis_url):
    first = FeedbackLearner(MixLLMRouter.load(checkpoint, encoder=HashingEncoder()),
                            RedisState(redis_url, namespace="t"), consumer="one")
    first.start()
    second = FeedbackLearner(MixLLMRouter.load(checkpoint, encoder=HashingEncoder()),
                             RedisState(redis_url, namespace="t"), consumer="two")
    with pytest.raises(SharedStateError, match="another learner"):
        second.start()


def test_malformed_entries_are_skipped_and_acknowledged(checkpoint, redis_url, synthetic_data):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.xadd("{t}:feedback", {"event": "not json"})
    client.xadd("{t}:feedback", {"other": "field"})
    give_feedback(checkpoint, redis_url, synthetic_data.queries, 3).state.close()
    learner = FeedbackLearner(MixLLMRouter.load(checkpoint, encoder=HashingEncoder()),
                              RedisState(redis_url, namespace="t"), publish_every=1)
    assert learner.run(idle_exit_s=0.3) == 3
    assert learner.malformed == 2
    assert client.xpending("{t}:feedback", "learners")["pending"] == 0


LEARNER = """
import sys, time
from mixllm_router import MixLLMRouter
from mixllm_router.encoders import HashingEncoder
from mixllm_router.state import FeedbackLearner, RedisState
learner = FeedbackLearner(MixLLMRouter.load({checkpoint!r}, encoder=HashingEncoder()),
                          RedisState({url!r}, namespace="t"), publish_every=10, batch=3, block_ms=50)
learner.start()
if {exit_when_idle}:
    learner.run(idle_exit_s=0.5)
    print("done", flush=True)
    sys.exit(0)
while True:
    learner.step()
    print("applied", learner.applied, flush=True)
    time.sleep(0.02)
"""


def run_learner(checkpoint, url, *, kill_after=None):
    code = textwrap.dedent(LEARNER.format(checkpoint=str(checkpoint), url=url, exit_when_idle=kill_after is None))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    applied = 0
    try:
        for line in proc.stdout:
            if line.startswith("applied"):
                applied = int(line.split()[1])
                if kill_after is not None and applied >= kill_after:
                    proc.kill()  # SIGKILL: no chance to publish or acknowledge what it holds
                    break
            elif line.startswith("done"):
                break
        proc.wait(timeout=60)
    finally:
        proc.kill()
    return applied


def test_killed_learner_restarts_and_every_event_is_applied_exactly_once(checkpoint, redis_url, synthetic_data):
    import redis

    queries = synthetic_data.queries
    give_feedback(checkpoint, redis_url, queries, 40).state.close()
    expected = reference(checkpoint, redis_url)
    applied_before_kill = run_learner(checkpoint, redis_url, kill_after=25)
    client = redis.Redis.from_url(redis_url)
    published = int(client.get("{t}:ckpt:latest"))
    state = RedisState(redis_url, namespace="t")
    _, mid = state.fetch_checkpoint(published, encoder=HashingEncoder())
    # the crash left events applied in memory but neither published nor acknowledged
    assert mid.learning.n_events < applied_before_kill
    assert client.xpending("{t}:feedback", "learners")["pending"] > 0
    run_learner(checkpoint, redis_url)  # restart under the same consumer name
    _, final = state.fetch_checkpoint(encoder=HashingEncoder())
    assert final.learning.n_events == 40  # none lost, none twice
    assert client.xpending("{t}:feedback", "learners")["pending"] == 0
    assert_same_model(final, expected, queries[:10])
    assert client.xlen("{t}:feedback") == 1  # trimmed up to the last acknowledged entry


def test_cli_learn_runs_until_idle(checkpoint, redis_url, synthetic_data, capsys):
    from mixllm_router.cli.main import main

    worker = give_feedback(checkpoint, redis_url, synthetic_data.queries, 5)
    assert main(["learn", "--router", str(checkpoint), "--state", redis_url, "--namespace", "t",
                 "--publish-every", "2", "--idle-exit", "0.5"]) == 0
    assert "'applied': 5" in capsys.readouterr().err
    assert worker.state.wait_for_version(RedisState(redis_url, namespace="t").latest_version(), timeout_s=10)
    assert worker.learning.n_events == 5
    worker.state.close()
    assert main(["learn", "--router", str(checkpoint), "--state", "http://nope", "--idle-exit", "0"]) == 2
