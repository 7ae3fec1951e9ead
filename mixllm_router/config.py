"""Router settings, validated with pydantic.

Every knob of the meta score ``S = q − λ·c + α·u − β·P + γ·κ·s`` and of the predictors lives here,
is saved in the checkpoint manifest, and is checked when set: a negative weight or an unknown model
kind fails at construction with :class:`~mixllm_router.ConfigError`, not at the first query.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError

from ._exceptions import ConfigError
from ._settings import Settings, describe
from .encoders.settings import EncoderSettings
from .learning.settings import PRIOR_MAX, PRIOR_MIN, LearningSettings
from .policy.load import LatencySettings

__all__ = ["RouterConfig", "EncoderSettings", "LatencySettings", "make_config"]

QualityModel = Literal["ridge", "knn", "mlp", "ridge+knn", "ridge+knn+mlp"]


_describe = describe
_Settings = Settings


class RouterConfig(_Settings):
    """All settings of a :class:`~mixllm_router.MixLLMRouter`."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    cost_weight: float = Field(
        default=50.0, ge=0, le=1e12, description="λ: quality points one USD is worth. 0 ignores cost."
    )
    exploration: float = Field(default=0.05, ge=0, le=1e6, description="α: weight of the LinUCB uncertainty bonus.")
    exploration_policy: Literal["ucb", "thompson"] = Field(
        default="ucb",
        description="'ucb': add α·u (deterministic). 'thompson': add σ·u·ξ with ξ ~ N(0, 1) per query and "
        "candidate, a draw from the ridge posterior; σ = thompson_scale. Thompson sampling tries a new or "
        "under-rated candidate where UCB's small bonus never does (docs/online_learning.md).",
    )
    thompson_scale: float = Field(default=0.2, ge=0, le=1e6, description="σ of Thompson-sampling exploration.")
    feedback_weight: float = Field(
        default=0.0, ge=0, le=1e6,
        description=(
            "γ: weight of the online feedback score κ·(π − 1/m). 0 (off) is what cross-validation chose on "
            "stationary data; 0.1–0.5 lets feedback override the predictors fast when a candidate changes "
            "behind its name, at some cost when nothing changes (docs/online_learning.md, drift replay)."
        ),
    )
    prior_strength: float = Field(
        default=10.0, ge=PRIOR_MIN, le=PRIOR_MAX,
        description="λ0: ridge penalty and prior precision of A (bounded: A⁻¹ = I/λ0 must stay finite and invertible).",
    )
    quality_model: QualityModel = Field(
        default="ridge", description="Per-candidate quality predictor; '+' averages several."
    )
    knn_k: int = Field(default=40, gt=0, le=100_000, description="Neighbours for the kNN quality predictor.")
    mlp_hidden: int = Field(default=64, gt=0, le=4096)
    mlp_alpha: float = Field(default=1e-2, ge=0, le=1e6, description="L2 penalty of the MLP predictor.")
    reference_model: str | None = Field(
        default=None, description="Model whose cost defines `cost_share` (default: the costliest candidate)."
    )
    calibration_folds: int = Field(default=5, ge=2, le=20, description="Folds for out-of-fold calibration of λ.")
    encoder: EncoderSettings = Field(default_factory=EncoderSettings)
    latency: LatencySettings = Field(default_factory=LatencySettings)
    decision_log_size: int = Field(default=10_000, gt=0, le=10_000_000, description="Recent decisions kept for feedback.")
    learning: LearningSettings = Field(
        default_factory=LearningSettings, description="Online learning: feedback journal, update schedule, rates."
    )
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Seeds fold assignment, the MLP and Thompson draws.")


def make_config(config: RouterConfig | dict[str, Any] | None = None, **overrides: Any) -> RouterConfig:
    """Build a validated config from a config, a dict and/or keyword overrides.

    Raises :class:`ConfigError` (not pydantic's ValidationError) listing every invalid field.
    """
    try:
        if config is None:
            base: dict[str, Any] = {}
        elif isinstance(config, RouterConfig):
            base = config.model_dump()
        elif isinstance(config, dict):
            base = dict(config)
        else:
            raise ConfigError(f"config must be a RouterConfig or a dict, got {type(config).__name__}")
        base.update(overrides)
        return RouterConfig.model_validate(base)
    except ValidationError as exc:
        raise ConfigError(f"invalid router config: {_describe(exc)}") from None
