"""Checkpoints: a folder with a JSON manifest and safetensors arrays. Never pickle.

Layout of a checkpoint folder::

    manifest.json                  format, format_version, library versions, config, candidates,
                                   per-candidate metadata, the arrays file name and its SHA-256
    arrays-<digest>.safetensors    every learned array (predictors, embedding bank, calibration)

Atomicity. ``save`` writes the arrays under a new content-addressed name (temp file, fsync,
rename), then replaces ``manifest.json`` with ``os.replace`` (atomic on POSIX and Windows), and only
then deletes arrays files the new manifest does not name. A crash at any point leaves either the old
manifest with its old arrays file, or the new manifest with its new one: the folder always loads.

One writer per folder: ``save`` holds an exclusive lock on the folder's identity (its own
descriptor, so a symlink, relative path or bind mount of the folder is the same lock) and does every
step relative to that descriptor (:mod:`._folder`).

A checkpoint is hostile input. Loading reads JSON and safetensors only: nothing in a checkpoint can
run code. It opens only ``manifest.json`` and the arrays file it names, inside the folder, never
through a symlink, only regular files of bounded size (:mod:`._folder`); it validates the JSON and
the arrays before building anything (:mod:`._checkpoint_validate`); and it takes no host path from
the manifest (:mod:`._checkpoint_trust`). Every failure (missing file, damaged JSON, checksum
mismatch, newer format version, a file name that tries to leave the folder, a symlink or FIFO,
missing, mis-shaped or non-finite arrays) raises :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .._exceptions import CheckpointError, ConfigError, DataError, MixLLMError
from .._folder import Folder
from ..candidates import Candidate
from ..policy.tradeoff import TradeoffCurve
from .trust import PathArg, apply_host_paths, check_encoder, strip_host_paths
from .validate import check_finite, parse_manifest, validate_router_arrays

if TYPE_CHECKING:
    from ..encoders.base import QueryEncoder
    from .host import CheckpointHost

H = TypeVar("H", bound="CheckpointHost")

__all__ = ["FORMAT", "FORMAT_VERSION", "write_checkpoint", "read_checkpoint", "save_router", "load_router"]

FORMAT = "mixllm-router-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: Largest manifest read (the library writes a few hundred kB at most).
MAX_MANIFEST_BYTES = 64 << 20
#: Largest arrays file read (a 1M-query bank of 384-dim float32 is 1.5 GiB); raise it for larger routers.
MAX_ARRAYS_BYTES = 16 << 30
#: How long a save waits for another writer of the same folder before raising CheckpointError.
SAVE_LOCK_TIMEOUT_S = 300.0
_ARRAYS_NAME = re.compile(r"^arrays-[0-9a-f]{16}\.safetensors$")


def _library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in ("mixllm-router", "numpy", "safetensors", "scikit-learn"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


def write_checkpoint(path: str | Path, manifest: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Atomically write ``manifest`` (JSON-serialisable) and ``arrays`` into the folder ``path``.

    Raises :class:`CheckpointError` for every failure (a file in the way, no space, no permission,
    another writer holding the folder past :data:`SAVE_LOCK_TIMEOUT_S`); the last complete
    checkpoint in the folder is then left as it was."""
    from safetensors.numpy import save

    path = Path(path)
    if "\x00" in str(path):
        raise CheckpointError(f"checkpoint path {str(path)!r} holds a NUL byte")
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path} exists and is not a folder")
    try:
        contiguous = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        blob = save(contiguous)
    except Exception as exc:  # safetensors refuses object arrays and the like
        raise CheckpointError(f"cannot serialise the arrays for {path}: {type(exc).__name__}: {exc}") from exc
    digest = hashlib.sha256(blob).hexdigest()
    arrays_name = f"arrays-{digest[:16]}.safetensors"
    try:
        # One writer at a time per folder *identity* (threads or processes, through any alias: see
        # _folder.py), and every operation relative to the folder opened here, so a symlink
        # retargeted mid-save cannot split one save across two folders.
        with Folder(path, create=True) as folder, folder.lock(SAVE_LOCK_TIMEOUT_S):
            _write_manifest_and_arrays(folder, manifest, blob, arrays_name, digest)
    except OSError as exc:
        raise CheckpointError(f"cannot save the checkpoint to {path}: {exc}") from exc
    return path


def _named_arrays(folder: Folder) -> str | None:
    """The arrays file the manifest now on disk names (None when there is none or it is unreadable)."""
    try:
        manifest = parse_manifest(folder.read(MANIFEST, max_bytes=MAX_MANIFEST_BYTES), folder.path / MANIFEST)
    except (OSError, CheckpointError):
        return None
    name = manifest.get("arrays_file") if isinstance(manifest, dict) else None
    return name if isinstance(name, str) and _ARRAYS_NAME.match(name) else None


def _write_manifest_and_arrays(folder: Folder, manifest: dict[str, Any], blob: bytes, arrays_name: str,
                               digest: str) -> None:
    folder.write_atomic(arrays_name, blob)
    folder.fsync()  # the arrays file's name is on disk before any manifest can point at it
    full = dict(manifest)
    full.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        arrays_file=arrays_name,
        arrays_sha256=digest,
        arrays_bytes=len(blob),
        saved_at=time.time(),
        versions=_library_versions(),
    )
    try:
        text = json.dumps(full, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise CheckpointError(f"manifest for {folder.path} is not plain JSON: {exc}") from exc
    folder.write_atomic(MANIFEST, text.encode("utf-8"))
    folder.fsync()
    # Delete only what no manifest names: re-read the one on disk (under the lock it is ours; the
    # check keeps a writer of an older library version, which locked by name, from losing its file).
    keep = {arrays_name, _named_arrays(folder)}
    for name in folder.names():
        stale_tmp = name.endswith(".tmp") and (name.startswith(".arrays-") or name.startswith(f".{MANIFEST}."))
        if (_ARRAYS_NAME.match(name) and name not in keep) or stale_tmp:
            # temp files of saves killed mid-write: no other writer can be using them (we hold the lock)
            with contextlib.suppress(OSError):
                folder.unlink(name)


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a checkpoint folder: ``(manifest, arrays)``.

    Opens nothing outside the folder and reads nothing unbounded (_folder.py): the manifest is at
    most :data:`MAX_MANIFEST_BYTES`, the arrays file exactly the ``arrays_bytes`` the manifest
    declares and at most :data:`MAX_ARRAYS_BYTES`; symlinks, FIFOs and devices are refused."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint folder at {path}")
    try:
        with Folder(path) as folder:
            for _ in range(4):
                try:
                    return _read_checkpoint_once(folder)
                except _ArraysGone:  # a writer replaced the manifest and deleted its old arrays: read again
                    time.sleep(0.01)
            return _read_checkpoint_once(folder, last_try=True)
    except OSError as exc:
        raise CheckpointError(f"cannot read the checkpoint at {path}: {exc}") from exc


class _ArraysGone(Exception):
    pass


def _read_checkpoint_once(folder: Folder, last_try: bool = False) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    manifest_path = folder.path / MANIFEST
    try:
        data = folder.read(MANIFEST, max_bytes=MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise CheckpointError(f"{manifest_path} is missing: not a mixllm-router checkpoint") from None
    manifest = parse_manifest(data, manifest_path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{manifest_path} is not a mixllm-router manifest")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{manifest_path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{manifest_path} has format version {version}; this mixllm-router reads up to "
            f"{FORMAT_VERSION}: upgrade mixllm-router"
        )
    name = manifest.get("arrays_file")
    if not isinstance(name, str) or not _ARRAYS_NAME.match(name):
        raise CheckpointError(f"{manifest_path}: arrays_file {name!r} is not a file name this library writes")
    arrays_path = folder.path / name
    size = manifest.get("arrays_bytes")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_ARRAYS_BYTES:
        # a manifest must not make us read a file of unknown size into memory
        raise CheckpointError(
            f"{manifest_path}: arrays_bytes must be the arrays file's size in bytes, an integer in "
            f"1..{MAX_ARRAYS_BYTES}, got {size!r}"
        )
    try:
        blob = folder.read(name, max_bytes=MAX_ARRAYS_BYTES, exact_size=size)
    except FileNotFoundError:
        if not last_try:
            raise _ArraysGone from None
        raise CheckpointError(f"{arrays_path} is missing (named by {manifest_path})") from None
    if hashlib.sha256(blob).hexdigest() != manifest.get("arrays_sha256"):
        raise CheckpointError(f"{arrays_path} is damaged: its SHA-256 does not match the manifest")
    try:
        arrays = load(blob)
    except (SafetensorError, ValueError, OSError, TypeError) as exc:
        raise CheckpointError(f"{arrays_path} is not a valid safetensors file: {exc}") from None
    return manifest, arrays


# ---------------------------------------------------------------------------------- the router
def save_router(router: CheckpointHost, path: Path) -> Path:
    """Checkpoint a fitted router (called by :meth:`MixLLMRouter.save`)."""
    lock = getattr(getattr(router, "learning", None), "lock", None) or contextlib.nullcontext()
    with lock:  # a consistent snapshot: feedback updates arrays in place and grows the bank
        manifest, arrays = _router_state(router)
    return write_checkpoint(path, manifest, arrays)


def _router_state(router: CheckpointHost) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    assert router.model.bank is not None
    names = router.model.pool.names
    arrays: dict[str, np.ndarray] = {"bank.embeddings": router.model.bank}
    candidates_meta = []
    for i, name in enumerate(names):
        model = router.model.predictors[name]
        candidates_meta.append({"spec": router.model.pool.get(name).model_dump(), "predictor": model.meta()})
        arrays.update({f"candidate.{i}.{k}": v for k, v in model.state_arrays().items()})
    if router.model.calibration is not None:
        cal = router.model.calibration
        arrays.update({
            "calibration.cost_weights": cal.cost_weights,
            "calibration.cost_share": cal.cost_share,
            "calibration.quality_share": cal.quality_share,
        })
    encoder_state = None
    encoder = router.built_encoder
    if encoder is not None and hasattr(encoder, "checkpoint_state"):
        # a learned encoder (e.g. tag-enhanced) travels with the router that was trained on it
        encoder_state, encoder_arrays = encoder.checkpoint_state()
        arrays.update({f"encoder.{k}": v for k, v in encoder_arrays.items()})
    extra_meta, extra_arrays = router.learning.state(router)
    arrays.update({f"extra.{k}": v for k, v in extra_arrays.items()})
    config, journaled = strip_host_paths(router.config.model_dump(mode="json"))
    manifest = {
        "config": config,
        "journaled": journaled,
        "candidates": candidates_meta,
        "reference": router.model.reference,
        "encoder_fingerprint": router.model.encoder_fingerprint,
        "encoder_state": encoder_state,
        "extra": extra_meta,
    }
    return manifest, {k: np.array(v, copy=True) for k, v in arrays.items()}


def _sub(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def load_router(
    cls: type[H],
    path: Path,
    *,
    encoder: QueryEncoder | None = None,
    journal_path: PathArg = None,
    cache_dir: PathArg = None,
    model_path: PathArg = None,
) -> H:
    """Rebuild a router from :func:`save_router`'s folder (called by :meth:`MixLLMRouter.load`).

    Path settings come from the host, never from the manifest (:mod:`._checkpoint_trust`)."""
    manifest, arrays = read_checkpoint(path)
    where = path / MANIFEST
    try:
        check_finite(arrays)  # before anything, the encoder included, is built from them
    except CheckpointError as exc:
        raise CheckpointError(f"{where} does not describe a valid router: {exc}") from None
    try:
        config = apply_host_paths(manifest.get("config"), where, journal_path=journal_path, cache_dir=cache_dir,
                                  model_path=model_path, encoder_given=encoder is not None,
                                  journaled=manifest.get("journaled") is True)
        if encoder is None and manifest.get("encoder_state"):
            from ..config import make_config
            from .encoder import restore_encoder

            settings = make_config(config).encoder
            encoder = restore_encoder(manifest["encoder_state"], _sub(arrays, "encoder."), settings)
        router = cls(config=config, encoder=encoder)
        try:
            validate_router_arrays(manifest, arrays, hidden=router.config.learning.hidden)
        except CheckpointError as exc:
            raise CheckpointError(f"{where} does not describe a valid router: {exc}") from None
        bank = arrays["bank.embeddings"]
        from ..predictors import CandidatePredictor

        for i, entry in enumerate(manifest["candidates"]):
            spec = Candidate.model_validate(entry["spec"])
            router.model.pool.add(spec)
            sub = _sub(arrays, f"candidate.{i}.")
            router.model.predictors[spec.name] = CandidatePredictor.from_state(entry["predictor"], sub, bank_size=bank.shape[0])
        if not router.model.predictors:
            raise DataError("the manifest names no candidates")
        router.model.bank = bank
        if "calibration.cost_weights" in arrays:
            router.model.calibration = TradeoffCurve(
                arrays["calibration.cost_weights"], arrays["calibration.cost_share"], arrays["calibration.quality_share"]
            )
        router.model.reference = manifest.get("reference")
        fingerprint = manifest.get("encoder_fingerprint")
        if fingerprint is not None and not isinstance(fingerprint, str):
            raise DataError(f"encoder_fingerprint must be a string, got {type(fingerprint).__name__}")
        router.model.encoder_fingerprint = fingerprint
        check_encoder(router, encoder, where)  # before the journal replay encodes nothing, but fails fast
        router.learning.restore(router, manifest.get("extra") or {}, _sub(arrays, "extra."))
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, MixLLMError) as exc:
        # any of these means the manifest or arrays do not describe a router (hypothesis-tested in
        # tests/test_hostile_input.py); the original error stays chained as __cause__
        if isinstance(exc, ConfigError):
            raise CheckpointError(f"{where}: invalid config: {exc}") from exc
        raise CheckpointError(f"{where} does not describe a valid router: {type(exc).__name__}: {exc}") from exc
    return router
