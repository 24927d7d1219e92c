"""``cdcsync validate --tables``: mappings checked against the tables' streams (moto over HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdcsync.entrypoints.cli import main


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
    # THEN each thing a stream cannot carry is a problem on its mapping (an index named by keys is fine)
    assert code == 1
    assert err == [
        f'{path}:2: index: "orders-{{Region}}" needs the old image to find a document, which the '
        "table's NEW_IMAGE stream does not carry: a document moved meanwhile stays in its old place "
        "(counted in cdcsync_unknown_location_writes_total) and a REMOVE is a dead letter "
        "(unknown_location); stream NEW_AND_OLD_IMAGES",
        f"{path}:2: skip_unchanged: needs the old image, which the table's NEW_IMAGE stream does not "
        "carry: it never skips; stream NEW_AND_OLD_IMAGES",
        f"{path}:5: table: table {silent} has no enabled stream: nothing reaches the index",
        "3 problems with the tables' streams",
    ]
