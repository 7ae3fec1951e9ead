"""Tests of the ONNX Runtime backend: the same vectors as torch, the graph cache, backend choice,
checkpoints across backends, routing with torch blocked, and no files outside the chosen folders."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from mixllm_router import ConfigError, EncoderError, MixLLMRouter
from mixllm_router.config import EncoderSettings
from mixllm_router.encoders import CachedEncoder, HFEncoder, OnnxEncoder, QueryEncoder
from mixllm_router.encoders.backends import ENV_VAR, build_encoder, resolve_backend, text_encoder
from mixllm_router.encoders.onnx_export import graph_dir

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("onnx")
pytestmark = pytest.mark.encoder

REPO = Path(__file__).resolve().parents[2]


def _long(ending: str, words: int = 700) -> str:
    filler = " ".join(f"example{i % 50} answer is B." for i in range(words // 4))
    return f"Instruction first. {filler}\nQuestion: {ending}\nAnswer:"


@pytest.fixture(scope="module")
def graph_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-graphs")


@pytest.fixture(scope="module")
def prompts(routerbench_dir: Path) -> list[str]:
    """Real RouterBench train prompts of every task (short ARC questions, long 5-shot, code)."""
    import pandas as pd

    out: list[str] = []
    for f in sorted(routerbench_dir.glob("*_train.csv")):
        col = pd.read_csv(f, usecols=["prompt"])["prompt"].drop_duplicates()
        out += list(col.sample(8, random_state=1))
    return out + ["hi", "", "naïve café — 東京 🚀", _long("which end is kept?")]


@pytest.fixture(scope="module")
def torch_vectors(prompts: list[str]) -> np.ndarray:
    return HFEncoder().encode(prompts)


def test_fp32_matches_the_torch_path(graph_cache: Path, prompts: list[str], torch_vectors: np.ndarray) -> None:
    enc = OnnxEncoder(cache_dir=graph_cache)
    assert isinstance(enc, QueryEncoder)
    got = enc.encode(prompts)
    assert got.shape == torch_vectors.shape and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = (got * torch_vectors).sum(1)
    assert cos.min() >= 0.99999, cos.min()
    assert np.abs(got - torch_vectors).max() < 1e-4
    assert enc.fingerprint == HFEncoder().fingerprint  # same vectors, so one cache key


def test_int8_is_close_and_keyed_apart(graph_cache: Path, prompts: list[str], torch_vectors: np.ndarray) -> None:
    enc = OnnxEncoder(quantize="int8", cache_dir=graph_cache)
    got = enc.encode(prompts)
    cos = (got * torch_vectors).sum(1)
    real = cos[:-4]  # the RouterBench prompts; the last four are edge cases ("hi", "", unicode, a long one)
    # mean over real prompts: 0.992 on an AVX2-only CPU (no VNNI), higher where VNNI is present
    assert real.mean() >= 0.99 and cos.min() >= 0.97, (real.mean(), cos.min())
    assert enc.fingerprint.endswith(":onnx-int8") and enc.fingerprint != HFEncoder().fingerprint
    assert enc.backend == "onnx-int8"
    int8_bytes = sum(p.stat().st_size for p in enc.graph_path.parent.glob("model-int8.onnx*"))
    assert int8_bytes < 0.8 * (enc.model_path / "model.safetensors").stat().st_size
    ops = {n.op_type for n in __import__("onnx").load(str(enc.graph_path), load_external_data=False).graph.node}
    assert "QAttention" in ops and "Softmax" not in ops  # int8 runs on the fused attention operator


@pytest.mark.parametrize("truncation", ["head", "tail", "head_tail"])
def test_tokens_and_truncation_match_the_torch_path(graph_cache: Path, truncation: str) -> None:
    texts = [_long("the question"), "short one", _long("another", words=300)]
    hf = HFEncoder(truncation=truncation, max_tokens=64)
    ox = OnnxEncoder(truncation=truncation, max_tokens=64, cache_dir=graph_cache)
    assert [ox.count_tokens(t) for t in texts] == [hf.count_tokens(t) for t in texts]
    cos = (ox.encode(texts) * hf.encode(texts)).sum(1)
    assert cos.min() >= 0.99999
    assert ox.fingerprint == hf.fingerprint


def test_batches_pad_to_their_longest_and_keep_order(graph_cache: Path, prompts: list[str]) -> None:
    enc = OnnxEncoder(cache_dir=graph_cache, batch_size=5)
    batched = enc.encode(prompts)
    one_by_one = np.vstack([enc.encode([p]) for p in prompts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_count_after_encode_reuses_the_tokenisation(graph_cache: Path, backend: str) -> None:
    enc = OnnxEncoder(cache_dir=graph_cache) if backend == "onnx" else HFEncoder()
    text = _long("counted once")
    want = enc.count_tokens(text)  # tokenises
    enc.encode([text, "a second one"])
    calls: list[list[str]] = []
    tokenise = enc._token_ids
    enc._token_ids = lambda texts: calls.append(texts) or tokenise(texts)  # type: ignore[method-assign]
    assert enc.count_tokens(text) == want and calls == []  # the router's count of a query it just embedded
    assert enc.count_tokens("not embedded yet") == 3 and len(calls) == 1  # a miss tokenises


def test_a_large_encode_keeps_no_counts(graph_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mixllm_router.encoders.hf as hf

    enc = OnnxEncoder(cache_dir=graph_cache)
    enc.encode(["one", "two"])
    assert set(enc._recent_counts) == {"one", "two"}
    monkeypatch.setattr(hf, "_RECENT_MAX", 2)
    enc.encode(["one", "two", "three"])  # more than the bound: nothing kept, counts still right
    assert enc._recent_counts == {} and enc.count_tokens("three") == 1


def test_counting_many_texts_is_one_batch_with_the_same_counts(graph_cache: Path) -> None:
    from mixllm_router.encoders.base import count_tokens_of

    enc = OnnxEncoder(cache_dir=graph_cache)
    texts = [_long("one"), "short", "naïve café", _long("two", words=200), "short"]
    want = [HFEncoder().count_tokens(t) for t in texts]
    calls: list[list[str]] = []
    tokenise = enc._token_ids
    enc._token_ids = lambda batch: calls.append(batch) or tokenise(batch)  # type: ignore[method-assign]
    cached = CachedEncoder(enc, None)
    assert count_tokens_of(cached, texts) == want
    assert len(calls) == 1 and len(calls[0]) == 4  # one tokenizer call, each distinct text once
    with pytest.raises(EncoderError):
        count_tokens_of(cached, ["ok", 3])  # type: ignore[list-item]


def test_cls_pooling_matches_torch(graph_cache: Path) -> None:
    texts = ["a question about cats", "another about dogs and their owners"]
    got = OnnxEncoder(pooling="cls", cache_dir=graph_cache).encode(texts)
    assert ((got * HFEncoder(pooling="cls").encode(texts)).sum(1)).min() >= 0.99999


def test_threads_share_one_session(graph_cache: Path, prompts: list[str]) -> None:
    enc = OnnxEncoder(cache_dir=graph_cache)
    want = enc.encode(prompts[:6])
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(enc.encode(prompts[:6]))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(np.allclose(r, want, atol=1e-6) for r in results)


def test_bad_input_is_refused_like_the_torch_path(graph_cache: Path) -> None:
    enc = OnnxEncoder(cache_dir=graph_cache)
    with pytest.raises(EncoderError):
        enc.encode("a bare string")
    with pytest.raises(EncoderError):
        enc.encode(["ok", 3])  # type: ignore[list-item]
    assert enc.encode([]).shape == (0, 384)
    assert enc.encode(["broken \ud800 surrogate"]).shape == (1, 384)
    with pytest.raises(ConfigError):
        OnnxEncoder(quantize="int4", cache_dir=graph_cache)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- the graph cache
def test_graph_is_built_once_then_reused(tmp_path: Path) -> None:
    first = OnnxEncoder(cache_dir=tmp_path)
    v = first.encode(["x"])
    path = first.graph_path
    assert path is not None and path.parent == graph_dir(tmp_path, first.source_fingerprint())
    stamp = path.stat().st_mtime_ns
    second = OnnxEncoder(cache_dir=tmp_path)
    np.testing.assert_array_equal(second.encode(["x"]), v)
    assert second.graph_path == path and path.stat().st_mtime_ns == stamp
    # everything lives under the chosen folder, nothing else is written there
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == [".lock", "meta.json", "model-fp32.onnx", "model-fp32.onnx.data"], names
    modes = {p.name: p.stat().st_mode & 0o777 for p in path.parent.glob("model-*")}
    assert modes["model-fp32.onnx.data"] == modes["model-fp32.onnx"], modes  # readable as widely as the graph


@pytest.mark.parametrize("damaged", ["model-fp32.onnx", "model-fp32.onnx.data"])
def test_damaged_graph_is_rebuilt_not_run(tmp_path: Path, damaged: str) -> None:
    enc = OnnxEncoder(cache_dir=tmp_path)
    want = enc.encode(["same text"])
    assert enc.graph_path is not None
    path = enc.graph_path.parent / damaged
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated, e.g. a disk filled up mid-copy
    again = OnnxEncoder(cache_dir=tmp_path)
    np.testing.assert_allclose(again.encode(["same text"]), want, atol=1e-6)
    assert path.stat().st_size == len(data)
    path.write_bytes(data[:-8] + b"\x00" * 8)  # same size, other bytes: the checksum catches it
    np.testing.assert_allclose(OnnxEncoder(cache_dir=tmp_path).encode(["same text"]), want, atol=1e-6)
    assert path.read_bytes() == data
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".build-")]  # no build folder left


def test_unwritable_cache_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(EncoderError, match="cannot build the ONNX graph"):
        OnnxEncoder(cache_dir=blocker).encode(["x"])


# ------------------------------------------------------------------------------- backend choice
def test_backend_setting_and_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_backend("auto") == "onnx"  # onnxruntime, tokenizers and onnx are installed here
    assert resolve_backend("torch") == "torch"
    assert isinstance(text_encoder(EncoderSettings(backend="torch")), HFEncoder)
    ox = text_encoder(EncoderSettings(backend="onnx-int8", cache_dir=str(tmp_path), num_threads=1))
    assert isinstance(ox, OnnxEncoder) and ox.quantize == "int8" and ox.num_threads == 1
    monkeypatch.setenv(ENV_VAR, "torch")
    assert isinstance(text_encoder(EncoderSettings(backend="onnx")), HFEncoder)
    monkeypatch.setenv(ENV_VAR, "tensorrt")
    with pytest.raises(ConfigError, match=ENV_VAR):
        resolve_backend("auto")
    with pytest.raises(ConfigError):
        EncoderSettings(backend="tensorrt")  # type: ignore[arg-type]


def test_embedding_cache_shares_fp32_and_keeps_int8_apart(graph_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    tmp_path = graph_cache  # graphs built once for the module; the test's text is its own
    torch_enc = build_encoder(EncoderSettings(backend="torch", cache_dir=str(tmp_path)))
    onnx_enc = build_encoder(EncoderSettings(backend="onnx", cache_dir=str(tmp_path)))
    int8_enc = build_encoder(EncoderSettings(backend="onnx-int8", cache_dir=str(tmp_path)))
    assert all(isinstance(e, CachedEncoder) for e in (torch_enc, onnx_enc, int8_enc))
    torch_enc.encode(["cached by torch"])
    onnx_enc.encode(["cached by torch"])
    assert onnx_enc.hits == 1 and onnx_enc.misses == 0  # fp32 ONNX serves torch's vector: they agree
    int8_enc.encode(["cached by torch"])
    assert int8_enc.misses == 1 and int8_enc.directory != onnx_enc.directory


def test_checkpoint_saved_with_torch_loads_with_onnx(tmp_path: Path, graph_cache: Path, synthetic_data,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    cache = str(graph_cache)
    router = MixLLMRouter(config={"encoder": {"backend": "torch", "cache_dir": cache, "use_cache": False}},
                          prior_strength=1.0, calibration_folds=3).fit(synthetic_data)
    router.save(tmp_path / "ckpt")
    queries = ["Solve this integral problem: compute it step by step.", "Write a haiku about the sea."]
    want = [d.chosen for d in router.route_batch(queries)]
    monkeypatch.setenv(ENV_VAR, "onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same fingerprint: no "predictions may be off"
        loaded = MixLLMRouter.load(tmp_path / "ckpt")
        assert [d.chosen for d in loaded.route_batch(queries)] == want
    assert isinstance(loaded.encoder, OnnxEncoder)
    monkeypatch.setenv(ENV_VAR, "onnx-int8")
    with pytest.warns(UserWarning, match="predictions may be off"):
        MixLLMRouter.load(tmp_path / "ckpt", encoder=build_encoder(EncoderSettings(backend="onnx-int8",
                                                                                   cache_dir=cache)))


# -------------------------------------------------------------------------- without torch, offline
_BLOCK_TORCH = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "sentence_transformers"):
            # what a missing package raises (HFEncoder reports only this as "not installed")
            raise ModuleNotFoundError(f"No module named {name!r} (blocked for this test)", name=name)
        return None
sys.meta_path.insert(0, _Block())
"""


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **env}
    full.pop("ORT_DISABLE_TELEMETRY", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=300)


def test_routing_and_loading_work_with_torch_blocked(tmp_path: Path, synthetic_data) -> None:
    """A checkpoint loads and routes with torch unimportable; training's torch needs say how to install it."""
    ckpt = tmp_path / "ckpt"
    router = MixLLMRouter(config={"encoder": {"backend": "torch", "cache_dir": str(tmp_path / "c0")}},
                          prior_strength=1.0, calibration_folds=3).fit(synthetic_data)
    router.save(ckpt)
    r = _run(_BLOCK_TORCH + f"""
import numpy as np
from mixllm_router import MixLLMRouter, EncoderError
from mixllm_router.encoders import HFEncoder
from mixllm_router.encoders.tag_enhanced import fit_projection
import os
os.environ["MIXLLM_ENCODER_BACKEND"] = "onnx"  # the checkpoint says torch; this machine has none
router = MixLLMRouter.load({str(ckpt)!r})
print("ROUTED", router.route("Write a sonnet poem number 3 about the sea, with a sonnet rhyme scheme.").chosen)
assert "torch" not in sys.modules
for call in (lambda: HFEncoder().encode(["x"]),
             lambda: fit_projection(np.eye(4, dtype=np.float32), np.eye(4, dtype=np.float32))):
    try:
        call()
    except EncoderError as exc:
        print("CLEAR", "pip install" in str(exc))
""", MIXLLM_CACHE_DIR=str(tmp_path / "cache"))
    assert r.returncode == 0, r.stderr
    assert "ROUTED poet" in r.stdout, r.stdout
    assert r.stdout.count("CLEAR True") == 2, r.stdout


def test_no_file_outside_the_chosen_folders(tmp_path: Path) -> None:
    """ONNX Runtime writes ~/.cache/Microsoft/... on import unless told not to; the library tells it."""
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    r = _run("""
import mixllm_router.encoders as m
enc = m.OnnxEncoder(quantize="int8")
print(enc.encode(["a query"]).shape)
import onnxruntime
""", HOME=str(home), MIXLLM_CACHE_DIR=str(cache), XDG_CACHE_HOME="")
    assert r.returncode == 0, r.stderr
    assert list(home.rglob("*")) == [], list(home.rglob("*"))
    written = {p.relative_to(cache).parts[0] for p in cache.rglob("*") if p.is_file()}
    assert written == {"onnx"}, written
