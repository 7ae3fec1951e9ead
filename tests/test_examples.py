"""``examples/route_and_call.py`` runs offline in replay mode (no API keys)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "route_and_call.py"


def test_route_and_call_example_replays_without_keys(routerbench_dir):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--data", str(routerbench_dir), "--encoder", "hashing", "--limit", "300"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("replay of recorded answers") == 11
    assert out.stdout.count("answered by ") == 3
    assert "total cost of the three calls: $0.0" in out.stdout
