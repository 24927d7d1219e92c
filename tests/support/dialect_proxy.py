"""A dialect stand-in: an HTTP proxy in front of osmem-server that answers as Elasticsearch or as
Amazon OpenSearch Serverless (AOSS) where they differ from OpenSearch.

No Elasticsearch or AOSS can run on these machines, so the suite runs its target-sensitive tests
through this proxy. It emulates only behaviours the vendors document, each cited beside its code;
everything else is forwarded to osmem-server untouched (osmem speaks OpenSearch)::

    with dialect_proxy(osmem_url, "elasticsearch", api_key=KEY, major=9) as proxy:
        ...  # cdcsync with CDCSYNC_OPENSEARCH_URL=proxy.url, CDCSYNC_OPENSEARCH_AUTH=apikey
    with dialect_proxy(osmem_url, "aoss", collection_type="TIMESERIES") as proxy:
        ...  # cdcsync with CDCSYNC_OPENSEARCH_AUTH=sigv4, CDCSYNC_OPENSEARCH_SIGV4_SERVICE=aoss

What it does not emulate: real SigV4 signature checking (it checks the signed scope names the
``aoss`` service and that the payload hash header matches the body), Elasticsearch's security
model beyond one API key, and any behaviour the suite does not depend on.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.support.any_method import AnyMethodHandler

Dialect = Literal["elasticsearch", "aoss"]
CollectionType = Literal["SEARCH", "TIMESERIES", "VECTORSEARCH"]

_JSON = "application/json; charset=UTF-8"
_SKIP_REQUEST_HEADERS = {"host", "content-length", "connection", "keep-alive", "transfer-encoding"}
_SKIP_RESPONSE_HEADERS = {"content-length", "connection", "keep-alive", "transfer-encoding", "date", "server"}
_COMPATIBLE = re.compile(
    r"application/vnd\.elasticsearch\+(?:json|x-ndjson)\s*;\s*compatible-with=(\d+)", re.I
)
# The OpenSearch point-in-time routes; Elasticsearch has none of them.
_OPENSEARCH_PIT = re.compile(r"^(?:/[^/]+)?/_search/point_in_time(?:/_all)?$")


def encoded_api_key(key_id: str, key: str) -> str:
    """The ``encoded`` value Elasticsearch's create-API-key answer carries: base64 of ``id:key``."""
    return base64.b64encode(f"{key_id}:{key}".encode()).decode()


@dataclass
class DialectProxy:
    """The running stand-in: its ``url`` and what it saw (method, path, headers) per request."""

    upstream: str
    dialect: Dialect
    api_key: str = ""
    major: int = 8
    collection_type: CollectionType = "SEARCH"
    url: str = ""
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, method: str, path: str, headers: dict[str, str]) -> None:
        with self.lock:
            self.requests.append((method, path, headers))


Answer = tuple[int, dict[str, str], bytes]


def _error(status: int, error_type: str, reason: str) -> tuple[int, dict[str, str], bytes]:
    cause = {"type": error_type, "reason": reason}
    body = {"error": {"root_cause": [cause], **cause}, "status": status}
    return status, {"Content-Type": _JSON}, json.dumps(body).encode()


class _Handler(AnyMethodHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests assert on ``requests``."""

    def _serve(self) -> None:
        proxy = self.server.proxy
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query = self.path.partition("?")
        headers = {k.lower(): v for k, v in self.headers.items()}
        proxy.seen(self.command, self.path, headers)
        if proxy.dialect == "elasticsearch":
            answer = _elasticsearch(self, proxy, path, parse_qs(query), headers, body)
            answer[1]["X-Elastic-Product"] = "Elasticsearch"
        else:
            answer = _aoss(self, proxy, path, parse_qs(query), headers, body)
        self._answer(*answer)

    def forward(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        upstream = urlsplit(self.server.proxy.upstream)
        sent = {k: v for k, v in headers.items() if k not in _SKIP_REQUEST_HEADERS and k != "authorization"}
        target = path + ("?" + urlencode(query, doseq=True) if query else "")
        connection = http.client.HTTPConnection(upstream.hostname or "", upstream.port, timeout=30)
        try:
            connection.request(method, target, body=body or None, headers=sent)
            response = connection.getresponse()
            data = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in _SKIP_RESPONSE_HEADERS}
            if method == "HEAD":
                kept["Content-Length"] = response.getheader("Content-Length", "0")
            return response.status, kept, data
        finally:
            connection.close()

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


# --- Elasticsearch --------------------------------------------------------------------------------


def _elasticsearch(
    handler: _Handler,
    proxy: DialectProxy,
    path: str,
    query: dict[str, list[str]],
    headers: dict[str, str],
    body: bytes,
) -> tuple[int, dict[str, str], bytes]:
    # Auth: "Authorization: ApiKey <encoded>", the encoded value being base64 of id:api_key
    # (https://www.elastic.co/docs/api/doc/elasticsearch/authentication; Elastic Cloud Serverless
    # takes API keys only: https://www.elastic.co/docs/api/doc/elasticsearch-serverless/authentication).
    # Without credentials Elasticsearch answers 401 security_exception with WWW-Authenticate.
    given = headers.get("authorization", "")
    if given != f"ApiKey {proxy.api_key}":
        reason = (
            f"missing authentication credentials for REST request [{path}]"
            if not given
            else "unable to authenticate with provided credentials and anonymous access is not allowed "
            "for this request"
        )
        status, out, data = _error(401, "security_exception", reason)
        out["WWW-Authenticate"] = 'ApiKey, Basic realm="security", charset="UTF-8"'
        return status, out, data
    refused = _compatibility(proxy.major, headers, body)
    if refused is not None:
        return refused
    headers = {**headers, "accept": "application/json"}
    if "content-type" in headers:
        ndjson = path.endswith("/_bulk")
        headers["content-type"] = "application/x-ndjson" if ndjson else "application/json"
    if path == "/" and handler.command in ("GET", "HEAD"):
        return 200, {"Content-Type": _JSON}, json.dumps(_es_root(proxy.major)).encode()
    pit = _es_pit(handler, path, query, headers, body)
    if pit is not None:
        return pit
    return handler.forward(handler.command, path, query, headers, body)


def _es_pit(
    handler: _Handler, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
) -> Answer | None:
    """Elasticsearch's point-in-time API on osmem's OpenSearch one; None for any other request."""
    if _OPENSEARCH_PIT.match(path):
        # Elasticsearch has no /_search/point_in_time route; an unknown route is a 400 "no handler
        # found" (its PIT API is POST /{index}/_pit, close is DELETE /_pit:
        # https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-open-point-in-time).
        reason = f"no handler found for uri [{path}] and method [{handler.command}]"
        return 400, {"Content-Type": _JSON}, json.dumps({"error": reason, "status": 400}).encode()
    pit = re.fullmatch(r"/([^/]+)/_pit", path)
    if pit and handler.command == "POST":
        # POST /{index}/_pit?keep_alive=1m answers {"id": ...}; searches then pass it as pit.id with
        # no index in the path (same page). osmem keeps the context under OpenSearch's route.
        status, out, data = handler.forward("POST", f"/{pit[1]}/_search/point_in_time", query, headers, b"")
        if status == 200:
            opened = json.loads(data)
            data = json.dumps({"id": opened["pit_id"], "_shards": opened.get("_shards", {})}).encode()
        return status, out, data
    if path == "/_pit" and handler.command == "DELETE":
        # DELETE /_pit {"id": ...} answers {"succeeded": true, "num_freed": 1}
        # (https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-close-point-in-time).
        pit_id = json.loads(body or b"{}").get("id")
        status, out, data = handler.forward(
            "DELETE", "/_search/point_in_time", {}, headers, json.dumps({"pit_id": [pit_id]}).encode()
        )
        if status == 200:
            freed = sum(1 for pit_entry in json.loads(data).get("pits", []) if pit_entry.get("successful"))
            data = json.dumps({"succeeded": True, "num_freed": freed}).encode()
        return status, out, data
    return None


def _compatibility(major: int, headers: dict[str, str], body: bytes) -> Answer | None:
    """Elasticsearch's REST API compatibility rules for ``compatible-with=N`` media types.

    A requested compatible version must be the current major or the one before it (Elasticsearch 9
    takes 8 and 9; so 7, which opensearch-py's ELASTIC_CLIENT_APIVERSIONING asks for, is refused
    outright). A request with a body must ask for the same version in Accept and Content-Type: a
    versioned Accept with a plain ``application/json`` body is refused (the error text as Elastic's
    forum quotes it, https://discuss.elastic.co/t/java-api-client-7-x-with-elasticsearch-server-8-x/352369;
    the rules: https://www.elastic.co/docs/reference/elasticsearch/rest-apis/compatibility).
    """
    accept, content_type = headers.get("accept", ""), headers.get("content-type", "")
    versions = [int(m[1]) for m in (_COMPATIBLE.search(accept), _COMPATIBLE.search(content_type)) if m]
    for version in versions:
        if version not in (major, major - 1):
            return _error(
                400,
                "status_exception",
                f"A compatible version is required on both Content-Type and Accept headers if either one "
                f"has requested a compatible version. Accept version must be either version {major} or "
                f"{major - 1}, but found {version}. Accept={accept}",
            )
    accept_version = _COMPATIBLE.search(accept)
    type_version = _COMPATIBLE.search(content_type)
    mismatch = (accept_version and accept_version[1]) != (type_version and type_version[1])
    if body and mismatch:
        return _error(
            400,
            "media_type_header_exception",
            "A compatible version is required on both Content-Type and Accept headers if either one has "
            "requested a compatible version and the compatible versions must match. "
            f"Accept={accept}, Content-Type={content_type}",
        )
    return None


def _es_root(major: int) -> dict[str, Any]:
    """``GET /`` as Elasticsearch answers it: no ``version.distribution`` (OpenSearch's marker), the
    ``build_flavor`` and the "You Know, for Search" tagline
    (https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-info)."""
    number = {8: "8.15.3", 9: "9.1.5"}.get(major, f"{major}.0.0")
    return {
        "name": "standin-node",
        "cluster_name": "standin",
        "cluster_uuid": "standin-cluster",
        "version": {
            "number": number,
            "build_flavor": "default",
            "build_type": "docker",
            "build_hash": "standin",
            "build_date": "2025-01-01T00:00:00.000Z",
            "build_snapshot": False,
            "lucene_version": "9.12.0" if major == 8 else "10.2.2",
            "minimum_wire_compatibility_version": f"{major - 1}.17.0",
            "minimum_index_compatibility_version": f"{major - 1}.0.0",
        },
        "tagline": "You Know, for Search",
    }


# --- Amazon OpenSearch Serverless -----------------------------------------------------------------

# The operations AOSS supports are listed at
# https://docs.aws.amazon.com/opensearch-service/latest/developerguide/serverless-genref.html;
# GET / (and HEAD /), _refresh and scroll (GET/POST _search/scroll, the scroll parameter) are not
# among them. AOSS answers an operation it does not support with 404.
_AOSS_UNSUPPORTED = re.compile(r"^/$|(?:^|/)_refresh$|^/_search/scroll(?:/.*)?$")
# Custom document ids: "PUT <index>/_doc/<id>" and "_create/<id>" are "for search collection
# types only" (same page); TIMESERIES and VECTORSEARCH collections generate ids themselves
# (https://docs.aws.amazon.com/opensearch-service/latest/developerguide/serverless-overview.html#serverless-usecase).
_NO_CUSTOM_IDS = "Document ID is not supported in create/index operation request"


def _aoss(
    handler: _Handler,
    proxy: DialectProxy,
    path: str,
    query: dict[str, list[str]],
    headers: dict[str, str],
    body: bytes,
) -> tuple[int, dict[str, str], bytes]:
    # Requests are signed with SigV4 for the service "aoss", and AOSS requires the
    # x-amz-content-sha256 header with the payload's SHA-256
    # (https://docs.aws.amazon.com/opensearch-service/latest/developerguide/serverless-clients.html#serverless-signing).
    authorization = headers.get("authorization", "")
    scope = re.search(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request", authorization)
    if not authorization.startswith("AWS4-HMAC-SHA256 ") or scope is None or scope[1] != "aoss":
        service = scope[1] if scope else "none"
        return (
            403,
            {"Content-Type": _JSON},
            json.dumps({"message": f"Forbidden (signed for {service})"}).encode(),
        )
    if headers.get("x-amz-content-sha256") != hashlib.sha256(body).hexdigest():
        return 403, {"Content-Type": _JSON}, json.dumps({"message": "x-amz-content-sha256 mismatch"}).encode()
    if _AOSS_UNSUPPORTED.search(path) or "scroll" in query:
        return 404, {"Content-Type": _JSON}, json.dumps({"status": 404, "error": "Not Found"}).encode()
    if proxy.collection_type != "SEARCH":
        if re.fullmatch(r"/[^/]+/(?:_doc|_create)/[^/]+", path) and handler.command in ("PUT", "POST"):
            return _error(400, "illegal_argument_exception", _NO_CUSTOM_IDS)
        if path.endswith("/_bulk"):
            return _aoss_bulk(handler, path, query, headers, body)
    return handler.forward(handler.command, path, query, headers, body)


def _aoss_bulk(
    handler: _Handler, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    """A bulk on a TIMESERIES / VECTORSEARCH collection: index and create actions naming an ``_id``
    are refused item by item; the rest are forwarded and their answers spliced back in order."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    actions: list[list[bytes]] = []
    while lines:
        size = 1 if "delete" in json.loads(lines[0]) else 2
        actions.append(lines[:size])
        lines = lines[size:]
    refused = set()
    for n, action in enumerate(actions):
        operation, meta = next(iter(json.loads(action[0]).items()))
        if operation in ("index", "create") and "_id" in meta:
            refused.add(n)
    kept = b"".join(line + b"\n" for n, action in enumerate(actions) if n not in refused for line in action)
    items: list[dict[str, Any]] = []
    if kept:
        status, out, data = handler.forward(handler.command, path, query, headers, kept)
        if status != 200:
            return status, out, data
        items = json.loads(data)["items"]
    real = iter(items)
    answer = []
    for n, action in enumerate(actions):
        if n in refused:
            operation, meta = next(iter(json.loads(action[0]).items()))
            error = {"type": "illegal_argument_exception", "reason": _NO_CUSTOM_IDS}
            answer.append({operation: {"_index": meta.get("_index"), "status": 400, "error": error}})
        else:
            answer.append(next(real))
    document = {"took": 1, "errors": bool(refused) or any("error" in next(iter(i.values())) for i in items)}
    document["items"] = answer
    return 200, {"Content-Type": _JSON}, json.dumps(document).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, proxy: DialectProxy) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.proxy = proxy


@contextlib.contextmanager
def dialect_proxy(
    upstream_url: str,
    dialect: Dialect,
    *,
    api_key: str = "",
    major: int = 8,
    collection_type: CollectionType = "SEARCH",
) -> Iterator[DialectProxy]:
    """Run the stand-in for ``dialect`` in front of ``upstream_url`` on a free 127.0.0.1 port."""
    proxy = DialectProxy(upstream_url, dialect, api_key, major, collection_type)
    server = _Server(proxy)
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
