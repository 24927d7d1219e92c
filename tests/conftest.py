"""Session-wide test hygiene: no test can reach real AWS, and integration tests are marked as such."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_INTEGRATION_DIR = Path(__file__).parent / "integration"

# Fake credentials and a fixed region: a client that forgets endpoint_url fails against real AWS
# with an auth error instead of touching an account.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    # The developer's ~/.aws files could add profiles, roles or endpoints; point them at nothing.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_DROPPED_AWS_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")


def pytest_configure(config: pytest.Config) -> None:
    """Runs before collection, so even module-level boto3 use in tests sees the fake environment.

    CDCSYNC_* variables from the developer's shell are dropped too, so settings never leak into
    tests; CDCSYNC_TEST_* (options of the test suite itself) stay.
    """
    os.environ.update(FAKE_AWS_ENV)
    for name in list(os.environ):
        upper = name.upper()
        is_shell_setting = upper.startswith("CDCSYNC_") and not upper.startswith("CDCSYNC_TEST_")
        if name in _DROPPED_AWS_ENV or upper.startswith("AWS_ENDPOINT_URL") or is_shell_setting:
            del os.environ[name]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/integration talks to local servers: mark it so `-m "not integration"` works."""
    for item in items:
        if item.path.is_relative_to(_INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """``cdcsync.cli.main`` (and the Lambda handler) replace the root logger's handlers with one on
    the ``sys.stderr`` of the moment, which is a test's capture, closed after it: put them back, or
    a later test's log line fails on a closed stream and prints "--- Logging error ---"."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
