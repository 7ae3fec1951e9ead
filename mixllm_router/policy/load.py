"""Load on the candidates, under its old address: this module only re-exports.

The code lives in :mod:`.latency` (the penalty ``P(W)`` and :class:`LatencySettings`),
:mod:`.service_time` (:class:`ServiceTimeEstimate`), :mod:`.load_ticket` (:class:`LoadTicket`),
:mod:`.load_tracker` (:class:`LoadTracker` and the :class:`LoadSharing` protocol) and
:mod:`.candidate_load` (one candidate's requests and the waiting-time model). ``from
mixllm_router.policy.load import LoadTracker, LatencySettings`` keeps working.
"""

from __future__ import annotations

from .latency import MAX_EXPONENT, LatencySettings, latency_penalty
from .load_ticket import LoadTicket
from .load_tracker import LoadSharing, LoadTracker
from .service_time import ServiceTimeEstimate

__all__ = [
    "MAX_EXPONENT",
    "latency_penalty",
    "LatencySettings",
    "ServiceTimeEstimate",
    "LoadTicket",
    "LoadSharing",
    "LoadTracker",
]
