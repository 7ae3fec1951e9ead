"""Checkpoints: a folder with a JSON manifest and safetensors arrays. Never pickle.

Layout of a checkpoint folder::

    manifest.json                  format, format_version, library versions, config, candidates,
                                   per-candidate metadata, the arrays file name and its SHA-256
    arrays-<digest>.safetensors    every learned array (predictors, embedding bank, calibration)

Atomicity. ``save`` writes the arrays under a new content-addressed name (temp file, fsync,
rename), then replaces ``manifest.json`` with ``os.replace`` (atomic on POSIX and Windows), and only
then deletes arrays files the new manifest does not name. A crash at any point leaves either the old
manifest with its old arrays file, or the new manifest with its new one: the folder always loads.

Loading reads JSON and safetensors only: nothing in a checkpoint can run code. Every failure
(missing file, damaged JSON, checksum mismatch, newer format version, a file name that tries to
leave the folder, missing or mis-shaped arrays) raises :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._checkpoint_trust import PathArg, apply_host_paths, check_encoder, strip_host_paths
from ._exceptions import CheckpointError, ConfigError, DataError, MixLLMError
from .candidates import Candidate
from .tradeoff import TradeoffCurve

if TYPE_CHECKING:
    from .encoders.base import QueryEncoder
    from .router import MixLLMRouter

__all__ = ["FORMAT", "FORMAT_VERSION", "write_checkpoint", "read_checkpoint", "save_router", "load_router"]

FORMAT = "mixllm-router-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_ARRAYS_NAME = re.compile(r"^arrays-[0-9a-f]{16}\.safetensors$")


def _library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in ("mixllm-router", "numpy", "safetensors", "scikit-learn"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not supported on every platform / filesystem
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_checkpoint(path: str | Path, manifest: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Atomically write ``manifest`` (JSON-serialisable) and ``arrays`` into the folder ``path``."""
    from safetensors.numpy import save

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path} exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    contiguous = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    blob = save(contiguous)
    digest = hashlib.sha256(blob).hexdigest()
    arrays_name = f"arrays-{digest[:16]}.safetensors"
    from filelock import FileLock

    # One writer at a time per folder (threads or processes): without it, writer A's clean-up could
    # delete the arrays file that writer B's manifest, replaced a moment later, names. The lock file
    # sits beside the folder (``.<name>.lock``) so the folder holds only the checkpoint itself.
    with FileLock(str(path.parent / f".{path.name}.lock")):
        _write_manifest_and_arrays(path, manifest, blob, arrays_name, digest)
    return path


def _write_manifest_and_arrays(path: Path, manifest: dict[str, Any], blob: bytes, arrays_name: str,
                               digest: str) -> None:
    _write_atomic(path / arrays_name, blob)
    _fsync_dir(path)  # the arrays file's name is on disk before any manifest can point at it
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
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"manifest for {path} is not plain JSON: {exc}") from exc
    _write_atomic(path / MANIFEST, text.encode("utf-8"))
    _fsync_dir(path)
    for old in path.glob("arrays-*.safetensors"):
        if old.name != arrays_name:
            with contextlib.suppress(OSError):
                old.unlink()
    # temp files of saves killed mid-write: no other writer can be using them (we hold the lock)
    for stale in [*path.glob(".arrays-*.tmp"), *path.glob(f".{MANIFEST}.*.tmp")]:
        with contextlib.suppress(OSError):
            stale.unlink()


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a checkpoint folder: ``(manifest, arrays)``."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint folder at {path}")
    for _ in range(4):
        try:
            return _read_checkpoint_once(path)
        except _ArraysGone:  # a writer replaced the manifest and deleted its old arrays: read again
            time.sleep(0.01)
    return _read_checkpoint_once(path, last_try=True)


class _ArraysGone(Exception):
    pass


def _read_checkpoint_once(path: Path, last_try: bool = False) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{manifest_path} is missing: not a mixllm-router checkpoint") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{manifest_path} is damaged (not valid JSON): {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{manifest_path} is not a mixllm-router manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{manifest_path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{manifest_path} has format version {version}; this mixllm-router reads up to "
            f"{FORMAT_VERSION}: upgrade mixllm-router"
        )
    name = manifest.get("arrays_file")
    if not isinstance(name, str) or not _ARRAYS_NAME.match(name):
        raise CheckpointError(f"{manifest_path}: arrays_file {name!r} is not a file name this library writes")
    arrays_path = path / name
    expected_size = manifest.get("arrays_bytes")
    try:
        # compare sizes before reading: a manifest must not make us read a huge file into memory
        if isinstance(expected_size, int) and arrays_path.stat().st_size != expected_size:
            raise CheckpointError(
                f"{arrays_path} has {arrays_path.stat().st_size} bytes; the manifest says {expected_size}"
            )
        blob = arrays_path.read_bytes()
    except FileNotFoundError:
        if not last_try:
            raise _ArraysGone from None
        raise CheckpointError(f"{arrays_path} is missing (named by {manifest_path})") from None
    if hashlib.sha256(blob).hexdigest() != manifest.get("arrays_sha256"):
        raise CheckpointError(f"{arrays_path} is damaged: its SHA-256 does not match the manifest")
    try:
        arrays = load(blob)
    except (SafetensorError, ValueError, OSError) as exc:
        raise CheckpointError(f"{arrays_path} is not a valid safetensors file: {exc}") from None
    return manifest, arrays


# ---------------------------------------------------------------------------------- the router
def save_router(router: MixLLMRouter, path: Path) -> Path:
    """Checkpoint a fitted router (called by :meth:`MixLLMRouter.save`)."""
    lock = getattr(getattr(router, "learning", None), "lock", None) or contextlib.nullcontext()
    with lock:  # a consistent snapshot: feedback updates arrays in place and grows the bank
        manifest, arrays = _router_state(router)
    return write_checkpoint(path, manifest, arrays)


def _router_state(router: MixLLMRouter) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    assert router.bank_ is not None
    names = router.pool.names
    arrays: dict[str, np.ndarray] = {"bank.embeddings": router.bank_}
    candidates_meta = []
    for i, name in enumerate(names):
        model = router.predictors_[name]
        candidates_meta.append({"spec": router.pool.get(name).model_dump(), "predictor": model.meta()})
        arrays.update({f"candidate.{i}.{k}": v for k, v in model.state_arrays().items()})
    if router.calibration_ is not None:
        cal = router.calibration_
        arrays.update({
            "calibration.cost_weights": cal.cost_weights,
            "calibration.cost_share": cal.cost_share,
            "calibration.quality_share": cal.quality_share,
        })
    encoder_state = None
    encoder = router._encoder
    if encoder is not None and hasattr(encoder, "checkpoint_state"):
        # a learned encoder (e.g. tag-enhanced) travels with the router that was trained on it
        encoder_state, encoder_arrays = encoder.checkpoint_state()
        arrays.update({f"encoder.{k}": v for k, v in encoder_arrays.items()})
    extra_meta, extra_arrays = router._extra_state()
    arrays.update({f"extra.{k}": v for k, v in extra_arrays.items()})
    config, journaled = strip_host_paths(router.config.model_dump(mode="json"))
    manifest = {
        "config": config,
        "journaled": journaled,
        "candidates": candidates_meta,
        "reference": router.reference_,
        "encoder_fingerprint": router.encoder_fingerprint_,
        "encoder_state": encoder_state,
        "extra": extra_meta,
    }
    return manifest, {k: np.array(v, copy=True) for k, v in arrays.items()}


def _sub(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def load_router(
    cls: type[MixLLMRouter],
    path: Path,
    *,
    encoder: QueryEncoder | None = None,
    journal_path: PathArg = None,
    cache_dir: PathArg = None,
    model_path: PathArg = None,
) -> MixLLMRouter:
    """Rebuild a router from :func:`save_router`'s folder (called by :meth:`MixLLMRouter.load`).

    Path settings come from the host, never from the manifest (:mod:`._checkpoint_trust`)."""
    manifest, arrays = read_checkpoint(path)
    where = path / MANIFEST
    try:
        config = apply_host_paths(manifest.get("config"), where, journal_path=journal_path, cache_dir=cache_dir,
                                  model_path=model_path, encoder_given=encoder is not None,
                                  journaled=manifest.get("journaled") is True)
        if encoder is None and manifest.get("encoder_state"):
            from .config import make_config
            from .encoders.restore import restore_encoder

            settings = make_config(config).encoder
            encoder = restore_encoder(manifest["encoder_state"], _sub(arrays, "encoder."), settings)
        router = cls(config=config, encoder=encoder)
        bank = arrays["bank.embeddings"]
        if bank.ndim != 2:
            raise DataError("bank.embeddings must be 2-D")
        from .predictors import CandidatePredictor

        for i, entry in enumerate(manifest["candidates"]):
            spec = Candidate.model_validate(entry["spec"])
            router.pool.add(spec)
            sub = _sub(arrays, f"candidate.{i}.")
            router.predictors_[spec.name] = CandidatePredictor.from_state(entry["predictor"], sub, bank_size=bank.shape[0])
        if not router.predictors_:
            raise DataError("the manifest names no candidates")
        router.bank_ = bank
        if "calibration.cost_weights" in arrays:
            router.calibration_ = TradeoffCurve(
                arrays["calibration.cost_weights"], arrays["calibration.cost_share"], arrays["calibration.quality_share"]
            )
        router.reference_ = manifest.get("reference")
        fingerprint = manifest.get("encoder_fingerprint")
        if fingerprint is not None and not isinstance(fingerprint, str):
            raise DataError(f"encoder_fingerprint must be a string, got {type(fingerprint).__name__}")
        router.encoder_fingerprint_ = fingerprint
        check_encoder(router, encoder, where)  # before the journal replay encodes nothing, but fails fast
        router._restore_extra(manifest.get("extra") or {}, _sub(arrays, "extra."))
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, MixLLMError) as exc:
        # any of these means the manifest or arrays do not describe a router (hypothesis-tested in
        # tests/test_hostile_input.py); the original error stays chained as __cause__
        if isinstance(exc, ConfigError):
            raise CheckpointError(f"{where}: invalid config: {exc}") from exc
        raise CheckpointError(f"{where} does not describe a valid router: {type(exc).__name__}: {exc}") from exc
    return router
