"""The target dialect: every difference between OpenSearch, Elasticsearch and OpenSearch Serverless.

``CDCSYNC_TARGET`` names it, or ``auto`` finds it: ``aoss`` when requests are signed for the
``aoss`` service (AOSS answers 404 to ``GET /``), otherwise from ``GET /``: OpenSearch names its
``version.distribution``; Elasticsearch has none and sends ``X-Elastic-Product: Elasticsearch``.
Nothing outside this module asks which target it talks to; it asks the ``Dialect`` what to do.

- point in time: OpenSearch and AOSS ``POST /{index}/_search/point_in_time`` answering ``pit_id``,
  closed by ``DELETE /_search/point_in_time``; Elasticsearch ``POST /{index}/_pit`` answering
  ``id``, closed by ``DELETE /_pit``. Both search with ``pit`` and no index in the path.
- sort tiebreaker of a walk: ``_shard_doc`` (OpenSearch, Elasticsearch), ``_id`` (AOSS).
- ``GET /``, ``_refresh``, scroll and ``index.gc_deletes``: everywhere but AOSS.

``check_versioning`` is the precondition every writer runs first (see its docstring).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from opensearchpy import OpenSearch
from opensearchpy.exceptions import OpenSearchException, TransportError

from cdcsync.errors import CdcsyncError, ConfigError
from cdcsync.mapping.compiled import CompiledMapping
from cdcsync.settings import Settings
from cdcsync.sink.client import opensearch_error
from cdcsync.values import load_json

log = logging.getLogger(__name__)

TargetName = Literal["opensearch", "elasticsearch", "aoss"]
_MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one kind of target offers and how it spells it."""

    name: TargetName
    label: str  # for messages: "OpenSearch", "Elasticsearch", "OpenSearch Serverless"
    elastic_pit: bool  # Elasticsearch's _pit API instead of OpenSearch's _search/point_in_time
    tiebreaker: str  # the sort that makes a point-in-time walk total
    has_root: bool  # GET / answers (readiness and detection use it)
    has_refresh: bool
    has_scroll: bool
    has_gc_deletes: bool  # index.gc_deletes can be set and read
    max_request_bytes: int  # the largest request body the target takes by default

    def open_pit(self, client: OpenSearch, index: str, keep_alive: str) -> str:
        """Open a point in time on ``index``; its id."""
        if self.elastic_pit:
            answer = client.transport.perform_request(
                "POST", f"/{quote(index, safe=',*')}/_pit", params={"keep_alive": keep_alive}
            )
            return str(answer["id"])
        return str(client.create_pit(index=index, params={"keep_alive": keep_alive})["pit_id"])

    def close_pit(self, client: OpenSearch, pit_id: str) -> None:
        if self.elastic_pit:
            client.transport.perform_request("DELETE", "/_pit", body={"id": pit_id})
        else:
            client.delete_pit(body={"pit_id": [pit_id]})

    def ping(self, client: OpenSearch, index: str) -> bool:
        """Whether the target answers; ``HEAD /`` where it exists, else ``HEAD /{index}`` (any answer)."""
        if self.has_root:
            return bool(client.ping())
        client.indices.exists(index=index)  # 200 or 404: it answered; 401/403/5xx raise
        return True

    def bulk_max_bytes(self, configured: int) -> int:
        """``CDCSYNC_BULK_MAX_BYTES``, never above what the target takes in one request."""
        return min(configured, self.max_request_bytes)


# http.max_content_length defaults to 100mb in both (OpenSearch: docs.opensearch.org "Network
# settings"; Elasticsearch: "HTTP settings"). AOSS: "Maximum request payload" 100 MiB (quotas);
# only read in the documentation, like everything in the aoss column.
_FULL = {"has_root": True, "has_refresh": True, "has_scroll": True, "has_gc_deletes": True}
_NONE = dict.fromkeys(_FULL, False)
OPENSEARCH = Dialect("opensearch", "OpenSearch", False, "_shard_doc", **_FULL, max_request_bytes=100 * _MiB)
ELASTICSEARCH = Dialect(
    "elasticsearch", "Elasticsearch", True, "_shard_doc", **_FULL, max_request_bytes=100 * _MiB
)
AOSS = Dialect("aoss", "OpenSearch Serverless", False, "_id", **_NONE, max_request_bytes=100 * _MiB)
DIALECTS: dict[TargetName, Dialect] = {d.name: d for d in (OPENSEARCH, ELASTICSEARCH, AOSS)}


def resolve_dialect(settings: Settings, client: OpenSearch) -> Dialect:
    """The dialect ``CDCSYNC_TARGET`` names, or for ``auto`` the one the target shows.

    A failed ``GET /`` raises opensearch-py's error: the caller says what it was doing.
    """
    if settings.target != "auto":
        return DIALECTS[settings.target]
    if settings.opensearch_auth == "sigv4" and settings.opensearch_sigv4_service == "aoss":
        return AOSS
    # The connection, not the transport: only it returns the answer's headers.
    _, headers, raw = client.transport.get_connection().perform_request("GET", "/")
    try:
        info = load_json(raw)
    except ValueError:
        info = {}
    product = next((str(v) for k, v in headers.items() if k.lower() == "x-elastic-product"), None)
    return detect_dialect(info if isinstance(info, dict) else {}, product)


def detect_dialect(info: dict[str, Any], product: str | None) -> Dialect:
    """OpenSearch names ``version.distribution: opensearch`` (and may send the Elastic header too);
    Elasticsearch has no distribution and, from 7.14 on, sends ``X-Elastic-Product: Elasticsearch``
    (older ones say "You Know, for Search")."""
    found = info.get("version")
    version: dict[str, Any] = found if isinstance(found, dict) else {}
    if version.get("distribution") == "opensearch":
        return OPENSEARCH
    if product == "Elasticsearch" or info.get("tagline") == "You Know, for Search":
        return ELASTICSEARCH
    raise ConfigError(
        f"CDCSYNC_TARGET=auto: GET / names neither OpenSearch (version.distribution) nor Elasticsearch "
        f"(X-Elastic-Product), got version {version.get('number', 'unknown')!r}; set CDCSYNC_TARGET to "
        "opensearch, elasticsearch or aoss"
    )


class Target:
    """The target as the entry points use it: the client, the dialect (found on first use, so
    building a command contacts nothing) and the external-version check, run once."""

    def __init__(self, settings: Settings, client: OpenSearch) -> None:
        self.settings = settings
        self.client = client
        self._dialect: Dialect | None = None
        self._checked = False

    @property
    def dialect(self) -> Dialect:
        """Raises opensearch-py's error when ``GET /`` (``auto``) fails: callers translate it."""
        if self._dialect is None:
            self._dialect = resolve_dialect(self.settings, self.client)
        return self._dialect

    def check_reachable(self, mappings: Iterable[CompiledMapping], doing: str) -> None:
        """Before a long run: the target answers now, or ``opensearch_error`` stops the command."""
        try:
            if self.dialect.has_root:
                self.client.info()
            else:
                self.client.indices.exists(index=_probe_pattern(mappings))
        except OpenSearchException as exc:
            raise opensearch_error(exc, doing) from exc

    def ready(self, mappings: Iterable[CompiledMapping]) -> bool:
        """Whether the target answers (``/readyz``); never raises."""
        try:
            return self.dialect.ping(self.client, _probe_pattern(mappings))
        except (OpenSearchException, CdcsyncError):
            return False

    def check_writes(self, mappings: Iterable[CompiledMapping], doing: str) -> None:
        """``check_versioning`` on the mappings' existing indices, once per process."""
        if self._checked:
            return
        mappings = list(mappings)
        try:
            dialect = self.dialect
        except OpenSearchException as exc:
            raise opensearch_error(exc, doing) from exc
        if self.settings.bulk_max_bytes > dialect.max_request_bytes:
            log.warning(
                "CDCSYNC_BULK_MAX_BYTES=%d is more than %s takes in one request (%d bytes): larger "
                "requests are refused (413) and split; lower it",
                self.settings.bulk_max_bytes,
                dialect.label,
                dialect.max_request_bytes,
            )
        check_versioning(self.client, dialect, _existing_indices(self.client, mappings, doing), doing)
        self._checked = True


def _probe_pattern(mappings: Iterable[CompiledMapping]) -> str:
    """One index name or pattern the mappings write (``HEAD`` on it proves the target answers)."""
    for mapping in mappings:
        return re.sub(r"\*+", "*", "*".join(mapping.index.literals)) or "*"
    return "*"


def _existing_indices(client: OpenSearch, mappings: list[CompiledMapping], doing: str) -> list[str]:
    """Each literal index (or alias) the mappings write, and for a templated one its first existing
    concrete index, if any."""
    names: list[str] = []
    for mapping in mappings:
        if mapping.index.is_literal:
            names.append(mapping.index.source)
            continue
        pattern = re.sub(r"\*+", "*", "*".join(mapping.index.literals))
        if pattern == "*":
            continue
        try:
            found = client.indices.get(
                index=pattern, params={"allow_no_indices": "true", "expand_wildcards": "open"}
            )
        except OpenSearchException as exc:
            raise opensearch_error(exc, f'{doing}: listing the indices of "{mapping.index.source}"') from exc
        names.extend(sorted(found)[:1])
    return names


# --- the external-version precondition -------------------------------------------------------------

_PROBE_VERSIONS = (2, 1, 3, 2)  # index, older index (409), delete, index older than the delete (409)
_PROBE_STEPS = (
    "versioned write",
    "versioned write older than the document",
    "versioned delete",
    "versioned write older than the delete",
)
_CLEAN_UP_VERSION = 4  # above every version of the probe: deletes whatever it left, and outranks it
_BAD_REQUEST, _UNAUTHORIZED, _FORBIDDEN, _NOT_FOUND, _CONFLICT = 400, 401, 403, 404, 409
_TOO_MANY_REQUESTS, _SERVER_ERROR = 429, 500
_SUCCESS, _MULTIPLE_CHOICES, _HOPED = 200, 300, (200, 409, 200, 409)  # 200: any 2xx


def check_versioning(client: OpenSearch, dialect: Dialect, indices: Iterable[str], doing: str) -> None:
    """Prove that each existing index honours ``version_type=external_gte`` before anything is written.

    A probe document of a random id (and the same routing, so an index with ``_routing: {required:
    true}`` takes it) is written at version 2, then at 1 (must be 409: stale), deleted at 3 (must
    succeed), and written at 2 again (must be 409: the delete's tombstone is kept). The document API is
    used, not ``_bulk``, so the probe is four small requests no bulk fault or bulk limit touches.

    A target that refuses the id (an AOSS TIMESERIES or VECTORSEARCH collection), ignores the versions
    or forgets the delete at once stops the command with a ``ConfigError`` naming the collection type
    or setting to change. A step answered 429 or 5xx, or not answered, is a ``TransientError`` (run
    again), 401/403 a ``ConfigError`` naming the credentials, whichever step it is; the probe stops
    there. Unless its answers prove nothing is stored, the probe is then deleted at a version above
    its own (a failure of that is logged, never raised). Missing indices are left alone
    (``indices apply`` or the first write creates them).
    """
    for index in dict.fromkeys(indices):
        try:
            if not client.indices.exists(index=index):
                continue
        except OpenSearchException as exc:
            raise opensearch_error(exc, f'{doing}: checking external versions on "{index}"') from exc
        where = f'{doing}: {dialect.label} index "{index}"'
        _judge_probe(dialect, index, _run_probe(client, index, where), doing)


ProbeAnswer = tuple[int, Any]  # status (200 for any 2xx), error (a dict, a text or None)


def _run_probe(client: OpenSearch, index: str, where: str) -> list[ProbeAnswer]:
    """The probe's answers, up to the first one not hoped for; a step not answered raises."""
    doc_id = f"cdcsync-version-check-{secrets.token_hex(4)}"
    answers: list[ProbeAnswer] = []
    try:
        for step, version in enumerate(_PROBE_VERSIONS):
            try:
                answers.append(_probe_step(client, index, doc_id, version, delete=step == 2))  # noqa: PLR2004
            except OpenSearchException as exc:  # not answered: refused, reset, timed out
                raise opensearch_error(exc, f"{where}: {_PROBE_STEPS[step]}") from exc
            if answers[-1][0] != _HOPED[step]:
                break
    finally:
        if not _stores_nothing(answers):
            _delete_probe(client, index, doc_id, where)
    return answers


def _probe_step(client: OpenSearch, index: str, doc_id: str, version: int, *, delete: bool) -> ProbeAnswer:
    # A 409 is the answer hoped for: returned, not raised (and not logged by opensearch-py).
    params = {"version": str(version), "version_type": "external_gte", "routing": doc_id, "ignore": _CONFLICT}
    try:
        if delete:
            answer = client.delete(index=index, id=doc_id, params=params)
        else:
            answer = client.index(index=index, id=doc_id, body={"cdcsync_version_check": True}, params=params)
    except TransportError as exc:
        if not isinstance(exc.status_code, int):  # a connection error: no answer
            raise
        return exc.status_code, exc.info.get("error") if isinstance(exc.info, dict) else exc.error
    conflict = isinstance(answer, dict) and answer.get("status") == _CONFLICT
    return (_CONFLICT, None) if conflict else (_SUCCESS, None)


def _stores_nothing(answers: list[ProbeAnswer]) -> bool:
    """Whether the answers prove no probe document is left: the first write refused (4xx), or every
    step as hoped (the last write stale after the delete)."""
    statuses = tuple(status for status, _ in answers)
    refused = bool(statuses) and _BAD_REQUEST <= statuses[0] < _SERVER_ERROR
    return refused or statuses == _HOPED


def _delete_probe(client: OpenSearch, index: str, doc_id: str, where: str) -> None:
    params = {"version": str(_CLEAN_UP_VERSION), "version_type": "external_gte", "routing": doc_id}
    try:
        client.delete(index=index, id=doc_id, params={**params, "ignore": _NOT_FOUND})
    except OpenSearchException as exc:  # best effort: the check's own outcome is what the caller needs
        path = f"/{quote(index, safe='')}/_doc/{doc_id}?routing={doc_id}"
        log.warning(
            '%s; the probe document "%s" may be left in the index: delete it with DELETE %s',
            opensearch_error(exc, f"{where}: deleting the probe document"),
            doc_id,
            path,
        )


def _judge_probe(dialect: Dialect, index: str, answers: list[ProbeAnswer], doing: str) -> None:
    """Raise for the first answer not hoped for; return when all four are."""
    where = f'{doing}: {dialect.label} index "{index}"'
    for step, (status, error) in enumerate(answers):
        got = _SUCCESS if _SUCCESS <= status < _MULTIPLE_CHOICES else status
        if got == _HOPED[step]:
            continue
        if status in (_TOO_MANY_REQUESTS, _UNAUTHORIZED, _FORBIDDEN) or status >= _SERVER_ERROR:
            raise opensearch_error(
                TransportError(status, str(error), {"error": error}), f"{where}: {_PROBE_STEPS[step]}"
            )
        if step == 0 and status >= _BAD_REQUEST:
            raise _refused_id(dialect, where, error)
        if step == 1 and got == _SUCCESS:
            raise ConfigError(
                f"{where} applied a write older than the document (version 1 after 2, status {status}): "
                f"{_UNVERSIONED}"
            )
        if step == 2 and status == _CONFLICT:  # noqa: PLR2004
            raise ConfigError(
                f"{where} refused a delete newer than the document (version 3 after 2, status {status}): "
                f"{_UNVERSIONED}"
            )
        if step == 3 and got == _SUCCESS:  # noqa: PLR2004
            setting = "raise index.gc_deletes to 24h" if dialect.has_gc_deletes else "use another target"
            raise ConfigError(
                f"{where} forgot a delete at once (an older write was applied after it, status {status}): "
                f"a replayed write would bring deleted documents back; {setting}"
            )
        # anything else (404, another 4xx) is no answer about versions: say what came back
        raise opensearch_error(
            TransportError(status, str(error), {"error": error}), f"{where}: {_PROBE_STEPS[step]}"
        )


_UNVERSIONED = (
    "it does not honour version_type=external_gte, so replays would put old states back; use a target "
    "with external versions (OpenSearch, Elasticsearch, an AOSS SEARCH collection)"
)


def _refused_id(dialect: Dialect, where: str, error: Any) -> ConfigError:
    reason = f"{error.get('type', '')}: {error.get('reason', '')}" if isinstance(error, dict) else error
    fix = (
        "cdcsync needs a SEARCH collection: TIMESERIES and VECTORSEARCH collections take no document "
        "ids, so no versioned writes; move the indices to a SEARCH collection"
        if dialect.name == "aoss"
        else "cdcsync writes every document with its own id and version_type=external_gte"
    )
    return ConfigError(f"{where} refused a versioned write with a document id ({reason}); {fix}")
