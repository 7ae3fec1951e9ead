from __future__ import annotations

import os
from pathlib import Path

# tiktoken (LlamaIndex's default tokenizer) would download its BPE files: use the copy
# llama-index-core ships, before anything imports tiktoken.
import llama_index.core
import pytest

os.environ.setdefault(
    "TIKTOKEN_CACHE_DIR", str(Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache")
)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def minilm():
    from mixllm_router.encoders import HFEncoder

    return HFEncoder()


@pytest.fixture(scope="session")
def router(minilm):
    from li_testing import fit_router

    return fit_router(minilm)
