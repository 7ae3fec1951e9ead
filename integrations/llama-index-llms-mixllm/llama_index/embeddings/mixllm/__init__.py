"""The mixllm-router local encoder (all-MiniLM-L6-v2 by default) as a LlamaIndex embedding model."""

from llama_index.embeddings.mixllm.base import MixLLMEmbedding

__all__ = ["MixLLMEmbedding"]
