"""Every code block of README.md and docs/*.md is run here, offline, or says why it cannot be.

A block that cannot run carries a marker on the line before its opening fence::

    <!-- not run: needs an API key and a paid call -->

Everything else runs: ``python`` blocks in file order in one namespace per file (a later block may
use an earlier one's names), inside a sandbox folder that holds what the docs name
(``outcomes.csv``, a ``router-ckpt/`` checkpoint), with provider SDKs pointed at local servers on
127.0.0.1 (``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``; fake keys); ``toml`` blocks are parsed
and validated as candidates files. A block in any other language (shell, a diagram, a formula)
must carry a marker. So a doc example that stops working, or a new one that nobody runs, fails
this test.
"""

from __future__ import annotations

import csv
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*not run:\s*(\S.*?)\s*-->\s*$")
MODELS = ["gpt-4o-mini", "gpt-4o", "local-llama", "claude-haiku", "llama3-8b"]


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    not_run: str | None  # the marker's reason


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with their markers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start, lang = i, fence.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if j >= len(lines):
            raise AssertionError(f"{path.name}:{start + 1}: code block never closed")
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = _MARKER.match(lines[k]) if k >= 0 else None
        out.append(Block(path, start + 1, lang, "\n".join(lines[start + 1:j]), marker.group(1) if marker else None))
        i = j + 1
    return out


def _load_openai_server() -> Any:
    path = ROOT / "integrations" / "langchain-mixllm" / "tests" / "openai_compat_server.py"
    module = sys.modules.get("openai_compat_server")
    if module is None:
        spec = importlib.util.spec_from_file_location("openai_compat_server", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["openai_compat_server"] = module
        spec.loader.exec_module(module)
    return module.RuleBasedOpenAIServer


def _outcomes(path: Path) -> None:
    """Recorded outcomes of the docs' model names: small models good at chat, large at proofs."""
    easy = ["say hello", "what is the capital of italy", "summarise this contract clause", "tell me a joke"]
    hard = ["prove that sqrt 2 is irrational", "write a sql query that finds duplicate emails",
            "derive the softmax gradient", "explain the cap theorem with a proof"]
    price = {"gpt-4o-mini": 2e-5, "gpt-4o": 1e-3, "local-llama": 1e-6, "claude-haiku": 1e-4, "llama3-8b": 1e-6}
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["query", "model", "quality", "cost", "output_tokens"])
        writer.writeheader()
        for i in range(6):
            for kind, texts in (("easy", easy), ("hard", hard)):
                for text in texts:
                    for model in MODELS:
                        good = model == "gpt-4o" or kind == "easy"
                        writer.writerow({"query": f"{text} ({i})", "model": model, "quality": 0.9 if good else 0.2,
                                         "cost": price[model], "output_tokens": 60})


@pytest.fixture(scope="module")
def servers() -> Any:
    sys.path.insert(0, str(ROOT / "tests"))  # tests/ holds servers.py (as tests/clients/conftest.py does)
    from servers import ScriptedServer

    openai_server = _load_openai_server()().start()
    scripted = ScriptedServer().start()
    yield openai_server, scripted
    openai_server.stop()
    scripted.stop()


@pytest.fixture()
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, servers: Any) -> Path:
    from mixllm_router import Candidate, MixLLMRouter, RoutingDataset

    openai_server, scripted = servers
    monkeypatch.chdir(tmp_path)
    _outcomes(tmp_path / "outcomes.csv")
    pool = [Candidate(name=m, input_price=p_in, output_price=p_out, supports_tools=True)
            for m, p_in, p_out in (("gpt-4o-mini", 0.15, 0.6), ("gpt-4o", 2.5, 10.0))]
    data = RoutingDataset.from_csv(tmp_path / "outcomes.csv")
    router = MixLLMRouter(pool, config={"encoder": {"kind": "hashing", "use_cache": False}})
    with pytest.warns(UserWarning, match="ignoring models"):
        router.fit(data)
    router.save(tmp_path / "router-ckpt")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-local-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", scripted.anthropic_url)
    monkeypatch.setenv("MIXLLM_CACHE_DIR", str(tmp_path / "cache"))  # the embedding cache stays in the sandbox
    monkeypatch.delenv("MIXLLM_CHECKPOINT", raising=False)
    monkeypatch.delenv("MIXLLM_STATE", raising=False)
    return tmp_path


ALL = [b for path in DOCS for b in blocks(path)]


def test_every_block_runs_or_says_why_not() -> None:
    unmarked = [f"{b.path.relative_to(ROOT)}:{b.line} ({b.lang or 'no language'})" for b in ALL
                if b.not_run is None and b.lang not in ("python", "toml")]
    assert not unmarked, ("code blocks that are neither run (python, toml) nor marked "
                          "'<!-- not run: reason -->' on the line before: " + ", ".join(unmarked))


@pytest.mark.parametrize("path", [p for p in DOCS if any(b.not_run is None for b in blocks(p))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_blocks_run(path: Path, sandbox: Path) -> None:
    from mixllm_router import load_candidates

    namespace: dict[str, Any] = {"__name__": f"doc:{path.name}"}
    for block in blocks(path):
        if block.not_run is not None:
            continue
        where = f"{path.relative_to(ROOT)}:{block.line}"
        if block.lang == "toml":
            file = sandbox / f"block-{block.line}.toml"
            file.write_text(block.code)
            assert load_candidates(file).candidates, where
            continue
        try:
            exec(compile(block.code, where, "exec"), namespace)  # noqa: S102 - our own documentation
        except Exception as exc:  # noqa: BLE001 - report which block broke
            raise AssertionError(f"the code block at {where} failed: {type(exc).__name__}: {exc}") from exc
