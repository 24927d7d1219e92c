"""`make demo` runs end to end: servers up, table created, worker syncing, everything stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_demo_converges_and_stops_by_itself() -> None:
    env = {**os.environ, "DEMO_EXIT_AFTER": "2"}
    for name in [n for n in env if n.startswith(("CDCSYNC_", "AWS_ENDPOINT_URL"))]:
        env.pop(name)
    done = subprocess.run(
        [sys.executable, "-m", "demo.run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "converged: yes" in done.stdout
    assert "users: created" in done.stdout
    assert "received SIGTERM: finishing in-flight writes, then exiting" in done.stderr
