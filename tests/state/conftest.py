"""A real redis-server per test module (skipped with a reason when the binary is missing)."""

from __future__ import annotations

import pytest
from redis_server import RedisServer, redis_server_binary


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (Debian package redis-server; .ci/run installs it)")
    pytest.importorskip("redis", reason="the redis package is not installed (pip install 'mixllm-router[redis]')")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server):
    """A clean database for each test."""
    if redis_server.process is None:
        redis_server.start()
    redis_server.flush()
    return redis_server.url
