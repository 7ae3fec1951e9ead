"""Shared fixtures: the real RouterBench folder, a synthetic routing table with known structure,
and a fast router fitted on it with the torch-free hashing encoder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from synthetic import make_synthetic

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tests never write into the user's real cache; one throw-away cache is shared by the session.
os.environ["MIXLLM_CACHE_DIR"] = tempfile.mkdtemp(prefix="mixllm-test-cache-")

ROUTERBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routerbench"

@pytest.fixture(scope="session")
def routerbench_dir() -> Path:
    if not ROUTERBENCH.is_dir():
        pytest.skip(f"RouterBench data not found at {ROUTERBENCH}")
    return ROUTERBENCH


@pytest.fixture(scope="session")
def synthetic_records() -> list[dict[str, object]]:
    return make_synthetic()


@pytest.fixture(scope="session")
def synthetic_data(synthetic_records):
    from mixllm_router import RoutingDataset

    return RoutingDataset.from_records(synthetic_records)


@pytest.fixture()
def hashing_encoder():
    from mixllm_router.encoders import HashingEncoder

    return HashingEncoder()


@pytest.fixture()
def fitted_router(synthetic_data, hashing_encoder):
    from mixllm_router import MixLLMRouter

    # the config names the encoder (kind "hashing" builds HashingEncoder()), so a load without encoder= works
    return MixLLMRouter(config={"encoder": {"kind": "hashing", "use_cache": False}}, encoder=hashing_encoder,
                        prior_strength=1.0, calibration_folds=3).fit(synthetic_data)
