"""The ``mixllm`` command line: one module per command, parsing only; the work lives in the library."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
