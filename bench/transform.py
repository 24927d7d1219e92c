"""Planning throughput: stream records -> bulk NDJSON lines, cdcsync vs the naive way, same run.

    .venv/bin/python bench/transform.py [--records 200000]

The naive baseline is how most handlers are written: boto3's TypeDeserializer on NewImage,
a Decimal/set conversion in json.dumps(default=...), and the bulk action line. cdcsync parses
the record, plans it against the Users mapping (table match, filter, where, fields, id,
version) and serialises the versioned bulk lines. Both run on one core in this process.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from cdcsync.change import parse_record
from cdcsync.mapping.compiled import MappingSet, compile_mapping
from cdcsync.mapping.model import MappingModel
from cdcsync.plan import IndexAction, plan_record
from cdcsync.sink.bulk_body import action_lines

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Users/stream/2023-09-01T00:00:00.000"
POOL = 5000  # distinct records, cycled; planning does not mutate them


def profile(rng: random.Random, user_id: int) -> dict[str, Any]:
    """A user profile of 12 attributes with a nested map, a list and a string set."""
    return {
        "UserId": user_id,
        "Username": f"user_{user_id}",
        "Email": f"user{user_id}@example.com",
        "FirstName": rng.choice(["Ada", "Grace", "Alan", "Edsger", "Barbara"]),
        "LastName": rng.choice(["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov"]),
        "Status": rng.choice(["active", "active", "active", "suspended"]),
        "Age": rng.randint(18, 90),
        "Balance": Decimal(f"{rng.randint(0, 100000)}.{rng.randint(0, 99):02d}"),
        "Verified": rng.random() < 0.8,
        "Profile": {
            "Bio": "x" * rng.randint(10, 80),
            "Location": {"City": "Berlin", "Country": "DE"},
            "Followers": rng.randint(0, 10**6),
        },
        "Logins": [rng.randint(1_600_000_000, 1_700_000_000) for _ in range(rng.randint(1, 5))],
        "Tags": {f"tag{rng.randint(0, 50)}" for _ in range(rng.randint(1, 4))},
    }


def make_records(count: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    serializer = TypeSerializer()
    records = []
    for n in range(count):
        item = profile(rng, 10_000 + n)
        old = dict(item, Status="active", Age=item["Age"] - 1)
        records.append(
            {
                "eventID": str(n),
                "eventName": "MODIFY",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "Keys": {"UserId": {"N": str(item["UserId"])}},
                    "NewImage": {k: serializer.serialize(v) for k, v in item.items()},
                    "OldImage": {k: serializer.serialize(v) for k, v in old.items()},
                    "ApproximateCreationDateTime": 1_700_000_000 + n,
                    "SequenceNumber": str(10**20 + n),
                    "SizeBytes": 600,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
                "eventSourceARN": ARN,
            }
        )
    return records


def users_mapping() -> MappingSet:
    model = MappingModel.model_validate(
        {
            "table": "Users",
            "index": "users",
            "id": "{UserId}",
            "filter": {"eventName": ["INSERT", "MODIFY", "REMOVE"]},
            "where": {"Status": [{"anything-but": ["banned"]}]},
            "fields": {"exclude": ["PasswordHash"], "rename": {"Username": "username"}},
        }
    )
    mapping, problems = compile_mapping(model, "bench")
    assert mapping is not None, problems
    return MappingSet((mapping,))


def cdcsync_transform(records: list[dict[str, Any]], total: int) -> int:
    mappings = users_mapping()
    size = 0
    for n in range(total):
        for step in plan_record(parse_record(records[n % len(records)]), mappings):
            if isinstance(step, IndexAction):
                size += len(action_lines(step))
    return size


def _naive_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(type(value).__name__)


def naive_transform(records: list[dict[str, Any]], total: int) -> int:
    deserializer = TypeDeserializer()
    size = 0
    for n in range(total):
        record = records[n % len(records)]
        image = record["dynamodb"]["NewImage"]
        document = {k: deserializer.deserialize(v) for k, v in image.items()}
        key = deserializer.deserialize(record["dynamodb"]["Keys"]["UserId"])
        header = json.dumps({"index": {"_index": "users", "_id": str(key)}})
        size += len(header) + len(json.dumps(document, default=_naive_default)) + 2
    return size


def measure(
    run: Callable[[list[dict[str, Any]], int], int], records: list[dict[str, Any]], total: int
) -> float:
    """CPU seconds for ``total`` records."""
    cpu = time.process_time()
    run(records, total)
    return time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each is kept")
    args = parser.parse_args()
    records = make_records(min(POOL, args.records))
    runs = {"naive": naive_transform, "cdcsync": cdcsync_transform}
    for run in runs.values():
        run(records, min(args.records, 2000))  # warm-up
    best = dict.fromkeys(runs, float("inf"))
    # Interleaved rounds, best kept: this VM's speed drifts by tens of percent between seconds.
    for _ in range(args.rounds):
        for name, run in runs.items():
            best[name] = min(best[name], measure(run, records, args.records))
    rates = {name: args.records / seconds for name, seconds in best.items()}
    for name, seconds in best.items():
        per = seconds / args.records * 1e6
        print(f"{name:<8} {args.records:>9,} records  {seconds:6.2f} s cpu  {per:6.1f} us/rec", end="")
        print(f"  {rates[name]:>9,.0f} rec/s")
    ratio = rates["cdcsync"] / rates["naive"]
    print(
        f"ratio    cdcsync / naive = {ratio:.2f}x  (target >= 4x; one core, CPU time, best of {args.rounds})"
    )


if __name__ == "__main__":
    main()
