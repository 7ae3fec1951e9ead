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

ONNX Runtime's own optimiser (``ORT_ENABLE_ALL``) then fuses the LayerNorm, GELU and attention
patterns at session start. The int8 variant is ``onnxruntime.quantization.quantize_dynamic`` of
that graph (weights int8, activations quantised per call).

The cache: ``<root>/onnx/<digest>/{model-fp32.onnx, model-int8.onnx, meta.json}`` where
``digest`` hashes the source fingerprint and :data:`GRAPH_VERSION`; ``meta.json`` records each
file's sha256, checked when the graph is opened, so a truncated or foreign file is rebuilt, never
run. Files are written to a temporary name and renamed into place under a file lock, so two
processes building at once never see half a graph. Only ``onnx`` (to build) and ``onnxruntime``
(to quantise) are needed; neither is imported until a graph is built.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._exceptions import EncoderError

__all__ = ["GRAPH_VERSION", "build_bert_graph", "cached_graph", "graph_dir"]

Variant = Literal["fp32", "int8"]

#: Bumped whenever the graph this module writes changes; part of the cache folder's name.
GRAPH_VERSION = 1
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


def build_bert_graph(model_path: str | os.PathLike[str], config: dict[str, Any]) -> Any:
    """The ``onnx.ModelProto`` of a BERT encoder folder (config.json values + model.safetensors)."""
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

    def node(op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
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
    c_scale = const("c_scale", np.array(1.0 / math.sqrt(d_head), np.float32))
    c_neg = const("c_neg", np.array(-10000.0, np.float32))
    c_tiny = const("c_tiny", np.array(1e-9, np.float32))
    heads_shape = const("heads_shape", np.array([0, 0, n_heads, d_head], np.int64))
    merge_shape = const("merge_shape", np.array([0, 0, d], np.int64))

    # embeddings: word + (position + token type 0), then LayerNorm
    word = node("Gather", [const("word_emb", get("embeddings.word_embeddings.weight")), "input_ids"], "word", axis=0)
    pos_type = get("embeddings.position_embeddings.weight") + get("embeddings.token_type_embeddings.weight")[0]
    seq_len = node("Slice", [node("Shape", ["input_ids"], "ids_shape"), c_one, c_two], "seq_len")
    pos = node("Slice", [const("pos_type_emb", pos_type), c_zero, seq_len, c_zero], "pos")
    h = layer_norm(node("Add", [word, pos], "emb_sum"), "embeddings.LayerNorm", "h0")

    # attention mask: (B, T) int64 → additive (B, 1, 1, T) float, and (B, T, 1) float for pooling
    mask_f = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    mask_add = node("Mul", [node("Sub", [c_one_f, mask_f], "mask_inv"), c_neg], "mask_add_bt")
    mask_add = node("Unsqueeze", [mask_add, const("axes_12", np.array([1, 2], np.int64))], "mask_add")

    for i in range(n_layers):
        p = f"encoder.layer.{i}"
        att = f"{p}.attention.self"
        w_qkv = np.concatenate([get(f"{att}.{n}.weight").T for n in ("query", "key", "value")], axis=1)
        b_qkv = np.concatenate([get(f"{att}.{n}.bias") for n in ("query", "key", "value")])
        qkv = node("Add", [node("MatMul", [h, const(f"{p}.qkv_w", w_qkv)], f"l{i}_qkv_mm"),
                           const(f"{p}.qkv_b", b_qkv)], f"l{i}_qkv")
        nodes.append(helper.make_node("Split", [qkv, const(f"l{i}_split", np.array([d, d, d], np.int64))],
                                      [f"l{i}_q", f"l{i}_k", f"l{i}_v"], axis=2, name=f"l{i}_split_n"))
        q = node("Transpose", [node("Reshape", [f"l{i}_q", heads_shape], f"l{i}_qh")], f"l{i}_qt", perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [f"l{i}_k", heads_shape], f"l{i}_kh")], f"l{i}_kt", perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [f"l{i}_v", heads_shape], f"l{i}_vh")], f"l{i}_vt", perm=[0, 2, 1, 3])
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
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)],
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


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _valid(folder: Path, variant: Variant, source_fingerprint: str) -> Path | None:
    """The cached graph file if its meta entry and checksum match, else ``None``."""
    meta = _read_meta(folder)
    entry = meta.get("graphs", {}).get(variant) if meta.get("source_fingerprint") == source_fingerprint else None
    f = folder / f"model-{variant}.onnx"
    if not isinstance(entry, dict) or not f.is_file() or f.stat().st_size != entry.get("bytes"):
        return None
    return f if _sha256(f) == entry.get("sha256") else None


def _replace_into(folder: Path, name: str, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename the result to ``folder/name`` (never half a file)."""
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    try:
        write(tmp)
        os.replace(tmp, folder / name)
    finally:
        tmp.unlink(missing_ok=True)


def cached_graph(model_path: Path, config: dict[str, Any], source_fingerprint: str, variant: Variant,
                 root: str | os.PathLike[str]) -> Path:
    """Path of the ``variant`` graph for a model folder, building and caching it under ``root`` once."""
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
            fp32 = _valid(folder, "fp32", source_fingerprint)
            if fp32 is None:
                import onnx

                model = build_bert_graph(model_path, config)
                _replace_into(folder, "model-fp32.onnx", lambda t: onnx.save_model(model, str(t)))
                _record(folder, "fp32", source_fingerprint)
                fp32 = folder / "model-fp32.onnx"
            if variant == "int8":
                _replace_into(folder, "model-int8.onnx", lambda t: quantize_int8(fp32, t))
                _record(folder, "int8", source_fingerprint)
    except EncoderError:
        raise
    except ImportError as exc:
        raise EncoderError(f"building the ONNX graph needs onnx and onnxruntime: pip install "
                           f"'mixllm-router[onnx]' ({exc})") from exc
    except Exception as exc:  # unwritable folder, disk full, a quantiser failure...
        raise EncoderError(f"cannot build the ONNX graph in {folder}: {exc}") from exc
    return folder / f"model-{variant}.onnx"


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of the weight matmuls of ``src`` into ``dst``.

    Per output channel (one scale per column of each weight matrix): per-tensor scales lost too
    much (mean cosine 0.94 to fp32 on RouterBench prompts against 0.994 per channel). The two
    attention matmuls (``q·kᵀ`` and ``softmax·v``) multiply activations by activations and stay
    fp32: quantising both sides per call costs accuracy and saves little.
    """
    from ._onnxruntime import import_onnxruntime

    import_onnxruntime()
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src), load_external_data=False)
    keep = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name.endswith(("_qk", "_ctx_h"))]
    del model
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a "consider pre-processing" note on the root logger
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=keep)
    finally:
        root.setLevel(level)


def _record(folder: Path, variant: Variant, source_fingerprint: str) -> None:
    """Add ``variant``'s checksum to meta.json (caller holds the lock)."""
    meta = _read_meta(folder)
    if meta.get("source_fingerprint") != source_fingerprint:
        meta = {"source_fingerprint": source_fingerprint, "graph_version": GRAPH_VERSION, "graphs": {}}
    f = folder / f"model-{variant}.onnx"
    meta.setdefault("graphs", {})[variant] = {"bytes": f.stat().st_size, "sha256": _sha256(f)}
    _replace_into(folder, "meta.json", lambda t: t.write_text(json.dumps(meta, indent=1), encoding="utf-8"))
