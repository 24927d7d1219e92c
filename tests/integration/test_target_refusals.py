"""Targets cdcsync must refuse, with one line and exit 2, before anything is written.

An AOSS TIMESERIES collection (no custom document ids, so no versioned writes), opensearch-py's
compatibility-header switch against Elasticsearch, and a wrong API key.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from opensearchpy import OpenSearch

from cdcsync.entrypoints.aws_lambda import build_runtime
from cdcsync.entrypoints.cli import main
from cdcsync.entrypoints.worker import run_worker
from cdcsync.errors import ConfigError
from cdcsync.metrics import PrometheusMetrics
from cdcsync.settings import load_settings
from tests.integration.conftest import STANDIN_API_KEY
from tests.integration.lambda_world import FakeContext
from tests.support.dialect_proxy import dialect_proxy
from tests.support.records import stream_record

REFUSED_ID = (
    'OpenSearch Serverless index "{index}" refused a versioned write with a document id '
    "(illegal_argument_exception: Document ID is not supported in create/index operation request); cdcsync "
    "needs a SEARCH collection: TIMESERIES and VECTORSEARCH collections take no document ids, so no "
    "versioned "
    "writes; move the indices to a SEARCH collection"
)


@pytest.fixture
def mappings(tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> Path:
    path = tmp_path / "mappings.yaml"
    path.write_text(f'table: Orders-{unique_name}\nindex: {unique_name}\nid: "{{Pk}}"\n')
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "CDCSYNC_MAPPINGS": str(path),
        "CDCSYNC_DLQ": f"file://{tmp_path / 'dlq.jsonl'}",
        "CDCSYNC_LOG_FORMAT": "text",
    }.items():
        monkeypatch.setenv(name, value)
    return path


@pytest.fixture
def timeseries(opensearch_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with dialect_proxy(opensearch_url, "aoss", collection_type="TIMESERIES") as proxy:
        monkeypatch.setenv("CDCSYNC_OPENSEARCH_URL", proxy.url)
        monkeypatch.setenv("CDCSYNC_OPENSEARCH_AUTH", "sigv4")
        monkeypatch.setenv("CDCSYNC_OPENSEARCH_SIGV4_SERVICE", "aoss")
        yield proxy.url


def test_aoss_timeseries_indices_apply_exits_2_naming_the_collection_type(
    mappings: Path,
    timeseries: str,
    unique_name: str,
    opensearch: OpenSearch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a TIMESERIES collection WHEN indices apply runs
    code = main(["indices", "apply"])
    # THEN the index is created, then the version check stops it with one line naming the fix
    out, err = capsys.readouterr()
    assert (code, out) == (
        2,
        f"{unique_name}: created as {unique_name}-000001 behind the alias {unique_name}\n",
    )
    assert err.splitlines()[-1] == "cdcsync: indices apply: " + REFUSED_ID.format(index=unique_name)
    opensearch.indices.refresh(index=unique_name)
    assert opensearch.count(index=unique_name)["count"] == 0


def test_aoss_timeseries_lambda_handler_refuses_before_writing(
    mappings: Path, timeseries: str, unique_name: str, opensearch: OpenSearch
) -> None:
    # GIVEN the index exists in a TIMESERIES collection
    opensearch.indices.create(index=unique_name)
    runtime = build_runtime(
        load_settings(_env_file=None), session=boto3.Session(), metrics=PrometheusMetrics()
    )
    record = stream_record(
        "INSERT",
        {"Pk": "a"},
        {"Pk": "a"},
        arn=f"arn:aws:dynamodb:us-east-1:1:table/Orders-{unique_name}/stream/x",
    )
    # WHEN the first event arrives THEN the handler fails with the one line, and writes nothing
    with pytest.raises(ConfigError) as raised:
        runtime.handle({"Records": [record]}, FakeContext())
    assert str(raised.value) == "Lambda handler: " + REFUSED_ID.format(index=unique_name)
    opensearch.indices.refresh(index=unique_name)
    assert opensearch.count(index=unique_name)["count"] == 0


def test_aoss_timeseries_worker_refuses_at_start_up(
    mappings: Path, timeseries: str, unique_name: str, opensearch: OpenSearch, tmp_path: Path
) -> None:
    # GIVEN the index exists in a TIMESERIES collection WHEN `cdcsync run` starts
    opensearch.indices.create(index=unique_name)
    settings = load_settings(checkpoints=f"file://{tmp_path / 'checkpoints.json'}", _env_file=None)
    # THEN it stops before reading any shard (the CLI exits 2 with this line)
    with pytest.raises(ConfigError) as raised:
        run_worker(settings)
    assert str(raised.value) == "run: " + REFUSED_ID.format(index=unique_name)


@pytest.fixture
def elasticsearch(opensearch_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with dialect_proxy(opensearch_url, "elasticsearch", api_key=STANDIN_API_KEY, major=8) as proxy:
        monkeypatch.setenv("CDCSYNC_OPENSEARCH_URL", proxy.url)
        monkeypatch.setenv("CDCSYNC_OPENSEARCH_AUTH", "apikey")
        monkeypatch.setenv("CDCSYNC_OPENSEARCH_API_KEY", STANDIN_API_KEY)
        monkeypatch.setenv("CDCSYNC_OPENSEARCH_ALLOW_INSECURE", "true")  # the stand-in on loopback http
        yield proxy.url


def test_elasticsearch_compatibility_switch_exits_2_before_any_request(
    mappings: Path, elasticsearch: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ELASTIC_CLIENT_APIVERSIONING", "1")
    code = main(["indices", "apply"])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith(
        "cdcsync: ELASTIC_CLIENT_APIVERSIONING=1 is set: opensearch-py would send a versioned"
    )


def test_elasticsearch_wrong_api_key_exits_2_naming_the_auth_setting(
    mappings: Path,
    elasticsearch: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    unique_name: str,
) -> None:
    # GIVEN an API key Elasticsearch does not know (given as id:key)
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_API_KEY", "someone:else")
    code = main(["indices", "apply"])
    _, err = capsys.readouterr()
    # THEN exit 2, one line naming the setting, and the key is in no output
    assert code == 2
    assert err.splitlines()[-1] == (
        f'cdcsync: indices apply: index "{unique_name}": OpenSearch answered 401: security_exception: '
        "unable to "
        "authenticate with provided credentials and anonymous access is not allowed for this request; check "
        "CDCSYNC_OPENSEARCH_AUTH and the credentials or role it uses"
    )
    assert "someone:else" not in err


def test_elasticsearch_without_api_key_setting_reads_as_what_it_is(
    mappings: Path,
    elasticsearch: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    unique_name: str,
) -> None:
    # GIVEN no auth configured against an Elasticsearch that wants an API key
    monkeypatch.delenv("CDCSYNC_OPENSEARCH_API_KEY")
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_AUTH", "none")
    code = main(["indices", "apply"])
    _, err = capsys.readouterr()
    # THEN exit 2, naming the setting to fix
    assert code == 2
    assert err.splitlines()[-1] == (
        f'cdcsync: indices apply: index "{unique_name}": OpenSearch answered 401: security_exception: '
        "missing "
        "authentication credentials for REST request [/]; check CDCSYNC_OPENSEARCH_AUTH and the "
        "credentials or "
        "role it uses"
    )
