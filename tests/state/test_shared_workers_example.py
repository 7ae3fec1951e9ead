"""``examples/shared_workers.py`` runs end to end against a real redis-server (RouterBench, replayed answers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shared_workers.py"


def test_shared_workers_example(redis_url, routerbench_dir):
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--redis", redis_url, "--data", str(routerbench_dir), "--encoder", "hashing",
         "--questions", "20"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "worker B sent 20 thumbs for worker A's answers" in out.stdout
    assert "learner applied 20 events" in out.stdout
    assert "its model holds 20 feedback events" in out.stdout
