"""LangChain integration of mixllm-router: :class:`ChatMixLLM` routes each call among candidate
chat models (quality for cost, MixLLM) and delegates to the chosen one."""

from langchain_mixllm.chat_models import ChatMixLLM

__all__ = ["ChatMixLLM"]
__version__ = "0.1.0"
