"""The target dialect (sink/target.py), its settings and the client's API key and compatibility rules.

Integration tests run every command through the dialect stand-in; these pin the rules themselves.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import Urllib3HttpConnection
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError

from cdcsync.errors import ConfigError, SettingsError, TransientError
from cdcsync.settings import load_settings
from cdcsync.sink.client import ApiKeyAuth, build_client
from cdcsync.sink.target import (
    AOSS,
    ELASTICSEARCH,
    OPENSEARCH,
    Dialect,
    _judge_probe,
    detect_dialect,
    resolve_dialect,
)

API_KEY = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
CLOUD_ID = (
    "staging:dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRjZWM2ZjI2MWE3NGJmMjRjZTMzYmI4ODExYjg0Mjk0ZiRj"
    "NmMyY2E2ZDA0MjI0OWFmMGNjN2Q3YTllOTYyNTc0Mw=="
)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CDCSYNC_") or name == "ELASTIC_CLIENT_APIVERSIONING":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _error(**overrides: Any) -> str:
    with pytest.raises(SettingsError) as raised:
        load_settings(**overrides)
    return str(raised.value)


# --- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cloud_id", "url"),
    [
        (CLOUD_ID, "https://cec6f261a74bf24ce33bb8811b84294f.us-east-1.aws.found.io:443"),
        # no label; a port on the host part
        (base64.b64encode(b"eu.example.io:9243$abc$def").decode(), "https://abc.eu.example.io:9243"),
        # a port on the Elasticsearch id wins
        (base64.b64encode(b"eu.example.io:9243$abc:9200$def").decode(), "https://abc.eu.example.io:9200"),
    ],
)
def test_load_settings_elastic_cloud_id_becomes_https_endpoint(cloud_id: str, url: str) -> None:
    assert load_settings(elastic_cloud_id=cloud_id).opensearch_url == (url,)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"elastic_cloud_id": CLOUD_ID, "opensearch_url": "https://x:9200"},
            "CDCSYNC_ELASTIC_CLOUD_ID: expected it or CDCSYNC_OPENSEARCH_URL, got both set; unset one "
            "of them",
        ),
        (
            {"elastic_cloud_id": "label:not*base64"},
            "CDCSYNC_ELASTIC_CLOUD_ID: expected an Elastic Cloud ID ([NAME:]BASE64 of HOST$ES_ID$KIBANA_ID), "
            "got text that is not base64",
        ),
        (
            {"opensearch_auth": "apikey"},
            "CDCSYNC_OPENSEARCH_AUTH: expected CDCSYNC_OPENSEARCH_API_KEY set exactly with apikey, got "
            '"apikey" '
            "with it unset",
        ),
        (
            {"opensearch_api_key": API_KEY},
            "CDCSYNC_OPENSEARCH_AUTH: expected CDCSYNC_OPENSEARCH_API_KEY set exactly with apikey, got "
            '"none" '
            "with it set",
        ),
        (
            {"target": "aoss", "opensearch_auth": "sigv4"},
            "CDCSYNC_TARGET: expected CDCSYNC_OPENSEARCH_AUTH=sigv4 and "
            'CDCSYNC_OPENSEARCH_SIGV4_SERVICE=aoss with "aoss", '
            "got sigv4 for es",
        ),
        (
            {"target": "elasticsearch", "opensearch_auth": "sigv4", "opensearch_sigv4_service": "aoss"},
            "CDCSYNC_TARGET: expected aoss or auto with CDCSYNC_OPENSEARCH_SIGV4_SERVICE=aoss "
            "(OpenSearch Serverless), "
            'got "elasticsearch"',
        ),
        (
            {"target": "solr"},
            'CDCSYNC_TARGET: expected one of auto, opensearch, elasticsearch, aoss, got "solr"',
        ),
    ],
)
def test_load_settings_target_and_auth_mistakes_are_one_line(overrides: dict[str, Any], message: str) -> None:
    assert _error(**overrides) == message


def test_load_settings_api_key_is_a_secret_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_API_KEY", API_KEY)
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_AUTH", "apikey")
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_URL", "https://search.example:9200")  # keys only over https
    settings = load_settings()
    assert settings.sends_credentials
    assert API_KEY not in repr(settings)
    assert API_KEY not in str(settings.model_dump())
    # an invalid combination does not print it either
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_AUTH", "basic")
    assert API_KEY not in _error()


# --- the client -------------------------------------------------------------------------------------


def _sent_authorization(settings: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    conn = build_client(settings).transport.get_connection()
    assert isinstance(conn, Urllib3HttpConnection)
    captured: dict[str, str] = {}

    def urlopen(method: str, url: str, body: Any, **kwargs: Any) -> Any:
        captured.update(kwargs["headers"])
        raise OSError("captured: not sent")

    monkeypatch.setattr(conn.pool, "urlopen", urlopen)
    with pytest.raises(OpenSearchConnectionError):
        conn.perform_request("GET", "/")
    assert repr(conn.http_auth) == "ApiKeyAuth('**********')"
    return captured["authorization"]


@pytest.mark.parametrize(
    ("key", "sent"),
    [(API_KEY, API_KEY), ("myid:mykey", base64.b64encode(b"myid:mykey").decode())],
    ids=["encoded", "id:key"],
)
def test_build_client_api_key_sends_apikey_authorization(
    key: str, sent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(
        opensearch_url="https://search.example:9200", opensearch_auth="apikey", opensearch_api_key=key
    )
    assert _sent_authorization(settings, monkeypatch) == f"ApiKey {sent}"
    assert isinstance(build_client(settings).transport.get_connection().http_auth, ApiKeyAuth)


def test_build_client_compatibility_switch_set_stops_with_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN opensearch-py's switch for Elasticsearch compatibility headers
    monkeypatch.setenv("ELASTIC_CLIENT_APIVERSIONING", "1")
    # WHEN a client is built THEN it stops (exit 2) saying why
    with pytest.raises(ConfigError) as raised:
        build_client(load_settings())
    assert str(raised.value) == (
        "ELASTIC_CLIENT_APIVERSIONING=1 is set: opensearch-py would send a versioned Accept header "
        "(compatible-with=7) without a versioned Content-Type, which Elasticsearch 8 refuses for every "
        "request "
        "with a body and Elasticsearch 9 refuses always; unset ELASTIC_CLIENT_APIVERSIONING (cdcsync "
        "speaks each "
        "target's own API and needs no compatibility mode)"
    )


# --- detection --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "product", "dialect"),
    [
        # osmem (like some OpenSearch builds) sends the Elastic header: the distribution decides
        ({"version": {"distribution": "opensearch", "number": "2.19.0"}}, "Elasticsearch", OPENSEARCH),
        ({"version": {"distribution": "opensearch", "number": "1.3.0"}}, None, OPENSEARCH),
        ({"version": {"number": "8.15.0", "build_flavor": "default"}}, "Elasticsearch", ELASTICSEARCH),
        ({"version": {"number": "7.10.2"}, "tagline": "You Know, for Search"}, None, ELASTICSEARCH),
    ],
)
def test_detect_dialect_reads_distribution_then_product(
    info: dict[str, Any], product: str | None, dialect: Dialect
) -> None:
    assert detect_dialect(info, product) is dialect


def test_detect_dialect_unknown_product_asks_for_target() -> None:
    with pytest.raises(ConfigError) as raised:
        detect_dialect({"version": {"number": "1.0"}}, None)
    assert str(raised.value) == (
        "CDCSYNC_TARGET=auto: GET / names neither OpenSearch (version.distribution) nor Elasticsearch "
        "(X-Elastic-Product), got version '1.0'; set CDCSYNC_TARGET to opensearch, elasticsearch or aoss"
    )


@pytest.mark.parametrize(
    ("overrides", "dialect"),
    [
        ({"target": "elasticsearch"}, ELASTICSEARCH),
        ({"target": "opensearch"}, OPENSEARCH),
        ({"opensearch_auth": "sigv4", "opensearch_sigv4_service": "aoss"}, AOSS),
    ],
)
def test_resolve_dialect_named_or_aoss_signed_sends_nothing(
    overrides: dict[str, Any], dialect: Dialect
) -> None:
    # the client points at a closed port: resolving must not ask GET /
    settings = load_settings(opensearch_url="http://127.0.0.1:9", **overrides)
    assert resolve_dialect(settings, build_client(settings)) is dialect


# --- the external-version check's judgement ---------------------------------------------------------


def _answer(*statuses: int, error: dict[str, str] | None = None) -> list[tuple[int, Any]]:
    return [(status, error if status >= 400 and n == 0 else None) for n, status in enumerate(statuses)]


def test_judge_probe_versions_honoured_passes() -> None:
    # every answer as hoped (any 2xx for the writes and the delete, 409 for the stale writes): no error
    assert _judge_probe(OPENSEARCH, "users", _answer(201, 409, 200, 409), "indices apply") is None


@pytest.mark.parametrize(
    ("dialect", "answer", "message"),
    [
        (
            AOSS,
            _answer(
                400,
                200,
                404,
                400,
                error={"type": "illegal_argument_exception", "reason": "Document ID is not supported"},
            ),
            'indices apply: OpenSearch Serverless index "users" refused a versioned write with a document id '
            "(illegal_argument_exception: Document ID is not supported); cdcsync needs a SEARCH collection: "
            "TIMESERIES and VECTORSEARCH collections take no document ids, so no versioned writes; move the "
            "indices to a SEARCH collection",
        ),
        (
            AOSS,
            _answer(201, 200, 200, 201),
            'indices apply: OpenSearch Serverless index "users" applied a write older than the '
            "document (version 1 "
            "after 2, status 200): it does not honour version_type=external_gte, so replays would put "
            "old states "
            "back; use a target with external versions (OpenSearch, Elasticsearch, an AOSS SEARCH "
            "collection)",
        ),
        (
            OPENSEARCH,
            _answer(201, 409, 409),
            'indices apply: OpenSearch index "users" refused a delete newer than the document (version 3 '
            "after 2, status 409): it does not honour version_type=external_gte, so replays would put old "
            "states back; use a target with external versions (OpenSearch, Elasticsearch, an AOSS SEARCH "
            "collection)",
        ),
        (
            ELASTICSEARCH,
            _answer(201, 409, 200, 201),
            'indices apply: Elasticsearch index "users" forgot a delete at once (an older write was '
            "applied after "
            "it, status 201): a replayed write would bring deleted documents back; raise "
            "index.gc_deletes to 24h",
        ),
    ],
)
def test_judge_probe_unversioned_target_stops_naming_the_fix(
    dialect: Dialect, answer: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        _judge_probe(dialect, "users", answer, "indices apply")
    assert str(raised.value) == message


def test_judge_probe_busy_target_is_transient() -> None:
    with pytest.raises(TransientError) as raised:
        _judge_probe(OPENSEARCH, "users", _answer(429, error={"type": "busy", "reason": "later"}), "run")
    assert str(raised.value) == (
        'run: OpenSearch index "users": versioned write: OpenSearch answered 429: busy: later '
        "(busy or unavailable)"
    )
