"""LangChain integration of mixllm-router: :class:`ChatMixLLM` routes each call among candidate
chat models (quality for cost, MixLLM) and delegates to the chosen one; :class:`ClientChatModel`
serves a mixllm ``ChatClient`` (OpenAIClient, AnthropicClient, ...) as a candidate."""

from langchain_mixllm.chat_models import ChatMixLLM
from langchain_mixllm.client_model import ClientChatModel

__all__ = ["ChatMixLLM", "ClientChatModel"]
__version__ = "0.1.0"
