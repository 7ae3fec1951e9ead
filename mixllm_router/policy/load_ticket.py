"""One request in flight: the :class:`LoadTicket` that :class:`~mixllm_router.policy.load_tracker.LoadTracker`
hands out when a request starts and takes back when it finishes (a shared state hears of both)."""

from __future__ import annotations

import itertools

__all__ = ["LoadTicket"]

_ticket_ids = itertools.count(1)


class LoadTicket:
    """One request in flight, returned by :meth:`LoadTracker.start`.

    Inside :meth:`LoadTracker.track` the body may set ``output_tokens`` (and ``ttft_s`` when
    streaming) so the service estimate learns from the call when the block ends.
    """

    __slots__ = ("name", "id", "started_at", "expected_s", "expected_tokens", "output_tokens", "ttft_s", "_done")

    def __init__(self, name: str, started_at: float, expected_s: float, expected_tokens: float | None = None) -> None:
        self.name = name
        self.id = next(_ticket_ids)
        self.started_at = started_at
        self.expected_s = expected_s
        self.expected_tokens = expected_tokens
        self.output_tokens: float | None = None
        self.ttft_s: float | None = None
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def __repr__(self) -> str:
        return f"LoadTicket({self.name!r}, id={self.id}, expected_s={self.expected_s:.3g}, done={self._done})"
