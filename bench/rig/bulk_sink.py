"""A stand-in OpenSearch: ``_bulk`` and the document API with versions kept in memory.

    python bench/rig/bulk_sink.py [--latency-ms 0]

Documents live in memory with their versions: ``index``/``create``/``delete`` with
``version_type`` ``external_gte`` (applied when >= the document's or its tombstone's version),
``external`` (when >), or none (internal: +1); a stale one is answered 409
``version_conflict_engine_exception`` in OpenSearch's per-item shape, ``create`` of an existing
document too; a delete leaves a tombstone with its version (``index.gc_deletes`` as cdcsync sets
it: never forgotten here). ``filter_path`` is honoured on every JSON answer. Also what cdcsync and
opensearch-py call around the writes: ``GET``/``HEAD /``, index create/exists/get/settings/mapping,
aliases, ``_refresh``, ``GET /{index}/_doc/{id}``, ``_mget``. Anything else is answered 400 and
printed on stderr. ``--latency-ms`` is slept (no CPU) before each answer.

The rig's own endpoints: ``GET /_rig/stats`` (per index: requests, actions, applied, stale,
first/last write times in epoch s), ``GET /_rig/state?index=I`` (``{id: {"version", "at",
"source"}}``, ``at`` the time the document was last written).
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rig.serving import Reply, Request, json_reply, serve

SHARDS = {"total": 1, "successful": 1, "failed": 0}
INFO = {
    "name": "rig",
    "cluster_name": "rig",
    "cluster_uuid": "rig",
    "version": {"distribution": "opensearch", "number": "2.17.0", "lucene_version": "9.11.1"},
    "tagline": "The OpenSearch Project: https://opensearch.org/",
}


@dataclass(eq=False)
class Index:
    name: str
    docs: dict[str, list[Any]] = field(default_factory=dict)  # id -> [version, source bytes, written at]
    tombstones: dict[str, int] = field(default_factory=dict)  # id -> version of its delete
    body: dict[str, Any] = field(default_factory=dict)
    seq_no: int = 0
    requests: int = 0
    actions: int = 0
    applied: int = 0
    stale: int = 0
    first_at: float | None = None
    last_at: float | None = None


def _error(kind: str, reason: str, index: str, status: int) -> dict[str, Any]:
    return {"type": kind, "reason": reason, "index": index, "shard": "0", "index_uuid": "rig"}


class BulkSink:
    def __init__(self, latency_ms: float = 0.0) -> None:
        self.delay = latency_ms / 1000
        self.indices: dict[str, Index] = {}
        self.aliases: dict[str, str] = {}  # alias -> index
        self._lock = threading.Lock()

    # --- documents ---------------------------------------------------------------------------------

    def index_of(self, name: str) -> Index:
        name = self.aliases.get(name, name)
        found = self.indices.get(name)
        if found is None:
            found = self.indices[name] = Index(name)
        return found

    def apply(
        self, op: str, index: Index, doc_id: str, meta: dict[str, Any], source: bytes | None
    ) -> dict[str, Any]:
        """One action on one document (the lock held); its per-item answer, OpenSearch's shape."""
        index.actions += 1
        doc = index.docs.get(doc_id)
        current = doc[0] if doc is not None else index.tombstones.get(doc_id)
        kind = meta.get("version_type", "internal")
        given = meta.get("version")
        head = {"_index": index.name, "_id": doc_id}
        if op == "create" and doc is not None:
            reason = f"[{doc_id}]: version conflict, document already exists (current version [{doc[0]}])"
            index.stale += 1
            return head | {
                "status": 409,
                "error": _error("version_conflict_engine_exception", reason, index.name, 409),
            }
        if kind in ("external", "external_gte"):
            version = int(given)
            if current is not None and (version < current if kind == "external_gte" else version <= current):
                relation = "higher than" if kind == "external_gte" else "higher or equal to"
                reason = (
                    f"[{doc_id}]: version conflict, current version [{current}] is {relation} "
                    f"the one provided [{version}]"
                )
                index.stale += 1
                return head | {
                    "status": 409,
                    "error": _error("version_conflict_engine_exception", reason, index.name, 409),
                }
        elif kind == "internal":
            version = (current or 0) + 1
        else:
            return head | {
                "status": 400,
                "error": _error("illegal_argument_exception", f"version_type {kind}", index.name, 400),
            }
        index.seq_no += 1
        index.applied += 1
        answer = head | {"_version": version, "_shards": SHARDS, "_seq_no": index.seq_no, "_primary_term": 1}
        if op == "delete":
            index.tombstones[doc_id] = version
            if doc is None:
                return answer | {"result": "not_found", "status": 404}
            del index.docs[doc_id]
            return answer | {"result": "deleted", "status": 200}
        index.tombstones.pop(doc_id, None)
        index.docs[doc_id] = [version, source, time.time()]
        return answer | (
            {"result": "created", "status": 201} if doc is None else {"result": "updated", "status": 200}
        )

    def bulk(self, body: bytes, path_index: str | None) -> dict[str, Any]:
        started = time.perf_counter()
        lines = body.split(b"\n")
        items, errors, touched = [], False, set()
        position = 0
        with self._lock:
            while position < len(lines):
                line = lines[position]
                position += 1
                if not line.strip():
                    continue
                ((op, meta),) = orjson.loads(line).items()
                source = None
                if op != "delete":
                    source = lines[position]
                    position += 1
                index = self.index_of(meta.get("_index") or path_index or "")
                touched.add(index)
                if op not in ("index", "create", "delete"):
                    answer = {"_index": index.name, "_id": meta.get("_id"), "status": 400}
                    answer["error"] = _error(
                        "action_request_validation_exception", f"{op} unsupported", index.name, 400
                    )
                else:
                    answer = self.apply(op, index, str(meta["_id"]), meta, source)
                errors = errors or "error" in answer
                items.append({op: answer})
            now = time.time()
            for index in touched:
                index.requests += 1
                index.first_at = index.first_at or now
                index.last_at = now
        return {"took": int((time.perf_counter() - started) * 1000), "errors": errors, "items": items}

    # --- dispatch -----------------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        reply = self._route(request)
        reply.delay = self.delay
        filter_path = request.query.get("filter_path")
        if filter_path and reply.body and reply.content_type == "application/json":
            reply.body = orjson.dumps(filter_paths(orjson.loads(reply.body), filter_path.split(",")))
        return reply

    def _route(self, request: Request) -> Reply:  # noqa: PLR0911 - one branch per API
        method, parts = request.method, [unquote(p) for p in request.path.strip("/").split("/") if p]
        if parts[:1] == ["_rig"]:
            return self._rig(parts[1] if len(parts) > 1 else "", request.query)
        if not parts:
            return json_reply(INFO)
        if parts[-1] == "_bulk" and method in ("POST", "PUT"):
            return json_reply(self.bulk(request.body, parts[0] if len(parts) == 2 else None))
        if parts[-1] == "_mget":
            return json_reply(self.mget(orjson.loads(request.body), parts[0] if len(parts) == 2 else None))
        if parts[0] == "_alias" or (len(parts) == 2 and parts[1] == "_alias"):
            return self.get_alias(parts)
        if parts[-1] == "_refresh" or parts[0] == "_cluster":
            return json_reply({"_shards": SHARDS, "status": "green"})
        if len(parts) == 3 and parts[1] in ("_doc", "_create"):
            return self.document(request, parts[0], parts[2], "create" if parts[1] == "_create" else None)
        if len(parts) == 2 and parts[1] in ("_settings", "_mapping", "_mappings"):
            return self.describe(parts[0], parts[1].rstrip("s").lstrip("_") + "s", request.query)
        if len(parts) == 1 and not parts[0].startswith("_"):
            if method == "PUT":
                return self.create_index(parts[0], orjson.loads(request.body) if request.body else {})
            if method in ("GET", "HEAD"):
                return self.describe(parts[0], None, request.query)
        print(f"bulk_sink: unsupported {method} {request.path}", file=sys.stderr, flush=True)
        return json_reply(
            {"error": {"type": "rig_unsupported", "reason": f"{method} {request.path}"}, "status": 400}, 400
        )

    def document(self, request: Request, name: str, doc_id: str, op: str | None) -> Reply:
        meta = {key: request.query[key] for key in ("version", "version_type") if key in request.query}
        with self._lock:
            index = self.index_of(name)
            if request.method in ("GET", "HEAD"):
                doc = index.docs.get(doc_id)
                head = {"_index": index.name, "_id": doc_id}
                if doc is None:
                    return json_reply(head | {"found": False}, 404)
                return json_reply(
                    head | {"_version": doc[0], "found": True, "_source": orjson.Fragment(doc[1])}
                )
            if request.method == "DELETE":
                answer = self.apply("delete", index, doc_id, meta, None)
            else:
                kind = op or ("create" if request.query.get("op_type") == "create" else "index")
                answer = self.apply(kind, index, doc_id, meta, request.body)
        status = answer.pop("status")
        if "error" in answer:
            error = answer["error"]
            return json_reply({"error": {"root_cause": [error], **error}, "status": status}, status)
        return json_reply(answer, status)

    def mget(self, body: dict[str, Any], path_index: str | None) -> dict[str, Any]:
        wanted = body.get("docs") or [{"_id": doc_id} for doc_id in body.get("ids", [])]
        docs = []
        with self._lock:
            for entry in wanted:
                index = self.index_of(entry.get("_index") or path_index or "")
                doc = index.docs.get(str(entry["_id"]))
                head = {"_index": index.name, "_id": entry["_id"]}
                found = {"_version": doc[0], "found": True, "_source": orjson.Fragment(doc[1])} if doc else {}
                docs.append(head | (found or {"found": False}))
        return {"docs": docs}

    # --- indices and aliases ------------------------------------------------------------------------

    def _matching(self, pattern: str) -> list[str]:
        names = set()
        for part in pattern.split(","):
            names |= {n for n in self.indices if fnmatch.fnmatchcase(n, part)}
            if part in self.aliases:
                names.add(self.aliases[part])
        return sorted(names)

    def create_index(self, name: str, body: dict[str, Any]) -> Reply:
        if name in self.indices or name in self.aliases:
            error = _error("resource_already_exists_exception", f"index [{name}] already exists", name, 400)
            return json_reply({"error": {"root_cause": [error], **error}, "status": 400}, 400)
        with self._lock:
            self.indices[name] = Index(name, body=body)
            for alias in body.get("aliases", {}):
                self.aliases[alias] = name
        return json_reply({"acknowledged": True, "shards_acknowledged": True, "index": name})

    def describe(self, pattern: str, part: str | None, query: dict[str, str]) -> Reply:
        names = self._matching(pattern)
        if not names and query.get("allow_no_indices") != "true":
            error = _error("index_not_found_exception", f"no such index [{pattern}]", pattern, 404)
            return json_reply({"error": {"root_cause": [error], **error}, "status": 404}, 404)
        answer = {}
        for name in names:
            body = self.indices[name].body
            settings = {
                "index": {
                    "number_of_shards": "1",
                    "gc_deletes": "24h",
                    **body.get("settings", {}).get("index", {}),
                }
            }
            full = {
                "aliases": {alias: {} for alias, target in self.aliases.items() if target == name},
                "mappings": body.get("mappings", {}),
                "settings": settings,
            }
            answer[name] = {part: full[part]} if part else full
        return json_reply(answer)

    def get_alias(self, parts: list[str]) -> Reply:
        pattern = parts[1] if parts[0] == "_alias" and len(parts) > 1 else "*"
        indices = self._matching(parts[0]) if parts[0] != "_alias" else None
        answer: dict[str, Any] = {}
        for alias, name in self.aliases.items():
            if fnmatch.fnmatchcase(alias, pattern) and (indices is None or name in indices):
                answer.setdefault(name, {"aliases": {}})["aliases"][alias] = {}
        if not answer and parts[0] == "_alias":
            return json_reply({"error": f"alias [{pattern}] missing", "status": 404}, 404)
        return json_reply(answer)

    # --- the rig's own endpoints ----------------------------------------------------------------------

    def _rig(self, action: str, query: dict[str, str]) -> Reply:
        if action == "stats":
            fields = ("requests", "actions", "applied", "stale", "first_at", "last_at")
            with self._lock:
                return json_reply(
                    {
                        i.name: {f: getattr(i, f) for f in fields} | {"docs": len(i.docs)}
                        for i in self.indices.values()
                    }
                )
        if action == "state":
            with self._lock:
                index = self.index_of(query.get("index", ""))
                docs = {
                    doc_id: {"version": v, "at": at, "source": orjson.Fragment(source)}
                    for doc_id, (v, source, at) in index.docs.items()
                }
            return json_reply({"docs": docs, "tombstones": len(index.tombstones)})
        return json_reply({"error": f"unknown rig endpoint {action}"}, 404)


def filter_paths(value: Any, paths: list[str]) -> Any:
    """OpenSearch's ``filter_path``: keep what the dotted paths name (``*`` any key, ``**`` any depth)."""
    patterns = tuple(tuple(path.split(".")) for path in paths if path and not path.startswith("-"))
    kept = _keep(value, patterns)
    return {} if kept is _NOTHING else kept


_NOTHING = object()
Patterns = tuple[tuple[str, ...], ...]


@functools.lru_cache(maxsize=4096)
def _below(key: str, patterns: Patterns) -> Patterns:
    """What of ``patterns`` applies under ``key`` (cached: a _bulk answer repeats its keys 1000s of
    times, and matching them anew was most of the stand-in's time for clients sending filter_path)."""
    below: list[tuple[str, ...]] = []
    for pattern in patterns:
        head = pattern[0]
        if head == "**":  # one more level, or none (the next name matched here)
            below.append(pattern)
            if len(pattern) > 1 and fnmatch.fnmatchcase(key, pattern[1]):
                below.append(pattern[2:])
        elif fnmatch.fnmatchcase(key, head):
            below.append(pattern[1:])
    return tuple(below)


def _keep(value: Any, patterns: Patterns) -> Any:
    if any(not pattern for pattern in patterns):
        return value
    if isinstance(value, list):
        kept = [k for k in (_keep(v, patterns) for v in value) if k is not _NOTHING]
        return kept if kept else _NOTHING
    if not isinstance(value, dict):
        return _NOTHING
    result = {}
    for key, inner in value.items():
        below = _below(key, patterns)
        if below:
            kept = _keep(inner, below)
            if kept is not _NOTHING:
                result[key] = kept
    return result if result else _NOTHING


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=0.0, help="slept before each answer")
    args = parser.parse_args()
    serve(BulkSink(args.latency_ms))


if __name__ == "__main__":
    main()
