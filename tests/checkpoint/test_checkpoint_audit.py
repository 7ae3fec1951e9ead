"""Loading any checkpoint opens no file outside its folder (issue #15), watched by an audit hook.

``sys.addaudithook`` sees every ``open`` event: ``open()``, ``io.open``, ``os.open`` (and so
``Path.read_bytes``, ``tempfile``, ``filelock``, ...), *before* the system call, with its flags.
While hostile checkpoints load, each event's path is resolved the way the kernel would:
relative names against the checkpoint folder (the test runs with the folder as the working
directory, and the library opens names relative to the folder's descriptor), the last component
not followed when the flags carry ``O_NOFOLLOW``. Every path must then lie inside the folder.

Audit hooks cannot be removed, so the hook is a no-op unless the module-level ``WATCHING`` flag is
set: it neither slows nor breaks other tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from mixllm_router import Candidate, MixLLMError, MixLLMRouter, RoutingDataset
from mixllm_router.checkpoint.save_load import MANIFEST
from mixllm_router.encoders import HashingEncoder

ENC = HashingEncoder(dim=32)
MODELS = ("big", "small", "tiny")

WATCHING = False
OPENED: list[tuple[str, int]] = []


def _hook(event: str, args: tuple) -> None:
    if not WATCHING or event != "open":
        return
    path, _mode, flags = (tuple(args) + (None, None, None))[:3]
    if isinstance(path, (str, bytes, os.PathLike)):
        OPENED.append((os.fsdecode(path), flags if isinstance(flags, int) else 0))


sys.addaudithook(_hook)


def _resolve(path: str, flags: int, folder: Path) -> Path:
    full = path if os.path.isabs(path) else os.path.join(folder, path)
    if flags & getattr(os, "O_NOFOLLOW", 0):
        return Path(os.path.realpath(os.path.dirname(full))) / os.path.basename(full)
    return Path(os.path.realpath(full))


@contextlib.contextmanager
def watch(folder: Path) -> Iterator[list[Path]]:
    """Record the resolved path of every open while the block runs, with ``folder`` as the cwd."""
    global WATCHING
    resolved: list[Path] = []
    cwd = os.getcwd()
    os.chdir(folder)
    OPENED.clear()
    WATCHING = True
    try:
        yield resolved
    finally:
        WATCHING = False
        os.chdir(cwd)
        resolved.extend(_resolve(p, f, folder) for p, f in OPENED)
        OPENED.clear()


def records() -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"query_id": f"q{i}", "query": f"query {i} about {'math' if i % 2 else 'poems'}", "model": m,
             "quality": float(rng.random() < 0.3 + 0.3 * j), "cost": 10.0 ** -(3 + j)}
            for i in range(24) for j, m in enumerate(MODELS)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audit") / "router"
    cfg = {"encoder": {"kind": "hashing", "use_cache": False}, "calibration_folds": 2}
    router = MixLLMRouter([Candidate(name=m) for m in MODELS], config=cfg, encoder=ENC)
    router.fit(RoutingDataset.from_records(records()))
    router.feedback(router.route("warm the feedback network").decision_id, True)
    router.save(path)
    MixLLMRouter.load(path, encoder=ENC).route("warm up every lazy import of a load and a route")
    return path


def _manifest(path: Path) -> dict:
    return json.loads((path / MANIFEST).read_text())


def _write(path: Path, manifest: dict) -> None:
    (path / MANIFEST).write_text(json.dumps(manifest))


def _arrays(path: Path) -> Path:
    return path / _manifest(path)["arrays_file"]


# Each case turns a copy of the checkpoint (``ck``) hostile, given a folder ``out`` beside it that
# holds tempting targets: a valid arrays file, a valid manifest, a journal, a model folder.
Case = Callable[[Path, Path], None]


def _set(**changes) -> Case:
    def apply(ck: Path, out: Path) -> None:
        m = _manifest(ck)
        for dotted, value in changes.items():
            node = m
            keys = dotted.split("__")
            for k in keys[:-1]:
                node = node[k]
            node[keys[-1]] = value(out) if callable(value) else value
        _write(ck, m)
    return apply


def _replace_arrays(make: Callable[[Path, Path], None]) -> Case:
    def apply(ck: Path, out: Path) -> None:
        target = _arrays(ck)
        target.unlink()
        make(target, out)
    return apply


def _replace_manifest(make: Callable[[Path, Path], None]) -> Case:
    def apply(ck: Path, out: Path) -> None:
        (ck / MANIFEST).unlink()
        make(ck / MANIFEST, out)
    return apply


def _mknod(target: Path, out: Path) -> None:
    try:
        os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except (PermissionError, AttributeError):
        target.symlink_to("/dev/zero")


def _sparse(size: int) -> Callable[[Path, Path], None]:
    def make(target: Path, out: Path) -> None:
        with open(target, "wb") as fh:
            fh.truncate(size)
    return make


def _giant_manifest(ck: Path, out: Path) -> None:
    text = (ck / MANIFEST).read_bytes()
    with open(ck / MANIFEST, "r+b") as fh:
        fh.truncate(4 * 2**30)
        fh.seek(0)
        fh.write(text)


def _drop_size(ck: Path, out: Path) -> None:
    m = _manifest(ck)
    del m["arrays_bytes"]
    _write(ck, m)


CASES: dict[str, Case] = {
    "traversal ../": _set(arrays_file="../outside.safetensors"),
    "traversal ../../": _set(arrays_file="../../../../../../etc/passwd"),
    "absolute path": _set(arrays_file=lambda out: str(out / "outside.safetensors")),
    "absolute /etc/passwd": _set(arrays_file="/etc/passwd"),
    "sub-folder": _set(arrays_file="sub/arrays-0123456789abcdef.safetensors"),
    "NUL byte": _set(arrays_file="arrays-0123456789abcdef.safetensors\x00../x"),
    "arrays symlinked out": _replace_arrays(lambda t, out: t.symlink_to(out / "outside.safetensors")),
    "manifest symlinked out": _replace_manifest(lambda t, out: t.symlink_to(out / "outside-manifest.json")),
    "arrays hard-linked out": _replace_arrays(lambda t, out: os.link(out / "outside.safetensors", t)),
    "manifest hard-linked out": _replace_manifest(lambda t, out: os.link(out / "outside-manifest.json", t)),
    "arrays FIFO": _replace_arrays(lambda t, out: os.mkfifo(t)),
    "manifest FIFO": _replace_manifest(lambda t, out: os.mkfifo(t)),
    "arrays device file": _replace_arrays(_mknod),
    "arrays symlink to /dev/zero": _replace_arrays(lambda t, out: t.symlink_to("/dev/zero")),
    "declared 2**62 bytes": _set(arrays_bytes=2**62),
    "no declared size, 4 GiB arrays": lambda ck, out: (_drop_size(ck, out), _replace_arrays(_sparse(4 * 2**30))(ck, out)),
    "4 GiB manifest": _giant_manifest,
    "journal_path out": _set(config__learning__journal_path=lambda out: str(out / "journal.jsonl")),
    "journal_path relative out": _set(config__learning__journal_path="../outside/journal.jsonl"),
    "cache_dir out": _set(config__encoder__cache_dir=lambda out: str(out / "cache"), config__encoder__use_cache=True),
    "model_path out (hf)": _set(config__encoder__kind="hf", config__encoder__model_path=lambda out: str(out / "model")),
    "model_path out (minilm)": _set(config__encoder__model_path=lambda out: str(out / "model")),
    "kind minilm": _set(config__encoder__kind="minilm"),
}


def _installed_model() -> Path | None:
    """The bundled MiniLM's folder: the one place outside the checkpoint a load may read, when no
    encoder= is given and the config asks for kind "minilm" (the host installed it; the manifest
    cannot name another)."""
    try:
        from mixllm_router.encoders.hf import default_model_path

        return default_model_path().resolve()
    except MixLLMError:
        return None


def _outside(base: Path, saved: Path) -> Path:
    out = base / "outside"
    out.mkdir()
    shutil.copy(_arrays(saved), out / "outside.safetensors")  # valid: checksum and size match
    shutil.copy(saved / MANIFEST, out / "outside-manifest.json")
    shutil.copy(_arrays(saved), out / _manifest(saved)["arrays_file"])
    (out / "journal.jsonl").write_text("")  # a journal a hostile manifest would like us to replay
    (out / "model").mkdir()
    (out / "model" / "config.json").write_text('{"hidden_size": 32}')
    return out


def _load_and_use(ck: Path, encoder) -> None:
    router = MixLLMRouter.load(ck, encoder=encoder)
    decision = router.route("a question after the load")
    router.feedback(decision.decision_id, True)
    router.learning.close()


@pytest.mark.parametrize("given_encoder", [True, False], ids=["encoder=", "no encoder="])
@pytest.mark.parametrize("case", sorted(CASES))
def test_loading_a_hostile_checkpoint_opens_nothing_outside_its_folder(saved, tmp_path, case, given_encoder,
                                                                       monkeypatch) -> None:
    monkeypatch.setenv("MIXLLM_CACHE_DIR", str(tmp_path / "host-default-cache"))
    out = _outside(tmp_path, saved)
    ck = tmp_path / "ck"
    shutil.copytree(saved, ck)
    CASES[case](ck, out)
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    folder = ck.resolve()
    with watch(folder) as opened, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _load_and_use(ck, ENC if given_encoder else None)
        except MixLLMError:
            pass  # refused: the library's own error (anything else fails the test)
    allowed = [folder] + ([model] if (model := _installed_model()) and not given_encoder else [])
    load_opens = [p for p in opened if not any(p == a or a in p.parents for a in allowed)]
    assert not load_opens, f"{case}: opened outside the folder: {load_opens}"
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before, f"{case}: touched {out}"


def test_the_watch_sees_an_open_outside_the_folder(saved, tmp_path) -> None:
    """The hook is live: reading a file beside the folder is reported (the test above can fail)."""
    with watch(saved.resolve()) as opened:
        (saved.parent / "probe.txt").write_text("x")
        os.close(os.open(saved / MANIFEST, os.O_RDONLY))
    assert saved.parent.resolve() / "probe.txt" in opened
    assert saved.resolve() / MANIFEST in opened
