"""``MixLLMEmbedding``: the router's local query encoder as a LlamaIndex embedding model.

Why reuse it: the router already loads all-MiniLM-L6-v2 (bundled, offline, ~9 ms a short query
on 2 cores) to score every query, so a RAG index built with the same encoder costs no second
model and no API calls. Vectors are L2-normalised, so LlamaIndex's cosine similarity equals the
dot product the router itself uses for its kNN predictor.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr

from mixllm_router import ConfigError

__all__ = ["MixLLMEmbedding"]


class MixLLMEmbedding(BaseEmbedding):
    """Embed texts with a mixllm :class:`~mixllm_router.encoders.QueryEncoder`.

    ``MixLLMEmbedding()`` uses the bundled MiniLM (``HFEncoder``, built on first use);
    ``MixLLMEmbedding(encoder=enc)`` any encoder; ``MixLLMEmbedding.from_router(router)`` the
    encoder the router routes with.
    """

    model_name: str = Field(default="all-MiniLM-L6-v2", description="Name reported to LlamaIndex.")
    embed_batch_size: int = Field(default=64, gt=0, le=2048)

    _encoder: Any = PrivateAttr(default=None)

    def __init__(self, encoder: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if encoder is not None and not (hasattr(encoder, "encode") and hasattr(encoder, "dim")):
            raise ConfigError(f"encoder must be a mixllm QueryEncoder, got {type(encoder).__name__}")
        self._encoder = encoder

    @classmethod
    def from_router(cls, router: Any, **kwargs: Any) -> MixLLMEmbedding:
        """The encoder ``router`` routes with (one model in memory for routing and retrieval)."""
        encoder = router.encoder
        name = getattr(encoder, "fingerprint", None) or type(encoder).__name__
        return cls(encoder=encoder, **{"model_name": str(name)[:80], **kwargs})

    @classmethod
    def class_name(cls) -> str:
        return "MixLLMEmbedding"

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from mixllm_router.encoders import HFEncoder

            self._encoder = HFEncoder()
        return self._encoder

    def _embed(self, texts: list[str]) -> list[Embedding]:
        return [row.tolist() for row in self.encoder.encode(texts)]

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embed([query])[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embed(list(texts))

    async def _aget_query_embedding(self, query: str) -> Embedding:
        import asyncio

        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        import asyncio

        return await asyncio.to_thread(self._get_text_embedding, text)
