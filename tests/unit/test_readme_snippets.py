"""The README's and docs' runnable snippets run, and the reference pages name what the code has.

A fenced block whose info string is exactly ``sh runnable`` is a promise that each of its commands
works offline in a fresh clone after ``make venv``. Each command (one line, or several joined by a
trailing backslash) runs on its own with ``bash -euo pipefail -c`` from the repository root and
must exit 0, or exactly N when it ends with the comment ``# exit N``. Blank and comment-only lines
are skipped. Commands run in parallel (each pays ~1 s of Python start-up and imports) so the file
stays well under 15 s.

These tests start subprocesses but open no sockets: a snippet that needs a server is not runnable.
"""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdcsync.metrics import METRICS
from cdcsync.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
RUNNABLE_FENCE = "```sh runnable"
EXIT_COMMENT = re.compile(r"#\s*exit\s+(\d+)\s*$")
COMMAND_TIMEOUT_SECONDS = 30
MIN_RUNNABLE_BLOCKS = 5
# A setting name; not a family such as CDCSYNC_OPENSEARCH_* or CDCSYNC_*.
SETTING_NAME = re.compile(r"CDCSYNC_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_]*\*)")
OUTPUT_TAIL = 2000  # characters of stdout/stderr shown when a command fails


@dataclass(frozen=True, slots=True)
class Snippet:
    """One command of a runnable block: where it is, what it runs, which exit status it promises."""

    where: str  # "docs/mappings.md:42", the line the command starts on
    command: str
    expected_exit: int


def extract_snippets(text: str, name: str) -> tuple[list[Snippet], int]:
    """The commands of every runnable block in ``text``, and how many runnable blocks there are.

    Raises ValueError for a block that is never closed or holds no command: both would make the
    test pass without running what the reader sees.
    """
    snippets: list[Snippet] = []
    blocks = 0
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() != RUNNABLE_FENCE:
            index += 1
            continue
        opened_at = index + 1
        blocks += 1
        found = len(snippets)
        index += 1
        pending: list[str] = []
        start = 0
        while True:
            if index >= len(lines):
                raise ValueError(f"{name}:{opened_at}: runnable block is never closed with ```")
            line = lines[index]
            index += 1
            if line.strip() == "```":
                break
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if not pending:
                start = index
            if line.endswith("\\"):
                pending.append(line[:-1])
                continue
            command = " ".join(part.strip() for part in [*pending, line])
            pending = []
            match = EXIT_COMMENT.search(command)
            snippets.append(Snippet(f"{name}:{start}", command, int(match.group(1)) if match else 0))
        if pending:
            raise ValueError(f"{name}:{start}: command ends with a backslash but the block ends")
        if len(snippets) == found:
            raise ValueError(f"{name}:{opened_at}: runnable block holds no command")
    return snippets, blocks


def _collect() -> tuple[list[Snippet], int]:
    snippets: list[Snippet] = []
    blocks = 0
    for document in DOCUMENTS:
        found, count = extract_snippets(document.read_text(encoding="utf-8"), str(document.relative_to(ROOT)))
        snippets += found
        blocks += count
    return snippets, blocks


SNIPPETS, BLOCKS = _collect()


def _environment() -> dict[str, str]:
    """The caller's environment without CDCSYNC_* (a developer's settings must not change results)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CDCSYNC_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # never wait for an instance metadata endpoint
    return env


@dataclass(frozen=True, slots=True)
class Outcome:
    exit_status: int | None  # None: timed out
    stdout: str
    stderr: str


def _run(snippet: Snippet) -> Outcome:
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", snippet.command],
            cwd=ROOT,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return Outcome(None, str(exc.stdout or ""), str(exc.stderr or ""))
    return Outcome(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def outcomes() -> dict[Snippet, Outcome]:
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(SNIPPETS, pool.map(_run, SNIPPETS), strict=True))


def test_docs_runnable_blocks_at_least_five_present() -> None:
    # GIVEN the README and docs/*.md
    # WHEN their runnable blocks are counted
    # THEN there are enough of them that the snippet test cannot pass by running nothing
    assert BLOCKS >= MIN_RUNNABLE_BLOCKS, f"only {BLOCKS} ```sh runnable blocks in README.md and docs/*.md"
    assert len(SNIPPETS) >= BLOCKS


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda snippet: snippet.where)
def test_docs_runnable_snippet_runs_with_documented_exit_status(
    snippet: Snippet, outcomes: dict[Snippet, Outcome]
) -> None:
    # GIVEN a command from a runnable block
    # WHEN it runs with bash -euo pipefail from the repository root
    outcome = outcomes[snippet]
    # THEN it exits as documented (0 unless it says "# exit N")
    assert outcome.exit_status == snippet.expected_exit, (
        f"{snippet.where}: `{snippet.command}` "
        + (
            f"did not finish within {COMMAND_TIMEOUT_SECONDS} s"
            if outcome.exit_status is None
            else f"exited {outcome.exit_status}, the docs promise {snippet.expected_exit}"
        )
        + f"\n--- stdout\n{outcome.stdout[-OUTPUT_TAIL:]}\n--- stderr\n{outcome.stderr[-OUTPUT_TAIL:]}"
    )


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        pytest.param(
            "```sh runnable\n.venv/bin/cdcsync --help\n```\n",
            [Snippet("t.md:2", ".venv/bin/cdcsync --help", 0)],
            id="one-command",
        ),
        pytest.param(
            "```sh runnable\n# a comment\n\n.venv/bin/cdcsync validate x   # exit 1\n```\n",
            [Snippet("t.md:4", ".venv/bin/cdcsync validate x   # exit 1", 1)],
            id="comment-blank-and-exit-comment",
        ),
        pytest.param(
            "```sh runnable\nprintf 'a' \\\n  | cat\n```\n",
            [Snippet("t.md:2", "printf 'a' | cat", 0)],
            id="backslash-continuation",
        ),
        pytest.param(
            "```sh\nmake demo\n```\n```yaml\nx: 1\n```\n```sh runnable\ntrue\nfalse  # exit 1\n```\n",
            [Snippet("t.md:8", "true", 0), Snippet("t.md:9", "false  # exit 1", 1)],
            id="other-fences-ignored",
        ),
    ],
)
def test_extract_snippets_runnable_block_yields_commands(markdown: str, expected: list[Snippet]) -> None:
    # GIVEN markdown with runnable and other blocks
    # WHEN its snippets are extracted
    snippets, blocks = extract_snippets(markdown, "t.md")
    # THEN only the runnable commands come out, with their line and promised exit status
    assert snippets == expected
    assert blocks == 1


@pytest.mark.parametrize(
    ("markdown", "message"),
    [
        ("text\n```sh runnable\ntrue\n", "t.md:2: runnable block is never closed with ```"),
        ("```sh runnable\n# only a comment\n```\n", "t.md:1: runnable block holds no command"),
        ("```sh runnable\ntrue \\\n```\n", "t.md:2: command ends with a backslash but the block ends"),
    ],
)
def test_extract_snippets_broken_block_raises(markdown: str, message: str) -> None:
    # GIVEN a runnable block that would run nothing or something other than what is shown
    # WHEN its snippets are extracted
    # THEN extraction fails and says where
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        extract_snippets(markdown, "t.md")


def test_operations_metrics_reference_names_every_metric_with_labels() -> None:
    # GIVEN the metrics reference
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    # WHEN it is searched for every metric the code defines, spelled with its labels
    spelled = [spec.name + (f"{{{','.join(spec.labels)}}}" if spec.labels else "") for spec in METRICS]
    # THEN each one is documented
    assert [name for name in spelled if f"`{name}`" not in text] == []


def test_docs_settings_names_every_one_exists() -> None:
    # GIVEN every CDCSYNC_* name the README and docs mention
    known = {f"CDCSYNC_{field.upper()}" for field in Settings.model_fields}
    mentioned = {
        (name, str(document.relative_to(ROOT)))
        for document in DOCUMENTS
        for name in re.findall(SETTING_NAME, document.read_text(encoding="utf-8"))
    }
    # WHEN they are compared with the settings the code reads
    unknown = sorted(
        (where, name)
        for name, where in mentioned
        if name not in known and not name.startswith("CDCSYNC_TEST_")
    )
    # THEN none is a typo or a setting that does not exist
    assert unknown == []
