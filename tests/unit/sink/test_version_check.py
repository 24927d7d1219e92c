"""The external-version check (``sink/target.check_versioning``) against an in-memory OpenSearch.

The fake is an opensearch-py ``Connection``: the real client turns its answers into exceptions
(429 and 503 raised, 409 returned where the check ignores it), as it does for a real cluster.
Whatever fails at whichever step, the probe document is gone afterwards.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

import orjson
import pytest
from opensearchpy import Connection, OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError

from cdcsync.errors import ConfigError, TransientError
from cdcsync.sink.target import ELASTICSEARCH, OPENSEARCH, check_versioning

Fault = (
    int | str
)  # a status answered instead of doing the request, or "reset": done, then the connection drops


class MemoryOpenSearch(Connection):
    """One index of one shard, with external versions, tombstones and required routing if asked.

    ``faults`` maps the n-th document request (the probe stops at a failed step; the clean-up follows)
    to a fault.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = "users"
        self.routing_required = False
        self.keeps_tombstones = True
        self.documents: dict[str, int] = {}  # id -> version
        self.tombstones: dict[str, int] = {}
        self.faults: dict[int, Fault] = {}
        self.requests: list[tuple[str, int | None, str | None]] = []  # method, version, routing

    def perform_request(
        self,
        method: str,
        url: str,
        params: Any = None,
        body: Any = None,
        timeout: Any = None,
        ignore: Any = (),
        headers: Any = None,
    ) -> Any:
        path = [unquote(part) for part in url.split("?", 1)[0].strip("/").split("/")]
        params = dict(params or {})
        if method == "HEAD":
            status, answer = (200, {}) if path == [self.index] else (404, {})
        else:
            assert path[:2] == [self.index, "_doc"], url
            step = len(self.requests)
            version = int(params["version"]) if "version" in params else None
            self.requests.append((method, version, params.get("routing")))
            fault = self.faults.get(step)
            if isinstance(fault, int):
                status, answer = fault, _error(fault, "busy_exception", "come back later")
            else:
                status, answer = self._apply(method, path[2], version, params.get("routing"))
                if fault == "reset":
                    raise OpenSearchConnectionError(
                        "N/A", "reset", ConnectionResetError("Connection reset by peer")
                    )
        if not 200 <= status < 300 and status not in ignore:
            self._raise_error(status, orjson.dumps(answer).decode(), "application/json")
        return status, {"content-type": "application/json"}, orjson.dumps(answer).decode()

    def _apply(self, method: str, doc_id: str, version: int | None, routing: str | None) -> tuple[int, Any]:
        if self.routing_required and routing is None:
            reason = f"routing is required for [{self.index}]/[{doc_id}]"
            return 400, _error(400, "routing_missing_exception", reason)
        assert version is not None
        current = self.documents.get(doc_id, self.tombstones.get(doc_id))
        if current is not None and version < current:
            return 409, _error(409, "version_conflict_engine_exception", "current version is higher")
        self.tombstones.pop(doc_id, None)
        if method == "PUT":
            self.documents[doc_id] = version
            return 201, {"result": "created", "_version": version}
        found = self.documents.pop(doc_id, None) is not None
        if self.keeps_tombstones:
            self.tombstones[doc_id] = version
        return (200, {"result": "deleted"}) if found else (404, {"result": "not_found"})


def _error(status: int, kind: str, reason: str) -> dict[str, Any]:
    return {"error": {"type": kind, "reason": reason}, "status": status}


@pytest.fixture
def client() -> OpenSearch:
    return OpenSearch(
        hosts=[{"host": "memory", "port": 9200}], connection_class=MemoryOpenSearch, max_retries=0
    )


def _server(client: OpenSearch) -> MemoryOpenSearch:
    server = client.transport.get_connection()
    assert isinstance(server, MemoryOpenSearch)
    return server


STEPS = [
    "versioned write",
    "versioned write older than the document",
    "versioned delete",
    "versioned write older than the delete",
]
PROBE = [("PUT", 2), ("PUT", 1), ("DELETE", 3), ("PUT", 2)]


@pytest.mark.parametrize("routing_required", [False, True], ids=["plain", "routing-required"])
def test_check_versioning_honouring_index_passes_and_leaves_no_document(
    client: OpenSearch, routing_required: bool
) -> None:
    # GIVEN an index that honours external versions (one with _routing: {required: true} too)
    server = _server(client)
    server.routing_required = routing_required
    # WHEN it is checked THEN it passes, every request names the probe's routing
    check_versioning(client, OPENSEARCH, ["users"], "run")
    (doc_id,) = server.tombstones
    assert server.requests == [
        ("PUT", 2, doc_id),
        ("PUT", 1, doc_id),
        ("DELETE", 3, doc_id),
        ("PUT", 2, doc_id),
    ]
    # AND only the delete's tombstone is left, so no clean-up is needed
    assert (server.documents, server.tombstones) == ({}, {doc_id: 3})


@pytest.mark.parametrize("step", range(4))
@pytest.mark.parametrize("fault", [429, 503, "reset"])
def test_check_versioning_failure_at_any_step_is_transient_and_leaves_no_document(
    client: OpenSearch, step: int, fault: Fault
) -> None:
    # GIVEN a target that is busy, unavailable or drops the connection at one step of the probe
    server = _server(client)
    server.faults = {step: fault}
    # WHEN it is checked THEN the command stops as transient (run again), never as a configuration
    with pytest.raises(TransientError) as raised:
        check_versioning(client, OPENSEARCH, ["users"], "run")
    assert str(raised.value) == f'run: OpenSearch index "users": {STEPS[step]}: ' + (
        f"OpenSearch answered {fault}: busy_exception: come back later (busy or unavailable)"
        if isinstance(fault, int)
        else "OpenSearch does not answer (Connection reset by peer); check that it runs and "
        "CDCSYNC_OPENSEARCH_URL"
    )
    # AND no step follows the failed one; the probe is deleted above its versions, unless the
    # failure was a 429 on the first write (nothing stored)
    clean_up = [] if (step, fault) == (0, 429) else [("DELETE", 4)]
    assert [(method, version) for method, version, _ in server.requests] == PROBE[: step + 1] + clean_up
    assert server.documents == {}


def test_check_versioning_forgotten_delete_refused_and_probe_removed(client: OpenSearch) -> None:
    # GIVEN an index that forgets deletes at once (index.gc_deletes: 0)
    server = _server(client)
    server.keeps_tombstones = False
    # WHEN it is checked THEN it is refused naming the setting, and the re-written probe is deleted
    with pytest.raises(ConfigError) as raised:
        check_versioning(client, ELASTICSEARCH, ["users"], "indices apply")
    assert str(raised.value) == (
        'indices apply: Elasticsearch index "users" forgot a delete at once (an older write was applied '
        "after it, status 200): a replayed write would bring deleted documents back; raise "
        "index.gc_deletes to 24h"
    )
    assert server.requests[-1][:2] == ("DELETE", 4)
    assert server.documents == {}


def test_check_versioning_delete_denied_names_credentials_and_left_probe(
    client: OpenSearch, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a role that may write documents but not delete them (no es:ESHttpDelete)
    server = _server(client)
    server.faults = {2: 403, 3: 403}  # the step, then the clean-up
    # WHEN it is checked THEN it stops as configuration, naming the step and the setting
    with caplog.at_level(logging.WARNING, logger="cdcsync"), pytest.raises(ConfigError) as raised:
        check_versioning(client, OPENSEARCH, ["users"], "run")
    denied = (
        "OpenSearch answered 403: busy_exception: come back later; check CDCSYNC_OPENSEARCH_AUTH and the "
    )
    assert str(raised.value) == (
        f'run: OpenSearch index "users": versioned delete: {denied}credentials or role it uses'
    )
    # AND one WARNING names the probe left behind and the request that deletes it
    (doc_id,) = server.documents
    assert [r.getMessage() for r in caplog.records] == [
        f'run: OpenSearch index "users": deleting the probe document: {denied}credentials or role it '
        f'uses; the probe document "{doc_id}" may be left in the index: delete it with DELETE '
        f"/users/_doc/{doc_id}?routing={doc_id}"
    ]


@pytest.mark.parametrize("fault", [503, "reset"])
def test_check_versioning_failed_clean_up_is_logged_not_raised(
    client: OpenSearch, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a target unavailable for the second write and the clean-up
    server = _server(client)
    server.faults = {1: 503, 2: fault}  # the step, then the clean-up
    # WHEN it is checked THEN the step's failure is raised, not the clean-up's
    with caplog.at_level(logging.WARNING, logger="cdcsync"), pytest.raises(TransientError) as raised:
        check_versioning(client, OPENSEARCH, ["users"], "run")
    assert str(raised.value).startswith(
        'run: OpenSearch index "users": versioned write older than the document: OpenSearch answered 503'
    )
    # AND the clean-up's failure is one WARNING
    doc_id = server.requests[0][2]
    failure = (
        "OpenSearch answered 503: busy_exception: come back later (busy or unavailable)"
        if fault == 503
        else "OpenSearch does not answer (Connection reset by peer); check that it runs and "
        "CDCSYNC_OPENSEARCH_URL"
    )
    assert [r.getMessage() for r in caplog.records] == [
        f'run: OpenSearch index "users": deleting the probe document: {failure}; the probe document '
        f'"{doc_id}" may be left in the index: delete it with DELETE /users/_doc/{doc_id}?routing={doc_id}'
    ]


@pytest.mark.parametrize("status", [400, 403])
def test_check_versioning_refused_first_write_sends_no_clean_up(client: OpenSearch, status: int) -> None:
    # GIVEN a target that refuses the first write outright (nothing is stored)
    server = _server(client)
    server.faults = {0: status}
    # WHEN it is checked THEN it is refused, and no delete follows a write that stored nothing
    with pytest.raises(ConfigError):
        check_versioning(client, OPENSEARCH, ["users"], "run")
    assert [method for method, _, _ in server.requests] == ["PUT"]
