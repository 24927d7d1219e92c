"""No credentials in the clear: basic auth over http:// is refused before any request leaves.

A capturing server on 127.0.0.1 stands in for OpenSearch and records what reaches it; each command
runs as a user runs it (``python -m cdcsync.entrypoints.cli``).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from urllib3.exceptions import InsecureRequestWarning

from cdcsync.errors import SettingsError
from cdcsync.settings import load_settings
from cdcsync.sink.client import build_client
from tests.support.capturing_server import CapturingServer, capturing_server

PASSWORD = "p@ss/w0rd?#"  # noqa: S105 - a fake, with the characters that defeated the old mask
BASIC = "Basic " + base64.b64encode(f"cdcsync:{PASSWORD}".encode()).decode()


@pytest.fixture
def server() -> Iterator[CapturingServer]:
    with capturing_server() as running:
        yield running


def cdcsync(tmp_path: Path, url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "users.yaml").write_text("table: Users\nindex: users\n")
    environment = {name: value for name, value in os.environ.items() if not name.startswith("CDCSYNC_")}
    environment.update(
        CDCSYNC_MAPPINGS=str(tmp_path / "users.yaml"),
        CDCSYNC_OPENSEARCH_URL=url,
        CDCSYNC_OPENSEARCH_AUTH="basic",
        CDCSYNC_OPENSEARCH_USERNAME="cdcsync",
        CDCSYNC_OPENSEARCH_PASSWORD=PASSWORD,
        CDCSYNC_LOG_FORMAT="text",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "cdcsync.entrypoints.cli", *args],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        ["indices", "apply"],
        ["run"],
        ["backfill", "--table", "Users"],
        ["verify", "--table", "Users"],
        ["dlq", "redrive"],
    ],
)
def test_cli_basic_auth_over_http_exits_2_sending_nothing(
    tmp_path: Path, server: CapturingServer, command: list[str]
) -> None:
    # GIVEN basic credentials and an http:// OpenSearch URL, without the opt-in
    # WHEN a command that talks to OpenSearch starts
    done = cdcsync(tmp_path, server.url, *command)

    # THEN it stops with exit 2 and one line saying why and what to do, before any request
    port = server.url.rsplit(":", 1)[1]
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "cdcsync: CDCSYNC_OPENSEARCH_URL: expected https:// with CDCSYNC_OPENSEARCH_AUTH=basic, "
        f'got "http://127.0.0.1:{port}" '
        "(the credentials would cross the network unencrypted); use https, or set "
        "CDCSYNC_OPENSEARCH_ALLOW_INSECURE=true for local development only\n"
    )
    assert server.requests == []


def test_cli_basic_auth_over_http_opted_in_sends_and_warns(tmp_path: Path, server: CapturingServer) -> None:
    # GIVEN the same settings with CDCSYNC_OPENSEARCH_ALLOW_INSECURE=true (local development)
    # WHEN indices apply runs
    done = cdcsync(tmp_path, server.url, "indices", "apply", CDCSYNC_OPENSEARCH_ALLOW_INSECURE="true")

    # THEN the credentials do go out (what the refusal above prevents) and a WARNING says so
    assert server.requests, done.stderr
    assert {request.headers.get("authorization") for request in server.requests} == {BASIC}
    warning = (
        f"WARNING cdcsync.sink.client: CDCSYNC_OPENSEARCH_ALLOW_INSECURE=true: basic credentials go to "
        f"{server.url} unencrypted; for local development only"
    )
    assert warning in done.stderr
    assert PASSWORD not in done.stderr + done.stdout


def test_lambda_handler_basic_auth_over_http_raises_sending_nothing(
    server: CapturingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the Lambda's environment with basic credentials over http
    from cdcsync.entrypoints import aws_lambda  # noqa: PLC0415 - its runtime is a module global

    monkeypatch.setattr(aws_lambda, "_runtime", None)
    for name, value in {
        "CDCSYNC_OPENSEARCH_URL": server.url,
        "CDCSYNC_OPENSEARCH_AUTH": "basic",
        "CDCSYNC_OPENSEARCH_USERNAME": "cdcsync",
        "CDCSYNC_OPENSEARCH_PASSWORD": PASSWORD,
    }.items():
        monkeypatch.setenv(name, value)

    # WHEN an event arrives THEN the handler refuses to start, and nothing was sent
    with pytest.raises(SettingsError, match=r"^CDCSYNC_OPENSEARCH_URL: expected https:// with "):
        aws_lambda.handler({"Records": []}, None)
    assert server.requests == []


def test_build_client_unverified_tls_sends_with_urllib3_warning_kept() -> None:
    # GIVEN an HTTPS server whose certificate nobody trusts
    with capturing_server(tls=True) as server:
        settings = {"opensearch_url": server.url, "opensearch_auth": "basic", "_env_file": None}
        credentials = {"opensearch_username": "cdcsync", "opensearch_password": PASSWORD}

        # WHEN certificates are verified (the default) THEN the connection is refused, nothing sent
        with pytest.raises(OpenSearchConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            build_client(load_settings(**settings, **credentials)).info()
        assert server.requests == []

        # WHEN CDCSYNC_OPENSEARCH_VERIFY_CERTS=false THEN the request goes through TLS, and urllib3's
        # own warning is still raised: cdcsync did not silence it for the process
        client = build_client(load_settings(**settings, **credentials, opensearch_verify_certs=False))
        with pytest.warns(
            InsecureRequestWarning, match="Unverified HTTPS request is being made to host '127.0.0.1'"
        ):
            client.info()
        assert [request.headers.get("authorization") for request in server.requests] == [BASIC]
        assert not any(
            action == "ignore" and issubclass(InsecureRequestWarning, category)
            for action, _, category, _, _ in warnings.filters
        )
