"""Load on the candidates: the latency penalty, service times and the tracker (see :mod:`.load_tracker`)."""

from __future__ import annotations

from .load_tracker import (
    MAX_EXPONENT,
    LatencySettings,
    LoadSharing,
    LoadTicket,
    LoadTracker,
    ServiceTimeEstimate,
    latency_penalty,
)

__all__ = [
    "MAX_EXPONENT",
    "latency_penalty",
    "LatencySettings",
    "ServiceTimeEstimate",
    "LoadTicket",
    "LoadSharing",
    "LoadTracker",
]
