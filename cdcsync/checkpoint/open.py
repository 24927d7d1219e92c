"""Build the lease store a ``CDCSYNC_CHECKPOINTS`` target names, creating the lease table if needed.

The DynamoDB client comes from a boto3 session, so endpoints, region and credentials are boto3's
own configuration (``AWS_ENDPOINT_URL_DYNAMODB``, profiles, roles; the region as ``cdcsync.aws``
reads it); nothing here adds settings for them. Throttling and 5xx answers are retried by botocore
(standard mode, a few attempts with backoff) before the store turns them into ``TransientError``.

The lease table is created on open if it does not exist: on-demand capacity, partition key
``lease_key`` (string). Two replicas starting together may both try; the loser's
``ResourceInUseException`` just means the table is on its way, and both wait until it is ACTIVE.
An existing table with another key schema is refused, so a typo can never point the worker at a
data table and fill it with lease items.

The table holds every shard's checkpoint and the backfill progress; losing it replays every stream
from its trim horizon. So the replica that creates it turns on deletion protection (in CreateTable)
and point-in-time recovery (UpdateContinuousBackups, once ACTIVE). Without the grant for the latter
the worker still starts, with a WARNING saying how to turn it on: it protects the table, the sync
does not need it. A table that already exists is left as its owner made it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from cdcsync.aws import aws_client, error_code, error_message
from cdcsync.checkpoint import LeaseStore
from cdcsync.checkpoint.dynamodb import DynamoDbLeaseStore, translate
from cdcsync.checkpoint.file import FileLeaseStore
from cdcsync.errors import ConfigError, FatalError
from cdcsync.settings import CheckpointTarget, DynamoDbTarget, FileTarget

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=10,
    retries={"mode": "standard", "total_max_attempts": 5},
)
TABLE_ACTIVE_TIMEOUT_SECONDS = 300.0
_POLL_SECONDS = 1.0
_KEY_SCHEMA = [{"AttributeName": "lease_key", "KeyType": "HASH"}]


def open_lease_store(
    target: CheckpointTarget,
    *,
    worker_id: str,
    session: boto3.Session | None = None,
    lease_seconds: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    create: bool = True,
) -> LeaseStore:
    """The store for ``target``; for ``dynamodb://`` the lease table exists and is ACTIVE on return.

    ``clock`` (monotonic) decides lease expiry; ``wall`` only fills the informational
    ``heartbeat_ms``. Both are injectable for tests. ``create=False`` (read-only commands such as
    ``backfill --status``): a lease table that does not exist is a ``ConfigError``, not created.
    """
    if isinstance(target, FileTarget):
        return FileLeaseStore(target.path, worker_id=worker_id)
    if isinstance(target, DynamoDbTarget):
        client: DynamoDBClient = aws_client(session, "dynamodb", config=CLIENT_CONFIG)
        if create:
            ensure_lease_table(client, target.table)
        elif _describe(client, target.table) is None:
            raise ConfigError(
                f"lease table {target.table} does not exist "
                "(check CDCSYNC_CHECKPOINTS; the first backfill --run-id creates it)"
            )
        return DynamoDbLeaseStore(
            client, target.table, worker_id=worker_id, lease_seconds=lease_seconds, clock=clock, wall=wall
        )
    raise TypeError(f"not a checkpoint target: {target!r}")


def ensure_lease_table(
    client: DynamoDBClient, table_name: str, *, timeout: float = TABLE_ACTIVE_TIMEOUT_SECONDS
) -> None:
    """Create the lease table unless it exists, then wait until it is ACTIVE."""
    description = _describe(client, table_name)
    created = False
    if description is None:
        try:
            client.create_table(
                TableName=table_name,
                AttributeDefinitions=[{"AttributeName": "lease_key", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "lease_key", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
                DeletionProtectionEnabled=True,
            )
            created = True
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":  # else: another replica won the race
                raise translate(exc, "CreateTable", table_name) from exc
        except BotoCoreError as exc:
            raise translate(exc, "CreateTable", table_name) from exc
    deadline = time.monotonic() + timeout
    while True:
        description = _describe(client, table_name)
        status = None if description is None else description.get("TableStatus")
        if description is not None and status == "ACTIVE":
            break
        if time.monotonic() > deadline:
            raise FatalError(
                f"lease table {table_name} is not ACTIVE after {timeout:g} s (status {status}); "
                "check it in the DynamoDB console and restart the worker"
            )
        time.sleep(_POLL_SECONDS)
    schema = [dict(element) for element in description.get("KeySchema", [])]
    if schema != _KEY_SCHEMA:
        raise ConfigError(
            f"CDCSYNC_CHECKPOINTS: table {table_name} has key schema {schema}, expected a lease table "
            'with partition key "lease_key" only; name a table of its own (it is created if missing)'
        )
    if created:
        _enable_recovery(client, table_name, deadline)


def _enable_recovery(client: DynamoDBClient, table_name: str, deadline: float) -> None:
    """Turn on point-in-time recovery; a WARNING, not an error, if it cannot be done."""
    while True:
        try:
            client.update_continuous_backups(
                TableName=table_name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
        except (ClientError, BotoCoreError) as exc:
            # Right after CreateTable, AWS may answer that backups are still being set up.
            if error_code(exc) == "ContinuousBackupsUnavailableException" and time.monotonic() < deadline:
                time.sleep(_POLL_SECONDS)
                continue
            log.warning(
                "lease table %s: point-in-time recovery not enabled (UpdateContinuousBackups: %s: %s); "
                "grant dynamodb:UpdateContinuousBackups on the table, or run: aws dynamodb "
                "update-continuous-backups --table-name %s "
                "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true",
                table_name,
                error_code(exc),
                error_message(exc),
                table_name,
            )
        return


def _describe(client: DynamoDBClient, table_name: str) -> dict[str, Any] | None:
    """DescribeTable's ``Table``, or None if the table does not exist."""
    try:
        return dict(client.describe_table(TableName=table_name)["Table"])
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise translate(exc, "DescribeTable", table_name) from exc
    except BotoCoreError as exc:
        raise translate(exc, "DescribeTable", table_name) from exc
