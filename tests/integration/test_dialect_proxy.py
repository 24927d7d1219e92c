"""The dialect stand-in (tests/support/dialect_proxy.py) answers as Elasticsearch and AOSS document."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from tests.support.dialect_proxy import DialectProxy, dialect_proxy, encoded_api_key

KEY = encoded_api_key("standin", "s3cret")


def call(
    url: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, dict(response.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, dict(exc.headers), json.loads(raw) if raw else None


def es_headers(**extra: str) -> dict[str, str]:
    return {"Authorization": f"ApiKey {KEY}", "Content-Type": "application/json", **extra}


@pytest.fixture(params=[8, 9], ids=["es8", "es9"])
def es(request: pytest.FixtureRequest, opensearch_url: str) -> Iterator[DialectProxy]:
    with dialect_proxy(opensearch_url, "elasticsearch", api_key=KEY, major=request.param) as proxy:
        yield proxy


def test_dialect_proxy_elasticsearch_root_has_no_distribution_and_product_header(es: DialectProxy) -> None:
    status, headers, body = call(es.url, "GET", "/", headers=es_headers())
    assert status == 200
    assert headers["X-Elastic-Product"] == "Elasticsearch"
    assert "distribution" not in body["version"]
    assert body["version"]["number"].startswith(f"{es.major}.")


@pytest.mark.parametrize(
    ("auth", "reason"),
    [
        (None, "missing authentication credentials for REST request [/]"),
        ("ApiKey wrong", "unable to authenticate with provided credentials"),
        ("Basic dXNlcjpwdw==", "unable to authenticate with provided credentials"),
    ],
)
def test_dialect_proxy_elasticsearch_without_the_api_key_is_401(
    es: DialectProxy, auth: str | None, reason: str
) -> None:
    status, headers, body = call(es.url, "GET", "/", headers={"Authorization": auth} if auth else {})
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("ApiKey")
    assert body["error"]["type"] == "security_exception"
    assert body["error"]["reason"].startswith(reason)


def test_dialect_proxy_elasticsearch_pit_is_its_own_api(es: DialectProxy, unique_name: str) -> None:
    call(es.url, "PUT", f"/{unique_name}/_doc/1?refresh=true", {"a": 1}, es_headers())
    # OpenSearch's routes do not exist
    status, _, body = call(
        es.url, "POST", f"/{unique_name}/_search/point_in_time?keep_alive=1m", None, es_headers()
    )
    assert (status, body["error"]) == (
        400,
        f"no handler found for uri [/{unique_name}/_search/point_in_time] and method [POST]",
    )
    # Elasticsearch's do
    status, _, opened = call(es.url, "POST", f"/{unique_name}/_pit?keep_alive=1m", None, es_headers())
    assert status == 200
    assert "pit_id" not in opened
    search = {"pit": {"id": opened["id"], "keep_alive": "1m"}, "sort": [{"_shard_doc": "asc"}]}
    status, _, found = call(es.url, "POST", "/_search", search, es_headers())
    assert [hit["_id"] for hit in found["hits"]["hits"]] == ["1"]
    status, _, closed = call(es.url, "DELETE", "/_pit", {"id": found["pit_id"]}, es_headers())
    assert (status, closed) == (200, {"succeeded": True, "num_freed": 1})


def test_dialect_proxy_elasticsearch_compatibility_headers_follow_its_rules(es: DialectProxy) -> None:
    v7 = "application/vnd.elasticsearch+json;compatible-with=7"
    same = f"application/vnd.elasticsearch+json;compatible-with={es.major}"
    # opensearch-py's ELASTIC_CLIENT_APIVERSIONING: a versioned Accept, a plain Content-Type
    status, _, body = call(es.url, "POST", "/_search", {"size": 0}, es_headers(Accept=v7))
    assert status == 400
    expected = "status_exception" if es.major == 9 else "media_type_header_exception"
    assert body["error"]["type"] == expected
    # without a body, version 7 is still refused by 9 only
    status, _, _ = call(es.url, "GET", "/", headers=es_headers(Accept=v7))
    assert status == (400 if es.major == 9 else 200)
    # matching versions pass
    status, _, _ = call(
        es.url, "POST", "/_search", {"size": 0}, es_headers(Accept=same, **{"Content-Type": same})
    )
    assert status == 200


def signed(url: str, method: str, path: str, body: bytes, service: str) -> dict[str, str]:
    credentials = boto3.Session().get_credentials()
    request = AWSRequest(method=method, url=url + path, data=body)
    request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    SigV4Auth(credentials, service, "us-east-1").add_auth(request)
    return dict(request.headers.items())


@pytest.fixture(params=["SEARCH", "TIMESERIES"])
def aoss(request: pytest.FixtureRequest, opensearch_url: str) -> Iterator[DialectProxy]:
    with dialect_proxy(opensearch_url, "aoss", collection_type=request.param) as proxy:
        yield proxy


def aoss_call(proxy: DialectProxy, method: str, path: str, body: bytes = b"", service: str = "aoss") -> Any:
    headers = signed(proxy.url, method, path, body, service)
    if body:
        headers["Content-Type"] = "application/json"
    return call(proxy.url, method, path, body or None, headers)


@pytest.mark.parametrize("path", ["/", "/_refresh", "/x/_refresh", "/_search/scroll", "/x/_search?scroll=1m"])
def test_dialect_proxy_aoss_unsupported_operations_are_404(aoss: DialectProxy, path: str) -> None:
    method = "GET" if path == "/" else "POST"
    assert aoss_call(aoss, method, path)[0] == 404


def test_dialect_proxy_aoss_wants_sigv4_for_aoss(aoss: DialectProxy) -> None:
    assert aoss_call(aoss, "GET", "/_cat/indices?format=json", service="es")[0] == 403
    assert call(aoss.url, "GET", "/_cat/indices?format=json")[0] == 403
    assert aoss_call(aoss, "GET", "/_cat/indices?format=json")[0] == 200


def test_dialect_proxy_aoss_custom_ids_only_in_search_collections(
    aoss: DialectProxy, unique_name: str
) -> None:
    bulk = (
        json.dumps({"index": {"_index": unique_name, "_id": "1"}})
        + "\n{}\n"
        + json.dumps({"index": {"_index": unique_name}})
        + "\n{}\n"
    ).encode()
    status, _, answer = aoss_call(aoss, "POST", "/_bulk", bulk)
    assert status == 200
    statuses = [next(iter(item.values()))["status"] for item in answer["items"]]
    assert statuses == ([201, 201] if aoss.collection_type == "SEARCH" else [400, 201])
