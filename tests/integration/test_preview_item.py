"""``cdcsync preview --table T --key Name=Value``: the item read from DynamoDB (moto over HTTP), and
the document it shows is the one backfill writes (osmem-server over HTTP)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch

from cdcsync.entrypoints.cli import main
from cdcsync.versions import read_version


@pytest.fixture
def orders(
    unique_name: str, dynamodb: Any, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Path]:
    """An Orders table (composite key: string and number) with a paid and a draft order, and its mapping."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    table = f"{unique_name}-orders"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[
            {"AttributeName": "CustomerId", "KeyType": "HASH"},
            {"AttributeName": "OrderId", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "CustomerId", "AttributeType": "S"},
            {"AttributeName": "OrderId", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    paid = {
        "CustomerId": {"S": "c-1"},
        "OrderId": {"N": "7"},
        "Status": {"S": "paid"},
        "Total": {"N": "12.50"},
        "Lines": {"L": [{"M": {"Sku": {"S": "a\x1b[31m"}, "Qty": {"N": "2"}}}]},
        "Tags": {"NS": ["3", "1", "2"]},
        "ExpiresAt": {"N": "1900000000"},
        "Secret": {"S": "s3cr3t"},
    }
    draft = {"CustomerId": {"S": "c-1"}, "OrderId": {"N": "8"}, "Status": {"S": "draft"}}
    for item in (paid, draft):
        dynamodb.put_item(TableName=table, Item=item)
    mappings = tmp_path / "orders.yaml"
    mappings.write_text(
        f"table: {table}\n"
        f"index: {unique_name}-orders\n"
        'id: "{CustomerId}#{OrderId}"\n'
        'routing: "{CustomerId}"\n'
        "where: {Status: [{anything-but: [draft]}]}\n"
        "fields: {exclude: [Secret], rename: {Total: total}}\n"
    )
    return table, mappings


def _epoch_ms(iso: str) -> int:
    return (dt.datetime.fromisoformat(iso) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(
        milliseconds=1
    )


def _preview(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], list[str]]:
    code = main(["preview", *argv])
    out, err = capsys.readouterr()
    return code, out.split("\n")[:-1], err.split("\n")[:-1]


def test_cli_preview_item_shows_the_document_backfill_writes(
    orders: tuple[str, Path],
    unique_name: str,
    opensearch: OpenSearch,
    opensearch_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN an order with a nested list of maps, a number set, a TTL attribute and an excluded secret
    table, mappings = orders
    key = ["--table", table, "--key", "CustomerId=c-1", "--key", "OrderId=7", "--mappings", str(mappings)]
    # WHEN it is previewed, as text and as JSON
    code, out, err = _preview(key, capsys)
    json_code, json_out, _ = _preview([*key, "--json"], capsys)
    # THEN the text shows the read item's document, its target and a read version, escaped
    assert code == json_code == 0
    read = re.fullmatch(
        rf'item {table} \{{"CustomerId":"c-1","OrderId":7\}} \(key hash [0-9a-f]{{16}}\), read (\S+): '
        "what backfill writes",
        out[0],
    )
    assert read is not None, out
    version = read_version(_epoch_ms(read[1]))
    assert out[1:] == [
        f"  {mappings}:1 ({table} -> {unique_name}-orders): index {unique_name}-orders/c-1#7 (routing c-1), "
        f"version {version}",
        "    {",
        '      "CustomerId": "c-1",',
        '      "OrderId": 7,',
        '      "Status": "paid",',
        '      "total": 12.5,',
        '      "Lines": [',
        "        {",
        '          "Sku": "a\\u001b[31m",',
        '          "Qty": 2',
        "        }",
        "      ],",
        '      "Tags": [',
        "        1,",
        "        2,",
        "        3",
        "      ],",
        '      "ExpiresAt": 1900000000',
        "    }",
    ]
    assert err == ["1 record: 1 index"]
    shown = json.loads(json_out[0])
    assert shown["found"] is True
    (step,) = shown["steps"]
    assert step["version"] == read_version(_epoch_ms(shown["read"]))
    # AND backfill writes exactly that document, at that index, id and routing
    for name, value in {
        "CDCSYNC_OPENSEARCH_URL": opensearch_url,
        "CDCSYNC_DLQ": f"file://{tmp_path / 'dlq.jsonl'}",
        "CDCSYNC_CHECKPOINTS": f"file://{tmp_path / 'checkpoints.json'}",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["backfill", "--table", table, "--mappings", str(mappings)]) == 0
    written = opensearch.get(index=step["index"], id=step["id"], routing=step["routing"])
    assert written["_source"] == step["document"]
    assert (step["index"], step["id"], step["routing"]) == (f"{unique_name}-orders", "c-1#7", "c-1")


@pytest.mark.parametrize(
    ("keys", "code", "expected"),
    [
        pytest.param(
            ["--key", "CustomerId=c-1", "--key", "OrderId=8"],
            0,
            [
                "  {mappings}:1 ({table} -> {index}): skip",
                "    where: the item does not match where, and was not in the index before",
            ],
            id="where-skips",
        ),
        pytest.param(["--key", "CustomerId=c-1", "--key", "OrderId=9"], 1, [], id="no-item"),
    ],
)
def test_cli_preview_item_without_document_says_why(
    orders: tuple[str, Path],
    unique_name: str,
    keys: list[str],
    code: int,
    expected: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a draft order the where excludes, and a key with no item
    table, mappings = orders
    # WHEN previewed
    got, out, _ = _preview(["--table", table, *keys, "--mappings", str(mappings)], capsys)
    # THEN the rule that keeps it out is named, or that there is no such item (exit 1)
    assert got == code
    ending = "what backfill writes" if code == 0 else "no such item; backfill writes nothing for it"
    assert re.fullmatch(rf"item {table} .*, read \S+: {ending}", out[0]), out
    assert out[1:] == [
        line.format(mappings=mappings, table=table, index=f"{unique_name}-orders") for line in expected
    ]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        pytest.param(
            ["--key", "CustomerId=c-1", "--key", "OrderId=seven"],
            "preview: --key OrderId=seven: key attribute OrderId of table {table} is a number (N)",
            id="not-a-number",
        ),
        pytest.param(
            ["--key", "CustomerId=c-1"],
            "preview: the key of table {table} is CustomerId (S), OrderId (N): add --key OrderId=VALUE",
            id="sort-key-missing",
        ),
        pytest.param(
            ["--key", "Customer=c-1"],
            "preview: --key Customer: not a key attribute of table {table} "
            "(its key: CustomerId (S), OrderId (N))",
            id="not-a-key",
        ),
        pytest.param(
            ["--key", "CustomerId"],
            "preview: --key CustomerId: expected Name=Value "
            "(the key of {table}: CustomerId (S), OrderId (N))",
            id="no-value",
        ),
    ],
)
def test_cli_preview_item_wrong_key_exits_2_with_one_line(
    orders: tuple[str, Path],
    keys: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    table, mappings = orders
    code, out, err = _preview(["--table", table, *keys, "--mappings", str(mappings)], capsys)
    assert (code, out, err) == (2, [], ["cdcsync: " + message.format(table=table)])


def test_cli_preview_item_of_missing_table_exits_2_with_one_line(
    unique_name: str,
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a mapping of a table that does not exist
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    mappings = tmp_path / "m.yaml"
    mappings.write_text(f"table: {unique_name}\nindex: {unique_name}\n")
    # WHEN one of its items is previewed THEN one line names the table and what to check, exit 2
    code, out, err = _preview(["--table", unique_name, "--key", "Id=1", "--mappings", str(mappings)], capsys)
    assert (code, out) == (2, [])
    assert err == [
        f"cdcsync: table {unique_name} does not exist in this account and region "
        "(ResourceNotFoundException); check the mapping's table name and AWS_REGION"
    ]
