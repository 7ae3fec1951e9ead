"""The tag-enhanced projection: training reduces its objective, the encoder contract, the
router checkpoint round trip, restore errors, and the CLI helpers."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from mixllm_router import CheckpointError, ConfigError, EncoderError, MixLLMRouter
from mixllm_router.checkpoint.encoder import restore_encoder
from mixllm_router.encoders import HashingEncoder, QueryEncoder
from mixllm_router.encoders.tag_enhanced import (
    TagEnhancedEncoder,
    add_tagging_arguments,
    encoder_from_args,
    fit_projection,
    fit_tag_enhanced_encoder,
    make_tagger,
)
from mixllm_router.encoders.tagging import LabelTagger, LLMTagger, OfflineTagger


def _toy(n_per: int = 60, d: int = 16, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors where the domain signal is weak against noise; one-hot domain weights."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    e = np.concatenate([0.3 * centers[j] + rng.normal(size=(n_per, d)) for j in range(k)])
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    w = np.repeat(np.eye(k), n_per, axis=0)
    return e.astype(np.float32), w.astype(np.float32)


def _separation(z: np.ndarray, labels: np.ndarray) -> float:
    """Mean cosine within domains minus mean cosine across domains."""
    sims = z @ z.T
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(z), dtype=bool)
    return float(sims[same & off].mean() - sims[~same].mean())


def test_fine_tuning_reduces_the_objective_and_separates_domains():
    e, w = _toy()
    fit = fit_projection(e, w, rank=8, epochs=80, lr=0.05, keep_weight=0.3, seed=0)
    assert np.isfinite(fit.history).all()
    assert fit.history[-1] < fit.history[0] - 0.1
    enc = TagEnhancedEncoder(HashingEncoder(dim=16), fit.a, fit.b)
    labels = w.argmax(1)
    assert _separation(enc.project(e), labels) > _separation(e, labels) + 0.05


def test_supcon_loss_and_tanh_also_reduce_the_objective():
    e, w = _toy()
    fit = fit_projection(e, w, rank=8, epochs=20, lr=0.05, loss="supcon", activation="tanh", batch_size=64, seed=1)
    assert fit.history[-1] < fit.history[0]


def test_keep_weight_controls_how_far_embeddings_move():
    e, w = _toy()
    near = fit_projection(e, w, rank=8, epochs=60, lr=0.05, keep_weight=100.0)
    far = fit_projection(e, w, rank=8, epochs=60, lr=0.05, keep_weight=0.01)
    base = HashingEncoder(dim=16)
    move = [float(np.mean((TagEnhancedEncoder(base, f.a, f.b).project(e) - e) ** 2)) for f in (near, far)]
    assert move[0] < 0.01 < move[1]


def test_training_is_seeded():
    e, w = _toy()
    a = fit_projection(e, w, rank=4, epochs=10, seed=3)
    b = fit_projection(e, w, rank=4, epochs=10, seed=3)
    c = fit_projection(e, w, rank=4, epochs=10, seed=4)
    assert np.array_equal(a.a, b.a) and np.array_equal(a.b, b.b)
    assert not np.array_equal(a.a, c.a)


def test_untagged_queries_only_feel_the_keep_term():
    e, w = _toy()
    w[::2] = 0.0  # half the queries have no tags
    fit = fit_projection(e, w, rank=4, epochs=30, lr=0.05)
    assert np.isfinite(fit.history).all() and fit.history[-1] < fit.history[0]


def test_fit_projection_rejects_bad_settings():
    e, w = _toy()
    with pytest.raises(ConfigError):
        fit_projection(e, w[:5])
    with pytest.raises(ConfigError):
        fit_projection(e, w, loss="triplet")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        fit_projection(e, w, temperature=0)


# ------------------------------------------------------------------------------- the encoder
def test_encoder_contract_and_fingerprint():
    base = HashingEncoder(dim=32)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(32, 4)), rng.normal(size=(4, 32))
    enc = TagEnhancedEncoder(base, a, b)
    assert isinstance(enc, QueryEncoder) and enc.dim == 32 and enc.rank == 4
    x = enc.encode(["hello world", "another query"])
    assert x.shape == (2, 32) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert enc.count_tokens("hello world") == base.count_tokens("hello world")
    assert enc.fingerprint.startswith("tag-enhanced:" + base.fingerprint)
    assert TagEnhancedEncoder(base, a, b * 1.01).fingerprint != enc.fingerprint
    assert TagEnhancedEncoder(base, a, b, activation="tanh").fingerprint != enc.fingerprint
    zero = TagEnhancedEncoder(base, a, np.zeros_like(b))
    assert np.allclose(zero.encode(["hello world"]), base.encode(["hello world"]), atol=1e-6)


def test_encoder_rejects_mismatched_weights():
    base = HashingEncoder(dim=8)
    with pytest.raises(EncoderError):
        TagEnhancedEncoder(base, np.zeros((7, 2)), np.zeros((2, 8)))
    with pytest.raises(EncoderError):
        TagEnhancedEncoder(base, np.full((8, 2), np.nan), np.zeros((2, 8)))
    with pytest.raises(ConfigError):
        TagEnhancedEncoder(base, np.zeros((8, 2)), np.zeros((2, 8)), activation="relu")  # type: ignore[arg-type]


def test_fit_tag_enhanced_encoder_end_to_end(synthetic_data, tmp_path):
    base = HashingEncoder()
    enc = fit_tag_enhanced_encoder(base, synthetic_data.queries, tag_cache_dir=str(tmp_path), epochs=30, rank=8)
    assert isinstance(enc, TagEnhancedEncoder)
    info = enc.info
    assert info["tagger"].startswith("offline-tfidf") and info["n_queries"] == len(synthetic_data)
    assert info["objective_end"] < info["objective_start"]
    assert 2 <= info["domains"]["n_domains"] <= 20
    assert list(tmp_path.glob("*.json"))  # tags cached next to the embeddings
    # unseen queries need no tags: the projection applies to any text
    assert enc.encode(["a query nobody tagged"]).shape == (1, base.dim)


def test_fit_tag_enhanced_encoder_with_an_llm_tagger_that_fails_keeps_going(synthetic_data):
    from mixllm_router.clients import FakeClient

    answers = ['["math"]', '["poetry"]', "garbage"]
    chat = FakeClient(lambda msgs: answers[("poem" in msgs[-1].content) + ("number 7 " in msgs[-1].content)])
    with pytest.warns(UserWarning):
        enc = fit_tag_enhanced_encoder(HashingEncoder(), synthetic_data.queries, tagger=LLMTagger(chat),
                                       cache_tags=False, epochs=10, rank=4)
    assert enc.info["domains"]["n_domains"] == 2 and enc.info["domains"]["untagged"] > 0


# ------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("config_kind", ["hashing", "minilm"])
def test_router_checkpoint_round_trip(synthetic_data, tmp_path, config_kind):
    """Saved with the router, rebuilt by load() without re-tagging: same embeddings, same decisions.

    With ``config_kind="minilm"`` the router's settings do not describe the hashing base; the
    checkpoint's base spec rebuilds it (and nothing loads torch)."""
    base = HashingEncoder()
    enc = fit_tag_enhanced_encoder(base, synthetic_data.queries, tagger=LabelTagger.from_dataset(synthetic_data),
                                   cache_tags=False, epochs=20, rank=8)
    config = {"calibration_folds": 3, "encoder": {"kind": config_kind, "use_cache": False}}
    router = MixLLMRouter(encoder=enc, config=config).fit(synthetic_data, calibrate=False)
    router.save(tmp_path / "ckpt")
    loaded = MixLLMRouter.load(tmp_path / "ckpt")
    assert isinstance(loaded.encoder, TagEnhancedEncoder)
    assert loaded.encoder.fingerprint == enc.fingerprint
    unseen = ["Solve this integral problem: compute it.", "Write a haiku about the moon.", "hello"]
    assert np.array_equal(loaded.encoder.encode(unseen), enc.encode(unseen))
    before = [(d.chosen, [s.score for s in d.scores]) for d in router.route_batch(unseen, cost_weight=5.0)]
    after = [(d.chosen, [s.score for s in d.scores]) for d in loaded.route_batch(unseen, cost_weight=5.0)]
    assert before == after
    assert loaded.encoder.info["domains"] == enc.info["domains"]


def test_restore_encoder_errors():
    from mixllm_router.config import EncoderSettings

    settings = EncoderSettings(kind="hashing", use_cache=False)
    enc = TagEnhancedEncoder(HashingEncoder(), np.ones((512, 2)), np.zeros((2, 512)))
    meta, arrays = enc.checkpoint_state()
    assert restore_encoder(meta, arrays, settings).fingerprint == enc.fingerprint
    with pytest.raises(CheckpointError, match="unknown kind"):
        restore_encoder({"kind": "mystery"}, arrays, settings)
    with pytest.raises(CheckpointError, match="lacks"):
        restore_encoder(meta, {"a": arrays["a"]}, settings)
    with pytest.raises(CheckpointError):
        restore_encoder(meta, {"a": arrays["a"][:10], "b": arrays["b"]}, settings)
    with pytest.raises(CheckpointError, match="fingerprint"):
        restore_encoder(meta, {"a": arrays["a"] * 2, "b": arrays["b"]}, settings)


def test_restore_warns_when_the_base_encoder_differs():
    from mixllm_router.config import EncoderSettings

    enc = TagEnhancedEncoder(HashingEncoder(dim=512, seed=1), np.ones((512, 2)), np.zeros((2, 512)))
    meta, arrays = enc.checkpoint_state()
    meta["base_spec"] = None
    with pytest.warns(UserWarning, match="differs"):
        restored = restore_encoder(meta, arrays, EncoderSettings(kind="hashing", use_cache=False))
    assert isinstance(restored, TagEnhancedEncoder)


# ------------------------------------------------------------------------------- CLI helpers
def test_cli_arguments_and_encoder_from_args(synthetic_data):
    parser = add_tagging_arguments(argparse.ArgumentParser())
    base = HashingEncoder()
    plain = parser.parse_args([])
    assert plain.embeddings == "plain" and plain.tagger == "offline"
    assert encoder_from_args(plain, base, synthetic_data) is base
    args = parser.parse_args(["--embeddings", "tag-enhanced", "--tagger", "task-labels", "--n-domains", "2",
                              "--tag-epochs", "5"])
    enc = encoder_from_args(args, base, synthetic_data)
    assert isinstance(enc, TagEnhancedEncoder) and enc.info["domains"]["n_domains"] == 2
    assert enc.info["tagger"].startswith("labels:")


def test_make_tagger_specs():
    assert isinstance(make_tagger("offline"), OfflineTagger)
    llm = make_tagger("openai:qwen2.5-7b@http://127.0.0.1:9/v1")
    assert isinstance(llm, LLMTagger) and llm.fingerprint.startswith("llm:qwen2.5-7b:")
    with pytest.raises(ConfigError):
        make_tagger("task-labels")
    with pytest.raises(ConfigError):
        make_tagger("claude")
    with pytest.raises(ConfigError):
        make_tagger("openai:")
