"""``cdcsync verify``: compare a table with its index, report drift, optionally repair it.

1. Read the table: a parallel scan of every item, or a random sample of N (random segments of a
   finely split parallel scan; see ``_sample_segments``). Pages are handled one at a time, so
   memory does not grow with the table.
2. Plan each item as a stream INSERT (``compare.expected_documents``), ``mget`` the expected
   documents (500 per request, with routing) and classify: missing, stale (different ``_source``,
   or, for a mapping with ``routing``, written at another routing).
3. Full runs only: walk the indices the table's mappings write (``scope.plan_walks``: a literal
   index or alias resolved to the indices behind it; a template's indices that it renders in full
   and where the scan expected a document; never an index a mapping of another table names or
   renders, directly or through an alias; a template that starts with a placeholder not at all;
   what is not walked is a ``note:`` line), with point-in-time + ``search_after`` (a scroll where
   PIT is not supported), and look up every document (and its routing, for a mapping with
   ``routing``) in the hashes of the expected ones.
   A document the scan did not expect is an extra only if it still exists (realtime ``mget``:
   search lags deletes until a refresh) and a consistent read of *every* key its id can be read as
   (``compare.candidate_keys``), by every mapping of the table that may write the index, finds no
   item that puts it there now. It is deletable only with proof: exactly one key, whose item the
   mapping now excludes (``where``), places in another index, at another routing (then only when
   the mget at that routing shows another copy: in a one-shard index both name one document), or
   places nowhere (a template attribute removed: the stream deletes it too); or whose item is gone
   and deleted by the mapping's REMOVE rules (``reread.judge_gone``). A gone item's document that
   ``deletes: ignore``, the filter or a keys-only ``where`` keeps is ``kept`` (counted, not drift,
   never deleted); one whose fate cannot be proved (several keys, no key, a filter on the old
   image, an item the mapping cannot plan now: a computed field failing on it, an ``attribute:``
   version it lacks, which the stream dead-letters and keeps the document for) is an extra that
   is "not deletable".
4. ``--repair``: re-read the drifted items with a consistent read and write what the table holds,
   versioned ``read_version(time just before the read)``; delete deletable extras after that same
   read confirms them. A write that answers 409 lost to a newer change: that is the point, not a
   failure.

Exit codes (``VerifyReport.exit_code``): without ``--repair`` 0 when clean (kept documents are not
drift) and 1 on any drift or problem. With ``--repair`` 0 when every drift was repaired (written,
deleted, already gone, or superseded by a newer change) and 1 when something is left: a failed or
rejected write, an extra that is not deletable, an item the planner rejects.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import boto3
from opensearchpy import OpenSearch
from opensearchpy.exceptions import OpenSearchException

from cdcsync.aws import session_region
from cdcsync.errors import ConfigError, RecordError
from cdcsync.mapping.compiled import CompiledMapping, MappingSet
from cdcsync.plan import Action, DeleteAction, FetchItem, IndexAction, Rejected, plan_fetched
from cdcsync.reread import Gone, judge_gone, reread_record
from cdcsync.services import Services
from cdcsync.settings import Settings
from cdcsync.sink.bulk import BulkWriter
from cdcsync.sink.client import opensearch_error
from cdcsync.sink.target import OPENSEARCH, Dialect
from cdcsync.source.items import key_id
from cdcsync.source.synthetic import filter_warnings, table_stream
from cdcsync.values import image_to_plain
from cdcsync.verify.compare import (
    DocumentHashes,
    Drift,
    DriftKind,
    TableShape,
    candidate_keys,
    compare_document,
    document_hash,
    expected_documents,
)
from cdcsync.verify.place import place_now
from cdcsync.verify.reads import (
    MGET_BATCH,
    default_segments,
    describe_table,
    mget_documents,
    sample_segments,
    scan_segment,
    walk_documents,
)
from cdcsync.verify.report import VerifyReport
from cdcsync.verify.scope import Claim, Walk, hash_scope, plan_walks, walk_pattern
from cdcsync.versions import read_version

log = logging.getLogger(__name__)


class ReadsItems(Protocol):
    def read(self, table: str, keys: Sequence[Mapping[str, Any]]) -> dict[bytes, dict[str, Any] | None]: ...


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _keys_text(keys: Mapping[str, Any]) -> str:
    try:
        plain = image_to_plain(keys)
    except RecordError:
        plain = dict(keys)
    return ", ".join(f"{name}={value!r}" for name, value in sorted(plain.items()))


@dataclass
class Verifier:
    """Everything one verify run needs; ``run_verify`` builds it from settings."""

    shape: TableShape
    mappings: MappingSet
    dynamodb: Any
    client: OpenSearch
    items: ReadsItems
    report: VerifyReport
    writer: BulkWriter | None = None  # set: repair
    dialect: Dialect = OPENSEARCH  # how the target spells a point in time
    clock_ms: Callable[[], int] = _now_ms
    rng: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _hashes: dict[str, DocumentHashes] = field(default_factory=dict)
    _live: dict[str, set[str]] = field(
        default_factory=dict
    )  # walk pattern -> indices documents are expected in

    @property
    def table(self) -> str:
        return self.shape.table

    @property
    def table_mappings(self) -> tuple[CompiledMapping, ...]:
        return self.mappings.for_table(self.table)

    # --- table side ------------------------------------------------------------------------------

    def verify_all(self, segments: int) -> None:
        for mapping in self.table_mappings:
            self._hashes.setdefault(walk_pattern(mapping), DocumentHashes())

        def run(segment: int) -> None:
            for number, page in enumerate(scan_segment(self.dynamodb, self.table, segment, segments)):
                self.check_items(page, f"{segment}-{number}")

        with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="verify") as pool:
            for future in [pool.submit(run, segment) for segment in range(segments)]:
                future.result()
        self.find_extras()

    def verify_sample(self, size: int, item_count: int) -> None:
        left = size
        for segment, total in sample_segments(size, item_count, self.rng):
            for number, page in enumerate(scan_segment(self.dynamodb, self.table, segment, total)):
                self.check_items(page[:left], f"{segment}-{number}")
                left -= min(left, len(page))
                if not left:
                    return

    def check_items(self, items: Sequence[Mapping[str, Any]], page: str) -> None:
        """Compare one page of scanned items with the index (and repair what differs)."""
        documents: list[IndexAction] = []
        for position, item in enumerate(items):
            try:
                expected = expected_documents(
                    self.shape,
                    item,
                    f"verify-{page}-{position}",
                    self.mappings,
                    seconds=self.clock_ms() // 1000,
                )
            except RecordError as exc:
                self.report.problem(
                    f"item {_key_text(self.shape, item)} of {self.table} cannot be read: {exc}"
                )
                continue
            for rejected in expected.rejected:
                name = rejected.mapping.name if rejected.mapping else "?"
                self.report.problem(f"{rejected.record.describe()}: {name}: {rejected.error}")
            documents += expected.documents
        with self._lock:
            self.report.checked += len(items)
            for document in documents:
                pattern = walk_pattern(document.mapping)
                hashes = self._hashes.get(pattern)
                if hashes is not None:
                    routing = document.routing if document.mapping.routing is not None else None
                    scope = hash_scope(document.mapping, document.index)
                    hashes.add(document_hash(scope, document.id, routing))
                    self._live.setdefault(pattern, set()).add(scope)
        drifts: list[Drift] = []
        for start in range(0, len(documents), MGET_BATCH):
            batch = documents[start : start + MGET_BATCH]
            answers = mget_documents(self.client, [(d.index, d.id, d.routing) for d in batch], self.table)
            for document, answer in zip(batch, answers, strict=True):
                if isinstance(answer, str):
                    self.report.problem(f"{document.index}/{document.id}: {answer}")
                    continue
                drift = compare_document(document, answer)
                if drift is not None:
                    drifts.append(drift)
        self.report.record(drifts)
        if self.writer is not None and drifts:
            self._repair(drifts)

    # --- index side ------------------------------------------------------------------------------

    def find_extras(self) -> None:
        """Walk each index; confirm the documents the scan did not expect; report (and delete) them."""
        for hashes in self._hashes.values():
            hashes.freeze()
        walks, notes = plan_walks(self.client, self.mappings, self.table, self._live)
        for note in notes:
            self.report.note(note)
        for walk in walks:
            for hits in walk_documents(self.client, walk.index, self.dialect):
                unexpected = [
                    hit for hit in hits if not any(self._expects(claim, hit) for claim in walk.claims)
                ]
                if unexpected:
                    self._confirm_extras(walk, unexpected)

    def _expects(self, claim: Claim, hit: Mapping[str, Any]) -> bool:
        routing = hit.get("_routing") if claim.mapping.routing is not None else None
        return document_hash(claim.scope, hit["_id"], routing) in self._hashes[walk_pattern(claim.mapping)]

    def _confirm_extras(self, walk: Walk, hits: Sequence[Mapping[str, Any]]) -> None:
        """Judge documents the scan did not expect by what a consistent read of their items says.

        Every reading of a document's id, by every mapping of the table that may write the index,
        is read. A document is an extra when no reading's item puts it where it is (index, id and,
        for a mapping with ``routing``, routing), and it is deletable only with proof the stream
        would not keep it there: one key, whose item the mapping now excludes (``where``), places
        elsewhere (another index or routing: a copy on another shard), or places nowhere; or that
        is gone and deleted by the mapping's REMOVE rules (``reread.judge_gone``). An item the
        mapping cannot plan (a computed field fails on it, an ``attribute:`` version it lacks)
        keeps its document, as the stream does. Otherwise it is reported and left alone.
        """
        refs = [(hit["_index"], hit["_id"], hit.get("_routing")) for hit in hits]
        present = [
            (ref, answer)
            for ref, answer in zip(refs, mget_documents(self.client, refs, self.table), strict=True)
            if isinstance(answer, dict)
        ]
        judged: list[tuple[Drift, list[tuple[Claim, dict[str, Any]]]]] = []
        for (index, doc_id, routing), answer in present:
            version = answer.get("_version") if isinstance(answer.get("_version"), int) else None
            readings = [
                (claim, keys)
                for claim in walk.claims
                for keys in candidate_keys(claim.mapping, self.shape.key_types, doc_id, answer.get("_source"))
            ]
            drift = Drift("extra", index, doc_id, routing, walk.claims[0].mapping, version=version)
            if not readings:
                self._not_deletable(drift, "the item key cannot be told from the id or the document")
                continue
            judged.append((drift, readings))
        if not judged:
            return
        read_ms = self.clock_ms()  # before the read: a change after it carries a later time
        found = self.items.read(self.table, [keys for _, readings in judged for _, keys in readings])
        deletable: list[Drift] = []
        moved: list[tuple[Drift, str | None]] = []  # at a routing the item left, and the item's routing
        for extra, readings in judged:
            verdict = self._judge_extra(extra, readings, found, read_ms)
            if isinstance(verdict, tuple):
                moved.append(verdict)
            elif verdict is not None:
                deletable.append(verdict)
        deletable += self._other_copies(moved)
        self.report.record(deletable)
        if self.writer is not None and deletable:
            self._write([self._delete(d, read_ms) for d in deletable])

    def _judge_extra(
        self,
        extra: Drift,
        readings: Sequence[tuple[Claim, dict[str, Any]]],
        found: Mapping[bytes, dict[str, Any] | None],
        read_ms: int,
    ) -> Drift | tuple[Drift, str | None] | None:
        """A deletable extra; or (extra, the item's routing) for a document at a routing its item
        left; or None: not an extra, or reported here as kept or not deletable."""
        items = [(claim, keys, found.get(key_id(self.table, keys))) for claim, keys in readings]
        places = [
            place_now(self.table, claim, extra, keys=keys, item=item, read_ms=read_ms)
            for claim, keys, item in items
            if item is not None
        ]
        if any(place.verdict == "here" for place in places):
            return None  # created (or changed) since the scan: not an extra
        distinct = {key_id(self.table, keys): keys for _, keys in readings}
        if len(distinct) > 1:
            texts = " or ".join(_keys_text(keys) for keys in distinct.values())
            self._not_deletable(extra, f"the id reads as {len(distinct)} different keys: {texts}")
            return None
        claim, keys, item = items[0]
        drift = _with_keys(extra, claim.mapping, keys)
        if item is not None:
            rejected = next((place for place in places if place.verdict == "rejected"), None)
            routed = next((place for place in places if place.verdict == "routing"), None)
            if rejected is not None:
                self._not_deletable(drift, f"the mapping cannot plan the item now: {rejected.detail}")
                return None
            if routed is not None:
                return drift, routed.routing
            return _with_detail(drift, places[0].detail)
        return self._gone_extra(drift, [claim.mapping for claim, _, _ in items], keys, read_ms)

    def _gone_extra(
        self, drift: Drift, mappings: Sequence[CompiledMapping], keys: Mapping[str, Any], read_ms: int
    ) -> Drift | None:
        """The extra of a gone item, deletable when its mappings' REMOVE rules delete it."""
        gone = self._judge_gone(mappings, keys, read_ms)
        if gone.verdict == "delete":
            return _with_detail(drift, "item not in the table")
        if gone.verdict == "kept":
            self.report.record([_with_detail(drift, f"item not in the table; {gone.reason}", "kept")])
        else:
            self._not_deletable(drift, f"item not in the table, but {gone.reason}")
        return None

    def _other_copies(self, moved: Sequence[tuple[Drift, str | None]]) -> list[Drift]:
        """Of documents at a routing their item left, those that are a copy beside the item's own.

        In an index where both routings land on one shard (always in a one-shard index) the two
        name one document: the mget at the item's routing finds it, written at the other, and the
        scan reported it as stale; deleting it there would delete the item's document.
        """
        if not moved:
            return []
        answers = mget_documents(self.client, [(d.index, d.id, routing) for d, routing in moved], self.table)
        copies: list[Drift] = []
        for (drift, routing), answer in zip(moved, answers, strict=True):
            if isinstance(answer, dict) and answer.get("_routing") == drift.routing:
                continue  # the item's own document, at the wrong routing: stale, not a copy
            copies.append(
                _with_detail(
                    drift, f"at routing {drift.routing!r}; the item's document belongs at routing {routing!r}"
                )
            )
        return copies

    def _not_deletable(self, drift: Drift, why: str) -> None:
        self.report.record([_with_detail(drift, f"{why}; not deleted")])
        self.report.unrepairable += 1

    def _judge_gone(self, mappings: Sequence[CompiledMapping], keys: Mapping[str, Any], read_ms: int) -> Gone:
        """One verdict for the mappings that could have written the document: any doubt keeps it."""
        unique = list({id(m): m for m in mappings}.values())
        verdicts = [judge_gone(self.shape.stream, m, keys, seconds=read_ms // 1000) for m in unique]
        for kind in ("unknown", "kept"):
            reasons = [v.reason for v in verdicts if v.verdict == kind]
            if reasons:
                return Gone(kind, "; ".join(dict.fromkeys(reasons)))
        return Gone("delete")

    # --- repair ----------------------------------------------------------------------------------

    def _delete(self, drift: Drift, read_ms: int) -> DeleteAction:
        record = reread_record(self.table, drift.keys or {}, read_ms, sequence=f"verify:{read_ms}")
        # Attribute versions are the item's own counter, not times: delete at the document's own
        # version, which external_gte applies unless a newer write has landed meanwhile.
        version = read_version(read_ms) if drift.mapping.version_attribute is None else (drift.version or 0)
        return DeleteAction(drift.index, drift.id, drift.routing, version, drift.mapping, record)

    def _repair(self, drifts: Sequence[Drift]) -> None:
        """Write missing and stale documents from the item as a consistent read returns it now."""
        read_ms = self.clock_ms()
        found = self.items.read(self.table, [d.keys or {} for d in drifts])
        actions: list[Action] = []
        for drift in drifts:
            keys = drift.keys or {}
            item = found.get(key_id(self.table, keys))
            if item is None:
                # Deleted since the scan: its REMOVE is on its way through the stream. A stale
                # document goes only if the mapping's rules delete it.
                gone = self._judge_gone([drift.mapping], keys, read_ms)
                if drift.kind == "stale" and gone.verdict == "delete":
                    actions.append(self._delete(drift, read_ms))
                else:
                    self.report.repair["gone"] += 1
                continue
            record = reread_record(self.table, keys, read_ms, sequence=f"verify:{read_ms}")
            for step in plan_fetched(FetchItem(drift.mapping, record), item):
                if isinstance(step, IndexAction | DeleteAction):
                    actions.append(step)
                elif isinstance(step, Rejected):
                    self.report.failed(f"repair of {drift.describe()}: {step.error}")
        self._write(actions)

    def _write(self, actions: Sequence[Action]) -> None:
        if self.writer is None or not actions:
            return
        for result in self.writer.write(actions):
            action = result.entry.action
            if result.outcome == "written":
                self.report.repair["written" if action.op == "index" else "deleted"] += 1
            elif result.outcome == "stale":
                self.report.repair["superseded"] += 1
            else:
                self.report.failed(f"repair of {action.index}/{action.id}: {result.outcome}: {result.error}")


def _with_keys(drift: Drift, mapping: CompiledMapping, keys: Mapping[str, Any]) -> Drift:
    return Drift(drift.kind, drift.index, drift.id, drift.routing, mapping, drift.detail, keys, drift.version)


def _with_detail(drift: Drift, detail: str, kind: DriftKind | None = None) -> Drift:
    return Drift(
        kind or drift.kind,
        drift.index,
        drift.id,
        drift.routing,
        drift.mapping,
        detail,
        drift.keys,
        drift.version,
    )


def _key_text(shape: TableShape, item: Mapping[str, Any]) -> str:
    return str({name: item.get(name) for name in shape.key_types})


def build_verifier(
    settings: Settings,
    table: str,
    *,
    sample: int | None = None,
    repair: bool = False,
    session: boto3.Session | None = None,
    services: Services | None = None,
) -> tuple[Verifier, int]:
    """The verifier for ``table`` and the table's item count. Raises ``ConfigError`` on bad input.

    ``services`` is what the entry point built (``cdcsync/services.py``); without it, one is built
    from ``settings`` and ``session``.
    """
    if sample is not None and sample < 1:
        raise ConfigError(f"verify --sample: expected a positive number of items, got {sample}")
    services = services or Services(settings, session=session)
    mappings = services.mappings
    if not mappings.for_table(table):
        known = ", ".join(mappings.tables) or "none"
        raise ConfigError(f"no mapping for table {table} (tables with mappings: {known})")
    dynamodb = services.dynamodb
    key_types, item_count, description = describe_table(dynamodb, table)
    stream = table_stream(description, session_region(services.session))
    client = services.client
    try:
        dialect = services.target.dialect
    except OpenSearchException as exc:
        raise opensearch_error(exc, f"verify of {table}") from exc
    writer = services.writer if repair else None
    verifier = Verifier(
        shape=TableShape(table, key_types, stream.region, view=stream.view, stream_arn=stream.stream_arn),
        mappings=mappings,
        dynamodb=dynamodb,
        client=client,
        items=services.items,
        report=VerifyReport(table=table, sample=sample, repairing=repair),
        writer=writer,
        dialect=dialect,
    )
    return verifier, item_count


def verify(verifier: Verifier, item_count: int, out: TextIO = sys.stdout) -> VerifyReport:
    """Run a built verifier (full or sample, as its report says) and print the report."""
    report = verifier.report
    for mapping in verifier.table_mappings:
        for warning in filter_warnings(mapping):
            report.note(warning)
    if report.sample is None:
        verifier.verify_all(default_segments(item_count))
    else:
        verifier.verify_sample(report.sample, item_count)
    for line in report.lines():
        print(line, file=out)
    return report


def run_verify(
    settings: Settings,
    table: str,
    *,
    sample: int | None = None,
    repair: bool = False,
    session: boto3.Session | None = None,
    out: TextIO = sys.stdout,
    services: Services | None = None,
) -> VerifyReport:
    """Verify (and with ``repair`` fix) one table's index; print the report to ``out``.

    The CLI exits with ``report.exit_code``. Raises ``ConfigError`` (exit 2) for an unknown table
    or mapping, ``TransientError`` when DynamoDB or OpenSearch keeps failing.
    """
    verifier, item_count = build_verifier(
        settings, table, sample=sample, repair=repair, session=session, services=services
    )
    return verify(verifier, item_count, out)


__all__ = ["DriftKind", "Verifier", "VerifyReport", "build_verifier", "run_verify", "verify"]
