"""The backfill state machine's Lambda handlers against moto (DynamoDB, S3) and the local OpenSearch.

The Step Functions execution is played by the test, from the template's own definition
(``tests/support/state_machine.py``): CheckExport's answer goes through its ``ResultSelector``, each
line of the export's ``manifest-files.json`` through the Map's ``ItemSelector``, and a file's answer
is its next input while ``finished`` is false (the Choice). What Step Functions adds (its retries,
the Distributed Map's child executions, ResultWriter) is not run here.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from cdcsync.aws_lambda import export_check_handler, export_handler, verify_handler
from cdcsync.backfill import run_backfill
from cdcsync.entrypoints.export_lambda import use_services
from cdcsync.errors import ConfigError
from cdcsync.services import Services
from cdcsync.settings import Settings, load_settings
from cdcsync.versions import read_version
from tests.integration.lambda_world import FakeContext
from tests.integration.test_backfill import doc_id, exact, export_json, sample_item, typed
from tests.support.state_machine import backfill_definition, select
from tests.support.tables import create_items_table

EXPORT_ID = "01767225600000-abcd1234"


@dataclass
class Export:
    table: str
    url: str
    export_time_ms: int
    items: list[dict[str, Any]]


@dataclass
class Side:
    """One index and the settings that write to it."""

    index: str
    settings: Settings


@pytest.fixture
def sides(
    tmp_path: Path, unique_name: str, dynamodb: Any, opensearch: Any, opensearch_url: str, moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, Side, Side]]:  # fmt: skip
    """A table and two indices: one the handlers write, one the single-process backfill writes."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    table = f"Items-{unique_name}"
    create_items_table(dynamodb, table)
    found = []
    for name in ("lambda", "process"):
        index = f"{unique_name}-{name}"
        folder = tmp_path / name
        folder.mkdir()
        (folder / "mapping.yaml").write_text(f"table: {table}\nindex: {index}\n")
        settings = load_settings(
            mappings=folder / "mapping.yaml",
            opensearch_url=opensearch_url,
            dlq=f"file://{folder / 'dlq.jsonl'}",
            checkpoints=f"file://{folder / 'checkpoints.json'}",
            max_retries=2,
            retry_max_seconds=5,
            _env_file=None,
        )
        opensearch.indices.create(index=index, body={"mappings": {"dynamic": False}})
        found.append(Side(index, settings))
    yield table, found[0], found[1]
    use_services(None)
    dynamodb.delete_table(TableName=table)


def write_export(
    s3: Any, bucket: str, table: str, items: list[dict[str, Any]], files: int, age_s: float
) -> Export:
    """An ExportTableToPointInTime layout (DYNAMODB_JSON, ``files`` gzipped data files), ``age_s`` old."""
    exported = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age_s)
    export_time = exported.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    folder = f"exports/AWSDynamoDB/{EXPORT_ID}"
    s3.create_bucket(Bucket=bucket)
    lines = []
    for number in range(files):
        part = items[number::files]
        key = f"{folder}/data/file{number}.json.gz"
        body = b"".join(json.dumps({"Item": export_json(typed(item))}).encode() + b"\n" for item in part)
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body))
        lines.append(
            json.dumps({"itemCount": len(part), "md5Checksum": "x", "etag": "y", "dataFileS3Key": key})
        )
    s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-files.json", Body="\n".join(lines).encode())
    summary = {
        "version": "2020-06-30", "exportTime": export_time, "startTime": export_time, "endTime": export_time,
        "exportArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}/export/{EXPORT_ID}",
        "tableArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}",
        "manifestFilesS3Key": f"{folder}/manifest-files.json", "itemCount": len(items),
        "outputFormat": "DYNAMODB_JSON", "exportType": "FULL_EXPORT",
    }  # fmt: skip
    s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-summary.json", Body=json.dumps(summary).encode())
    export_ms = int(dt.datetime.fromisoformat(export_time).timestamp() * 1000)
    return Export(table, f"s3://{bucket}/exports", export_ms, items)


def documents(opensearch: Any, index: str) -> dict[str, tuple[dict[str, Any], int]]:
    """Every document as (exactly parsed source, version)."""
    opensearch.indices.refresh(index=index)
    raw = opensearch.transport.perform_request(
        "POST",
        f"/{index}/_search",
        params={"size": 10000, "version": "true"},
        body={"query": {"match_all": {}}},
    )
    hits = exact(json.dumps(raw))["hits"]["hits"]
    return {hit["_id"]: (hit["_source"], hit["_version"]) for hit in hits}


def play_execution(
    s3: Any, execution_input: dict[str, Any], context_ms: int = 60_000
) -> list[dict[str, Any]]:
    """CheckExport, then LoadFiles (every file at once, each looping while not finished), as the
    template's definition wires them; returns each file's last answer."""
    definition = backfill_definition()
    check, load = definition["States"]["CheckExport"], definition["States"]["LoadFiles"]
    state = dict(execution_input)
    state["load"] = select(check["ResultSelector"], {"Payload": export_check_handler(state, FakeContext())})
    reader = select(load["ItemReader"]["Parameters"], state)
    body = s3.get_object(Bucket=reader["Bucket"], Key=reader["Key"])["Body"].read().decode()
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    processor = load["ItemProcessor"]["States"]

    def child(index: int, line: dict[str, Any]) -> dict[str, Any]:
        item = select(load["ItemSelector"], state, {"Map": {"Item": {"Index": index, "Value": line}}})
        while True:
            item = export_handler(item, FakeContext(context_ms))
            (choice,) = processor["FileLoaded"]["Choices"]
            if item[choice["Variable"].removeprefix("$.")] != choice["BooleanEquals"]:
                return item

    with ThreadPoolExecutor(max_workers=state["load"]["maxConcurrency"]) as pool:
        return list(pool.map(child, range(len(lines)), lines))


def test_export_handler_per_file_concurrently_builds_the_index_of_backfill_from_export(
    sides: tuple[str, Side, Side], s3: Any, opensearch: Any, unique_name: str
) -> None:
    # GIVEN an export of 240 items of every type in 4 data files, 5 s old
    table, by_lambda, by_process = sides
    export = write_export(s3, unique_name, table, [sample_item(n) for n in range(240)], files=4, age_s=5)
    # WHEN the state machine's steps load it, one export handler per data file, all at once
    use_services(Services(by_lambda.settings, session=boto3.Session()))
    answers = play_execution(s3, {"table": table, "export": export.url})
    # AND the single-process `cdcsync backfill --from-export` loads it into the other index
    report = run_backfill(by_process.settings, table, from_export=export.url, session=boto3.Session())
    # THEN every file is finished and counted once
    assert sorted(a["dataFileS3Key"].rsplit("/", 1)[1] for a in answers) == [
        f"file{n}.json.gz" for n in range(4)
    ]
    assert all(a["finished"] for a in answers)
    assert [a["itemsDone"] for a in answers] == [a["itemsRead"] for a in answers] == [60] * 4
    assert sum(a["written"] for a in answers) == report.written == 240
    assert sum(a["deadLettered"] for a in answers) == 0
    # AND the two indices hold the same documents at the same versions: the export time's read version
    loaded, expected = documents(opensearch, by_lambda.index), documents(opensearch, by_process.index)
    assert len(loaded) == 240
    assert loaded == expected
    assert {version for _, version in loaded.values()} == {read_version(export.export_time_ms)}
    assert set(loaded) == {doc_id(item) for item in export.items}


def test_export_handler_too_little_time_for_a_page_fails_not_looping_then_loads_with_time(
    sides: tuple[str, Side, Side], s3: Any, opensearch: Any, unique_name: str
) -> None:
    # GIVEN an export of one data file of 30 items
    table, by_lambda, _ = sides
    export = write_export(s3, unique_name, table, [sample_item(n) for n in range(30)], files=1, age_s=5)
    use_services(Services(by_lambda.settings, session=boto3.Session()))
    definition = backfill_definition()
    state = {"table": table, "export": export.url}
    state["load"] = select(
        definition["States"]["CheckExport"]["ResultSelector"], {"Payload": export_check_handler(state)}
    )
    line = {"dataFileS3Key": f"exports/AWSDynamoDB/{EXPORT_ID}/data/file0.json.gz", "itemCount": 30}
    item = select(
        definition["States"]["LoadFiles"]["ItemSelector"],
        state,
        {"Map": {"Item": {"Index": 0, "Value": line}}},
    )
    # WHEN an invocation starts with less than a page's margin (a function Timeout below 31 s)
    with pytest.raises(ConfigError) as caught:
        export_handler(item, FakeContext(29_000))
    # THEN it writes nothing and fails (not retried), rather than answering its own input unfinished:
    # every invocation of that function would do the same, and the Choice would loop for ever
    # (changed by the review: it answered {"finished": false, "itemsDone": 0})
    assert str(caught.value).startswith(f"export load of {table}: 28 s left in the invocation, less than")
    assert documents(opensearch, by_lambda.index) == {}
    # AND an invocation with time loads the file to its end
    second = export_handler(item, FakeContext(60_000))
    assert (second["finished"], second["itemsDone"], second["itemsRead"], second["written"]) == (
        True,
        30,
        30,
        30,
    )
    assert len(documents(opensearch, by_lambda.index)) == 30


def test_export_check_handler_answers_the_manifest_and_export_time(
    sides: tuple[str, Side, Side], s3: Any, unique_name: str
) -> None:
    # GIVEN an export of 3 data files, 5 s old
    table, by_lambda, _ = sides
    export = write_export(s3, unique_name, table, [sample_item(n) for n in range(9)], files=3, age_s=5)
    use_services(Services(by_lambda.settings, session=boto3.Session()))
    # WHEN the state machine's first step checks it
    answer = export_check_handler({"table": table, "export": export.url})
    # THEN it names the manifest the Map reads and the one export time every file is written with
    assert answer == {
        "table": table,
        "export": f"s3://{unique_name}/exports/AWSDynamoDB/{EXPORT_ID}",
        "bucket": unique_name,
        "manifestFilesS3Key": f"exports/AWSDynamoDB/{EXPORT_ID}/manifest-files.json",
        "exportTimeMs": export.export_time_ms,
        "version": read_version(export.export_time_ms),
        "itemCount": 9,
        "dataFiles": 3,
    }


def test_export_check_handler_old_export_is_refused_before_any_file_is_loaded(
    sides: tuple[str, Side, Side], s3: Any, unique_name: str
) -> None:
    # GIVEN an export 2 minutes old, and an index that forgets deletes after 60 s (the default)
    table, by_lambda, _ = sides
    export = write_export(s3, unique_name, table, [sample_item(1)], files=1, age_s=120)
    use_services(Services(by_lambda.settings, session=boto3.Session()))
    # WHEN the state machine's first step checks it THEN it fails (not retried: ConfigError) with the reason
    folder = f"s3://{unique_name}/exports/AWSDynamoDB/{EXPORT_ID}"
    with pytest.raises(ConfigError) as caught:
        export_check_handler({"table": table, "export": export.url})
    message = str(caught.value)
    assert message.startswith(f"--from-export: {folder} was exported at ")
    assert f'index "{by_lambda.index}" forgets a delete after 60s (index.gc_deletes, the default)' in message
    assert message.endswith(
        f"run cdcsync verify --table {table} --repair to delete what came back "
        '(--allow-old-export is "allowOldExport": true in the execution input)'
    )
    # AND with "allowOldExport": true it is let through
    assert (
        export_check_handler({"table": table, "export": export.url, "allowOldExport": True})["dataFiles"] == 1
    )


def test_export_handler_event_without_a_data_file_is_a_configuration_error(
    sides: tuple[str, Side, Side],
) -> None:
    # GIVEN the handler with the table's mappings
    table, by_lambda, _ = sides
    use_services(Services(by_lambda.settings, session=boto3.Session()))
    # WHEN it is invoked with an event that is not a Map item
    # THEN it fails, unretried, saying what it expected
    with pytest.raises(ConfigError) as caught:
        export_handler({"table": table, "bucket": "b"})
    assert str(caught.value) == (
        "export handler: the event has no dataFileS3Key, exportTimeMs (got bucket, table); expected a "
        "manifest-files.json line (dataFileS3Key) with table, bucket and exportTimeMs from the state "
        "machine's ItemSelector"
    )


def test_verify_handler_after_the_load_reports_no_drift(
    sides: tuple[str, Side, Side], s3: Any, dynamodb: Any, unique_name: str
) -> None:
    # GIVEN a table of 20 items, loaded through the handlers from its export
    table, by_lambda, _ = sides
    items = [sample_item(n) for n in range(20)]
    for item in items:
        dynamodb.put_item(TableName=table, Item=typed(item))
    export = write_export(s3, unique_name, table, items, files=2, age_s=5)
    use_services(Services(by_lambda.settings, session=boto3.Session()))
    play_execution(s3, {"table": table, "export": export.url})
    # WHEN the last step verifies a sample, with the payload the definition builds
    definition = backfill_definition()
    payload = select(
        definition["States"]["Verify"]["Parameters"]["Payload"],
        {"load": {"check": {"table": table}, "verifySample": 10}},
    )
    answer = verify_handler(payload)
    # THEN it finds no drift, and the Choice after it goes to Done
    assert (answer["table"], answer["sample"], answer["checked"], answer["drift"]) == (table, 10, 10, False)
    (choice,) = definition["States"]["Verified"]["Choices"]
    assert (choice["Variable"], choice["Next"]) == ("$.verify.report.drift", "Drift")
    assert definition["States"]["Verified"]["Default"] == "Done"


def test_export_handler_item_that_cannot_be_written_goes_to_the_dead_letter_queue(
    sides: tuple[str, Side, Side], s3: Any, opensearch: Any, unique_name: str
) -> None:
    # GIVEN an export of 5 items, one of them with a key too long for a document id (over 512 bytes)
    table, by_lambda, _ = sides
    long_key = {"Pk": "x" * 600, "Sk": b"\x01", "Name": "long"}
    export = write_export(
        s3, unique_name, table, [*(sample_item(n) for n in range(4)), long_key], files=1, age_s=5
    )
    use_services(Services(by_lambda.settings, session=boto3.Session()))
    # WHEN the state machine's steps load it
    (answer,) = play_execution(s3, {"table": table, "export": export.url})
    # THEN the other items are written, and that one is a dead letter in the configured queue, counted
    assert (answer["finished"], answer["itemsRead"], answer["written"], answer["deadLettered"]) == (
        True,
        5,
        4,
        1,
    )
    assert len(documents(opensearch, by_lambda.index)) == 4
    assert by_lambda.settings.dlq.startswith("file://")
    (letter,) = Path(by_lambda.settings.dlq.removeprefix("file://")).read_text().splitlines()
    stored = json.loads(letter)
    assert (stored["error"]["type"], stored["sequence_number"]) == (
        "id_too_long",
        "export-00000-000000000-000004",
    )
