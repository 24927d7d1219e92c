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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from cdcsync.change import ChangeRecord, parse_record
from cdcsync.errors import CdcsyncError
from cdcsync.mapping.compiled import CompiledMapping, MappingSet
from cdcsync.plan import IndexAction, Rejected, plan_record
from cdcsync.plan.planner import document_id  # one definition of the id for every path
from cdcsync.values import number_text

DriftKind = Literal["missing", "stale", "extra"]
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

    @property
    def arn(self) -> str:
        return f"arn:aws:dynamodb:{self.region}:{self.account}:table/{self.table}/stream/verify"


def synthetic_insert(shape: TableShape, item: Mapping[str, Any], sequence: str) -> dict[str, Any]:
    """The Lambda-shaped INSERT record of a scanned (typed) item, as backfill builds it.

    The version is irrelevant for a comparison, so the record's time is 0.
    """
    return {
        "eventID": "verify",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "awsRegion": shape.region,
        "eventSourceARN": shape.arn,
        "dynamodb": {
            "Keys": {name: item[name] for name in shape.key_types if name in item},
            "NewImage": dict(item),
            "ApproximateCreationDateTime": 0,
            "SequenceNumber": sequence,
            "StreamViewType": "NEW_IMAGE",
        },
    }


@dataclass(frozen=True, slots=True)
class Expected:
    """The documents one item should have, and the mappings that could not plan it."""

    record: ChangeRecord
    documents: list[IndexAction]
    rejected: list[Rejected]


def expected_documents(
    shape: TableShape, item: Mapping[str, Any], sequence: str, mappings: MappingSet
) -> Expected:
    """Plan the item's synthetic INSERT. Raises ``RecordError`` when the item cannot be parsed."""
    record = parse_record(synthetic_insert(shape, item, sequence))
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


def document_hash(scope: str, doc_id: str) -> int:
    """64 bits naming one document of one walk scope (an index name or a mapping's index pattern)."""
    digest = hashlib.blake2b(f"{scope}\x00{doc_id}".encode(), digest_size=8).digest()
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
    if name_type == "N" and isinstance(value, int | float) and not isinstance(value, bool):
        return {"N": str(value)}
    if isinstance(value, str) and name_type in ("S", "B"):
        return _typed(name_type, value)
    return None


def _candidates_from_id(
    mapping: CompiledMapping, key_types: Mapping[str, str], doc_id: str
) -> Iterable[dict[str, str]]:
    names = sorted(key_types)
    if mapping.id is None:
        parts = doc_id.split("|")
        if len(parts) == len(names):
            yield dict(zip(names, parts, strict=True))
        return
    template = mapping.id
    if not set(names) <= set(template.names):
        return
    # Walk the literals left to right; each placeholder takes the text up to the next literal.
    values: dict[str, str] = {}
    rest = doc_id
    if not rest.startswith(template.literals[0]):
        return
    rest = rest[len(template.literals[0]) :]
    for name, literal in zip(template.names, template.literals[1:], strict=True):
        if literal:
            end = rest.find(literal)
            if end < 0:
                return
        else:
            end = len(rest)
        values[name], rest = rest[:end], rest[end + len(literal) :]
    if not rest:
        yield {name: values[name] for name in names}


def keys_from_document(
    mapping: CompiledMapping, key_types: Mapping[str, str], doc_id: str, source: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The typed key of the item a document was written for, or None when it cannot be told.

    Tried in order: the key attributes in the document (through ``fields.rename``), then the id
    read back through the ``id`` template. A candidate counts only if it renders to ``doc_id`` again.
    """
    rename = mapping.model.fields.rename
    candidates: list[dict[str, Any] | None] = []
    if source is not None:
        candidates.append(
            {
                name: _typed_from_source(kind, source.get(rename.get(name, name)))
                for name, kind in key_types.items()
            }
        )
    candidates += [
        {name: _typed(key_types[name], text) for name, text in texts.items()}
        for texts in _candidates_from_id(mapping, key_types, doc_id)
    ]
    for candidate in candidates:
        if candidate is None or any(value is None for value in candidate.values()):
            continue
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
            if document_id(record, mapping) == doc_id:
                return candidate
        except CdcsyncError:
            continue
    return None
