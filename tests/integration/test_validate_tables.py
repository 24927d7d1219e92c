"""``cdcsync validate --tables``: mappings checked against the tables' streams (moto over HTTP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cdcsync.entrypoints.cli import main
from cdcsync.entrypoints.worker import build_coordinator
from cdcsync.settings import load_settings

NEW_AND_OLD = (
    "; fix: stream NEW_AND_OLD_IMAGES (a view type cannot change in place: disable the stream, enable it "
    "with NEW_AND_OLD_IMAGES, then run cdcsync backfill)"
)


def _table(dynamodb: Any, name: str, view: str | None) -> None:
    stream = {"StreamEnabled": True, "StreamViewType": view} if view else {"StreamEnabled": False}
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "OrderId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "OrderId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification=stream,
    )


def test_cli_validate_tables_reports_what_each_stream_cannot_carry(
    tmp_path: Path,
    unique_name: str,
    dynamodb: Any,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a NEW_IMAGE table with a templated index, a full-images one, and one without a stream
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    new_image, full, silent = f"{unique_name}-a", f"{unique_name}-b", f"{unique_name}-c"
    _table(dynamodb, new_image, "NEW_IMAGE")
    _table(dynamodb, full, "NEW_AND_OLD_IMAGES")
    _table(dynamodb, silent, None)
    path = tmp_path / "orders.yaml"
    path.write_text(
        "mappings:\n"
        f'  - {{table: {new_image}, index: "orders-{{Region}}", skip_unchanged: true}}\n'
        f'  - {{table: {new_image}, index: "by-id-{{OrderId}}"}}\n'
        f'  - {{table: {full}, index: "orders-{{Region}}", skip_unchanged: true}}\n'
        f"  - {{table: {silent}, index: orders}}\n"
    )
    # WHEN validated against the tables
    code = main(["validate", str(path), "--tables"])
    err = capsys.readouterr().err.splitlines()
    # THEN what never works is a problem on its key's line, what works with limits a warning, each with
    # the fix (an index named by keys is fine)
    assert code == 1
    assert err == [
        f'{path}:2: index: "orders-{{Region}}" needs the old image to find a document, which the '
        "table's NEW_IMAGE stream does not carry: a document moved meanwhile stays in its old place "
        "(counted in cdcsync_unknown_location_writes_total) and a REMOVE is a dead letter "
        f"(unknown_location){NEW_AND_OLD}",
        f"{path}:2: warning: skip_unchanged: needs the old image, which the table's NEW_IMAGE stream does "
        f"not carry: every MODIFY is written{NEW_AND_OLD}",
        f"{path}:5: table: table {silent} has no enabled stream: nothing reaches the index; enable one: "
        f"aws dynamodb update-table --table-name {silent} --stream-specification "
        "StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES",
        "2 problems with the tables",
    ]


ORDERS = """\
table: {table}
index: orders
id: "{{OrderID}}"
where: {{Status: [open]}}
version: attribute:Rev
"""


def test_cli_validate_tables_reports_id_typo_and_keys_only_limits_on_their_lines(
    tmp_path: Path,
    unique_name: str,
    dynamodb: Any,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a KEYS_ONLY table keyed by OrderId, and a mapping whose id misspells it
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    _table(dynamodb, unique_name, "KEYS_ONLY")
    path = tmp_path / "orders.yaml"
    path.write_text(ORDERS.format(table=unique_name))
    # WHEN validated against the table
    code = main(["validate", str(path), "--tables"])
    err = capsys.readouterr().err.splitlines()
    # THEN the id and the attribute version are problems, the where a warning, each on its own line
    assert code == 1
    assert err == [
        f'{path}:3: id: "{{OrderID}}" names OrderID, not a key attribute of table {unique_name} (keys: '
        'OrderId): every record is a dead letter; write "{OrderId}"',
        f"{path}:4: warning: where: names Status, not only key attributes, and the table's KEYS_ONLY "
        "stream carries no old image: each write of an item outside where deletes its document, indexed "
        f"or not{NEW_AND_OLD}",
        f"{path}:5: version: attribute:Rev needs the old image to version a delete, which the table's "
        f"KEYS_ONLY stream does not carry: every REMOVE is a dead letter{NEW_AND_OLD}, or set deletes: "
        "{on_remove: ignore, on_ttl_expiry: ignore}",
        "2 problems with the tables",
    ]


def test_cli_validate_tables_only_warnings_exits_0(
    tmp_path: Path,
    unique_name: str,
    dynamodb: Any,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a NEW_IMAGE table and a mapping that only loses skip_unchanged on it
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    _table(dynamodb, unique_name, "NEW_IMAGE")
    path = tmp_path / "orders.yaml"
    path.write_text(f"table: {unique_name}\nindex: orders\nskip_unchanged: true\n")
    # WHEN validated against the table THEN it passes, with the warning
    assert main(["validate", str(path), "--tables"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:3: warning: skip_unchanged: needs the old image, which the table's NEW_IMAGE stream does "
        f"not carry: every MODIFY is written{NEW_AND_OLD}"
    ]


def test_worker_start_refuses_mapping_that_never_works_and_exits_2(
    tmp_path: Path,
    unique_name: str,
    dynamodb: Any,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the KEYS_ONLY table and the mapping whose id misspells its key
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("CDCSYNC_DLQ", f"file://{tmp_path / 'dlq.jsonl'}")
    monkeypatch.setenv("CDCSYNC_CHECKPOINTS", f"file://{tmp_path / 'checkpoints.json'}")
    monkeypatch.setenv("CDCSYNC_METRICS_ADDR", "127.0.0.1:0")
    monkeypatch.setenv("CDCSYNC_LOG_FORMAT", "json")
    _table(dynamodb, unique_name, "KEYS_ONLY")
    path = tmp_path / "orders.yaml"
    path.write_text(ORDERS.format(table=unique_name))
    # WHEN the worker starts
    code = main(["run", "--mappings", str(path)])
    # THEN it does not start: each problem is logged (ERROR), the warning too, and it exits 2
    assert code == 2
    *logs, last = capsys.readouterr().err.splitlines()
    assert last == (
        "cdcsync: 2 mapping problems with the tables' streams or keys (logged above) would dead-letter "
        "records every time; fix them (cdcsync validate --tables lists them)"
    )
    logged = [json.loads(line) for line in logs]
    assert [(entry["level"], entry["message"]) for entry in logged] == [
        ("ERROR", f'{path}:3: id: "{{OrderID}}" names OrderID, not a key attribute of table {unique_name} '
         '(keys: OrderId): every record is a dead letter; write "{OrderId}"'),
        ("WARNING", f"{path}:4: warning: where: names Status, not only key attributes, and the table's "
         "KEYS_ONLY stream carries no old image: each write of an item outside where deletes its document, "
         f"indexed or not{NEW_AND_OLD}"),
        ("ERROR", f"{path}:5: version: attribute:Rev needs the old image to version a delete, which the "
         f"table's KEYS_ONLY stream does not carry: every REMOVE is a dead letter{NEW_AND_OLD}, or set "
         "deletes: {on_remove: ignore, on_ttl_expiry: ignore}"),
    ]  # fmt: skip


def test_worker_start_logs_limits_and_starts(
    tmp_path: Path,
    unique_name: str,
    dynamodb: Any,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a NEW_IMAGE table and a mapping that works there with limits
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    _table(dynamodb, unique_name, "NEW_IMAGE")
    path = tmp_path / "orders.yaml"
    path.write_text(f"table: {unique_name}\nindex: orders\nskip_unchanged: true\n")
    settings = load_settings(
        mappings=path,
        dlq=f"file://{tmp_path / 'dlq.jsonl'}",
        checkpoints=f"file://{tmp_path / 'checkpoints.json'}",
        _env_file=None,
    )
    # WHEN the worker is built THEN it starts, and the limit is one WARNING line with the fix
    build_coordinator(settings)
    assert [
        (r.levelname, r.getMessage()) for r in caplog.records if r.name == "cdcsync.entrypoints.worker"
    ] == [
        (
            "WARNING",
            f"{path}:3: warning: skip_unchanged: needs the old image, which the table's NEW_IMAGE stream "
            f"does not carry: every MODIFY is written{NEW_AND_OLD}",
        )
    ]
