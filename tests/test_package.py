"""Package-level promises: a light import, one exception tree, typed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mixllm_router
from mixllm_router import _exceptions


def test_import_loads_no_heavy_dependency():
    code = ("import sys, mixllm_router; heavy = [m for m in ('torch', 'transformers', 'langchain_core', "
            "'llama_index', 'openai', 'anthropic', 'pandas', 'sklearn') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_error_is_a_mixllm_error():
    for name in _exceptions.__all__:
        cls = getattr(_exceptions, name)
        assert issubclass(cls, _exceptions.MixLLMError)
        assert getattr(mixllm_router, name) is cls


def test_lazy_data_exports_and_typed_marker():
    assert mixllm_router.RoutingDataset.__name__ == "RoutingDataset"
    assert (Path(mixllm_router.__file__).parent / "py.typed").exists()
