"""``run --processes N`` over a file:// store: N processes split the shards, each shard in exactly one."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdcsync.checkpoint import ShardInfo
from cdcsync.checkpoint.file import FileLeaseStore
from cdcsync.errors import ConfigError
from cdcsync.worker.partition import Partition, PartitionedLeaseStore

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Users/stream/2024-05-01T00:00:00.000"


@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_partition_every_shard_belongs_to_exactly_one_process(count: int) -> None:
    # GIVEN N processes and many shards of several tables
    partitions = [Partition(index, count) for index in range(count)]
    shards = [(table, f"shardId-{n:05d}-{n * 7919:08x}") for table in ("Users", "Orders") for n in range(200)]
    # WHEN each says which it owns THEN each shard has one owner, and the split is roughly even
    owners = {shard: [p for p in partitions if p.owns(*shard)] for shard in shards}
    assert all(len(owned) == 1 for owned in owners.values())
    per_process = [sum(1 for owned in owners.values() if owned[0] is p) for p in partitions]
    assert min(per_process) >= len(shards) / count / 2


def test_partition_hash_is_stable_across_processes() -> None:
    # GIVEN a shard  WHEN any process, in any run, asks THEN the same process owns it (crc32 of
    # "table|shard", pinned here: Python's hash() differs per process)
    owners = [Partition(i, 4).owns("Users", "shardId-00001700000000000-aaaaaaaa") for i in range(4)]
    assert owners == [False, True, False, False]


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_partition_parse_bad_spec_raises_config_error(text: str) -> None:
    with pytest.raises(
        ConfigError, match=rf"^--partition {text}: expected I/N with 1 <= I <= N, e\.g\. 1/4$"
    ):
        Partition.parse(text)


def test_partitioned_store_processes_split_the_shards_and_see_each_others_lineage(tmp_path: Path) -> None:
    # GIVEN two processes' views of one checkpoint file, with a parent shard and its two children
    path = tmp_path / "checkpoints.json"
    stores = [
        PartitionedLeaseStore(FileLeaseStore(path, worker_id=f"w{i}"), Partition.parse(f"{i + 1}/2"))
        for i in range(2)
    ]
    shards = [ShardInfo("p"), ShardInfo("c1", ("p",)), ShardInfo("c2", ("p",)), ShardInfo("x")]
    for store in stores:
        store.sync_shards("Users", ARN, shards)
    # WHEN each acquires
    acquired = [{lease.shard_id for lease in store.acquire("Users", ARN)} for store in stores]
    # THEN they own disjoint sets that together are every shard
    assert acquired[0].isdisjoint(acquired[1])
    assert acquired[0] | acquired[1] == {"p", "c1", "c2", "x"}
    # AND the parent finished by its owner is seen finished by the other (children may start there)
    owner = next(store for store, owned in zip(stores, acquired, strict=True) if "p" in owned)
    other = next(store for store in stores if store is not owner)
    parent = next(lease for lease in owner.acquire("Users", ARN) if lease.shard_id == "p")
    owner.checkpoint(parent, "42", finished=True)
    assert {lease.shard_id for lease in other.leases("Users", ARN) if lease.finished} == {"p"}
    assert "p" not in {lease.shard_id for store in stores for lease in store.acquire("Users", ARN)}
    # AND acquiring writes nothing: the file names no owner until a checkpoint does
    stored = {lease.shard_id: lease.owner for lease in other.leases("Users", ARN)}
    assert stored == {"p": owner.store.worker_id, "c1": None, "c2": None, "x": None}  # type: ignore[attr-defined]
