"""`make demo` runs end to end: servers up, table created, worker syncing, everything stopped."""

from __future__ import annotations

import itertools
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[2]
SUMMARY = re.compile(
    r"^summary: ran \d+:\d\d:\d\d; the demo made 7 writes to DynamoDB; (\d+) changes? seen in the table and "
    r"(\d+) in the index; cdcsync records: (\d+) indexed, (\d+) deleted, \d+ skipped, 0 dead letters; "
    r"index converged: yes \(\d+ documents?\)$",
    re.MULTILINE,
)


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    for name in [n for n in env if n.startswith(("CDCSYNC_", "AWS_ENDPOINT_URL"))]:
        env.pop(name)
    return env


def _tables(screen: str) -> list[str]:
    """Each table the demo printed, as text."""
    return re.findall(r"^UserId .*?\nconverged: [^\n]*", screen, re.MULTILINE | re.DOTALL)


def test_demo_converges_shows_live_changes_and_stops_by_itself() -> None:
    # GIVEN the demo told to stop by itself 6 s after it converged
    demo = subprocess.Popen(
        [sys.executable, "-m", "demo.run"],
        cwd=ROOT,
        env=_env(DEMO_EXIT_AFTER="6"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        shown = ""
        while "Ctrl-C stops everything." not in shown and (line := demo.stdout.readline()):
            shown += line
        # WHEN a user is added from another terminal while it syncs live
        subprocess.run(
            [sys.executable, "-m", "demo.change", "put", "42", "ada", "ada@example.com"],
            cwd=ROOT,
            env=_env(),
            check=True,
            capture_output=True,
            timeout=30,
        )
        rest, stderr = demo.communicate(timeout=100)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    stdout = shown + rest
    # THEN it converged, printed a table only when something changed, showed the change on both
    # sides, stopped with one line and a summary, and nothing complained on the way out
    assert demo.returncode == 0, stderr[-2000:]
    assert "users: created" in stdout
    assert "converged: yes" in stdout
    tables = _tables(stdout)
    assert all(before != after for before, after in itertools.pairwise(tables)), stdout
    assert 1 <= len(_tables(rest)) <= 2, rest  # the change reached the table, then (maybe later) the index
    assert "  DynamoDB    42 inserted: ada ada@example.com\n" in rest
    assert '  OpenSearch  42 indexed: {"UserId": 42, "username": "ada", "email": "ada@example.com"}\n' in rest
    assert rest.count("stopping:") == 1
    assert SUMMARY.search(rest), rest
    assert "1 change seen in the table and 1 in the index" in rest
    assert stderr == ""


def test_demo_ctrl_c_at_a_terminal_stops_with_one_line_and_a_summary() -> None:
    # GIVEN the demo at a terminal, syncing live
    pid, screen_fd = pty.fork()
    if pid == 0:  # the child: the demo, on the terminal, in its foreground process group
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "demo.run"], _env(DEMO_EXIT_AFTER="60"))  # noqa: S606
    screen = ""
    pressed = False
    deadline = time.monotonic() + 100
    while time.monotonic() < deadline:
        if select.select([screen_fd], [], [], 0.2)[0]:
            try:
                chunk = os.read(screen_fd, 65536)
            except OSError:  # EIO: the demo ended and closed the terminal
                break
            if not chunk:
                break
            screen += chunk.decode().replace("\r\n", "\n")
        if not pressed and "Ctrl-C stops everything." in screen:
            # WHEN the person presses Ctrl-C (the terminal sends SIGINT to every foreground process)
            time.sleep(1)
            os.write(screen_fd, b"\x03")
            pressed = True
    _, status = os.waitpid(pid, 0)
    os.close(screen_fd)
    # THEN the demo says once that it stops, the worker's own lines say nothing more (no second
    # signal, no warning about servers vanishing under it), and the summary closes the run
    assert pressed, screen
    assert os.waitstatus_to_exitcode(status) == 0, screen
    after = screen.split("Ctrl-C stops everything.", 1)[1]
    assert after.count("stopping:") == 1, after
    assert "received SIG" not in after
    assert "WARNING" not in screen
    assert "Traceback" not in screen
    assert SUMMARY.search(after), after
