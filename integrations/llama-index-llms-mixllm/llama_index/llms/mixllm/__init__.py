"""LlamaIndex integration of mixllm-router: :class:`MixLLM` routes each call among candidate LLMs
(quality for cost, MixLLM); :class:`MixLLMEmbedding` is the router's local encoder as an
embedding model (also importable from ``llama_index.embeddings.mixllm``)."""

from llama_index.embeddings.mixllm.base import MixLLMEmbedding
from llama_index.llms.mixllm.base import MixLLM

__all__ = ["MixLLM", "MixLLMEmbedding"]
