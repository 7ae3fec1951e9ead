"""A checkpoint from someone else is hostile input (issue #15): it chooses no host path, it cannot
make the library read or write outside its folder, and anything wrong in it is a CheckpointError.

Host paths (items 1): ``learning.journal_path``, ``encoder.cache_dir`` and ``encoder.model_path`` in a
manifest are never used as paths; the host gives them to :meth:`MixLLMRouter.load`, and ``save()``
writes none of them. Encoder mismatch (item 8): a router loaded with an encoder other than the one it
was trained with fails at load with a clear error, not at the first route.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import threading
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

from mixllm_router import Candidate, CheckpointError, MixLLMRouter, RoutingDataset
from mixllm_router.checkpoint.save_load import MANIFEST
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
    router = make_router()
    router.feedback(router.route("a first feedback builds the feedback network").decision_id, True)
    router.save(path)
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


# ------------------------------------------------------------------------- item 3: one writer per folder
def _count_writers(monkeypatch) -> list[int]:
    """Wrap the part of a save that runs under the folder lock: record how many run at once."""
    import mixllm_router.checkpoint.save_load as ck

    inner = ck._write_manifest_and_arrays
    state = {"now": 0}
    peaks: list[int] = []
    guard = threading.Lock()

    def counted(*args, **kwargs):
        with guard:
            state["now"] += 1
            peaks.append(state["now"])
        try:
            time.sleep(0.2)  # long enough for the other writer to arrive while this one is inside
            return inner(*args, **kwargs)
        finally:
            with guard:
                state["now"] -= 1

    monkeypatch.setattr(ck, "_write_manifest_and_arrays", counted)
    return peaks


def test_saves_through_every_alias_of_one_folder_are_serialised(tmp_path, monkeypatch) -> None:
    router = make_router()
    real = tmp_path / "real"
    router.save(real)
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    aliases = [real, tmp_path / "link", Path("../real"), tmp_path / "sub" / ".." / "link", Path(str(real) + "/")]
    peaks = _count_writers(monkeypatch)
    errors: list[BaseException] = []

    def save(alias: Path) -> None:
        try:
            make_router(seed=len(str(alias))).save(alias)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(a,)) for a in aliases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert max(peaks) == 1, f"{max(peaks)} saves ran inside one folder at once"
    assert MixLLMRouter.load(real, encoder=ENC).route("math").chosen in MODELS
    assert sorted(p.name for p in real.iterdir() if not p.name.startswith(".")) == sorted(
        [MANIFEST, manifest_of(real)["arrays_file"]])


def test_a_failing_save_raises_checkpoint_error_and_keeps_the_last_checkpoint(tmp_path, monkeypatch) -> None:
    router = make_router()
    path = tmp_path / "ckpt"
    router.save(path)
    before = manifest_of(path)["arrays_file"]
    import errno
    import os

    real_replace = os.replace

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    router.feedback(router.route("something new").decision_id, True)
    with pytest.raises(CheckpointError, match="No space left"):
        router.save(path)
    monkeypatch.setattr(os, "replace", real_replace)
    assert manifest_of(path)["arrays_file"] == before
    assert MixLLMRouter.load(path, encoder=ENC).route("math").chosen in MODELS


# ------------------------------------------------------------------------- item 4: sizes and file types
def arrays_of(path: Path) -> Path:
    return path / manifest_of(path)["arrays_file"]


def load_in_thread(path: Path, timeout: float = 20.0) -> BaseException | None:
    """Load in a daemon thread: a load that blocks (a FIFO) fails the test instead of hanging it."""
    out: list[BaseException | None] = []

    def run() -> None:
        try:
            MixLLMRouter.load(path, encoder=ENC)
            out.append(None)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert out, f"loading {path} blocked for {timeout} s"
    return out[0]


def assert_refused(path: Path, match: str | None = None) -> None:
    exc = load_in_thread(path)
    assert isinstance(exc, CheckpointError), f"{type(exc).__name__}: {exc}"
    if match:
        assert re.search(match, str(exc)), str(exc)


@pytest.mark.parametrize("value", ["absent", 1.0 * 10**6, "123", True, -1, 2**70])
def test_arrays_bytes_must_be_the_exact_int(saved, tmp_path, value) -> None:
    path = copy(saved, tmp_path)
    manifest = manifest_of(path)
    if value == "absent":
        del manifest["arrays_bytes"]
    else:
        manifest["arrays_bytes"] = value
    write_manifest(path, manifest)
    assert_refused(path, "arrays_bytes")


def test_a_giant_arrays_file_without_a_declared_size_is_not_read(saved, tmp_path) -> None:
    path = copy(saved, tmp_path)
    target = arrays_of(path)
    manifest = manifest_of(path)
    del manifest["arrays_bytes"]
    write_manifest(path, manifest)
    target.unlink()
    with open(target, "wb") as fh:  # sparse: 4 GiB on paper, nothing on disk
        fh.truncate(4 * 2**30)
    tracemalloc.start()
    try:
        assert_refused(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"loading read {peak / 2**20:.0f} MB"


@pytest.mark.parametrize("which", ["arrays", "manifest"])
def test_a_symlink_to_dev_zero_is_refused(saved, tmp_path, which) -> None:
    path = copy(saved, tmp_path)
    target = arrays_of(path) if which == "arrays" else path / MANIFEST
    manifest = manifest_of(path)
    del manifest["arrays_bytes"]
    write_manifest(path, manifest)
    target.unlink()
    target.symlink_to("/dev/zero")
    assert_refused(path, "symlink|not a regular file")


def test_a_valid_arrays_file_outside_the_folder_is_not_reached_through_a_symlink(saved, tmp_path) -> None:
    path = copy(saved, tmp_path)
    target = arrays_of(path)
    outside = tmp_path / "outside.safetensors"
    shutil.move(target, outside)  # byte-for-byte the right file, checksum and size match
    target.symlink_to(outside)
    assert_refused(path, "symlink")


@pytest.mark.parametrize("which", ["arrays", "manifest"])
def test_a_fifo_never_blocks_the_load(saved, tmp_path, which) -> None:
    path = copy(saved, tmp_path)
    target = arrays_of(path) if which == "arrays" else path / MANIFEST
    target.unlink()
    os.mkfifo(target)
    try:
        assert_refused(path, "not a regular file")
    finally:
        with contextlib.suppress(OSError):  # free a reader blocked on it (today's code)
            fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)


def test_a_device_file_is_refused(saved, tmp_path) -> None:
    path = copy(saved, tmp_path)
    target = arrays_of(path)
    target.unlink()
    try:
        os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
    except (PermissionError, AttributeError):
        pytest.skip("cannot create a device file here")
    assert_refused(path, "not a regular file")


def test_a_giant_manifest_is_not_read(saved, tmp_path) -> None:
    path = copy(saved, tmp_path)
    text = (path / MANIFEST).read_bytes()
    with open(path / MANIFEST, "r+b") as fh:  # valid JSON followed by 4 GiB of (sparse) zero bytes
        fh.truncate(4 * 2**30)
        fh.seek(0)
        fh.write(text)
    tracemalloc.start()
    try:
        assert_refused(path, "manifest")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"loading read {peak / 2**20:.0f} MB"


def test_the_folder_itself_may_be_a_symlink_the_host_chose(saved, tmp_path) -> None:
    (tmp_path / "alias").symlink_to(saved, target_is_directory=True)
    assert MixLLMRouter.load(tmp_path / "alias", encoder=ENC).route("poem").chosen in MODELS


# ------------------------------------------------------------------------- item 7: manifest and arrays values
def _set(manifest: dict, where: tuple, value) -> None:
    node = manifest
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = value


@pytest.mark.parametrize("where", [("format_version",), ("candidates", 0, "spec", "context_window"),
                                   ("extra", "learning", "applied_seq"), ("candidates", 1, "predictor", "knn_k")])
def test_a_5000_digit_integer_in_the_manifest(saved, tmp_path, where) -> None:
    path = copy(saved, tmp_path)
    text = (path / MANIFEST).read_text()
    manifest = json.loads(text)
    _set(manifest, where, 12345)
    text = json.dumps(manifest).replace("12345", "7" * 5000, 1)
    (path / MANIFEST).write_text(text)
    assert_refused(path)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_the_manifest(saved, tmp_path, literal) -> None:
    path = copy(saved, tmp_path)
    manifest = manifest_of(path)
    manifest["candidates"][0]["spec"]["input_price"] = 424242.5
    (path / MANIFEST).write_text(json.dumps(manifest).replace("424242.5", literal))
    assert_refused(path)


def test_deeply_nested_json_in_the_manifest(saved, tmp_path) -> None:
    path = copy(saved, tmp_path)
    manifest = manifest_of(path)
    manifest["extra"]["deep"] = "HOLE"
    deep = "[" * 200_000 + "]" * 200_000
    (path / MANIFEST).write_text(json.dumps(manifest).replace('"HOLE"', deep))
    assert_refused(path)


@pytest.mark.parametrize("value", [{"": {}}, [], ["ridge", "svm"], "ridge", None])
def test_predictor_kinds_that_are_not_a_list_of_known_kinds(saved, tmp_path, value) -> None:
    """Found by benchmarks/hostile_checkpoints.py: a dict as ``kinds`` loaded, then routed with NaN quality."""
    path = copy(saved, tmp_path)
    manifest = manifest_of(path)
    manifest["candidates"][1]["predictor"]["kinds"] = value
    write_manifest(path, manifest)
    assert_refused(path)


@pytest.mark.parametrize("dim", [10**6, 10**12, 0, -3, 31])
def test_a_declared_predictor_dim_that_does_not_fit(saved, tmp_path, dim) -> None:
    path = copy(saved, tmp_path)
    manifest = manifest_of(path)
    manifest["candidates"][0]["predictor"]["dim"] = dim
    write_manifest(path, manifest)
    assert_refused(path)


def rewrite_arrays(path: Path, change) -> None:
    """Change the arrays and write them back with a valid checksum and size (only validation can stop it)."""
    from mixllm_router.checkpoint.save_load import read_checkpoint, write_checkpoint

    manifest, arrays = read_checkpoint(path)
    change(arrays)
    write_checkpoint(path, manifest, arrays)


def _nan_at(name: str):
    def change(arrays):
        a = np.array(arrays[name], dtype=np.float64 if arrays[name].dtype == np.float64 else arrays[name].dtype)
        a.reshape(-1)[0] = np.nan
        arrays[name] = a
    return change


ARRAY_DAMAGE = {
    "bank narrower": lambda a: a.update({"bank.embeddings": a["bank.embeddings"][:, :-1].copy()}),
    "bank 3-D": lambda a: a.update({"bank.embeddings": a["bank.embeddings"][None].copy()}),
    "bank NaN": _nan_at("bank.embeddings"),
    "b NaN (always chosen)": _nan_at("candidate.1.linear.b"),
    "a_inv inf": lambda a: a.update({"candidate.0.linear.a_inv": np.full_like(a["candidate.0.linear.a_inv"], np.inf)}),
    "a_inv not square": lambda a: a.update({"candidate.0.linear.a_inv": a["candidate.0.linear.a_inv"][:, :-1].copy()}),
    "b one target": lambda a: a.update({"candidate.2.linear.b": a["candidate.2.linear.b"][:, :1].copy()}),
    "offset long": lambda a: a.update({"candidate.0.linear.offset": np.zeros(7)}),
    "n_seen negative": lambda a: a.update({"candidate.0.linear.n_seen": np.array([-5], dtype=np.int64)}),
    "n_seen float": lambda a: a.update({"candidate.0.linear.n_seen": np.array([1.5])}),
    "knn targets NaN": _nan_at("candidate.0.knn.targets"),
    "knn rows float": lambda a: a.update({"candidate.0.knn.rows": a["candidate.0.knn.rows"].astype(np.float64) + 0.5}),
    "knn targets 2-D": lambda a: a.update({"candidate.0.knn.targets": a["candidate.0.knn.targets"][:, None].copy()}),
    "calibration lengths": lambda a: a.update({"calibration.cost_share": a["calibration.cost_share"][:-1].copy()}),
    "calibration NaN": _nan_at("calibration.quality_share"),
    "a_inv missing": lambda a: a.pop("candidate.1.linear.a_inv"),
    "bank empty": lambda a: a.update({"bank.embeddings": np.zeros((0, ENC.dim), np.float32)}),
    # found by benchmarks/hostile_checkpoints.py: a trunk bias of the wrong length broke routing
    "net.c cut": lambda a: a.update({"extra.learning.net.c": a["extra.learning.net.c"][:-1].copy()}),
    "net.c widened": lambda a: a.update({"extra.learning.net.c": np.zeros(a["extra.learning.net.c"].size + 1)}),
}


@pytest.mark.parametrize("damage", sorted(ARRAY_DAMAGE))
def test_arrays_with_wrong_shapes_or_values_behind_a_valid_checksum(saved, tmp_path, damage) -> None:
    path = copy(saved, tmp_path)
    rewrite_arrays(path, ARRAY_DAMAGE[damage])
    assert_refused(path)


def test_save_and_load_of_a_path_with_a_nul_byte_raise_checkpoint_error(saved, tmp_path) -> None:
    router = MixLLMRouter.load(saved, encoder=ENC)
    with pytest.raises(CheckpointError):
        router.save(tmp_path / "bad\x00name")
    with pytest.raises(CheckpointError):
        MixLLMRouter.load(tmp_path / "bad\x00name", encoder=ENC)
