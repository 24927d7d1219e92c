"""FastReads: recorded GetRecords and Scan answers give cdcsync exactly what botocore's parse gives.

Each recorded body (``tests/fixtures/wire``: hand-written in real AWS's shape, whole-second epoch
numbers, base64 binaries; and recorded from moto_server) is answered to two clients through the
same stand-in HTTP session: a plain boto3 client (botocore's parser, datetimes, bytes) and the
same client wrapped in ``FastReads`` (orjson). What cdcsync makes of the two must be equal: every
``ChangeRecord`` field, the plain items, the planned bulk lines, what ``ShardReader`` reports, and
the saved backfill key. Requests are compared the same way: what each path sent, as JSON.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import NoCredentialsError

from cdcsync.aws import error_kind
from cdcsync.backfill.scan import Page, SegmentScan, decode_key, encode_key
from cdcsync.change import ChangeRecord, parse_record
from cdcsync.dlq import json_safe
from cdcsync.mapping.compiled import MappingSet
from cdcsync.metrics import NullMetrics
from cdcsync.plan.actions import DeleteAction, FetchItem, IndexAction, Rejected, Skip, Step
from cdcsync.plan.planner import plan_record
from cdcsync.sink.bulk_body import action_lines
from cdcsync.source.fast_reads import FastReads, with_fast_reads
from cdcsync.source.streams import ShardReader
from cdcsync.source.synthetic import TableStream, insert_record, insert_records
from cdcsync.values import image_to_plain
from tests.support.records import compiled, mapping_set

WIRE = Path(__file__).parents[2] / "fixtures" / "wire"
ENDPOINT = "http://127.0.0.1:1"
REGION = "us-east-1"
SECONDS = 1_795_353_600  # a backfill's read time, whole seconds
SHARD = "shardId-00000001795353600000-0a1b2c3d"
LABEL = "2026-11-28T09:00:00.000"


def stream_arn(table: str, region: str = REGION) -> str:
    return f"arn:aws:dynamodb:{region}:123456789012:table/{table}/stream/{LABEL}"


ARNS = {
    "aws_get_records_new_and_old_images": stream_arn("Users"),
    "aws_get_records_keys_only_closed": stream_arn("Files", "eu-west-1"),
    "aws_get_records_empty": stream_arn("Users"),
    "moto_get_records_new_and_old_images": stream_arn("Wire_NEW_AND_OLD_IMAGES"),
    "moto_get_records_keys_only": stream_arn("Wire_KEYS_ONLY"),
}
SCANS = {
    "aws_scan_page": ("Files", "Id"),
    "aws_scan_last_page": ("Files", "Id"),
    "moto_scan_page1": ("WireScan", "Id"),
    "moto_scan_page2": ("WireScan", "Id"),
}
CHANGE_FIELDS = (
    "table", "event", "keys", "sequence_number", "created_ms", "is_ttl_expiry", "stream_view_type",
    "event_source_arn", "new_image", "old_image", "event_view",
)  # fmt: skip


_SESSION = boto3.Session(region_name=REGION)  # one session: its loaded service models are reused


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        yield self.body


@dataclass
class RecordedHttp:
    """Stands in for a client's HTTP session: answers each operation (by ``X-Amz-Target``) with its
    recorded status, headers and body, and keeps every request sent."""

    answers: dict[str, tuple[int, dict[str, str], bytes]]
    sent: list[AWSPreparedRequest] = field(default_factory=list)

    def send(self, request: AWSPreparedRequest) -> AWSResponse:
        self.sent.append(request)
        operation = header(request, "X-Amz-Target").rsplit(".", 1)[1]
        status, headers, body = self.answers[operation]
        return AWSResponse(request.url, status, {"x-amzn-RequestId": "REQ1", **headers}, _Body(body))

    def bodies(self) -> list[Any]:
        return [json.loads(request.body or b"{}") for request in self.sent]


def header(request: AWSPreparedRequest, name: str) -> str:
    value = request.headers[name]
    return value.decode() if isinstance(value, bytes) else str(value)


def recorded(name: str) -> bytes:
    return (WIRE / f"{name}.json").read_bytes()


def client(service: str, answers: dict[str, bytes]) -> tuple[Any, RecordedHttp]:
    """A boto3 client whose HTTP session answers each operation with a recorded 200 body."""
    made: Any = _SESSION.client(  # type: ignore[call-overload]
        service, endpoint_url=ENDPOINT, config=Config(retries={"mode": "standard", "total_max_attempts": 1})
    )
    http = RecordedHttp({operation: (200, {}, body) for operation, body in answers.items()})
    made._endpoint.http_session = http
    return made, http


def both(
    service: str, answers: dict[str, bytes]
) -> tuple[tuple[Any, RecordedHttp], tuple[Any, RecordedHttp]]:
    """(botocore's client, its HTTP), (the same kind of client behind FastReads, its HTTP)."""
    botocore_side = client(service, answers)
    fast_client, fast_http = client(service, answers)
    return botocore_side, (FastReads(fast_client), fast_http)


def mappings(table: str) -> MappingSet:
    """Every way a mapping reads a record: the whole item, a filter on base64 binaries and on the
    TTL principal (the record's Lambda view), projection with renames, ``where``, TTL deletes ignored."""
    return mapping_set(
        compiled(table=table, index=f"{table.lower()}-all"),
        compiled(
            table=table,
            index=f"{table.lower()}-filtered",
            filter={
                "$or": [
                    {"dynamodb": {"NewImage": {"Blob": {"B": ["AP8gYmluYXJ5"]}}}},
                    {"userIdentity": {"type": ["Service"]}},
                ]
            },
            fields={"exclude": ["Profile"], "rename": {"Name": "name"}},
            deletes={"on_ttl_expiry": "ignore"},
        ),
        compiled(table=table, index=f"{table.lower()}-active", where={"Active": [True]}),
    )  # fmt: skip


def planned(steps: list[Step]) -> list[Any]:
    """What a batch would send or decide for these steps, comparable across records."""
    out: list[Any] = []
    for step in steps:
        if isinstance(step, IndexAction | DeleteAction):
            out.append((step.mapping.name, action_lines(step), step.old_location_known))
        elif isinstance(step, FetchItem):
            out.append(("fetch", step.mapping.name))
        elif isinstance(step, Skip):
            out.append(("skip", step.reason, step.mapping and step.mapping.name))
        elif isinstance(step, Rejected):
            out.append(("rejected", str(step.error), step.mapping and step.mapping.name))
    return out


def change_view(change: ChangeRecord, table_mappings: MappingSet) -> dict[str, Any]:
    view = {name: getattr(change, name) for name in CHANGE_FIELDS}
    view["describe"] = change.describe()
    view["planned"] = planned(plan_record(change, table_mappings))
    return view


@pytest.mark.parametrize("name", sorted(ARNS))
def test_fast_reads_get_records_recorded_answer_same_changes_as_botocore(name: str) -> None:
    # GIVEN a recorded GetRecords answer, read by botocore and by FastReads
    arn = ARNS[name]
    (slow, _), (fast, _) = both("dynamodbstreams", {"GetRecords": recorded(name)})

    # WHEN each reads it
    by_botocore = slow.get_records(ShardIterator="it-1", Limit=1000)
    by_fast = fast.get_records(ShardIterator="it-1", Limit=1000)

    # THEN the shard position and every change cdcsync makes of its records are equal
    assert by_fast.get("NextShardIterator") == by_botocore.get("NextShardIterator")
    assert len(by_fast["Records"]) == len(by_botocore["Records"])
    table_mappings = mappings(arn.split(":table/")[1].split("/")[0])
    for slow_raw, fast_raw in zip(by_botocore["Records"], by_fast["Records"], strict=True):
        slow_change = parse_record(slow_raw, stream_arn=arn)
        fast_change = parse_record(fast_raw, stream_arn=arn)
        assert change_view(fast_change, table_mappings) == change_view(slow_change, table_mappings)
    assert by_fast["ResponseMetadata"]["RequestId"] == by_botocore["ResponseMetadata"]["RequestId"] == "REQ1"
    assert by_fast["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_fast_reads_recorded_answers_cover_every_record_kind() -> None:
    """The fixtures hold what the equality above must see: every event, TTL, KEYS_ONLY, a closed shard."""
    records = [
        record
        for name in ARNS
        for record in json.loads(recorded(name))["Records"]
    ]  # fmt: skip
    kinds = {(r["eventName"], r["dynamodb"]["StreamViewType"], "userIdentity" in r) for r in records}
    assert {("INSERT", "NEW_AND_OLD_IMAGES", False), ("MODIFY", "NEW_AND_OLD_IMAGES", False),
            ("REMOVE", "NEW_AND_OLD_IMAGES", False), ("REMOVE", "NEW_AND_OLD_IMAGES", True),
            ("MODIFY", "KEYS_ONLY", False), ("REMOVE", "KEYS_ONLY", True)} <= kinds  # fmt: skip
    types = {
        kind
        for r in records
        for image in ("NewImage", "OldImage")
        for kind in _types(r["dynamodb"].get(image))
    }
    assert types == {"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"}
    assert "NextShardIterator" not in json.loads(recorded("aws_get_records_keys_only_closed"))


def _types(image: dict[str, Any] | None) -> Iterator[str]:
    for value in (image or {}).values():
        (kind, inner), = value.items()  # fmt: skip
        yield kind
        if kind == "M":
            yield from _types(inner)
        if kind == "L":
            yield from _types({str(i): member for i, member in enumerate(inner)})


@pytest.mark.parametrize("name", ["aws_get_records_new_and_old_images", "aws_get_records_keys_only_closed",
                                  "aws_get_records_empty"])  # fmt: skip
def test_fast_reads_shard_reader_same_batches_as_botocore(name: str) -> None:
    # GIVEN a shard reader over each client
    answers = {"GetShardIterator": b'{"ShardIterator": "it-1"}', "GetRecords": recorded(name)}
    (slow, _), (fast, _) = both("dynamodbstreams", answers)

    def read(streams: Any) -> tuple[Any, ...]:
        reader = ShardReader(
            streams, ARNS[name], SHARD, "", table="T", metrics=NullMetrics(), wall=lambda: 1_795_353_700.0
        )
        batch = reader.read()
        return len(batch.records), batch.next_position, batch.ended, batch.millis_behind, reader.position

    # THEN both report the same records, position, end of shard and iterator age
    assert read(fast) == read(slow)


@pytest.mark.parametrize("name", sorted(SCANS))
def test_fast_reads_scan_recorded_answer_same_items_and_key_as_botocore(name: str) -> None:
    # GIVEN a recorded Scan page, read by botocore and by FastReads
    table, key_name = SCANS[name]
    (slow, _), (fast, _) = both("dynamodb", {"Scan": recorded(name)})
    request = {"TableName": table, "Segment": 0, "TotalSegments": 4, "ReturnConsumedCapacity": "TOTAL"}

    by_botocore = slow.scan(**request)
    by_fast = fast.scan(**request)

    # THEN the plain items, the records and bulk lines backfill makes of them, and the page's
    # counts, capacity and key (as botocore shapes it, bytes and all) are equal
    for member in ("Count", "ScannedCount", "ConsumedCapacity", "LastEvaluatedKey"):
        assert by_fast.get(member) == by_botocore.get(member), member
    assert [image_to_plain(item) for item in by_fast["Items"]] == [
        image_to_plain(item) for item in by_botocore["Items"]
    ]
    stream = TableStream(
        table, (key_name,), f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/x", REGION
    )
    table_mappings = mappings(table)

    def backfilled(items: list[dict[str, Any]]) -> list[Any]:
        records = [
            insert_record(stream, item, seconds=SECONDS, sequence=f"b-{n}") for n, item in enumerate(items)
        ]
        return [
            change_view(parse_record(r, version_ms=SECONDS * 1000 - 5000), table_mappings) for r in records
        ]

    assert backfilled(by_fast["Items"]) == backfilled(by_botocore["Items"])
    if "LastEvaluatedKey" in by_botocore:
        assert encode_key(by_fast["LastEvaluatedKey"]) == encode_key(by_botocore["LastEvaluatedKey"])


@pytest.mark.parametrize("name", sorted(SCANS))
def test_fast_reads_scan_page_lambda_shaped_gives_the_records_of_botocores_page(name: str) -> None:
    # GIVEN a recorded Scan page read by a segment scan through botocore and through FastReads
    table, key_name = SCANS[name]
    (slow, _), (fast, _) = both("dynamodb", {"Scan": recorded(name)})

    def first_page(client: Any) -> Page:
        return next(iter(SegmentScan(client, table, 0, 4, read_ahead=False).pages()))

    by_botocore, by_fast = first_page(slow), first_page(fast)
    # THEN only FastReads' page says its items are Lambda-shaped (binaries as base64 text)
    assert (by_fast.lambda_shaped, by_botocore.lambda_shaped) == (True, False)
    # AND the records backfill makes of each, the fast page's items taken as they are, are equal
    stream = TableStream(
        table, (key_name,), f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/x", REGION
    )

    def records(page: Page) -> list[dict[str, Any]]:
        sequences = [f"b-{n}" for n in range(len(page.items))]
        return insert_records(
            stream, page.items, seconds=SECONDS, sequences=sequences, shaped=page.lambda_shaped
        )

    assert records(by_fast) == records(by_botocore)


@pytest.mark.parametrize(
    "start_key",
    [
        {"Id": {"B": b"\x00\x01\x02\xff"}},  # bytes, as botocore returns it (and backfill/scan.decode_key)
        {"Id": {"B": "text is its UTF-8 bytes"}},  # botocore's rule for text in a blob
        {"Pk": {"S": "user#1"}, "Sk": {"N": "12345678901234567890123456789012345678"}},
    ],
)
def test_fast_reads_scan_request_same_body_as_botocore(start_key: dict[str, Any]) -> None:
    # GIVEN a Scan from a saved key (backfill --resume)
    (slow, slow_http), (fast, fast_http) = both("dynamodb", {"Scan": recorded("aws_scan_last_page")})
    request = {
        "TableName": "Files",
        "Segment": 3,
        "TotalSegments": 8,
        "ReturnConsumedCapacity": "TOTAL",
        "Limit": 1000,
        "ExclusiveStartKey": start_key,
    }

    slow.scan(**request)
    fast.scan(**request)

    # THEN FastReads sent the same JSON, to the same URL, signed for dynamodb in the client's region
    assert fast_http.bodies() == slow_http.bodies()
    sent = fast_http.sent[0]
    assert sent.url == slow_http.sent[0].url == f"{ENDPOINT}/"
    assert sent.method == "POST"
    assert header(sent, "X-Amz-Target") == "DynamoDB_20120810.Scan"
    assert header(sent, "Content-Type") == "application/x-amz-json-1.0"
    assert header(sent, "Authorization").startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/us-east-1/dynamodb/aws4_request" in header(sent, "Authorization")
    assert header(sent, "X-Amz-Security-Token") == "testing"
    assert header(sent, "User-Agent").startswith("cdcsync/")


def test_fast_reads_scan_key_round_trips_through_either_path_and_saved_progress() -> None:
    # GIVEN the LastEvaluatedKey of a page with a binary key, read by FastReads
    (slow, slow_http), (fast, fast_http) = both("dynamodb", {"Scan": recorded("aws_scan_page")})
    key = fast.scan(TableName="Files")["LastEvaluatedKey"]

    # WHEN it is saved as backfill progress and sent again, by each path
    saved = decode_key(json.loads(json.dumps(encode_key(key))))
    slow.scan(TableName="Files", ExclusiveStartKey=key)
    fast.scan(TableName="Files", ExclusiveStartKey=saved)

    # THEN it is botocore's shape, and both paths send the same key
    assert key == {"Id": {"B": b"\x00\x01\x03"}}
    assert fast_http.bodies()[1]["ExclusiveStartKey"] == slow_http.bodies()[0]["ExclusiveStartKey"]
    assert slow_http.bodies()[0]["ExclusiveStartKey"] == {"Id": {"B": "AAED"}}


def test_fast_reads_get_records_request_same_body_and_target_as_botocore() -> None:
    (slow, slow_http), (fast, fast_http) = both(
        "dynamodbstreams", {"GetRecords": recorded("aws_get_records_empty")}
    )
    slow.get_records(ShardIterator="arn:...|1|AAAA", Limit=1000)
    fast.get_records(ShardIterator="arn:...|1|AAAA", Limit=1000)
    assert fast_http.bodies() == slow_http.bodies() == [{"ShardIterator": "arn:...|1|AAAA", "Limit": 1000}]
    assert header(fast_http.sent[0], "X-Amz-Target") == "DynamoDBStreams_20120810.GetRecords"
    # DynamoDB Streams signs as dynamodb, as botocore does
    assert "/us-east-1/dynamodb/aws4_request" in header(slow_http.sent[0], "Authorization")
    assert "/us-east-1/dynamodb/aws4_request" in header(fast_http.sent[0], "Authorization")


def test_fast_reads_other_methods_are_the_clients() -> None:
    # GIVEN a wrapped streams client
    (_, _), (fast, http) = both("dynamodbstreams", {"GetShardIterator": b'{"ShardIterator": "it-9"}'})

    # THEN every other call goes through botocore as before (a datetime-free answer, parsed by it)
    assert (
        fast.get_shard_iterator(
            StreamArn=ARNS["aws_get_records_empty"], ShardId=SHARD, ShardIteratorType="LATEST"
        )["ShardIterator"]
        == "it-9"
    )
    assert fast.meta.service_model.service_name == "dynamodbstreams"
    assert len(http.sent) == 1
    with pytest.raises(AttributeError):
        fast.scan  # noqa: B018 - a streams client has no scan


def test_with_fast_reads_switched_off_is_the_client_itself() -> None:
    made, _ = client("dynamodb", {})
    assert with_fast_reads(made, enabled=False) is made
    assert isinstance(with_fast_reads(made, enabled=True), FastReads)


def test_fast_reads_other_service_refused() -> None:
    made: Any = boto3.Session(region_name=REGION).client("sqs", endpoint_url=ENDPOINT)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="FastReads reads DynamoDB Streams or DynamoDB, not sqs"):
        FastReads(made)


def test_fast_reads_no_credentials_same_error_as_botocore() -> None:
    # GIVEN clients that found no credentials (no role, profile or keys)
    (slow, slow_http), (bare, fast_http) = (client("dynamodb", {"Scan": b"{}"}) for _ in range(2))
    for made in (slow, bare):
        made._request_signer._credentials = None
    fast = FastReads(bare)

    # THEN both refuse to send, with botocore's NoCredentialsError (cdcsync: a configuration error)
    with pytest.raises(NoCredentialsError) as by_botocore:
        slow.scan(TableName="Files")
    with pytest.raises(NoCredentialsError) as by_fast:
        fast.scan(TableName="Files")
    assert str(by_fast.value) == str(by_botocore.value) == "Unable to locate credentials"
    assert error_kind(by_fast.value) == "configuration"
    assert slow_http.sent == fast_http.sent == []


def test_fast_reads_dead_letter_record_differs_only_in_creation_time_shape() -> None:
    # GIVEN one record read by each path
    (slow, _), (fast, _) = both(
        "dynamodbstreams", {"GetRecords": recorded("aws_get_records_new_and_old_images")}
    )
    slow_raw = slow.get_records(ShardIterator="it-1")["Records"][0]
    fast_raw = fast.get_records(ShardIterator="it-1")["Records"][0]

    # WHEN each is kept in a dead letter (JSON-safe)
    slow_kept, fast_kept = json_safe(slow_raw), json_safe(fast_raw)

    # THEN only ApproximateCreationDateTime differs: botocore's datetime in ISO text, FastReads'
    # the epoch number DynamoDB sent (as in a Lambda event's letter)
    shown = slow_kept["dynamodb"].pop("ApproximateCreationDateTime")  # in the host's time zone
    assert dt.datetime.fromisoformat(shown).timestamp() == 1_795_353_600  # 2026-11-22T13:20:00Z
    assert fast_kept["dynamodb"].pop("ApproximateCreationDateTime") == 1_795_353_600
    assert fast_kept == slow_kept
