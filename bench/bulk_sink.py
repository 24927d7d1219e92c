"""A fast stand-in for OpenSearch's document and ``_bulk`` APIs, for client-side CPU measurements.

    .venv/bin/python bench/bulk_sink.py [--port 0]     # prints "PORT" on stdout once it listens

Run as a process of its own, so the client's CPU time never includes it. It answers what the Lambda
handlers of ``bench/lambda_e2e.py`` send, as OpenSearch answers it: ``GET /``, ``PUT``/``HEAD
/{index}``, ``GET /_alias/...`` (none), ``PUT``/``DELETE /{index}/_doc/{id}`` and ``POST
[/{index}]/_bulk`` with a per-item response (status, result, ``_version``, ``_seq_no``, the 409
``version_conflict_engine_exception``), honouring ``version_type=external_gte`` (a write or delete
older than the document's version, or its tombstone's, is 409), internal versions without one, and
``filter_path``. Documents are kept in memory, one shard per index (routing is ignored), so the final
state can be checked: ``GET /_bench/docs/{index}`` answers ``{id: source}`` of the live documents.
Not a search engine: no queries, no mappings, no persistence; not for the test suite.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

ROOT = {
    "name": "bulk-sink",
    "cluster_name": "bench",
    "version": {"distribution": "opensearch", "number": "2.11.0"},
    "tagline": "The OpenSearch Project: https://opensearch.org/",
}
SHARDS = {"total": 1, "successful": 1, "failed": 0}


class Store:
    """index -> id -> [version, source or None (a tombstone)], behind one lock."""

    def __init__(self) -> None:
        self.indices: dict[str, dict[str, list[Any]]] = {}
        self.lock = threading.Lock()
        self.seq_no = 0

    def write(
        self, op: str, index: str, doc_id: str, source: Any, version: int | None
    ) -> tuple[int, dict[str, Any]]:
        """One action's (status, body), as OpenSearch answers it (the caller holds the lock)."""
        docs = self.indices.setdefault(index, {})
        current = docs.get(doc_id)
        live = current is not None and current[1] is not None
        if version is not None and current is not None and version < current[0]:
            reason = (
                f"[{doc_id}]: version conflict, current version [{current[0]}] is higher than the one "
                f"provided [{version}]"
            )
            error = {
                "type": "version_conflict_engine_exception",
                "reason": reason,
                "index": index,
                "shard": "0",
            }
            return 409, {"_index": index, "_id": doc_id, "status": 409, "error": error}
        if op == "delete" and not live and version is None:
            return 404, self._answer(index, doc_id, current[0] if current else 1, "not_found", 404)
        new_version = version if version is not None else (current[0] + 1 if current else 1)
        docs[doc_id] = [new_version, None if op == "delete" else source]
        if op == "delete":
            status, result = (200, "deleted") if live else (404, "not_found")
        else:
            status, result = (200, "updated") if live else (201, "created")
        return status, self._answer(index, doc_id, new_version, result, status)

    def _answer(self, index: str, doc_id: str, version: int, result: str, status: int) -> dict[str, Any]:
        self.seq_no += 1
        return {
            "_index": index,
            "_id": doc_id,
            "_version": version,
            "result": result,
            "_shards": SHARDS,
            "_seq_no": self.seq_no,
            "_primary_term": 1,
            "status": status,
        }


def bulk_actions(body: bytes, default_index: str | None) -> Iterator[tuple[str, str, str, Any, int | None]]:
    """(op, index, id, source, external version or None) per action of an NDJSON ``_bulk`` body."""
    lines = iter(line for line in body.split(b"\n") if line.strip())
    for line in lines:
        ((op, meta),) = orjson.loads(line).items()
        source = orjson.loads(next(lines)) if op in ("index", "create") else None
        external = meta.get("version_type") in ("external", "external_gte")
        version = int(meta["version"]) if external and "version" in meta else None
        yield op, meta.get("_index") or default_index or "", str(meta["_id"]), source, version


def filtered(value: Any, paths: list[list[str]]) -> Any:
    """``value`` reduced to ``filter_path`` (dotted paths, ``*`` for any key; arrays are transparent)."""
    if any(not path for path in paths):
        return value
    if isinstance(value, list):
        return [kept for item in value if (kept := filtered(item, paths)) is not None]
    if not isinstance(value, dict):
        return None
    out = {}
    for key, item in value.items():
        rest = [path[1:] for path in paths if path[0] in ("*", key)]
        if rest and (kept := filtered(item, rest)) not in (None, {}):
            out[key] = kept
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave in two writes: no 40 ms delayed-ACK stall
    store: Store

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _reply(self, status: int, body: Any, query: dict[str, list[str]]) -> None:
        if "filter_path" in query:
            paths = [path.split(".") for part in query["filter_path"] for path in part.split(",")]
            body = filtered(body, paths) or {}
        data = orjson.dumps(body)
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=UTF-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _serve(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = [unquote(part) for part in url.path.split("/") if part]
        status, answer = self._route(parts, query, body)
        self._reply(status, answer, query)

    def _route(self, parts: list[str], query: dict[str, list[str]], body: bytes) -> tuple[int, Any]:  # noqa: PLR0911 - one per route
        store = self.store
        if not parts:
            return 200, ROOT
        if parts[-1] == "_bulk":
            items, errors = [], False
            with store.lock:
                for op, index, doc_id, source, version in bulk_actions(
                    body, parts[0] if len(parts) == 2 else None
                ):
                    status, answer = store.write(op, index, doc_id, source, version)
                    errors |= status >= 300 and not (op == "delete" and status == 404)
                    items.append({op: answer})
            return 200, {"took": 1, "errors": errors, "items": items}
        if parts[0] == "_alias" or parts[1:2] == ["_alias"]:
            return 404, {"error": "alias [*] missing", "status": 404}
        if parts[:2] == ["_bench", "docs"]:
            with store.lock:
                docs = store.indices.get(parts[2], {})
                return 200, {doc_id: doc[1] for doc_id, doc in docs.items() if doc[1] is not None}
        if len(parts) == 1 and self.command == "PUT":
            store.indices.setdefault(parts[0], {})
            return 200, {"acknowledged": True, "index": parts[0]}
        if len(parts) == 1:
            return (200, {}) if parts[0] in store.indices else (404, {"status": 404})
        if len(parts) == 3 and parts[1] == "_doc":
            external = query.get("version_type", [""])[0] in ("external", "external_gte")
            version = int(query["version"][0]) if external and "version" in query else None
            op = "delete" if self.command == "DELETE" else "index"
            with store.lock:
                return store.write(op, parts[0], parts[2], orjson.loads(body) if body else None, version)
        return 400, {"error": f"bulk-sink does not serve {self.command} /{'/'.join(parts)}", "status": 400}

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve  # noqa: N815 - http.server's names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    Handler.store = Store()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    # Ends when the parent closes stdin (or dies), as the test servers do.
    threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
