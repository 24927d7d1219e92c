"""Judging a stream the table had before its current one: the table's still, or a recreated table's."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cdcsync.errors import ConfigError
from cdcsync.source.shards import OldStreamOrigin, old_stream_origin

LABEL = "2026-01-01T00:00:00.000"
ARN = f"arn:aws:dynamodb:us-east-1:1:table/Users/stream/{LABEL}"
STREAM_CREATED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class DescribedStreams:
    """DescribeStream answering with one description, or refusing with an error code."""

    def __init__(self, description: dict[str, Any] | None = None, error: str | None = None) -> None:
        self.description = description
        self.error = error

    def describe_stream(self, **request: Any) -> dict[str, Any]:
        if self.error is not None:
            response: Any = {"Error": {"Code": self.error, "Message": "no"}, "ResponseMetadata": {}}
            raise ClientError(response, "DescribeStream")
        return {"StreamDescription": {**(self.description or {}), "Shards": []}}


OWN = {"StreamLabel": LABEL, "CreationRequestDateTime": STREAM_CREATED}


@pytest.mark.parametrize(
    ("streams", "table_created", "origin"),
    [
        # readable: CreationRequestDateTime against the table's CreationDateTime
        (DescribedStreams(OWN), STREAM_CREATED - dt.timedelta(days=1), "readable"),
        (DescribedStreams(OWN), STREAM_CREATED + dt.timedelta(milliseconds=500), "readable"),  # with it
        (DescribedStreams(OWN), STREAM_CREATED + dt.timedelta(hours=1), "earlier table"),
        (DescribedStreams(OWN), None, "unknown"),
        # gone: the ARN's label is when the stream was created
        (DescribedStreams(error="ResourceNotFoundException"), STREAM_CREATED, "gone"),
        (
            DescribedStreams(error="ResourceNotFoundException"),
            STREAM_CREATED + dt.timedelta(1),
            "earlier table",
        ),
        # an answer about another stream (moto: the table's current one) is taken as gone
        (
            DescribedStreams(
                {"StreamLabel": "2026-02-01T00:00:00.000", "CreationRequestDateTime": STREAM_CREATED}
            ),
            STREAM_CREATED - dt.timedelta(days=1),
            "gone",
        ),
        (
            DescribedStreams(
                {"StreamLabel": "2026-02-01T00:00:00.000", "CreationRequestDateTime": STREAM_CREATED}
            ),
            STREAM_CREATED + dt.timedelta(hours=1),
            "earlier table",
        ),
    ],
)
def test_old_stream_origin_creation_times_decide(
    streams: DescribedStreams, table_created: dt.datetime | None, origin: OldStreamOrigin
) -> None:
    assert old_stream_origin(streams, ARN, table_created) == origin


def test_old_stream_origin_gone_without_a_time_label_is_unknown() -> None:
    streams = DescribedStreams(error="ResourceNotFoundException")
    assert old_stream_origin(
        streams, "arn:aws:dynamodb:us-east-1:1:table/Users/stream/x", STREAM_CREATED
    ) == ("unknown")


def test_old_stream_origin_access_denied_raises_config_error() -> None:
    with pytest.raises(ConfigError, match=r"grant the worker's IAM role dynamodb:DescribeStream"):
        old_stream_origin(DescribedStreams(error="AccessDeniedException"), ARN, STREAM_CREATED)
