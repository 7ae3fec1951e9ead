"""Checkpoints: a folder with a JSON manifest and one safetensors file, written atomically, never pickled.

:mod:`.save_load` writes and reads the folder; :mod:`.validate` bounds and checks what a manifest
and its arrays may hold; :mod:`.trust` keeps host paths out of a checkpoint's hands and checks the
encoder; :mod:`.encoder` rebuilds the encoder a checkpoint names. See ``docs/guarantees.md``.
"""

from __future__ import annotations

from .save_load import FORMAT, FORMAT_VERSION, load_router, read_checkpoint, save_router, write_checkpoint

__all__ = ["FORMAT", "FORMAT_VERSION", "load_router", "read_checkpoint", "save_router", "write_checkpoint"]
