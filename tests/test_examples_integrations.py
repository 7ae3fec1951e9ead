"""The LangChain and LlamaIndex examples run end to end, offline, as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, timeout: float) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MIXLLM_CHECKPOINT")}
    env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run([sys.executable, str(ROOT / "examples" / script)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_langchain_chain_example() -> None:
    pytest.importorskip("langchain_mixllm", reason="pip install -e integrations/langchain-mixllm")
    out = _run("langchain_chain.py", timeout=120)
    assert "A: [small] Answer to: What is the capital of Italy?" in out  # cheap candidate for a fact
    assert "A: [large] Answer to: Prove that the square root of two is irrational." in out  # strong one for a proof
    assert out.count("thumbs-up recorded") == 2
    assert "decision_id=" in out


@pytest.mark.encoder
def test_llamaindex_rag_example() -> None:
    pytest.importorskip("llama_index.llms.mixllm", reason="pip install -e integrations/llama-index-llms-mixllm")
    out = _run("llamaindex_rag.py", timeout=180)
    assert "A: [small] The city library opens at 9 am and closes at 6 pm" in out
    assert "source: library.txt" in out and "thumbs-up recorded" in out
    assert "A (streamed): [small] Glass goes in the green bin" in out and "source: recycling.txt" in out
