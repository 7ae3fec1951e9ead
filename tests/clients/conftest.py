"""Fixtures for the outbound-client tests: the scripted HTTP server and a fake clock."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds servers.py

from servers import ScriptedServer  # noqa: E402

from mixllm_router.candidates import Candidate  # noqa: E402

API_KEY = "sk-test-SECRET-0123456789abcdef"


class FakeClock:
    """A clock that moves only when the code under test sleeps (sync or async)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def _server_session() -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(_server_session: ScriptedServer) -> Iterator[ScriptedServer]:
    _server_session.reset()
    yield _server_session
    _server_session.reset()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _cand(name: str, **kw: object) -> Candidate:
    kw.setdefault("input_price", 1.0)  # USD per million tokens
    kw.setdefault("output_price", 2.0)
    return Candidate(name=name, **kw)  # type: ignore[arg-type]


@pytest.fixture
def cand():
    """``cand(name, **fields)``: a Candidate with prices 1 / 2 USD per million tokens by default."""
    return _cand


@pytest.fixture
def api_key() -> str:
    return API_KEY
