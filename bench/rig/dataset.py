"""Generated tables: stream records per shard and table items, pre-serialised, with the final state.

A key belongs to one shard (as DynamoDB puts all of an item's changes in one shard). Along a shard,
records change random keys of its key space: INSERT for a key not in the table, else REMOVE (15 %)
or MODIFY, so one key sees several versions, some within the same second, and deletes followed by
new INSERTs. Creation times are whole seconds, non-decreasing along a shard (``per_second`` records
share a second). Every record and item is stored as its JSON bytes, ready to be joined into a page.

``final_documents`` is what the index must hold at the end: per key still in the table, its last
image as plain JSON (numbers as int or float, string sets as sorted lists, NULL as None).
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

KEY = "Id"
REGION = "us-east-1"
REMOVE_SHARE = 0.15
STATUSES = ("active", "active", "active", "suspended")
CITIES = tuple(f"city-{n}" for n in range(40))


def item_image(rng: random.Random, key: str, stamp: int) -> dict[str, Any]:
    """A user profile in DynamoDB JSON, ~330 bytes of it: every attribute type cdcsync converts."""
    followers = rng.randint(0, 5000)
    image: dict[str, Any] = {
        KEY: {"S": key},
        "Name": {"S": f"name of {key}"},
        "Email": {"S": f"{key}@example.com"},
        "Status": {"S": rng.choice(STATUSES)},
        "Age": {"N": str(rng.randint(18, 90))},
        "Balance": {"N": f"{rng.randint(0, 99999)}.{rng.randint(1, 99):02d}"},
        "Tags": {"SS": sorted({f"t{rng.randint(0, 9)}" for _ in range(3)})},
        "Logins": {"L": [{"N": str(stamp - n * 3600)} for n in range(3)]},
        "Profile": {
            "M": {
                "City": {"S": rng.choice(CITIES)},
                "Followers": {"N": str(followers)},
                "Verified": {"BOOL": followers % 2 == 0},
            }
        },
        "UpdatedAt": {"N": str(stamp)},
    }
    if rng.random() < 0.2:
        image["Nickname"] = {"NULL": True}
    return image


def _number(text: str) -> int | float:
    number = float(text)
    return int(text) if number.is_integer() and "." not in text else number


PLAIN: dict[str, Callable[[Any], Any]] = {
    "N": _number,
    "S": lambda inner: inner,
    "BOOL": lambda inner: inner,
    "NULL": lambda _: None,
    "SS": sorted,
    "NS": lambda inner: sorted((_number(n) for n in inner), key=float),
    "L": lambda inner: [plain(v) for v in inner],
    "M": lambda inner: {name: plain(v) for name, v in inner.items()},
}


def plain(value: dict[str, Any]) -> Any:
    """One DynamoDB JSON value as the plain JSON cdcsync (and the naive consumers) index."""
    ((kind, inner),) = value.items()
    return PLAIN[kind](inner)


def plain_item(image: dict[str, Any]) -> dict[str, Any]:
    return {name: plain(value) for name, value in image.items()}


def key_hash(key: str) -> int:
    """Where a key falls in the table's 32-bit hash space (Scan segments split it in equal ranges)."""
    return zlib.crc32(key.encode())


@dataclass
class Shard:
    """One shard's records: JSON bytes, sequence numbers (ints, increasing) and running byte sizes."""

    shard_id: str
    records: list[bytes] = field(default_factory=list)
    sequence_numbers: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # ends[i]: bytes of records[0..i]
    next_sequence: int = 0
    closed: bool = False  # read to its end, GetRecords answers no NextShardIterator

    def append(self, record: bytes, sequence: int) -> None:
        """Append one record; a reader that takes ``len(sequence_numbers)`` first sees whole records."""
        self.records.append(record)
        self.ends.append((self.ends[-1] if self.ends else 0) + len(record) + 1)
        self.sequence_numbers.append(sequence)


@dataclass
class Table:
    """A generated table: its stream's shards, its items (sorted by key hash) and its final state."""

    name: str
    shards: list[Shard]
    items: list[bytes]  # typed items, in hash order
    item_keys: list[str]
    item_hashes: list[int]
    item_ends: list[int]
    final: dict[str, dict[str, Any]]  # document id -> plain item, for keys still in the table
    created: int  # epoch seconds
    records: int = 0
    puts: dict[str, float] = field(default_factory=dict)  # live tables: key -> time it was appended
    positions: dict[str, int] = field(default_factory=dict)  # item key -> its place in ``items``

    def __post_init__(self) -> None:
        self.positions = {key: n for n, key in enumerate(self.item_keys)}

    @property
    def stream_label(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000", time.gmtime(self.created))

    @property
    def arn(self) -> str:
        return f"arn:aws:dynamodb:{REGION}:123456789012:table/{self.name}"

    @property
    def stream_arn(self) -> str:
        return f"{self.arn}/stream/{self.stream_label}"

    def size_bytes(self) -> int:
        return self.item_ends[-1] if self.item_ends else 0


def shard_id(created: int, number: int) -> str:
    return f"shardId-{created:020d}-{number:08x}"


def sequence_base(number: int) -> int:
    """Sequence numbers of shard ``number``: 21 digits, increasing, never shared between shards."""
    return 10**20 + number * 10**12


def stream_record(
    event: str, key: str, stamp: int, sequence: int, *, new: dict[str, Any] | None, old: dict[str, Any] | None
) -> bytes:
    body: dict[str, Any] = {"ApproximateCreationDateTime": stamp, "Keys": {KEY: {"S": key}}}
    if new is not None:
        body["NewImage"] = new
    if old is not None:
        body["OldImage"] = old
    body |= {"SequenceNumber": str(sequence), "SizeBytes": 400, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    return orjson.dumps(
        {
            "eventID": f"{sequence:x}",
            "eventName": event,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": REGION,
            "dynamodb": body,
        }
    )


def generate(
    name: str, *, shards: int, records: int, items: int = 0, seed: int = 1, per_second: int = 50
) -> Table:
    """A table whose stream holds ``records`` records over ``shards`` shards (about 4 per key), and
    whose items are the stream's final state, or ``items`` fresh items when given (a Scan-only table)."""
    rng = random.Random(seed)
    created = int(time.time()) - 6 * 3600
    state: dict[str, dict[str, Any]] = {}  # key -> typed image
    shard_list = [Shard(shard_id(created, n), next_sequence=sequence_base(n)) for n in range(max(shards, 0))]
    per_shard_keys = max(1, records // max(shards, 1) // 4)
    for number, shard in enumerate(shard_list):
        count = records // shards + (1 if number < records % shards else 0)
        keys = [f"s{number:03d}-k{k:07d}" for k in range(per_shard_keys)]
        for position in range(count):
            key = rng.choice(keys)
            stamp = created + position // per_second
            old = state.get(key)
            if old is None:
                event, new = "INSERT", item_image(rng, key, stamp)
            elif rng.random() < REMOVE_SHARE:
                event, new = "REMOVE", None
            else:
                event, new = "MODIFY", item_image(rng, key, stamp)
            shard.append(
                stream_record(event, key, stamp, shard.next_sequence, new=new, old=old), shard.next_sequence
            )
            shard.next_sequence += 1
            if new is None:
                del state[key]
            else:
                state[key] = new
    if items:
        state = {f"item-{n:08d}": item_image(rng, f"item-{n:08d}", created) for n in range(items)}
    ordered = sorted(state, key=lambda k: (key_hash(k), k))
    blobs = [orjson.dumps(state[k]) for k in ordered]
    ends, total = [], 0
    for blob in blobs:
        total += len(blob) + 1
        ends.append(total)
    return Table(
        name=name,
        shards=shard_list,
        items=blobs,
        item_keys=ordered,
        item_hashes=[key_hash(k) for k in ordered],
        item_ends=ends,
        final={k: plain_item(state[k]) for k in ordered},
        created=created,
        records=records,
    )


def append_live(table: Table, rng: random.Random, count: int, next_key: int) -> int:
    """Append ``count`` INSERTs of new keys, round robin over the shards, created now; the next key number."""
    now = time.time()
    stamp = int(now)
    for n in range(count):
        key = f"live-{next_key + n:09d}"
        shard = table.shards[(next_key + n) % len(table.shards)]
        image = item_image(rng, key, stamp)
        table.final[key] = plain_item(image)
        table.puts[key] = now
        shard.append(
            stream_record("INSERT", key, stamp, shard.next_sequence, new=image, old=None), shard.next_sequence
        )
        shard.next_sequence += 1
        table.records += 1
    return next_key + count
