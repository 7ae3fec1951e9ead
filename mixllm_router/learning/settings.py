"""How the router learns from feedback: :class:`LearningSettings` (``RouterConfig.learning``).

A leaf module (pydantic and the settings base only), so the router's config can hold these
settings without importing the learner.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, field_validator

from .._settings import Settings, _path_text  # noqa: F401 - re-exported

__all__ = ["PRIOR_MAX", "PRIOR_MIN", "JournalWarning", "LearningSettings"]


class JournalWarning(UserWarning):
    """A journal entry was skipped on replay (e.g. its candidate is no longer in the pool)."""


#: Range of a ridge prior strength λ0 / ρ0: ``A⁻¹ = I/λ0`` must stay finite, and ``λ0·I + XᵀX`` well
#: conditioned enough to invert even when every training query is the same text.
PRIOR_MIN = 1e-6
PRIOR_MAX = 1e8


class LearningSettings(Settings):
    """How the router learns from feedback (``RouterConfig.learning``).

    Every number is finite and bounded (``allow_inf_nan=False`` plus an upper bound): ``inf``
    used to be accepted and to break only at ``save()``, a huge ``hidden`` to raise
    ``MemoryError`` half-way through applying an event.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    journal_path: str | None = Field(
        default=None, description="Feedback journal (JSON lines); None: feedback is not made durable."
    )
    journal_fsync: bool = Field(default=True, description="fsync the journal after every event (durable, ~ms).")
    batch_size: int = Field(default=1, ge=1, le=1_000_000, description="Apply queued feedback every this many events.")
    learning_rate: float = Field(default=0.05, gt=0, le=1e3, description="η of the feedback-score network.")
    hidden: int = Field(default=16, ge=0, le=4096, description="Trunk width of the feedback-score network (0: linear).")
    baseline_rate: float = Field(default=0.01, gt=0, le=1, description="β of the running-mean baseline.")
    prior_variance: float = Field(default=0.25, ge=1e-9, le=1e6, description="v0: prior Var[s_l] (0.25 = a fair coin).")
    prior_count: float = Field(default=8.0, ge=0, le=1e9, description="n0: pseudo-observations behind v0.")
    epsilon: float = Field(default=0.01, ge=1e-9, le=1e6, description="ε in κ = 1/(Var + ε).")
    new_candidate_prior_weight: float | None = Field(
        default=None, ge=PRIOR_MIN, le=PRIOR_MAX, description="ρ0 of a new candidate's prior (None: the config's prior_strength)."
    )
    remember_feedback_ids: int = Field(default=100_000, gt=0, le=100_000_000, description="Decisions remembered as already rated.")
    change_detection: bool = Field(
        default=True,
        description="Watch each candidate's outcomes against its predictions with a two-sided Bernoulli CUSUM; on "
                    "an alarm, soften its ridge so new outcomes outweigh the old ones (a model changed behind its name).",
    )
    change_threshold: float = Field(
        default=9.2, gt=0, le=1e6, description="h: CUSUM alarm level in nats of evidence (9.2 = ln 10⁴: a false alarm about "
                                       "once in 10⁴ or more events per candidate and side)."
    )
    change_shift: float = Field(
        default=1.0, gt=0, le=20, description="δ: the change in log-odds of a good answer the CUSUM is tuned to detect."
    )
    change_softening: float = Field(
        default=0.05, gt=0, le=1,
        description="c: on an alarm the ridge keeps its prior and c of its data (A ← λ0·I + c·Σxxᵀ, b ← c·b).",
    )
    change_warmup: int = Field(default=30, ge=2, le=1_000_000, description="Events of a candidate before its CUSUM starts.")

    @field_validator("journal_path")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        return _path_text(value)


# ---------------------------------------------------------------------------------- exploration
