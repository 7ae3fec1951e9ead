"""Which query encoder to use and how to cut long prompts (``RouterConfig.encoder``).

A leaf module, so the encoders can read their settings without importing the router's config.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from .._settings import Settings, _path_text

__all__ = ["EncoderSettings"]


class EncoderSettings(Settings):
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
