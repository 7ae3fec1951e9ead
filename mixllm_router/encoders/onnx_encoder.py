"""The bundled MiniLM (or any local BERT folder) run by ONNX Runtime, with no torch at routing time.

Same vectors as :class:`~mixllm_router.encoders.HFEncoder`, by construction:

- tokens: the ``tokenizers`` package's fast tokenizer read from the folder's ``tokenizer.json``
  (the very object ``transformers`` wraps), with its own truncation and padding switched off;
  the content ids are then cut by :func:`~mixllm_router.encoders.hf.truncate_ids` exactly as the
  torch path does (``head``, ``tail``, ``head_tail``), and ``[CLS] … [SEP]`` put back;
- the graph: built from the folder's safetensors weights by
  :mod:`~mixllm_router.encoders.onnx_export` (no torch, no download), cached with its checksum;
- pooling and norm: masked mean (or ``[CLS]``) inside the graph, then ``e / max(‖e‖₂, 1e-12)``.

``quantize="fp32"`` agrees with the torch path to about 1e-6 per coordinate, so it shares the torch
path's fingerprint: the embedding cache and checkpoints are interchangeable between the two.
``quantize="int8"`` (dynamic int8 weights) differs by about 0.006 in cosine, so its fingerprint
carries ``:onnx-int8`` and its embeddings never mix with fp32 ones in a cache.

Speed comes from three choices (measured in ``benchmarks/overhead.py``, see docs/benchmarks.md):
ONNX Runtime's full graph optimisation (fused LayerNorm/GELU), one sequential executor with
``num_threads`` intra-op threads that do not spin when idle (a spinning pool steals the core from
a second worker on a busy machine), and no padding — one query runs at its own length, a batch is
sorted by length and padded only to its longest member.

Offline means no side effects: ONNX Runtime writes a device id under ``~/.cache/Microsoft/`` when
imported, unless ``ORT_DISABLE_TELEMETRY`` is set; :mod:`._onnxruntime` sets it (if the user has not)
before the first import, so the only files written are the graph cache in the folder the user chose.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._exceptions import ConfigError, EncoderError
from ._onnxruntime import INSTALL_HINT as _INSTALL
from ._onnxruntime import import_onnxruntime, onnxruntime_available
from .hf import HFEncoder, Pooling, Truncation, _TokenInputs, split_special

__all__ = ["OnnxEncoder", "onnxruntime_available", "import_onnxruntime"]

Quantize = Literal["fp32", "int8"]
Optimization = Literal["disabled", "basic", "extended", "all"]

class OnnxEncoder(_TokenInputs):
    """Embed queries with a local BERT encoder folder through ONNX Runtime (CPU).

    Parameters
    ----------
    model_path, max_tokens, truncation, batch_size, pooling:
        As for :class:`~mixllm_router.encoders.HFEncoder` (same meaning, same defaults).
    quantize:
        ``"fp32"`` (same vectors as torch) or ``"int8"`` (dynamic int8 weights: faster, smaller,
        cosine ≈ 0.994 to the fp32 vectors).
    cache_dir:
        Root folder of the graph cache (``<cache_dir>/onnx/<digest>/``); ``None``: the library's
        cache folder (``$MIXLLM_CACHE_DIR`` or ``~/.cache/mixllm-router``).
    num_threads:
        ONNX Runtime intra-op threads; ``None``: one per core. On a machine shared with other
        busy processes 1 is often faster (docs/benchmarks.md, contention table).
    optimization:
        ONNX Runtime's graph optimisation level; ``"all"`` fuses the most.
    spin:
        Whether idle intra-op threads busy-wait for work. Off by default: spinning saves a few
        microseconds per call on an idle machine and costs a core's time on a busy one.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        max_tokens: int = 256,
        truncation: Truncation = "head_tail",
        batch_size: int = 64,
        pooling: Pooling = "mean",
        quantize: Quantize = "fp32",
        cache_dir: str | os.PathLike[str] | None = None,
        num_threads: int | None = None,
        optimization: Optimization = "all",
        spin: bool = False,
    ) -> None:
        if quantize not in ("fp32", "int8"):
            raise ConfigError(f"quantize must be 'fp32' or 'int8', not {quantize!r}")
        if optimization not in ("disabled", "basic", "extended", "all"):
            raise ConfigError(f"optimization must be disabled/basic/extended/all, not {optimization!r}")
        # HFEncoder validates the folder and the options and computes the shared fingerprint; it is
        # never loaded here (no torch).
        self._spec = HFEncoder(model_path, max_tokens=max_tokens, truncation=truncation,
                               batch_size=batch_size, pooling=pooling, num_threads=num_threads)
        self.model_path = self._spec.model_path
        self.max_tokens, self.truncation, self.batch_size = max_tokens, truncation, batch_size
        self.pooling: Pooling = pooling
        self.quantize: Quantize = quantize
        self.num_threads = num_threads
        self.optimization: Optimization = optimization
        self.spin = bool(spin)
        if cache_dir is None:
            from .cache import default_cache_dir

            cache_dir = default_cache_dir()
        self.cache_dir = Path(cache_dir).expanduser()
        self.graph_path: Path | None = None
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self._recent_counts = {}

    def __repr__(self) -> str:
        return (
            f"OnnxEncoder({self.model_path.name!r}, quantize={self.quantize!r}, max_tokens={self.max_tokens}, "
            f"truncation={self.truncation!r}, pooling={self.pooling!r})"
        )

    @property
    def dim(self) -> int:
        return self._spec.dim

    @property
    def backend(self) -> str:
        """``"onnx"`` or ``"onnx-int8"`` (the names of ``EncoderSettings.backend``)."""
        return "onnx" if self.quantize == "fp32" else "onnx-int8"

    @property
    def fingerprint(self) -> str:
        """The torch path's fingerprint for fp32 (same vectors); with ``:onnx-int8`` appended for int8."""
        fp = self._spec.fingerprint
        return fp if self.quantize == "fp32" else f"{fp}:onnx-int8"

    def source_fingerprint(self) -> str:
        """What the graph depends on: config.json, the weights file's size and its safetensors header."""
        h = hashlib.sha256()
        h.update((self.model_path / "config.json").read_bytes() + b"\0")
        weights = self.model_path / "model.safetensors"
        if weights.is_file():
            h.update(f"{weights.stat().st_size}\0".encode())
            with weights.open("rb") as f:
                h.update(f.read(1 << 16))  # the header: every tensor's name, dtype, shape and offsets
        return f"bert:{self.model_path.name}:{h.hexdigest()[:16]}"

    # -- lazy loading ---------------------------------------------------------------------------
    def _load_tokenizer(self) -> None:
        with self._lock:
            if self._tokenizer is not None:
                return
            try:
                from tokenizers import Tokenizer
            except ImportError as exc:
                raise EncoderError(f"the ONNX encoder backend needs the 'tokenizers' package: {_INSTALL}") from exc
            f = self.model_path / "tokenizer.json"
            if not f.is_file():
                raise EncoderError(f"{self.model_path} has no tokenizer.json (the ONNX backend reads the fast "
                                   "tokenizer file; use backend='torch' for a folder with vocab.txt only)")
            try:
                tok = Tokenizer.from_file(str(f))
            except Exception as exc:
                raise EncoderError(f"cannot read {f}: {exc}") from exc
            tok.no_truncation()  # we cut on ids ourselves (head_tail), as the torch path does
            tok.no_padding()
            self._tokenizer = tok

    def _load(self) -> None:
        if self._tokenizer is None:
            self._load_tokenizer()
        with self._lock:
            if self._session is not None:
                return
            ort = import_onnxruntime()
            from .onnx_export import cached_graph

            path = cached_graph(self.model_path, self._spec._config, self.source_fingerprint(),
                                self.quantize, self.cache_dir)
            opts = ort.SessionOptions()
            opts.graph_optimization_level = {
                "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            }[self.optimization]
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # BERT is a chain: no use for inter-op
            opts.inter_op_num_threads = 1
            if self.num_threads is not None:
                opts.intra_op_num_threads = self.num_threads
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
            opts.log_severity_level = 3  # errors only: the shape-merge notes are noise
            try:
                self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            except Exception as exc:
                raise EncoderError(f"cannot open the ONNX graph {path}: {exc}") from exc
            self.graph_path = path

    def _token_ids(self, texts: list[str]) -> list[tuple[list[int], list[int], list[int]]]:
        """(leading special ids, content ids, trailing special ids) per text, as HFEncoder splits them."""
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        return [split_special(enc.ids, enc.special_tokens_mask) for enc in encodings]

    def _ensure_tokenizer(self) -> None:
        if self._tokenizer is None:
            self._load_tokenizer()

    # -- the forward pass (batching is the shared encode's) ---------------------------------------
    _forward_name = "ONNX forward pass"

    def _ensure_model(self) -> None:
        if self._session is None:
            self._load()

    def _pad_id(self) -> int:
        pad = self._tokenizer.token_to_id("[PAD]")
        return 0 if pad is None else int(pad)

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        want = ["mean" if self.pooling == "mean" else "cls"]
        pooled = self._session.run(want, {"input_ids": input_ids, "attention_mask": mask})[0]
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
