"""The dynamodb:// lease store against moto: balancing, expiry by counter observation, steals, safety.

Every worker is a store instance with its own worker id and its own fake monotonic clock, sharing
one lease table, so lease periods pass without sleeping.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from botocore.config import Config

from cdcsync.checkpoint import TRIM_HORIZON, Lease, LeaseLostError, ShardInfo, WriteWindow
from cdcsync.checkpoint.dynamodb import DynamoDbLeaseStore
from cdcsync.checkpoint.open import ensure_lease_table, open_lease_store
from cdcsync.errors import ConfigError, TransientError
from cdcsync.settings import DynamoDbTarget
from tests.support.fault_proxy import fault_proxy

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Users/stream/2024-05-01T00:00:00.000"
WALL = 1_714_566_600.0  # 2024-05-01T12:30:00Z, only for heartbeat_ms


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _boto3_endpoint(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> None:
    """Only boto3's own configuration points at moto: the store has no endpoint setting."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)


def _store(
    session: boto3.Session, table: str, worker: str, clock: FakeClock | None = None
) -> DynamoDbLeaseStore:
    store = open_lease_store(
        DynamoDbTarget(table),
        worker_id=worker,
        session=session,
        clock=clock or FakeClock(),
        wall=lambda: WALL,
    )
    assert isinstance(store, DynamoDbLeaseStore)
    return store


def _shards(count: int) -> list[ShardInfo]:
    return [ShardInfo(f"shardId-{n}") for n in range(1, count + 1)]


def _owners(store: DynamoDbLeaseStore) -> Counter[str | None]:
    return Counter(lease.owner for lease in store.leases("Users", ARN) if not lease.finished)


def _ids(leases: list[Lease]) -> list[str]:
    return [lease.shard_id for lease in leases]


def test_lease_store_sync_shards_creates_each_lease_once(
    aws_session: boto3.Session, unique_name: str
) -> None:
    # GIVEN two workers listing the same shards (one with a child the other has not seen yet)
    a = _store(aws_session, unique_name, "worker-a")
    b = _store(aws_session, unique_name, "worker-b")
    # WHEN both sync
    a.sync_shards("Users", ARN, _shards(2))
    b.sync_shards("Users", ARN, [*_shards(2), ShardInfo("shardId-3", ("shardId-1", "shardId-2"))])
    a.sync_shards("Users", ARN, _shards(2))
    # THEN there is one unowned lease per shard at TRIM_HORIZON, with its parents
    assert a.leases("Users", ARN) == [
        Lease("Users", ARN, "shardId-1", (), None, 0, TRIM_HORIZON, finished=False),
        Lease("Users", ARN, "shardId-2", (), None, 0, TRIM_HORIZON, finished=False),
        Lease("Users", ARN, "shardId-3", ("shardId-1", "shardId-2"), None, 0, TRIM_HORIZON, finished=False),
    ]
    assert b.leases("Users", "arn:other") == []


def test_lease_store_two_workers_balance_four_shards_two_each(
    aws_session: boto3.Session, unique_name: str
) -> None:
    # GIVEN two workers on one clock and four shards; A starts first and takes them all
    clock = FakeClock()
    a = _store(aws_session, unique_name, "worker-a", clock)
    b = _store(aws_session, unique_name, "worker-b", clock)
    a.sync_shards("Users", ARN, _shards(4))
    assert len(a.acquire("Users", ARN)) == 4
    # WHEN both run rounds (a third of the lease period apart)
    history = []
    for _ in range(4):
        clock.advance(10)
        owned_b = b.acquire("Users", ARN)
        owned_a = a.acquire("Users", ARN)
        history.append((len(owned_a), len(owned_b)))
    # THEN B steals one lease per round until each holds two, then nothing moves
    assert history == [(3, 1), (2, 2), (2, 2), (2, 2)]
    assert set(_ids(owned_a)).isdisjoint(_ids(owned_b))
    assert _owners(a) == {"worker-a": 2, "worker-b": 2}


@pytest.mark.parametrize(
    ("a_renews_at", "b_acquires_at", "b_owns"),
    [
        (None, 29.9, 1),  # not expired yet: B only steals its one lease of the round
        (None, 30.5, 4),  # A's counters unchanged for longer than the lease period: all expired
        (20.0, 45.0, 1),  # A renewed at 20 s: B saw a new counter at 45 s, nothing expired
    ],
)
def test_lease_store_expiry_follows_counter_observation(
    aws_session: boto3.Session, unique_name: str, a_renews_at: float | None, b_acquires_at: float, b_owns: int
) -> None:
    # GIVEN A owns four shards and B has seen them at its time 0
    clock_a, clock_b = FakeClock(), FakeClock()
    a = _store(aws_session, unique_name, "worker-a", clock_a)
    b = _store(aws_session, unique_name, "worker-b", clock_b)
    a.sync_shards("Users", ARN, _shards(4))
    a.acquire("Users", ARN)
    b.leases("Users", ARN)
    # WHEN A renews (or not) and B acquires later on its own clock
    if a_renews_at is not None:
        clock_a.advance(a_renews_at)
        assert len(a.acquire("Users", ARN)) == 4
    clock_b.advance(b_acquires_at)
    # THEN B takes expired leases only
    assert len(b.acquire("Users", ARN)) == b_owns


def test_lease_store_worker_that_stops_renewing_loses_leases(
    aws_session: boto3.Session, unique_name: str
) -> None:
    # GIVEN A owns four shards, then pauses (no renewals) for longer than the lease period
    clock_a, clock_b = FakeClock(), FakeClock()
    a = _store(aws_session, unique_name, "worker-a", clock_a)
    b = _store(aws_session, unique_name, "worker-b", clock_b)
    a.sync_shards("Users", ARN, _shards(4))
    first = a.acquire("Users", ARN)[0]
    b.leases("Users", ARN)
    clock_a.advance(31)
    clock_b.advance(31)
    # WHEN B acquires
    taken = b.acquire("Users", ARN)
    # THEN B owns all four, with A's checkpoints, and A's next checkpoint stops its shard
    assert _ids(taken) == ["shardId-1", "shardId-2", "shardId-3", "shardId-4"]
    assert {lease.owner for lease in taken} == {"worker-b"}
    with pytest.raises(LeaseLostError) as caught:
        a.checkpoint(first, "00000000000000000000100")
    assert str(caught.value) == (
        f"lost the lease of shard shardId-1 of table Users (lease table {unique_name}, worker worker-a): "
        "it was not renewed for 31.0 s, longer than the lease period of 30 s; "
        "stop writing for this shard, its next owner resumes from the last checkpoint"
    )
    assert b.leases("Users", ARN)[0].checkpoint == TRIM_HORIZON


@pytest.mark.parametrize("noticed_by", ["checkpoint", "acquire"])
def test_lease_store_unrenewed_lease_is_lost_before_anyone_takes_it(
    aws_session: boto3.Session, unique_name: str, noticed_by: str
) -> None:
    # GIVEN A owns a shard and its renewal is late by more than the lease period (nobody else exists)
    clock = FakeClock()
    a = _store(aws_session, unique_name, "worker-a", clock)
    a.sync_shards("Users", ARN, _shards(1))
    old = a.acquire("Users", ARN)[0]
    clock.advance(30.5)
    # WHEN A notices it in a checkpoint or a round
    # THEN the shard must stop, although the table still names A as owner
    if noticed_by == "checkpoint":
        with pytest.raises(LeaseLostError, match=r"it was not renewed for 30\.5 s"):
            a.checkpoint(old, "00000000000000000000100")
    else:
        assert a.acquire("Users", ARN) == []
    assert a.leases("Users", ARN)[0].owner == "worker-a"
    # AND the next round takes it back as a new ownership, which only the new copy may use
    (new,) = a.acquire("Users", ARN)
    with pytest.raises(LeaseLostError, match="it was lost and taken again since this copy was acquired;"):
        a.checkpoint(old, "00000000000000000000100")
    assert a.checkpoint(new, "00000000000000000000100").checkpoint == "00000000000000000000100"


def test_lease_store_stolen_lease_checkpoint_raises_and_round_drops_it(
    aws_session: boto3.Session, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN A owns four shards and renews on time; B joins
    a = _store(aws_session, unique_name, "worker-a")
    b = _store(aws_session, unique_name, "worker-b")
    a.sync_shards("Users", ARN, _shards(4))
    mine = {lease.shard_id: lease for lease in a.acquire("Users", ARN)}
    # WHEN B steals its one lease of the round
    with caplog.at_level(logging.INFO, logger="cdcsync.checkpoint.dynamodb"):
        (stolen,) = b.acquire("Users", ARN)
        # THEN A's checkpoint for that shard fails and names the new owner
        with pytest.raises(LeaseLostError) as caught:
            a.checkpoint(mine[stolen.shard_id], "00000000000000000000100")
        # AND A's next round no longer returns it
        assert stolen.shard_id not in _ids(a.acquire("Users", ARN))
    assert str(caught.value) == (
        f"lost the lease of shard {stolen.shard_id} of table Users (lease table {unique_name}, "
        "worker worker-a): it is now owned by worker worker-b; "
        "stop writing for this shard, its next owner resumes from the last checkpoint"
    )
    assert (
        f"took lease of shard {stolen.shard_id} of table Users "
        "(stolen from worker-a, who held 4 of a fair share of 2) at checkpoint TRIM_HORIZON"
    ) in caplog.messages
    assert b.leases("Users", ARN)[int(stolen.shard_id[-1]) - 1].checkpoint == TRIM_HORIZON


def test_lease_store_steals_one_lease_per_round(aws_session: boto3.Session, unique_name: str) -> None:
    # GIVEN three workers and six shards; A starts alone and takes all six
    clock = FakeClock()
    a, b, c = (_store(aws_session, unique_name, f"worker-{name}", clock) for name in "abc")
    a.sync_shards("Users", ARN, _shards(6))
    assert len(a.acquire("Users", ARN)) == 6
    # WHEN B, C and A run rounds
    history = []
    for _ in range(3):
        clock.advance(10)
        history.append(tuple(len(store.acquire("Users", ARN)) for store in (b, c, a)))
    # THEN each newcomer takes exactly one lease per round until all hold two
    assert history == [(1, 1, 4), (2, 2, 2), (2, 2, 2)]
    assert _owners(a) == {"worker-a": 2, "worker-b": 2, "worker-c": 2}


def test_lease_store_finished_leases_are_never_taken(aws_session: boto3.Session, unique_name: str) -> None:
    # GIVEN A finished shard 1 and released it, finished shard 2, and stopped renewing shard 3
    clock_a, clock_b = FakeClock(), FakeClock()
    a = _store(aws_session, unique_name, "worker-a", clock_a)
    b = _store(aws_session, unique_name, "worker-b", clock_b)
    a.sync_shards("Users", ARN, _shards(3))
    one, two, _ = a.acquire("Users", ARN)
    a.release(a.checkpoint(one, "00000000000000000000100", finished=True))
    a.checkpoint(two, "00000000000000000000200", finished=True)
    assert _ids(a.acquire("Users", ARN)) == ["shardId-3"]
    b.leases("Users", ARN)
    clock_b.advance(31)
    # WHEN B acquires after the lease period
    taken = b.acquire("Users", ARN)
    # THEN it takes only the unfinished shard; the finished ones keep their state
    assert _ids(taken) == ["shardId-3"]
    assert b.leases("Users", ARN)[:2] == [
        Lease("Users", ARN, "shardId-1", (), None, 1, "00000000000000000000100", finished=True),
        Lease("Users", ARN, "shardId-2", (), "worker-a", 1, "00000000000000000000200", finished=True),
    ]


def test_lease_store_release_lets_another_worker_take_at_once(
    aws_session: boto3.Session, unique_name: str
) -> None:
    # GIVEN A owns two checkpointed shards
    a = _store(aws_session, unique_name, "worker-a")
    b = _store(aws_session, unique_name, "worker-b")
    a.sync_shards("Users", ARN, _shards(2))
    leases = [a.checkpoint(lease, f"{n}00") for n, lease in enumerate(a.acquire("Users", ARN), start=1)]
    # WHEN A releases them (shutdown) and B runs a round at the same moment
    for lease in leases:
        a.release(lease)
    taken = b.acquire("Users", ARN)
    # THEN B owns both at once, at A's checkpoints
    assert [(lease.shard_id, lease.owner, lease.checkpoint) for lease in taken] == [
        ("shardId-1", "worker-b", "100"),
        ("shardId-2", "worker-b", "200"),
    ]
    # AND A can neither write for them nor take them away by releasing again
    with pytest.raises(LeaseLostError, match="it was released by this worker;"):
        a.checkpoint(leases[0], "101")
    a.release(leases[0])
    assert _owners(b) == {"worker-b": 2}


def test_lease_store_restarted_worker_resumes_its_own_leases(
    aws_session: boto3.Session, unique_name: str
) -> None:
    # GIVEN worker A owned two shards and restarted with the same worker id (fresh memory)
    a = _store(aws_session, unique_name, "worker-a")
    a.sync_shards("Users", ARN, _shards(2))
    a.checkpoint(a.acquire("Users", ARN)[0], "100")
    restarted = _store(aws_session, unique_name, "worker-a")
    # WHEN it runs a round THEN it owns both again at once, at their checkpoints
    assert [(lease.shard_id, lease.checkpoint) for lease in restarted.acquire("Users", ARN)] == [
        ("shardId-1", "100"),
        ("shardId-2", TRIM_HORIZON),
    ]


def test_lease_store_progress_round_trip(aws_session: boto3.Session, unique_name: str) -> None:
    # GIVEN progress saved by one store, then overwritten
    a = _store(aws_session, unique_name, "worker-a")
    a.sync_shards("Users", ARN, _shards(1))
    a.save_progress("backfill|Users|0", {"last_key": {"UserId": {"N": "1"}}, "items": 1})
    a.save_progress("backfill|Users|0", {"last_key": {"UserId": {"N": "9"}}, "items": 9, "rate": 0.5})
    # WHEN another store loads it
    b = _store(aws_session, unique_name, "worker-b")
    # THEN it reads the latest record, nothing for unknown keys, and progress is not a lease
    assert b.load_progress("backfill|Users|0") == {
        "last_key": {"UserId": {"N": "9"}},
        "items": 9,
        "rate": 0.5,
    }
    assert b.load_progress("backfill|Users|1") is None
    assert _ids(b.leases("Users", ARN)) == ["shardId-1"]


def test_lease_store_table_created_by_two_stores_at_once(
    aws_session: boto3.Session, unique_name: str, dynamodb: DynamoDBClient
) -> None:
    # GIVEN no lease table WHEN two workers open it at the same moment
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(_store, aws_session, unique_name, f"worker-{n}") for n in range(2)]
    a, b = (future.result() for future in futures)
    # THEN one on-demand table with partition key lease_key exists and both stores use it
    table = dynamodb.describe_table(TableName=unique_name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "lease_key", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    a.sync_shards("Users", ARN, _shards(1))
    assert _ids(b.leases("Users", ARN)) == ["shardId-1"]


class _LateDescribe:
    """The real client, except that the first DescribeTable answers "not found": the moment
    another replica's CreateTable lands between our DescribeTable and our CreateTable."""

    def __init__(self, client: DynamoDBClient) -> None:
        self.client = client
        self.calls: list[str] = []

    def describe_table(self, **kwargs: Any) -> Any:
        self.calls.append("DescribeTable")
        if len(self.calls) == 1:
            raise self.client.exceptions.ResourceNotFoundException(
                {"Error": {"Code": "ResourceNotFoundException", "Message": "not found"}}, "DescribeTable"
            )
        return self.client.describe_table(**kwargs)

    def create_table(self, **kwargs: Any) -> Any:
        self.calls.append("CreateTable")
        return self.client.create_table(**kwargs)


def test_ensure_lease_table_lost_create_race_waits_for_the_table(
    aws_session: boto3.Session, unique_name: str, dynamodb: DynamoDBClient
) -> None:
    # GIVEN another replica created the table just after our DescribeTable said it was missing
    _store(aws_session, unique_name, "worker-b")
    racing = _LateDescribe(dynamodb)
    # WHEN this replica ensures the table THEN its CreateTable loses quietly and it uses the table
    ensure_lease_table(cast("DynamoDBClient", racing), unique_name)
    assert racing.calls == ["DescribeTable", "CreateTable", "DescribeTable"]


def test_lease_store_refuses_table_with_other_key_schema(
    aws_session: boto3.Session, unique_name: str, dynamodb: DynamoDBClient
) -> None:
    # GIVEN a data table, not a lease table, under the configured name
    dynamodb.create_table(
        TableName=unique_name,
        AttributeDefinitions=[{"AttributeName": "UserId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "UserId", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    # WHEN the store opens it THEN it refuses to write lease items into it
    with pytest.raises(ConfigError) as caught:
        _store(aws_session, unique_name, "worker-a")
    assert str(caught.value) == (
        f"CDCSYNC_CHECKPOINTS: table {unique_name} has key schema "
        "[{'AttributeName': 'UserId', 'KeyType': 'HASH'}], expected a lease table with partition key "
        '"lease_key" only; name a table of its own (it is created if missing)'
    )


@pytest.mark.parametrize(("faults", "succeeds"), [(1, True), (2, False)])
def test_lease_store_throttling_retried_then_transient_error(
    aws_session: boto3.Session, unique_name: str, moto_endpoint: str, faults: int, succeeds: bool
) -> None:
    # GIVEN a lease table behind a proxy that throttles the next requests; the client tries twice
    _store(aws_session, unique_name, "worker-a").sync_shards("Users", ARN, _shards(1))
    throttled = {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"}
    throttled["message"] = "The level of configured provisioned throughput for the table was exceeded."
    with fault_proxy(moto_endpoint) as proxy:
        client = aws_session.client(
            "dynamodb",
            endpoint_url=proxy.url,
            config=Config(retries={"mode": "standard", "total_max_attempts": 2}),
        )
        store = DynamoDbLeaseStore(client, unique_name, worker_id="worker-a")
        proxy.fail(times=faults, status=400, body=throttled, path=None)
        # WHEN the store scans
        if succeeds:
            # THEN one throttled answer is retried away
            assert _ids(store.leases("Users", ARN)) == ["shardId-1"]
            return
        # THEN persistent throttling is a TransientError saying what happened
        with pytest.raises(TransientError) as caught:
            store.leases("Users", ARN)
    assert str(caught.value) == (
        f"DynamoDB Scan on lease table {unique_name} failed after retries: "
        "ProvisionedThroughputExceededException: The level of configured provisioned throughput for the "
        "table was exceeded. (throttled or unavailable; try again later)"
    )


def test_lease_store_write_window_closes_a_margin_before_the_lease_could_lapse(
    aws_session: boto3.Session, unique_name: str
) -> None:
    # GIVEN A took a never-owned lease (30 s lease, so a 3 s margin) at its time 1000
    clock = FakeClock()
    a = _store(aws_session, unique_name, "worker-a", clock)
    a.sync_shards("Users", ARN, _shards(1))
    (lease,) = a.acquire("Users", ARN)
    # WHEN time passes without and then with a renewal
    # THEN writes may start at once and must end 3 s before the lease period since the renewal
    assert a.write_window(lease) == WriteWindow(opens_in=0.0, closes_in=27.0)
    clock.advance(20)
    assert a.write_window(lease) == WriteWindow(opens_in=0.0, closes_in=7.0)
    (lease,) = a.acquire("Users", ARN)
    clock.advance(5)
    assert a.write_window(lease) == WriteWindow(opens_in=0.0, closes_in=22.0)
    # AND once fewer than the margin's 3 s are left, no write may start, though it is still A's
    clock.advance(22.5)
    with pytest.raises(LeaseLostError) as caught:
        a.write_window(lease)
    assert str(caught.value) == (
        f"lost the lease of shard shardId-1 of table Users (lease table {unique_name}, worker worker-a): "
        "it was last renewed 27.5 s ago and may lapse before a write started now could end (writes stop "
        "3 s before the lease period of 30 s); "
        "stop writing for this shard, its next owner resumes from the last checkpoint"
    )
    assert a.leases("Users", ARN)[0].owner == "worker-a"
    # AND a renewal in time opens it again
    (lease,) = a.acquire("Users", ARN)
    assert a.write_window(lease) == WriteWindow(opens_in=0.0, closes_in=27.0)


@pytest.mark.parametrize(
    ("previous", "opens_in"),
    [
        ("released", 0.0),  # shut down cleanly: its loops ended before it released
        ("expired", 30 + 3 - 31),  # B first saw A's counter at 0 and took it at 31: waits till 33
        ("stolen", 30 + 3),  # A may have renewed just before the steal: a whole lease period more
    ],
)
def test_lease_store_new_owner_waits_out_the_previous_owners_longest_write(
    aws_session: boto3.Session, unique_name: str, previous: str, opens_in: float
) -> None:
    # GIVEN A owns two shards (so B's fair share is one) and B has seen them at its time 0
    clock_a, clock_b = FakeClock(), FakeClock()
    a = _store(aws_session, unique_name, "worker-a", clock_a)
    b = _store(aws_session, unique_name, "worker-b", clock_b)
    a.sync_shards("Users", ARN, _shards(2))
    mine = a.acquire("Users", ARN)
    b.leases("Users", ARN)
    # WHEN B takes one of them after A released them, stopped renewing, or while A renews on time
    if previous == "released":
        for lease in mine:
            a.release(lease)
    if previous == "expired":
        clock_b.advance(31)
    (taken, *_) = b.acquire("Users", ARN)
    # THEN B's first write waits until A's longest write surely ended, plus the margin
    window = b.write_window(taken)
    assert window.opens_in == pytest.approx(opens_in)
    assert window.closes_in == 27.0
    # AND once that time passed (renewing every third of the lease period meanwhile), it may write
    for _ in range(3):
        clock_b.advance(window.opens_in / 3)
        b.acquire("Users", ARN)
    assert b.write_window(taken) == WriteWindow(opens_in=0.0, closes_in=27.0)


def test_lease_store_resumed_after_a_late_renewal_waits_out_its_own_old_lease(
    aws_session: boto3.Session, unique_name: str
) -> None:
    # GIVEN A's renewals failed for longer than the lease period, so A dropped its own lease
    clock = FakeClock()
    a = _store(aws_session, unique_name, "worker-a", clock)
    a.sync_shards("Users", ARN, _shards(1))
    a.acquire("Users", ARN)
    clock.advance(31)
    assert a.acquire("Users", ARN) == []
    # WHEN the next round takes it back (the table still names A)
    clock.advance(1)
    (lease,) = a.acquire("Users", ARN)
    # THEN it knows its old lease ended at 1030, so it waits out only the margin after that
    assert a.write_window(lease) == WriteWindow(opens_in=1.0, closes_in=27.0)


def test_lease_store_write_window_of_a_lost_lease_raises(
    aws_session: boto3.Session, unique_name: str
) -> None:
    # GIVEN A's lease was stolen by B and A's round noticed
    a = _store(aws_session, unique_name, "worker-a")
    b = _store(aws_session, unique_name, "worker-b")
    a.sync_shards("Users", ARN, _shards(2))
    mine = {lease.shard_id: lease for lease in a.acquire("Users", ARN)}
    (stolen,) = b.acquire("Users", ARN)
    a.acquire("Users", ARN)
    # WHEN A's loop asks before writing THEN it must not write
    with pytest.raises(LeaseLostError, match="it is now owned by worker worker-b;"):
        a.write_window(mine[stolen.shard_id])


OLD_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Users/stream/2023-01-01T00:00:00.000"


@pytest.mark.parametrize(
    ("live", "replaced"),
    [((ARN,), True), ((OLD_ARN, ARN), False)],
    ids=["old-stream-not-read", "old-stream-still-read"],
)
def test_lease_store_sync_shards_other_streams_unfinished_leases_are_returned_and_a_clash_replaced(
    aws_session: boto3.Session, unique_name: str, live: tuple[str, ...], replaced: bool
) -> None:
    # GIVEN checkpoints in the table's old stream: shardId-1 half read, shardId-2 finished
    a = _store(aws_session, unique_name, "worker-a")
    a.sync_shards("Users", OLD_ARN, _shards(2))
    half, done = a.acquire("Users", OLD_ARN)
    half = a.checkpoint(half, "100")
    done = a.checkpoint(done, "200", finished=True)
    # WHEN the table's new stream lists a shard with the same id (emulators repeat shard ids)
    ignored = a.sync_shards("Users", ARN, _shards(1), live_streams=live)
    # THEN an old stream nobody reads: its unfinished lease is returned (to report) and the new
    # stream's shard gets its own lease; an old stream still read keeps its lease
    if replaced:
        assert [(lease.shard_id, lease.stream_arn, lease.checkpoint) for lease in ignored] == [
            ("shardId-1", OLD_ARN, "100")
        ]
        (fresh,) = a.leases("Users", ARN)
        assert (fresh.shard_id, fresh.owner, fresh.checkpoint, fresh.finished) == (
            "shardId-1", None, TRIM_HORIZON, False
        )  # fmt: skip
        assert [(lease.shard_id, lease.checkpoint) for lease in a.leases("Users", OLD_ARN)] == [
            ("shardId-2", "200")
        ]
    else:
        assert ignored == []
        assert a.leases("Users", ARN) == []
        assert _ids(a.leases("Users", OLD_ARN)) == ["shardId-1", "shardId-2"]
