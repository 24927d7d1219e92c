"""Pure parts of ``cdcsync verify``: what the index should hold for an item, and how it differs.

No I/O here. ``run.py`` reads the table and the index and feeds these functions.

- Expected documents come from the planner, for a synthetic stream INSERT of the item exactly as
  backfill builds it, so ``where``, ``filter``, ``fields``, ``id``, index and routing templates are
  the stream path's. An item ``where`` excludes expects no document. An item whose synthetic
  INSERT the ``filter`` skips expects nothing either, and is not an extra when it has one: the
  contract makes ``where`` the membership rule and ``filter`` only a choice of which changes sync.
- Documents are compared as JSON values: key order is irrelevant, numbers compare by exact
  decimal value (``1 == 1.0``, ``1 != 1.5``, ``12345678901234567.89`` is not the float
  ``1.2345678901234568e16``; a float stands for the number its shortest text shows), ``true`` is
  not ``1``. The ``_source`` must be read with exact numbers (``values.load_json``, which the
  OpenSearch client uses) for this to hold.
- A document of a mapping with ``routing`` is expected at its routing: one found (by the expected
  routing) with another ``_routing`` is stale, and the walk's hashes include the routing, so a
  copy at a routing the item left (another shard) is an extra.
- ``DocumentHashes`` remembers which documents the table expects in 8 bytes each (sorted runs of
  64-bit BLAKE2b hashes), so the index walk can find extras without holding ids in memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from cdcsync.change import ChangeRecord, parse_record
from cdcsync.errors import CdcsyncError
from cdcsync.mapping.compiled import CompiledMapping, MappingSet
from cdcsync.mapping.templates import Template, parse_template
from cdcsync.plan import IndexAction, Rejected, plan_record
from cdcsync.plan.planner import document_id  # one definition of the id for every path
from cdcsync.source.synthetic import DEFAULT_VIEW, TableStream, insert_record
from cdcsync.values import number_text

DriftKind = Literal["missing", "stale", "extra", "kept"]  # kept: item gone, the mapping keeps it
_RUN = 1 << 18  # hashes sorted per run: ~12 MB of transient Python ints while sorting one run


# --- JSON comparison -----------------------------------------------------------------------------


_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "boolean"),  # before numbers: bool is an int subclass, and true is not 1
    ((int, float, Decimal), "number"),
    (str, "string"),
    (Mapping, "object"),
    ((list, tuple), "array"),
)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    for types, name in _KINDS:
        if isinstance(value, types):
            return name
    return type(value).__name__


def _show(value: Any) -> str:
    text = number_text(value) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."  # noqa: PLR2004 - a short excerpt


def _exact(number: int | float | Decimal) -> int | Decimal:
    """A JSON number's exact value; a float is the number its shortest text shows."""
    return Decimal(repr(number)) if isinstance(number, float) else number


def first_difference(expected: Any, actual: Any, path: str = "") -> str | None:
    """Where two JSON values first differ (``Profile.Age: expected 30, found 31``), or None if equal."""
    kind = _kind(expected)
    if kind == _kind(actual):
        if kind == "object":
            return _object_difference(expected, actual, path)
        if kind == "array":
            return _array_difference(expected, actual, path)
        if kind == "number":
            # By exact decimal value, as JSON numbers mean: 0.1 == Decimal("0.1") (one text, two
            # readings), 12345678901234567.89 != 1.2345678901234568e16 (Python's float-vs-Decimal
            # comparison uses the float's binary value, which no JSON text meant).
            if type(expected) is type(actual) and not isinstance(expected, Decimal):
                if expected == actual:
                    return None
            elif _exact(expected) == _exact(actual):
                return None
        elif expected == actual:
            return None
    return f"{path or 'document'}: expected {_show(expected)}, found {_show(actual)}"


def _object_difference(expected: Mapping[str, Any], actual: Mapping[str, Any], path: str) -> str | None:
    for name in sorted(set(expected) | set(actual), key=str):
        child = f"{path}.{name}" if path else str(name)
        if name not in actual:
            return f"{child}: expected {_show(expected[name])}, found nothing"
        if name not in expected:
            return f"{child}: expected nothing, found {_show(actual[name])}"
        found = first_difference(expected[name], actual[name], child)
        if found is not None:
            return found
    return None


def _array_difference(expected: Sequence[Any], actual: Sequence[Any], path: str) -> str | None:
    if len(expected) != len(actual):
        return f"{path or 'document'}: expected {len(expected)} elements, found {len(actual)}"
    for position, (left, right) in enumerate(zip(expected, actual, strict=True)):
        found = first_difference(left, right, f"{path}[{position}]")
        if found is not None:
            return found
    return None


# --- expected documents --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TableShape:
    """What the synthetic records need to know about the table."""

    table: str
    key_types: dict[str, str]  # key attribute name -> S, N or B (from KeySchema/AttributeDefinitions)
    region: str
    account: str = "000000000000"
    view: str = DEFAULT_VIEW  # the table's StreamViewType (NEW_AND_OLD_IMAGES without a stream)
    stream_arn: str | None = None  # the table's LatestStreamArn, when it has one

    @property
    def arn(self) -> str:
        return f"arn:aws:dynamodb:{self.region}:{self.account}:table/{self.table}/stream/verify"

    @property
    def stream(self) -> TableStream:
        return TableStream(
            self.table, tuple(self.key_types), self.stream_arn or self.arn, self.region, self.view
        )


@dataclass(frozen=True, slots=True)
class Expected:
    """The documents one item should have, and the mappings that could not plan it."""

    record: ChangeRecord
    documents: list[IndexAction]
    rejected: list[Rejected]


def expected_documents(
    shape: TableShape, item: Mapping[str, Any], sequence: str, mappings: MappingSet, *, seconds: int
) -> Expected:
    """Plan the item's synthetic INSERT, read at ``seconds`` (``source/synthetic.py``, as backfill
    builds it). Raises ``RecordError`` when the item cannot be parsed."""
    record = parse_record(insert_record(shape.stream, item, seconds=seconds, sequence=sequence))
    documents: list[IndexAction] = []
    rejected: list[Rejected] = []
    for step in plan_record(record, mappings):
        if isinstance(step, IndexAction):
            documents.append(step)
        elif isinstance(step, Rejected):
            rejected.append(step)
    return Expected(record, documents, rejected)


@dataclass(frozen=True, slots=True)
class Drift:
    """One document that is not what the table says it should be."""

    kind: DriftKind
    index: str
    id: str
    routing: str | None
    mapping: CompiledMapping
    detail: str = ""
    keys: Mapping[str, Any] | None = None  # typed key of the item, when known
    version: int | None = None  # the document's version in the index, when it exists

    def describe(self) -> str:
        return f"{self.index}/{self.id}" + (f" ({self.detail})" if self.detail else "")


def compare_document(expected: IndexAction, actual: Mapping[str, Any] | None) -> Drift | None:
    """``actual`` is the mget answer for the expected document (None or not found: missing)."""
    keys = expected.record.raw_keys
    if actual is None or not actual.get("found"):
        return Drift("missing", expected.index, expected.id, expected.routing, expected.mapping, keys=keys)
    difference = first_difference(expected.document, actual.get("_source"))
    found_routing = actual.get("_routing")
    if expected.mapping.routing is not None and found_routing != expected.routing:
        # Found at the expected routing but written at another: one shard holds both, so it is the
        # one document, not where the stream puts it (a copy on another shard is an extra).
        difference = f"_routing: expected {_show(expected.routing)}, found {_show(found_routing)}"
    if difference is None:
        return None
    version = actual.get("_version")
    return Drift(
        "stale",
        expected.index,
        expected.id,
        expected.routing,
        expected.mapping,
        detail=difference,
        keys=keys,
        version=version if isinstance(version, int) else None,
    )


# --- the set of expected documents ---------------------------------------------------------------


def document_hash(scope: str, doc_id: str, routing: str | None = None) -> int:
    """64 bits naming one document of one walk scope (an index name, or a mapping's literal index),
    at ``routing`` when the mapping routes (in an index of several shards each routing is a copy)."""
    text = f"{scope}\x00{doc_id}" if routing is None else f"{scope}\x00{doc_id}\x00{routing}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class DocumentHashes:
    """A set of 64-bit document hashes in 8 bytes each: sorted runs, merged into one on ``freeze``.

    A Python set of ids would take ~200 bytes per document. A hash collision (probability about
    n^2 / 2^65, 3e-8 for a million documents) can only hide one extra document, never invent drift.
    """

    def __init__(self) -> None:
        self._runs: list[array[int]] = []
        self._pending: array[int] = array("Q")
        self._merged: array[int] | None = None

    def add(self, value: int) -> None:
        if self._merged is not None:
            raise RuntimeError("DocumentHashes.add after freeze")
        self._pending.append(value)
        if len(self._pending) >= _RUN:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._runs.append(array("Q", sorted(self._pending)))
            self._pending = array("Q")

    def freeze(self) -> None:
        """Merge the runs (peak 16 bytes per document while merging) so a lookup is one bisection."""
        self._flush()
        merged: array[int] = array("Q")
        runs, self._runs = self._runs, []
        merged.extend(heapq.merge(*runs))
        self._merged = merged

    def __len__(self) -> int:
        if self._merged is not None:
            return len(self._merged)
        return len(self._pending) + sum(len(run) for run in self._runs)

    def __contains__(self, value: object) -> bool:
        if self._merged is None:
            raise RuntimeError("DocumentHashes lookup before freeze")
        position = bisect_left(self._merged, value)  # type: ignore[call-overload]
        return bool(position < len(self._merged) and self._merged[position] == value)


# --- keys of documents the scan did not expect ---------------------------------------------------


def _typed(name_type: str, text: str) -> dict[str, Any] | None:
    if not text:
        return None  # key attributes are never empty
    if name_type == "S":
        return {"S": text}
    if name_type == "N":
        try:
            number = Decimal(text)
        except InvalidOperation:
            return None
        return {"N": text} if number.is_finite() else None
    try:
        return {"B": base64.b64decode(text, validate=True)}
    except (binascii.Error, ValueError):
        return None


def _typed_from_source(name_type: str, value: Any) -> dict[str, Any] | None:
    if name_type == "N" and isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return {"N": number_text(value)}
    if isinstance(value, str) and name_type in ("S", "B"):
        return _typed(name_type, value)
    return None


MAX_READINGS = 16  # readings of one id tried at most; more: the key cannot be told


def _default_id_template(key_types: Mapping[str, str]) -> Template:
    return parse_template("|".join(f"{{{name}}}" for name in sorted(key_types)))


def _readings(template: Template, doc_id: str) -> Iterator[dict[str, str]]:
    """Every way of filling the template's placeholders so that it renders ``doc_id`` exactly."""
    literals, names = template.literals, template.names
    if not doc_id.startswith(literals[0]):
        return

    def walk(position: int, start: int, values: dict[str, str]) -> Iterator[dict[str, str]]:
        if position == len(names):
            if start == len(doc_id):
                yield dict(values)
            return
        literal = literals[position + 1]
        if position == len(names) - 1:
            end = len(doc_id) - len(literal)
            ends = [end] if end >= start and doc_id.endswith(literal) else []
        elif literal:
            ends = []
            found = doc_id.find(literal, start)
            while found >= 0:
                ends.append(found)
                found = doc_id.find(literal, found + 1)
        else:
            ends = list(range(start, len(doc_id) + 1))
        name = names[position]
        for end in ends:
            text = doc_id[start:end]
            if values.get(name, text) != text:
                continue  # a name used twice must read the same both times
            yield from walk(position + 1, end + len(literal), {**values, name: text})

    yield from walk(0, len(literals[0]), {})


def candidate_keys(
    mapping: CompiledMapping, key_types: Mapping[str, str], doc_id: str, source: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Every typed key whose item the mapping would give id ``doc_id``, most certain first.

    The key attributes in the document (through ``fields.rename``) name the item when they render
    back to ``doc_id``: that is the only candidate then. Otherwise every reading of the id through the
    ``id`` template (or the default ``|``-joined id) that renders back to it is a candidate: an id
    ``{PK}#{SK}`` of ``CUST#1#ORDER#7`` reads as three keys. More than ``MAX_READINGS``: none.
    """
    rename = mapping.model.fields.rename
    if source is not None:
        from_source = {
            name: _typed_from_source(kind, source.get(rename.get(name, name)))
            for name, kind in key_types.items()
        }
        if _renders_to(mapping, from_source, doc_id):
            return [from_source]
    template = mapping.id if mapping.id is not None else _default_id_template(key_types)
    if not set(key_types) <= set(template.names):
        return []
    found: list[dict[str, Any]] = []
    for number, texts in enumerate(_readings(template, doc_id)):
        if number >= MAX_READINGS:
            return []
        candidate = {name: _typed(kind, texts[name]) for name, kind in key_types.items()}
        if _renders_to(mapping, candidate, doc_id) and candidate not in found:
            found.append(candidate)
    return found


def _renders_to(mapping: CompiledMapping, candidate: Mapping[str, Any | None], doc_id: str) -> bool:
    if any(value is None for value in candidate.values()):
        return False
    record = ChangeRecord(
        table=mapping.table,
        event="INSERT",
        raw_keys=candidate,
        sequence_number="verify",
        created_ms=0,
        is_ttl_expiry=False,
        stream_view_type="VERIFY",
        raw={},
    )
    try:
        return document_id(record, mapping) == doc_id
    except CdcsyncError:
        return False
