"""Importing ONNX Runtime without side effects, shared by the encoder and the graph builder.

ONNX Runtime writes a device id under ``~/.cache/Microsoft/`` when it is imported, unless
``ORT_DISABLE_TELEMETRY`` is set: :func:`import_onnxruntime` sets it (if the user has not) first,
so the library writes nowhere but the folders its user chose.
"""

from __future__ import annotations

import os
from typing import Any

from .._exceptions import EncoderError

__all__ = ["INSTALL_HINT", "import_onnxruntime", "onnxruntime_available"]

INSTALL_HINT = "pip install 'mixllm-router[onnx]'"


def onnxruntime_available() -> bool:
    """Whether the ONNX backend's packages are installed (checked without importing them)."""
    from importlib.util import find_spec

    return all(find_spec(m) is not None for m in ("onnxruntime", "tokenizers"))


def import_onnxruntime() -> Any:
    """``import onnxruntime`` with its telemetry off, so importing it writes no file under ``~``."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import onnxruntime
    except ImportError as exc:
        raise EncoderError(f"the ONNX encoder backend needs onnxruntime and tokenizers: {INSTALL_HINT}") from exc
    return onnxruntime
