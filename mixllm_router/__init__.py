"""mixllm-router: send each query to the LLM with the best predicted quality for its cost.

Public API (everything else is private and may change)::

    from mixllm_router import MixLLMRouter, Candidate, RoutingDataset, load_routerbench

Importing this package loads numpy, pandas and pydantic only; torch, transformers and the provider
SDKs are imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._exceptions import (
    AllCandidatesFailedError,
    BudgetExceededError,
    CheckpointError,
    ClientError,
    ConfigError,
    ContextLengthError,
    DataError,
    EncoderError,
    FeedbackError,
    MixLLMError,
    NotFittedError,
    PermanentClientError,
    ScoringError,
    SharedStateError,
    StreamInterruptedError,
    TransientClientError,
    UnknownCandidateError,
)
from .candidates import Candidate, CandidatePool, UnknownPriceWarning
from .config import EncoderSettings, LatencySettings, RouterConfig
from .policy.decision import CandidateScore, RoutingDecision
from .router import MixLLMRouter, Predictions

if TYPE_CHECKING:
    from .candidates_file import CandidatesFile, load_candidates
    from .clients.fallback import CallResult, FallbackCaller, SpendingGuard
    from .data import DataIssue, RoutingDataset, load_routerbench
    from .responses import RoutedResponse, RoutedStream

__version__ = "0.1.0"

_LAZY = {
    "DataIssue": ".data",
    "RoutingDataset": ".data",
    "load_routerbench": ".data",
    "CallResult": ".clients.fallback",
    "FallbackCaller": ".clients.fallback",
    "SpendingGuard": ".clients.fallback",
    "CandidatesFile": ".candidates_file",
    "load_candidates": ".candidates_file",
    "RoutedResponse": ".responses",
    "RoutedStream": ".responses",
}


def __getattr__(name: str) -> object:
    """Import the data (pandas) and calling modules on first use, keeping ``import mixllm_router`` light."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "AllCandidatesFailedError",
    "BudgetExceededError",
    "CallResult",
    "Candidate",
    "CandidatePool",
    "CandidateScore",
    "CandidatesFile",
    "CheckpointError",
    "ClientError",
    "ConfigError",
    "ContextLengthError",
    "DataError",
    "DataIssue",
    "EncoderError",
    "EncoderSettings",
    "FallbackCaller",
    "FeedbackError",
    "LatencySettings",
    "MixLLMError",
    "MixLLMRouter",
    "NotFittedError",
    "PermanentClientError",
    "Predictions",
    "RoutedResponse",
    "RoutedStream",
    "RouterConfig",
    "RoutingDataset",
    "RoutingDecision",
    "SpendingGuard",
    "ScoringError",
    "SharedStateError",
    "StreamInterruptedError",
    "TransientClientError",
    "UnknownCandidateError",
    "UnknownPriceWarning",
    "__version__",
    "load_candidates",
    "load_routerbench",
]
