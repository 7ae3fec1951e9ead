"""Build the ONNX graph of a BERT encoder straight from its safetensors weights (no torch), and cache it.

Why build the graph by hand instead of ``torch.onnx.export``: exporting needs torch (the very thing
a light install leaves out), and torch's exporter changes between releases (the dynamo exporter of
torch ≥ 2.5 also needs ``onnxscript``). A BERT encoder is small and fixed — embeddings, then
``L × (self-attention, add & LayerNorm, FFN, add & LayerNorm)`` — so the graph is ~40 lines of
``onnx.helper`` calls over the same tensors ``transformers`` reads, and the result is checked
against the torch path in the tests (cosine ≥ 0.99999 on RouterBench prompts). The graph it
writes, for input ids ``x`` (B, T) and mask ``m`` (B, T)::

    h⁰ = LN(W_word[x] + (W_pos[0:T] + W_type[0]))                 # token type 0 everywhere
    for each layer:  [q k v] = h W_qkv + b_qkv                    # one fused matmul, 12 heads of 32
                     a = softmax(q kᵀ / √d_head + (1 − m)·(−10⁴)) v
                     h = LN(h + a W_o + b_o)
                     h = LN(h + gelu(h W_1 + b_1) W_2 + b_2)       # gelu(z) = z·(1 + erf(z/√2))/2
    mean = Σ_t m_t h_t / max(Σ_t m_t, 1e-9),   cls = h_0         # outputs "mean" and "cls" (B, d)

ONNX Runtime's own optimiser (``ORT_ENABLE_ALL``) then fuses the LayerNorm, GELU and bias
patterns at session start. The int8 variant is ``onnxruntime.quantization.quantize_dynamic`` of
the same graph with each layer's attention written as ONNX Runtime's fused ``Attention`` operator
(``com.microsoft``): quantised, it becomes ``QAttention``, whose q/k/v projection runs in int8 and
whose scores and softmax stay fp32 — about 7–10% faster on 256-token inputs than int8 matmuls
around unfused attention, at the same cosine to fp32 (docs/benchmarks.md §13). The fp32 graph keeps
the plain operators: there the fused operator measured no faster, and plain operators keep it
readable by any ONNX runtime.

The weights are stored beside each graph as ONNX *external data* (``model-<v>.onnx.data``), not
inside it. ONNX Runtime then maps that file into memory instead of reading it into the heap, so the
30,522 × 384 word-embedding table (47 MB in fp32) costs resident memory only for the rows a query
touches, and the protobuf parse never holds a second copy: peak RSS of an encode-only process falls
from 206 to 127 MB (fp32) and from 175 to 102 MB (int8).

The cache: ``<root>/onnx/<digest>/{model-fp32.onnx, model-fp32.onnx.data, model-int8.onnx,
model-int8.onnx.data, meta.json}`` where ``digest`` hashes the source fingerprint and
:data:`GRAPH_VERSION`; ``meta.json`` records each file's size and sha256, checked when the graph is
opened, so a truncated or foreign file is rebuilt, never run. A graph and its data are written in a
private build folder and renamed into place under a file lock, data first and ``meta.json`` last,
so two processes building at once never see half a graph. Only ``onnx`` (to build) and
``onnxruntime`` (to quantise) are needed; neither is imported until a graph is built.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import stat
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._exceptions import EncoderError

__all__ = ["GRAPH_VERSION", "build_bert_graph", "cached_graph", "graph_dir"]

Variant = Literal["fp32", "int8"]

#: Bumped whenever the graph this module writes changes; part of the cache folder's name.
#: 2: weights as external data; int8 built on the fused ``Attention`` operator.
GRAPH_VERSION = 2
_OPSET = 17  # LayerNormalization is standard from 17; quantize_dynamic supports it


def graph_dir(root: str | os.PathLike[str], source_fingerprint: str) -> Path:
    """The folder under ``root`` holding the graphs built from one source model."""
    digest = hashlib.sha256(f"{source_fingerprint}\0{GRAPH_VERSION}".encode()).hexdigest()[:16]
    return Path(root).expanduser() / "onnx" / digest


def _weights(model_path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    f = model_path / "model.safetensors"
    if not f.is_file():
        raise EncoderError(
            f"{model_path} has no model.safetensors; the ONNX backend builds its graph from safetensors "
            "weights only (use backend='torch' for a pytorch_model.bin folder)"
        )
    try:
        raw = load_file(str(f))
    except Exception as exc:  # safetensors raises its own error types for a broken file
        raise EncoderError(f"cannot read {f}: {exc}") from exc
    # some exports prefix every tensor with the model's name ("bert.embeddings...")
    return {k.removeprefix("bert."): v for k, v in raw.items()}


def build_bert_graph(model_path: str | os.PathLike[str], config: dict[str, Any], *,
                     fused_attention: bool = False) -> Any:
    """The ``onnx.ModelProto`` of a BERT encoder folder (config.json values + model.safetensors).

    ``fused_attention``: each layer's self-attention as one ``com.microsoft`` ``Attention`` node
    (ONNX Runtime's contrib operator, same arithmetic: scale ``1/√d_head``, masked keys get −10⁴)
    instead of the plain matmul/softmax operators; the int8 graph is quantised from this form.
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise EncoderError(
            "building the ONNX graph needs the 'onnx' package: pip install 'mixllm-router[onnx]'"
        ) from exc
    if config.get("model_type", "bert") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
        raise EncoderError("the ONNX backend supports BERT encoders with absolute positions (e.g. MiniLM) only")
    if config.get("hidden_act", "gelu") != "gelu":
        raise EncoderError(f"the ONNX backend supports hidden_act 'gelu' only, not {config.get('hidden_act')!r}")
    w = _weights(Path(model_path))
    d = int(config["hidden_size"])
    n_heads = int(config["num_attention_heads"])
    n_layers = int(config["num_hidden_layers"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    if d % n_heads:
        raise EncoderError(f"hidden_size {d} is not a multiple of num_attention_heads {n_heads}")
    d_head = d // n_heads

    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        arr = value if value.flags.c_contiguous else np.ascontiguousarray(value)  # keeps 0-d scalars 0-d
        inits.append(numpy_helper.from_array(arr, name))
        return name

    def get(name: str) -> np.ndarray:
        if name not in w:
            raise EncoderError(f"the weights lack tensor {name!r}; not a BERT checkpoint")
        return w[name].astype(np.float32, copy=False)

    def node(op: str, inputs: list[str], name: str, domain: str | None = None, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, domain=domain, **attrs))
        return name

    def linear(x: str, prefix: str, out: str) -> str:  # x Wᵀ + b, torch's Linear
        wt = const(f"{prefix}.weight_t", get(f"{prefix}.weight").T)
        b = const(f"{prefix}.bias", get(f"{prefix}.bias"))
        return node("Add", [node("MatMul", [x, wt], f"{out}_mm"), b], out)

    def layer_norm(x: str, prefix: str, out: str) -> str:
        g, b = const(f"{prefix}.weight", get(f"{prefix}.weight")), const(f"{prefix}.bias", get(f"{prefix}.bias"))
        return node("LayerNormalization", [x, g, b], out, axis=-1, epsilon=eps)

    # shared constants
    c_zero, c_one = const("c_zero", np.array([0], np.int64)), const("c_one", np.array([1], np.int64))
    c_two = const("c_two", np.array([2], np.int64))
    c_one_f = const("c_one_f", np.array(1.0, np.float32))
    c_half = const("c_half", np.array(0.5, np.float32))
    c_sqrt2 = const("c_sqrt2", np.array(math.sqrt(2.0), np.float32))
    c_tiny = const("c_tiny", np.array(1e-9, np.float32))

    # embeddings: word + (position + token type 0), then LayerNorm
    word = node("Gather", [const("word_emb", get("embeddings.word_embeddings.weight")), "input_ids"], "word", axis=0)
    pos_type = get("embeddings.position_embeddings.weight") + get("embeddings.token_type_embeddings.weight")[0]
    seq_len = node("Slice", [node("Shape", ["input_ids"], "ids_shape"), c_one, c_two], "seq_len")
    pos = node("Slice", [const("pos_type_emb", pos_type), c_zero, seq_len, c_zero], "pos")
    h = layer_norm(node("Add", [word, pos], "emb_sum"), "embeddings.LayerNorm", "h0")

    # attention mask: (B, T) int64 → additive (B, 1, 1, T) float, and (B, T, 1) float for pooling
    mask_f = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    if fused_attention:  # the contrib operator takes the raw 0/1 mask as int32
        mask_i32 = node("Cast", ["attention_mask"], "mask_i32", to=TensorProto.INT32)
    else:  # what the plain attention operators need
        c_scale = const("c_scale", np.array(1.0 / math.sqrt(d_head), np.float32))
        c_neg = const("c_neg", np.array(-10000.0, np.float32))
        heads_shape = const("heads_shape", np.array([0, 0, n_heads, d_head], np.int64))
        merge_shape = const("merge_shape", np.array([0, 0, d], np.int64))
        mask_add = node("Mul", [node("Sub", [c_one_f, mask_f], "mask_inv"), c_neg], "mask_add_bt")
        mask_add = node("Unsqueeze", [mask_add, const("axes_12", np.array([1, 2], np.int64))], "mask_add")

    for i in range(n_layers):
        p = f"encoder.layer.{i}"
        att = f"{p}.attention.self"
        w_qkv = np.concatenate([get(f"{att}.{n}.weight").T for n in ("query", "key", "value")], axis=1)
        b_qkv = np.concatenate([get(f"{att}.{n}.bias") for n in ("query", "key", "value")])
        if fused_attention:
            ctx = node("Attention", [h, const(f"{p}.qkv_w", w_qkv), const(f"{p}.qkv_b", b_qkv), mask_i32],
                       f"l{i}_ctx", domain="com.microsoft", num_heads=n_heads)
        else:
            qkv = node("Add", [node("MatMul", [h, const(f"{p}.qkv_w", w_qkv)], f"l{i}_qkv_mm"),
                               const(f"{p}.qkv_b", b_qkv)], f"l{i}_qkv")
            nodes.append(helper.make_node("Split", [qkv, const(f"l{i}_split", np.array([d, d, d], np.int64))],
                                          [f"l{i}_q", f"l{i}_k", f"l{i}_v"], axis=2, name=f"l{i}_split_n"))
            q = node("Transpose", [node("Reshape", [f"l{i}_q", heads_shape], f"l{i}_qh")], f"l{i}_qt",
                     perm=[0, 2, 1, 3])
            k = node("Transpose", [node("Reshape", [f"l{i}_k", heads_shape], f"l{i}_kh")], f"l{i}_kt",
                     perm=[0, 2, 3, 1])
            v = node("Transpose", [node("Reshape", [f"l{i}_v", heads_shape], f"l{i}_vh")], f"l{i}_vt",
                     perm=[0, 2, 1, 3])
            scores = node("Mul", [node("MatMul", [q, k], f"l{i}_qk"), c_scale], f"l{i}_scaled")
            probs = node("Softmax", [node("Add", [scores, mask_add], f"l{i}_masked")], f"l{i}_probs", axis=-1)
            ctx = node("Transpose", [node("MatMul", [probs, v], f"l{i}_ctx_h")], f"l{i}_ctx_t", perm=[0, 2, 1, 3])
            ctx = node("Reshape", [ctx, merge_shape], f"l{i}_ctx")
        att_out = linear(ctx, f"{p}.attention.output.dense", f"l{i}_att_out")
        h = layer_norm(node("Add", [att_out, h], f"l{i}_res1"), f"{p}.attention.output.LayerNorm", f"l{i}_h1")
        z = linear(h, f"{p}.intermediate.dense", f"l{i}_ffn_in")
        erf = node("Erf", [node("Div", [z, c_sqrt2], f"l{i}_z_s")], f"l{i}_erf")
        gelu = node("Mul", [node("Mul", [z, node("Add", [erf, c_one_f], f"l{i}_erf1")], f"l{i}_zg"), c_half],
                    f"l{i}_gelu")
        ffn = linear(gelu, f"{p}.output.dense", f"l{i}_ffn_out")
        h = layer_norm(node("Add", [ffn, h], f"l{i}_res2"), f"{p}.output.LayerNorm", f"l{i}_h2")

    # pooling: masked mean and the first ([CLS]) token
    m3 = node("Unsqueeze", [mask_f, c_two], "mask_3")
    total = node("ReduceSum", [node("Mul", [h, m3], "h_masked"), c_one], "h_sum", keepdims=0)
    count = node("Max", [node("ReduceSum", [m3, c_one], "m_sum", keepdims=0), c_tiny], "m_count")
    node("Div", [total, count], "mean")
    node("Gather", [h, const("c_zero_s", np.array(0, np.int64))], "cls", axis=1)

    graph = helper.make_graph(
        nodes, "bert_encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["batch", d]),
         helper.make_tensor_value_info("cls", TensorProto.FLOAT, ["batch", d])],
        initializer=inits,
    )
    opsets = [helper.make_opsetid("", _OPSET)] + ([helper.make_opsetid("com.microsoft", 1)] if fused_attention else [])
    model = helper.make_model(graph, opset_imports=opsets,
                              producer_name="mixllm-router", producer_version=str(GRAPH_VERSION))
    model.ir_version = 8  # readable by every onnxruntime since 1.10
    onnx.checker.check_model(model)
    return model


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(variant: Variant) -> tuple[str, str]:
    """The graph file and its external-data file of ``variant``."""
    return f"model-{variant}.onnx", f"model-{variant}.onnx.data"


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _valid(folder: Path, variant: Variant, source_fingerprint: str) -> Path | None:
    """The cached graph file if its meta entry and both files' checksums match, else ``None``."""
    meta = _read_meta(folder)
    entry = meta.get("graphs", {}).get(variant) if meta.get("source_fingerprint") == source_fingerprint else None
    if not isinstance(entry, dict):
        return None
    for name in _files(variant):
        f, want = folder / name, entry.get(name)
        if not isinstance(want, dict) or not f.is_file() or f.is_symlink() or f.stat().st_size != want.get("bytes"):
            return None
        if _sha256(f) != want.get("sha256"):
            return None
    return folder / _files(variant)[0]


def _install(build: Path, folder: Path, variant: Variant) -> None:
    """Rename ``variant``'s two files from the build folder into ``folder`` (data first: the graph names it)."""
    graph, data = _files(variant)
    # the onnx package writes external data owner-only (0600); give it the graph file's mode (the
    # user's umask), so a cache built at install time by one user is readable by the service's user
    os.chmod(build / data, stat.S_IMODE((build / graph).stat().st_mode))
    os.replace(build / data, folder / data)
    os.replace(build / graph, folder / graph)


def cached_graph(model_path: Path, config: dict[str, Any], source_fingerprint: str, variant: Variant,
                 root: str | os.PathLike[str]) -> Path:
    """Path of the ``variant`` graph for a model folder, building and caching it under ``root`` once."""
    import shutil
    import tempfile

    from filelock import FileLock

    folder = graph_dir(root, source_fingerprint)
    found = _valid(folder, variant, source_fingerprint)
    if found is not None:
        return found
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder / ".lock"), timeout=600):
            found = _valid(folder, variant, source_fingerprint)  # another process may have built it
            if found is not None:
                return found
            build = Path(tempfile.mkdtemp(prefix=".build-", dir=folder))
            try:
                import onnx

                graph, data = _files(variant)
                model = build_bert_graph(model_path, config, fused_attention=variant == "int8")
                if variant == "fp32":
                    onnx.save_model(model, str(build / graph), save_as_external_data=True,
                                    all_tensors_to_one_file=True, location=data, size_threshold=1024)
                else:  # quantised from the fused-attention form, which is not kept
                    onnx.save_model(model, str(build / "fused.onnx"), save_as_external_data=True,
                                    all_tensors_to_one_file=True, location="fused.onnx.data", size_threshold=1024)
                    del model
                    quantize_int8(build / "fused.onnx", build / graph)
                _install(build, folder, variant)
                _record(folder, variant, source_fingerprint)
            finally:
                shutil.rmtree(build, ignore_errors=True)
    except EncoderError:
        raise
    except ImportError as exc:
        raise EncoderError(f"building the ONNX graph needs onnx and onnxruntime: pip install "
                           f"'mixllm-router[onnx]' ({exc})") from exc
    except Exception as exc:  # unwritable folder, disk full, a quantiser failure...
        raise EncoderError(f"cannot build the ONNX graph in {folder}: {exc}") from exc
    return folder / _files(variant)[0]


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of the weight matmuls and fused attention of ``src`` into ``dst``.

    Per output channel (one scale per column of each weight matrix): per-tensor scales lost too
    much (mean cosine 0.94 to fp32 on RouterBench prompts against 0.992 per channel). Inside
    ``QAttention`` only the q/k/v projection is int8; ``q·kᵀ`` and ``softmax·v`` multiply
    activations by activations and stay fp32. ``dst`` gets its weights as external data
    (``<dst name>.data``, the quantiser's own naming, which :func:`_files` follows).
    """
    from ._onnxruntime import import_onnxruntime

    import_onnxruntime()
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a "consider pre-processing" note on the root logger
    try:
        # DefaultTensorType: shape inference cannot type the contrib Attention's output; it is float
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Attention"], use_external_data_format=True,
                         extra_options={"DefaultTensorType": TensorProto.FLOAT})
    finally:
        root.setLevel(level)


def _record(folder: Path, variant: Variant, source_fingerprint: str) -> None:
    """Add ``variant``'s files' sizes and checksums to meta.json (caller holds the lock), atomically."""
    meta = _read_meta(folder)
    if meta.get("source_fingerprint") != source_fingerprint:
        meta = {"source_fingerprint": source_fingerprint, "graph_version": GRAPH_VERSION, "graphs": {}}
    meta.setdefault("graphs", {})[variant] = {
        name: {"bytes": (folder / name).stat().st_size, "sha256": _sha256(folder / name)} for name in _files(variant)
    }
    tmp = folder / f".meta.json.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        os.replace(tmp, folder / "meta.json")
    finally:
        tmp.unlink(missing_ok=True)
