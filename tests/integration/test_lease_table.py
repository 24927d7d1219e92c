"""The lease table cdcsync creates is protected: deletion protection and point-in-time recovery.

The lease table holds every shard's checkpoint and the backfill progress: losing it replays every
stream from its trim horizon and restarts backfills. A table cdcsync creates gets deletion protection
(in CreateTable) and point-in-time recovery (UpdateContinuousBackups once it is ACTIVE); a table that
already exists is left as its owner made it. Against moto, which implements both.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from botocore.exceptions import ClientError

from cdcsync.checkpoint.open import ensure_lease_table, open_lease_store
from cdcsync.settings import DynamoDbTarget

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@pytest.fixture(autouse=True)
def _boto3_endpoint(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)


def _recovery(dynamodb: DynamoDBClient, table: str) -> str:
    description = dynamodb.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
    return description["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]


def test_lease_table_created_with_deletion_protection_and_point_in_time_recovery(
    aws_session: boto3.Session, unique_name: str, dynamodb: DynamoDBClient
) -> None:
    # WHEN a worker opens a dynamodb:// lease table that does not exist yet
    open_lease_store(DynamoDbTarget(unique_name), worker_id="worker-a", session=aws_session)
    # THEN the table it created has deletion protection and point-in-time recovery
    assert dynamodb.describe_table(TableName=unique_name)["Table"]["DeletionProtectionEnabled"] is True
    assert _recovery(dynamodb, unique_name) == "ENABLED"
    # AND deleting it is refused until someone turns the protection off on purpose
    with pytest.raises(ClientError) as caught:
        dynamodb.delete_table(TableName=unique_name)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    dynamodb.update_table(TableName=unique_name, DeletionProtectionEnabled=False)
    dynamodb.delete_table(TableName=unique_name)


def test_lease_table_existing_is_left_as_its_owner_made_it(
    aws_session: boto3.Session, unique_name: str, dynamodb: DynamoDBClient
) -> None:
    # GIVEN a lease table someone created without either protection
    dynamodb.create_table(
        TableName=unique_name,
        AttributeDefinitions=[{"AttributeName": "lease_key", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "lease_key", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    # WHEN a worker opens it THEN cdcsync changes nothing on it
    open_lease_store(DynamoDbTarget(unique_name), worker_id="worker-a", session=aws_session)
    assert dynamodb.describe_table(TableName=unique_name)["Table"]["DeletionProtectionEnabled"] is False
    assert _recovery(dynamodb, unique_name) == "DISABLED"


class _NoBackupsGrant:
    """The client of a role without dynamodb:UpdateContinuousBackups; everything else goes to moto."""

    def __init__(self, client: DynamoDBClient) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def update_continuous_backups(self, **kwargs: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}},
            "UpdateContinuousBackups",
        )


def test_lease_table_recovery_not_allowed_warns_and_worker_starts(
    unique_name: str, dynamodb: DynamoDBClient, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a role that may create the table but not turn on point-in-time recovery
    client = cast("DynamoDBClient", _NoBackupsGrant(dynamodb))
    # WHEN the table is created THEN it is usable, and a warning says what is missing and how to fix it
    with caplog.at_level(logging.WARNING, logger="cdcsync.checkpoint.open"):
        ensure_lease_table(client, unique_name)
    assert dynamodb.describe_table(TableName=unique_name)["Table"]["TableStatus"] == "ACTIVE"
    assert [r.getMessage() for r in caplog.records] == [
        f"lease table {unique_name}: point-in-time recovery not enabled (UpdateContinuousBackups: "
        "AccessDeniedException: not authorized); grant dynamodb:UpdateContinuousBackups on the table, "
        f"or run: aws dynamodb update-continuous-backups --table-name {unique_name} "
        "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true"
    ]
