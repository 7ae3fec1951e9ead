"""Fine-tuning MiniLM's top layer on outcomes (issue #19): it learns what the outcome depends on."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def encoder():
    from mixllm_router import EncoderError
    from mixllm_router.encoders.hf import HFEncoder

    try:
        enc = HFEncoder(max_tokens=32, num_threads=2)
        enc._load()
    except EncoderError as exc:
        pytest.skip(f"bundled MiniLM not available: {exc}")
    return enc


_SUBJECTS = ["the report", "my garden", "a small boat", "the old train", "our new kitchen", "this poem",
             "the budget", "a chess game", "the river trip", "his guitar", "the sales meeting", "a birthday cake"]
_VERBS = ["describe", "summarise", "improve", "explain", "review"]


def _prompts() -> tuple[list[str], np.ndarray]:
    """Same topics in both groups; only one word (``quickly`` / ``carefully``) decides who answers well."""
    texts, group = [], []
    for i, subject in enumerate(_SUBJECTS):
        for j, verb in enumerate(_VERBS):
            g = (i + j) % 2
            texts.append(f"Please {verb} {subject} {'quickly' if g else 'carefully'} for me.")
            group.append(g)
    return texts, np.array(group)


def _separation(z: np.ndarray, group: np.ndarray) -> float:
    """Squared distance of the two group means over the mean within-group spread."""
    a, b = z[group == 0], z[group == 1]
    within = (((a - a.mean(0)) ** 2).sum(1).mean() + ((b - b.mean(0)) ** 2).sum(1).mean()) / 2
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() / within)


def test_tuning_the_top_layer_separates_what_the_outcome_depends_on(encoder):
    from mixllm_router.encoders.encoder_finetune import cache_hidden_states, embed_with, finetune_top_layers

    texts, group = _prompts()
    quality = np.column_stack([group, 1 - group, np.full(len(group), np.nan)]).astype(float)
    cache = cache_hidden_states(encoder, texts, top_ks=(1,))
    np.testing.assert_allclose(cache.frozen, encoder.encode(texts), atol=1e-5)  # the library's embedding
    rows = np.arange(len(texts))
    settings = dict(top_k=1, lr=5e-4, head_lr=1e-2, epochs=6, keep_weight=0.0, batch_size=8, patience=6, seed=3,
                    threads=1)  # one thread: subnormals are flushed only there (see finetune_top_layers)
    fit = finetune_top_layers(encoder, cache, rows, quality, **settings)
    assert fit.best_epoch > 0 and fit.val_history[fit.best_epoch] < fit.val_history[0]
    z = embed_with(encoder, fit, cache)
    assert z.shape == cache.frozen.shape and np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    assert _separation(z, group) > 3 * _separation(cache.frozen, group)  # measured: 2.41 vs 0.125
    again = finetune_top_layers(encoder, cache, rows, quality, **settings)
    assert again.best_epoch == fit.best_epoch
    np.testing.assert_array_equal(embed_with(encoder, again, cache), z)  # deterministic for a seed


def test_the_embedder_of_new_texts_matches_the_cached_path(encoder):
    from mixllm_router.encoders.encoder_finetune import (
        cache_hidden_states,
        embed_with,
        finetune_top_layers,
        finetuned_embedder,
    )

    texts, group = _prompts()
    quality = np.column_stack([group, 1 - group]).astype(float)
    cache = cache_hidden_states(encoder, texts, top_ks=(2,))
    fit = finetune_top_layers(encoder, cache, np.arange(40), quality[:40], top_k=2, lr=5e-4, epochs=1,
                              keep_weight=0.0, patience=1, val_share=0.2, seed=0, threads=1)
    assert len(fit.layers) == 2 and all(isinstance(v, np.ndarray) for v in fit.layers[0].values())
    new = finetuned_embedder(encoder, fit)(texts[40:])
    np.testing.assert_allclose(new, embed_with(encoder, fit, cache, np.arange(40, len(texts))), atol=1e-5)
