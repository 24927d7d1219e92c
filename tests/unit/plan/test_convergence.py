"""Convergence on random histories: planned actions, delivered the ways AWS delivers them,
applied to an in-memory store with OpenSearch's external_gte rule, leave exactly the table.

This is the planner-level half of the argument in ARCHITECTURE.md; the bulk writer repeats it
against a real OpenSearch-compatible server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdcsync.change import parse_record
from cdcsync.mapping.compiled import CompiledMapping, MappingSet
from cdcsync.plan import DeleteAction, IndexAction, Rejected, plan_record
from tests.support.records import compiled, mapping_set, stream_record

MAPPING = compiled(
    table="Users",
    index="users",
    id="{UserId}",
    where={"Status": [{"anything-but": ["banned"]}, {"exists": False}]},
    fields={"exclude": ["Secret"]},
)
MAPPINGS = mapping_set(MAPPING)
T0 = 1_700_000_000


@dataclass
class VersionedStore:
    """An index with OpenSearch's external_gte rule: apply when version >= stored, else stale (409)."""

    honour_versions: bool = True
    docs: dict[str, tuple[int, dict[str, Any] | None]] = field(default_factory=dict)  # None: tombstone

    def apply(self, action: IndexAction | DeleteAction) -> None:
        current = self.docs.get(action.id)
        if self.honour_versions and current is not None and action.version < current[0]:
            return  # stale
        self.docs[action.id] = (action.version, action.document if isinstance(action, IndexAction) else None)

    def visible(self) -> dict[str, dict[str, Any]]:
        return {doc_id: doc for doc_id, (_, doc) in self.docs.items() if doc is not None}


# One operation: (key, kind, status, payload, seconds to wait before it).
operations = st.tuples(
    st.integers(min_value=1, max_value=3),
    st.sampled_from(["put", "put", "update", "delete"]),
    st.sampled_from(["active", "banned", None]),
    st.integers(min_value=0, max_value=5),
    st.sampled_from([0, 0, 0, 1, 2]),  # mostly the same second: the hard case for versions
)


def run_history(
    ops: list[tuple[int, str, str | None, int, int]],
) -> tuple[list[dict[str, Any]], dict[int, Any]]:
    """Apply the operations to a simulated table; return its stream records and its final state."""
    table: dict[int, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    seconds = T0
    for number, (key, kind, status, payload, wait) in enumerate(ops):
        seconds += wait
        old = table.get(key)
        if kind == "delete" or (kind == "update" and old is None):
            if old is None:
                continue
            new = None
            del table[key]
        else:
            base = dict(old) if (kind == "update" and old) else {"UserId": key}
            base["Payload"] = payload
            base["Secret"] = f"s{payload}"
            if status is None:
                base.pop("Status", None)
            else:
                base["Status"] = status
            new = base
            table[key] = new
        event = "REMOVE" if new is None else ("INSERT" if old is None else "MODIFY")
        records.append(
            stream_record(event, {"UserId": key}, new, old, seconds=seconds, sequence=f"{10**20 + number}")
        )
    return records, table


def expected_index(table: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        str(key): {k: v for k, v in item.items() if k != "Secret"}
        for key, item in table.items()
        if item.get("Status") != "banned"
    }


def deliver(records: list[dict[str, Any]], crashes: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Delivery as Lambda and the worker do it: in order, with replays of in-order suffixes.

    Each crash (at, back) stops after ``at`` records and restarts ``back`` records earlier (a batch
    delivered twice, a retry from a failed record, a restart from an older checkpoint).
    """
    delivered: list[dict[str, Any]] = []
    position = 0
    for at, back in sorted(crashes):
        if at <= position or at > len(records):
            continue
        delivered += records[position:at]
        position = max(0, at - back)
    return delivered + records[position:]


def apply_delivery(
    store: VersionedStore, delivered: list[dict[str, Any]], mappings: MappingSet = MAPPINGS
) -> None:
    for raw in delivered:
        for step in plan_record(parse_record(raw), mappings):
            if isinstance(step, IndexAction | DeleteAction):
                store.apply(step)


crash_lists = st.lists(
    st.tuples(st.integers(min_value=1, max_value=40), st.integers(min_value=1, max_value=40)), max_size=5
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operations, min_size=1, max_size=25), crash_lists)
def test_convergence_replayed_suffixes_leave_index_equal_to_table(
    ops: list[tuple[int, str, str | None, int, int]], crashes: list[tuple[int, int]]
) -> None:
    # GIVEN a random history of puts, updates and deletes on a few keys, many in the same second
    records, table = run_history(ops)
    # WHEN its records are delivered with duplicate batches and suffix replays
    store = VersionedStore()
    apply_delivery(store, deliver(records, crashes))
    # THEN the index holds exactly the table's items that the mapping admits, as projected
    assert store.visible() == expected_index(table)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(operations, min_size=1, max_size=15),
    st.lists(operations, min_size=1, max_size=15),
    st.lists(st.booleans(), max_size=60),
)
def test_convergence_two_shards_interleaved_converge(
    ops_a: list[tuple[int, str, str | None, int, int]],
    ops_b: list[tuple[int, str, str | None, int, int]],
    choices: list[bool],
) -> None:
    # GIVEN two shards with disjoint keys (1-3 and 11-13), interleaved arbitrarily
    records_a, table_a = run_history(ops_a)
    records_b, table_b = run_history([(key + 10, *rest) for key, *rest in ops_b])  # type: ignore[misc]
    merged: list[dict[str, Any]] = []
    a, b = list(records_a), list(records_b)
    for pick_a in choices:
        source = a if (pick_a and a) or not b else b
        if source:
            merged.append(source.pop(0))
    merged += a + b
    # WHEN applied THEN the index matches both shards' tables
    store = VersionedStore()
    apply_delivery(store, merged)
    assert store.visible() == expected_index({**table_a, **table_b})


def test_convergence_harness_detects_unversioned_writes() -> None:
    # Suffix replays alone would converge even without versions; what versions add is that a
    # stale duplicate delivered after its successors (e.g. a DLQ replay of an old image) is a no-op.
    # (The properties above fail if the store applies only strictly greater versions: same-second
    # records then lose, which is why writes use external_gte.)
    records, table = run_history([(1, "put", "active", 1, 0), (1, "put", "active", 2, 1)])
    delivered = [*records, records[0]]  # a stale duplicate delivered after its successor
    versioned, unversioned = VersionedStore(), VersionedStore(honour_versions=False)
    apply_delivery(versioned, delivered)
    apply_delivery(unversioned, delivered)
    assert versioned.visible() == expected_index(table)
    assert unversioned.visible() != expected_index(table)


# Posts indexed only while not drafts, titles only (Payload), unchanged documents skipped: the
# filter skips records, so the index holds each item's last state that passed the filter.
FILTERED = mapping_set(
    compiled(
        table="Users",
        index="users",
        id="{UserId}",
        filter={
            "$or": [
                {"eventName": ["REMOVE"]},
                {"dynamodb": {"NewImage": {"Status": {"S": [{"anything-but": ["draft"]}]}}}},
            ]
        },
        skip_unchanged=True,
        fields={"include": ["UserId", "Payload"]},
    )
)
draft_operations = st.tuples(
    st.integers(min_value=1, max_value=3),
    st.sampled_from(["put", "update", "update", "delete"]),
    st.sampled_from(["active", "draft", "draft", None]),
    st.integers(min_value=0, max_value=2),
    st.sampled_from([0, 0, 1]),
)


def expected_filtered_index(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each item's last record that passed the filter: a REMOVE deletes, a write leaves its state."""
    index: dict[str, dict[str, Any]] = {}
    for raw in records:
        record = parse_record(raw)
        key = str(record.keys["UserId"])
        if record.event == "REMOVE":
            index.pop(key, None)
        elif record.new_image is not None and record.new_image.get("Status", "draft") != "draft":
            index[key] = {"UserId": record.new_image["UserId"], "Payload": record.new_image["Payload"]}
    return index


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(draft_operations, min_size=1, max_size=20), crash_lists)
def test_convergence_filter_with_skip_unchanged_leaves_last_state_that_passed(
    ops: list[tuple[int, str, str | None, int, int]], crashes: list[tuple[int, int]]
) -> None:
    # GIVEN a history in which items are edited as drafts (skipped by the filter) and published
    records, _ = run_history(ops)
    # WHEN delivered with replays
    store = VersionedStore()
    apply_delivery(store, deliver(records, crashes), FILTERED)
    # THEN the index holds each item's last published state, never one a skipped draft hid
    assert store.visible() == expected_filtered_index(records)


# Posts placed by an attribute (a templated index, or a routing), published or draft, under filters
# that trust an OldImage per record, never (SizeBytes), or skip INSERTs. The stream's rules: the
# index holds each item's last state the filter passed (where admitting it) at the place that state
# names. A copy may stay elsewhere only where a move was made in records the filter skipped, so
# that no record the planner saw named the place (Lambda never delivers skipped records); every
# such copy was counted (old_location_known=False) or named in a dead letter.
Place = tuple[str, str, str | None]  # index, id, routing: a copy in a multi-shard index
PLACED_BY = {
    "index": (lambda region: (f"posts-{region.lower()}", None), {"index": "posts-{Region}"}),
    "routing": (lambda region: ("posts", region), {"index": "posts", "routing": "{Region}"}),
}
PLACED_FILTERS = {
    "published-or-remove": {
        "$or": [
            {"eventName": ["REMOVE"]},
            {"dynamodb": {"NewImage": {"Status": {"S": ["published"]}}}},
        ]
    },
    "size-cannot-judge": {"dynamodb": {"SizeBytes": [{"numeric": ["<", 400000]}]}},
    "modify-and-remove-only": {"eventName": ["MODIFY", "REMOVE"]},
}
placed_operations = st.tuples(
    st.integers(min_value=1, max_value=2),
    st.sampled_from(["put", "update", "update", "delete"]),
    st.sampled_from(["published", "draft"]),
    st.sampled_from(["EU", "US", "US", None]),
    st.integers(min_value=0, max_value=4),  # where: Payload < 4
    st.sampled_from([0, 0, 1]),
)


@dataclass
class PlacedStore:
    """A multi-shard index with external_gte: a copy per (index, id, routing)."""

    docs: dict[Place, tuple[int, dict[str, Any] | None]] = field(default_factory=dict)
    counted: set[str] = field(default_factory=set)  # ids whose old place the planner said it did not know

    def apply(self, steps: list[Any]) -> None:
        for step in steps:
            doc_id = str(step.record.keys["UserId"])
            if isinstance(step, Rejected) and f"delete id {doc_id} from" in str(step.error):
                self.counted.add(doc_id)  # a dead letter that names the copy to delete by hand
            if not isinstance(step, IndexAction | DeleteAction):
                continue
            if not step.old_location_known:
                self.counted.add(step.id)
            place = (step.index, step.id, step.routing)
            current = self.docs.get(place)
            if current is None or step.version >= current[0]:
                self.docs[place] = (step.version, step.document if isinstance(step, IndexAction) else None)

    def visible(self) -> dict[Place, dict[str, Any]]:
        return {place: doc for place, (_, doc) in self.docs.items() if doc is not None}


def run_placed_history(ops: list[tuple[int, str, str, str | None, int, int]]) -> list[dict[str, Any]]:
    table: dict[int, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    seconds = T0
    for number, (key, kind, status, region, payload, wait) in enumerate(ops):
        seconds += wait
        old = table.get(key)
        if kind == "delete" or (kind == "update" and old is None):
            if old is None:
                continue
            new = None
            del table[key]
        else:
            new = {"UserId": key, "Status": status, "Payload": payload, "Title": f"t{number}"}
            if region is not None:
                new["Region"] = region
            table[key] = new
        event = "REMOVE" if new is None else ("INSERT" if old is None else "MODIFY")
        records.append(
            stream_record(event, {"UserId": key}, new, old, seconds=seconds, sequence=f"{10**20 + number}")
        )
    return records


def placed_by_rules(
    records: list[dict[str, Any]], mapping: CompiledMapping, placed_by: str
) -> tuple[dict[Place, dict[str, Any]], set[Place]]:
    """What the index must hold, and where a copy may stay that no record the planner saw named."""
    render = PLACED_BY[placed_by][0]
    assert mapping.filter is not None
    assert mapping.where is not None

    def place(image: dict[str, Any] | None, doc_id: str) -> Place | None:
        if image is None or "Region" not in image:
            return None
        index, routing = render(image["Region"])
        return index, doc_id, routing

    must: dict[str, tuple[Place, dict[str, Any]]] = {}
    may: set[Place] = set()
    for raw in records:
        record = parse_record(raw)
        if not mapping.filter.matches(record.event_view):
            continue
        doc_id = str(record.keys["UserId"])
        held = must.pop(doc_id, None)
        told = {p for p in (place(record.old_image, doc_id), place(record.new_image, doc_id)) if p}
        new, new_place = record.new_image, place(record.new_image, doc_id)
        if new is not None and new_place is not None and mapping.where.matches(new):
            must[doc_id] = (new_place, mapping.projection.apply(new))
            may.discard(new_place)
        if held is not None and held[0] not in told:
            may.add(held[0])  # the item left it in records the filter skipped
    return dict(must.values()), may


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(PLACED_BY)),
    st.sampled_from(sorted(PLACED_FILTERS)),
    st.booleans(),
    st.lists(placed_operations, min_size=1, max_size=16),
    crash_lists,
)
def test_convergence_filter_with_templated_place_leaves_what_the_rules_say(
    placed_by: str,
    filter_name: str,
    skip_unchanged: bool,
    ops: list[tuple[int, str, str, str | None, int, int]],
    crashes: list[tuple[int, int]],
) -> None:
    # GIVEN a mapping placing posts by Region, a filter, and a history of moves, drafts and deletes
    mapping = compiled(
        table="Users",
        id="{UserId}",
        filter=PLACED_FILTERS[filter_name],
        where={"Payload": [{"numeric": ["<", 4]}]},
        skip_unchanged=skip_unchanged,
        fields={"include": ["UserId", "Payload", "Region", "Title"]},
        **PLACED_BY[placed_by][1],
    )
    records = run_placed_history(ops)
    # WHEN its records are delivered with duplicate batches and suffix replays
    store = PlacedStore()
    for raw in deliver(records, crashes):
        store.apply(plan_record(parse_record(raw), mapping_set(mapping)))
    # THEN the index holds what the rules say, plus at most copies no record named, each counted
    must, may = placed_by_rules(records, mapping, placed_by)
    visible = store.visible()
    assert {place: visible.get(place) for place in must} == must
    extra = set(visible) - set(must)
    assert extra <= may, f"copies left where a record named them: {sorted(extra - may)}"
    assert {doc_id for _, doc_id, _ in extra} <= store.counted
