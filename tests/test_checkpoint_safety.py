"""A checkpoint from someone else is hostile input (issue #15): it chooses no host path, it cannot
make the library read or write outside its folder, and anything wrong in it is a CheckpointError.

Host paths (items 1): ``learning.journal_path``, ``encoder.cache_dir`` and ``encoder.model_path`` in a
manifest are never used as paths; the host gives them to :meth:`MixLLMRouter.load`, and ``save()``
writes none of them. Encoder mismatch (item 8): a router loaded with an encoder other than the one it
was trained with fails at load with a clear error, not at the first route.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from mixllm_router import Candidate, CheckpointError, MixLLMRouter, RoutingDataset
from mixllm_router.checkpoint import MANIFEST
from mixllm_router.encoders import HashingEncoder

ENC = HashingEncoder(dim=32)
MODELS = ("big", "small", "tiny")


def records(n: int = 24) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        for j, m in enumerate(MODELS):
            out.append({"query_id": f"q{i}", "query": f"query {i} about {'math' if i % 2 else 'poems'}",
                        "model": m, "quality": float(rng.random() < 0.3 + 0.3 * j), "cost": 10.0 ** -(3 + j)})
    return out


def make_router(**config) -> MixLLMRouter:
    cfg = {"encoder": {"kind": "hashing", "use_cache": False}, "calibration_folds": 2, **config}
    return MixLLMRouter([Candidate(name=m) for m in MODELS], config=cfg, encoder=ENC).fit(
        RoutingDataset.from_records(records()))


def manifest_of(path: Path) -> dict:
    return json.loads((path / MANIFEST).read_text())


def write_manifest(path: Path, manifest: dict) -> None:
    (path / MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "router"
    make_router().save(path)
    return path


def copy(saved: Path, tmp: Path) -> Path:
    dest = tmp / "router"
    shutil.copytree(saved, dest)
    return dest


# ------------------------------------------------------------------------- item 1: host paths
def test_a_manifest_naming_a_journal_never_reads_or_writes_it(saved, tmp_path) -> None:
    """The one-line ``authorized_keys`` of the report: a manifest names it as the journal."""
    path = copy(saved, tmp_path)
    victim = tmp_path / "home" / "authorized_keys"
    victim.parent.mkdir()
    victim.write_bytes(b"ssh-ed25519 AAAA precious")
    manifest = manifest_of(path)
    manifest["config"]["learning"]["journal_path"] = str(victim)
    write_manifest(path, manifest)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        router = MixLLMRouter.load(path, encoder=ENC)
    assert router.config.learning.journal_path is None
    router.feedback(router.route("a question").decision_id, True)
    router.learning.close()
    assert victim.read_bytes() == b"ssh-ed25519 AAAA precious"
    assert sorted(p.name for p in victim.parent.iterdir()) == ["authorized_keys"]  # no .lock beside it


def test_a_manifest_naming_a_cache_folder_never_writes_there(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MIXLLM_CACHE_DIR", str(tmp_path / "default-cache"))
    host = tmp_path / "host-cache"
    # the encoder the config builds (kind="hashing": HashingEncoder(), with the on-disk cache)
    router = MixLLMRouter([Candidate(name=m) for m in MODELS], config={
        "encoder": {"kind": "hashing", "use_cache": True, "cache_dir": str(host)}, "calibration_folds": 2,
    }).fit(RoutingDataset.from_records(records()))
    path = tmp_path / "ckpt"
    router.save(path)
    manifest = manifest_of(path)
    assert manifest["config"]["encoder"]["cache_dir"] is None  # save() writes no host path
    elsewhere = tmp_path / "elsewhere"
    manifest["config"]["encoder"]["cache_dir"] = str(elsewhere)  # ... a hostile manifest does
    write_manifest(path, manifest)
    loaded = MixLLMRouter.load(path)
    assert loaded.config.encoder.cache_dir is None
    loaded.route_batch([f"query {i}" for i in range(5)])
    assert not elsewhere.exists()
    mine = tmp_path / "mine"  # the host chooses a cache folder with load(cache_dir=...)
    chosen = MixLLMRouter.load(path, cache_dir=mine)
    chosen.route_batch([f"another query {i}" for i in range(5)])
    assert chosen.config.encoder.cache_dir == str(mine) and any(mine.rglob("*"))
    assert not elsewhere.exists()


def test_save_writes_no_host_path_into_the_manifest(tmp_path) -> None:
    journal = tmp_path / "feedback.jsonl"
    router = make_router(learning={"journal_path": str(journal)})
    router.feedback(router.route("a question").decision_id, True)
    router.save(tmp_path / "ckpt")
    router.learning.close()
    text = (tmp_path / "ckpt" / MANIFEST).read_text()
    assert str(tmp_path) not in text
    manifest = json.loads(text)
    assert manifest["config"]["learning"]["journal_path"] is None
    assert manifest["config"]["encoder"]["cache_dir"] is None
    assert manifest["journaled"] is True


def test_the_host_gives_the_journal_at_load_and_it_replays(tmp_path) -> None:
    journal = tmp_path / "feedback.jsonl"
    router = make_router(learning={"journal_path": str(journal)})
    router.save(tmp_path / "ckpt")
    for k in range(4):
        router.feedback(router.route(f"question {k}").decision_id, k % 2 == 0)
    router.learning.close()
    with pytest.warns(UserWarning, match="journal_path="):  # saved with a journal, none given: said loudly
        plain = MixLLMRouter.load(tmp_path / "ckpt", encoder=ENC)
    assert plain.learning.n_events == 0 and plain.config.learning.journal_path is None
    loaded = MixLLMRouter.load(tmp_path / "ckpt", encoder=ENC, journal_path=journal)
    assert loaded.learning.n_events == 4 and loaded.config.learning.journal_path == str(journal)
    loaded.feedback(loaded.route("after").decision_id, True)  # and it keeps journaling there
    loaded.learning.close()
    assert len(journal.read_text().splitlines()) == 5


def test_an_hf_router_needs_the_host_to_name_its_model_folder(saved, tmp_path) -> None:
    path = copy(saved, tmp_path)
    manifest = manifest_of(path)
    manifest["config"]["encoder"].update(kind="hf", model_path="/etc")
    write_manifest(path, manifest)
    with pytest.raises(CheckpointError, match="model_path=|encoder="):
        MixLLMRouter.load(path)
    assert MixLLMRouter.load(path, encoder=ENC).config.encoder.model_path != "/etc"


# ------------------------------------------------------------------------- item 8: encoder mismatch
def test_a_router_trained_with_another_encoder_fails_at_load_not_at_route(saved) -> None:
    # trained with HashingEncoder(dim=32); the config's kind="hashing" builds HashingEncoder() (dim 512)
    with pytest.raises(CheckpointError, match="encoder"):
        MixLLMRouter.load(saved)


def test_an_encoder_of_the_wrong_dimension_is_refused_at_load(saved) -> None:
    with pytest.raises(CheckpointError, match="dim"):
        MixLLMRouter.load(saved, encoder=HashingEncoder(dim=64))


def test_a_same_dimension_encoder_with_another_fingerprint_warns(saved) -> None:
    with pytest.warns(UserWarning, match="differs"):
        router = MixLLMRouter.load(saved, encoder=HashingEncoder(dim=32, seed=5))
    assert router.route("still routes").chosen in MODELS
