"""Router settings, validated with pydantic.

Every knob of the meta score ``S = q − λ·c + α·u − β·P + γ·κ·s`` and of the predictors lives here,
is saved in the checkpoint manifest, and is checked when set: a negative weight or an unknown model
kind fails at construction with :class:`~mixllm_router.ConfigError`, not at the first query.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from ._exceptions import ConfigError
from ._settings import Settings, describe
from .learning.learner import PRIOR_MAX, PRIOR_MIN, LearningSettings, _path_text
from .policy.load import LatencySettings

__all__ = ["RouterConfig", "EncoderSettings", "LatencySettings", "make_config"]

QualityModel = Literal["ridge", "knn", "mlp", "ridge+knn", "ridge+knn+mlp"]


_describe = describe
_Settings = Settings


class EncoderSettings(_Settings):
    """Which query encoder to use and how to cut long prompts."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    kind: Literal["minilm", "hf", "hashing"] = Field(
        default="minilm", description="'minilm': bundled all-MiniLM-L6-v2; 'hf': a local HF folder; 'hashing': torch-free."
    )
    model_path: str | None = Field(default=None, description="Local Hugging Face model folder (kind='hf').")
    max_tokens: int = Field(default=256, gt=8, le=8192)
    truncation: Literal["head", "tail", "head_tail"] = Field(
        default="head_tail", description="Which part of a long prompt to keep (see docs/benchmarks.md)."
    )
    batch_size: int = Field(default=64, gt=0, le=65_536)
    backend: Literal["torch", "onnx", "onnx-int8", "auto"] = Field(
        default="auto",
        description="Runtime of the BERT encoder: 'torch'; 'onnx' (ONNX Runtime fp32, the same vectors, no torch); "
        "'onnx-int8' (faster, cosine ≈ 0.994 to fp32, its own cache key); 'auto': onnx if installed, else torch. "
        "$MIXLLM_ENCODER_BACKEND overrides it (encoders/backends.py).",
    )
    num_threads: int | None = Field(
        default=None, gt=0, le=1024, description="Threads of one forward pass; None: one per core (docs/benchmarks.md)."
    )
    cache_dir: str | None = Field(
        default=None,
        description="Root of the embedding cache (<root>/embeddings) and of the ONNX graphs (<root>/onnx); "
        "None: $MIXLLM_CACHE_DIR or ~/.cache/mixllm-router.",
    )
    use_cache: bool = True

    @field_validator("model_path", "cache_dir")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        return _path_text(value)

    @model_validator(mode="after")
    def _path_for_hf(self) -> EncoderSettings:
        if self.kind == "hf" and not self.model_path:
            raise ValueError("encoder kind 'hf' needs model_path")
        return self


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
