from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mixllm_router import CheckpointError, MixLLMRouter
from mixllm_router.checkpoint.save_load import FORMAT_VERSION, MANIFEST, read_checkpoint, write_checkpoint

QUERY = "Solve this integral problem: compute the integral value step by step."


@pytest.fixture()
def saved(fitted_router, tmp_path):
    path = tmp_path / "ckpt"
    fitted_router.save(path)
    return path


def _arrays_file(path):
    (name,) = [p for p in path.iterdir() if p.name.startswith("arrays-")]
    return name


def test_layout_is_json_plus_safetensors(saved):
    names = sorted(p.name for p in saved.iterdir())
    assert names[0].startswith("arrays-") and names[0].endswith(".safetensors") and names[1] == MANIFEST
    manifest = json.loads((saved / MANIFEST).read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert {"numpy", "python"} <= set(manifest["versions"])
    assert [c["spec"]["name"] for c in manifest["candidates"]] == ["math-pro", "poet", "cheap"]
    assert manifest["config"]["prior_strength"] == 1.0


def test_resave_replaces_arrays_and_old_version_stays_loadable_until_then(fitted_router, saved, hashing_encoder):
    first = _arrays_file(saved)
    fitted_router.remove_candidate("poet")
    fitted_router.save(saved)
    assert not first.exists()
    assert MixLLMRouter.load(saved, encoder=hashing_encoder).candidate_names == ["math-pro", "cheap"]


@pytest.mark.parametrize("damage", ["missing_manifest", "bad_json", "missing_arrays", "flipped_bit", "truncated",
                                    "newer_version", "traversal", "pickle_planted", "wrong_format"])
def test_damaged_checkpoints_fail_clearly(saved, damage, hashing_encoder):
    manifest_path = saved / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    arrays = _arrays_file(saved)
    if damage == "missing_manifest":
        manifest_path.unlink()
    elif damage == "bad_json":
        manifest_path.write_text(manifest_path.read_text()[:-20])
    elif damage == "missing_arrays":
        arrays.unlink()
    elif damage == "flipped_bit":
        data = bytearray(arrays.read_bytes())
        data[len(data) // 2] ^= 0x01
        arrays.write_bytes(bytes(data))
    elif damage == "truncated":
        arrays.write_bytes(arrays.read_bytes()[:100])
    elif damage == "newer_version":
        manifest["format_version"] = FORMAT_VERSION + 1
        manifest_path.write_text(json.dumps(manifest))
    elif damage == "traversal":
        manifest["arrays_file"] = "../../etc/passwd"
        manifest_path.write_text(json.dumps(manifest))
    elif damage == "pickle_planted":
        arrays.write_bytes(pickle.dumps({"boom": object.__new__(object)}))
    elif damage == "wrong_format":
        manifest["format"] = "something-else"
        manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError) as info:
        MixLLMRouter.load(saved, encoder=hashing_encoder)
    message = str(info.value)
    assert str(saved) in message
    if damage == "newer_version":
        assert "upgrade" in message


def test_valid_arrays_with_wrong_contents_fail_clearly(saved, hashing_encoder):
    manifest = json.loads((saved / MANIFEST).read_text())
    write_checkpoint(saved, {k: manifest[k] for k in ("config", "candidates", "reference", "encoder_fingerprint")},
                     {"bank.embeddings": np.zeros((3, 4), np.float32)})
    with pytest.raises(CheckpointError, match="does not describe a valid router"):
        MixLLMRouter.load(saved, encoder=hashing_encoder)


def test_not_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "file")
    with pytest.raises(CheckpointError):
        write_checkpoint(tmp_path / "file", {}, {})


def test_crash_during_save_leaves_previous_checkpoint_loadable(saved, tmp_path, hashing_encoder):
    """Kill a saving process at many points: the folder always loads one whole version."""
    expected = {"math-pro", "poet", "cheap"}
    script = textwrap.dedent(f"""
        import os, signal, sys, numpy as np
        from mixllm_router.checkpoint.save_load import write_checkpoint, read_checkpoint
        manifest, arrays = read_checkpoint({str(saved)!r})
        manifest = {{k: manifest[k] for k in ("config", "candidates", "reference", "encoder_fingerprint", "encoder_state", "extra")}}
        arrays["extra.marker"] = np.arange(int(sys.argv[1]) + 1)
        real = os.replace
        calls = [0]
        def dying_replace(*args, **kwargs):
            calls[0] += 1
            if calls[0] == int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        os.replace = dying_replace  # every rename of a save goes through os.replace
        write_checkpoint({str(saved)!r}, manifest, arrays)
    """)
    survived = 0
    for round_, kill_at in enumerate([1, 2, 3, 1, 2, 3]):
        proc = subprocess.run([sys.executable, "-c", script, str(round_), str(kill_at)], capture_output=True)
        if proc.returncode == -signal.SIGKILL:
            survived += 1
        router = MixLLMRouter.load(saved, encoder=hashing_encoder)
        assert set(router.candidate_names) == expected
        assert router.route(QUERY, cost_weight=0).chosen == "math-pro"
        leftovers = [p for p in os.listdir(saved) if p.endswith(".tmp")]
        assert all(p.startswith(".") for p in leftovers)
    assert survived >= 4
