"""Outbound clients: one interface to call OpenAI, Anthropic, any LangChain chat model, any
LlamaIndex LLM, a Python function, recorded answers, or a scripted fake.

Importing this package imports no SDK: each client imports its SDK when it is first used.
"""

from .anthropic import AnthropicClient
from .base import (
    BaseChatClient,
    CallOptions,
    ChatClient,
    Completion,
    CompletionChunk,
    Message,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    accumulate_chunks,
    estimate_tokens,
    normalize_messages,
)
from .callable import CallableClient
from .fake import FakeClient
from .langchain import LangChainClient
from .llamaindex import LlamaIndexClient
from .openai import OpenAIClient
from .replay import ReplayClient

__all__ = [
    "AnthropicClient",
    "BaseChatClient",
    "CallOptions",
    "CallableClient",
    "ChatClient",
    "Completion",
    "CompletionChunk",
    "FakeClient",
    "LangChainClient",
    "LlamaIndexClient",
    "Message",
    "OpenAIClient",
    "ReplayClient",
    "ToolCall",
    "ToolCallDelta",
    "ToolSpec",
    "accumulate_chunks",
    "estimate_tokens",
    "normalize_messages",
]
