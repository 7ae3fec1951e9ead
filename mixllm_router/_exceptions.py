"""The library's one exception tree.

Every error the library raises on purpose derives from :class:`MixLLMError`, so a caller can catch
everything of ours with one ``except`` and let programming errors (``TypeError`` from a bad call
inside our own code) stay loud. Where a built-in meaning fits, the class also derives from it
(``DataError`` is a ``ValueError``), so generic handlers keep working::

    MixLLMError
    ├── ConfigError            invalid settings (also ValueError)
    ├── DataError              a routing table that cannot be used as given (also ValueError)
    ├── NotFittedError         the router or a predictor was used before fit()/load()
    ├── UnknownCandidateError  a candidate name that is not in the pool (also KeyError)
    ├── EncoderError           the query encoder could not be loaded or run
    ├── CheckpointError        a checkpoint that cannot be written or read (names the file)
    ├── FeedbackError          feedback for an unknown decision, a bad score, a broken journal
    ├── SharedStateError       the shared state (Redis) refused what cannot fall back to local state
    └── ClientError            calling a candidate LLM failed
        ├── TransientClientError   429, 5xx, timeouts, connection errors: worth retrying elsewhere
        ├── PermanentClientError   auth, bad request: retrying will not help
        │   └── ContextLengthError the prompt does not fit this candidate's window
        ├── AllCandidatesFailedError every candidate allowed for the call failed
        ├── BudgetExceededError    the spending guard refused the call
        └── StreamInterruptedError a stream broke after its first token (never spliced)
"""

from __future__ import annotations

__all__ = [
    "MixLLMError",
    "ConfigError",
    "DataError",
    "NotFittedError",
    "UnknownCandidateError",
    "EncoderError",
    "CheckpointError",
    "FeedbackError",
    "SharedStateError",
    "ClientError",
    "TransientClientError",
    "PermanentClientError",
    "ContextLengthError",
    "AllCandidatesFailedError",
    "BudgetExceededError",
    "StreamInterruptedError",
    "ScoringError",
]


class MixLLMError(Exception):
    """Base class of every error raised on purpose by mixllm-router."""


class ConfigError(MixLLMError, ValueError):
    """A setting is out of range or inconsistent with another."""


class DataError(MixLLMError, ValueError):
    """A routing table is malformed (missing columns, NaN, duplicates, negative cost, ...)."""


class NotFittedError(MixLLMError, RuntimeError):
    """The object must be fitted (or loaded from a checkpoint) before this call."""


class UnknownCandidateError(MixLLMError, KeyError):
    """A candidate name that is not in the pool."""

    def __str__(self) -> str:  # KeyError quotes its message; keep ours readable
        return str(self.args[0]) if self.args else ""


class EncoderError(MixLLMError):
    """The query encoder could not be loaded or failed on its input."""


class CheckpointError(MixLLMError):
    """A checkpoint could not be written or read; the message names the file."""


class FeedbackError(MixLLMError, ValueError):
    """Feedback that cannot be applied: unknown or expired decision, score out of range, ..."""


class SharedStateError(MixLLMError):
    """The shared state (Redis) refused an operation that cannot fall back to local state:
    a second learner on one stream, a published checkpoint that cannot be fetched, ..."""


class ClientError(MixLLMError):
    """Calling a candidate LLM failed.

    ``candidate`` names the candidate when known; the provider's own exception is chained as
    ``__cause__``.
    """

    def __init__(self, message: str, *, candidate: str | None = None) -> None:
        super().__init__(message)
        self.candidate = candidate


class TransientClientError(ClientError):
    """A failure worth retrying or sending to another candidate (429, 5xx, timeout, connection)."""

    def __init__(
        self, message: str, *, candidate: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, candidate=candidate)
        self.retry_after = retry_after


class PermanentClientError(ClientError):
    """A failure that retrying will not fix (authentication, malformed request, ...)."""


class ContextLengthError(PermanentClientError):
    """The prompt does not fit this candidate's context window."""


class AllCandidatesFailedError(ClientError):
    """Every candidate allowed for the call failed; ``errors`` maps candidate name to its error."""

    def __init__(self, message: str, errors: dict[str, BaseException]) -> None:
        super().__init__(message)
        self.errors = errors


class BudgetExceededError(ClientError):
    """The spending guard refused the call (per-call or per-period budget exhausted)."""


class StreamInterruptedError(ClientError):
    """A stream failed after its first token; the partial text is in ``partial_text``."""

    def __init__(self, message: str, *, candidate: str | None = None, partial_text: str = "") -> None:
        super().__init__(message, candidate=candidate)
        self.partial_text = partial_text


class ScoringError(MixLLMError, ValueError):
    """A scorer or a collection cannot run as configured (bad pattern, schema, prompt, queries file, ...).

    A response a scorer cannot grade is *not* an error: it is a :class:`~mixllm_router.scoring.Score`
    whose ``value`` is ``None`` and whose ``error`` says why."""
