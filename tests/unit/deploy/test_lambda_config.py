"""``lambda_config``: Lambda event source configuration generated from the mappings.

SAM and CloudFormation output is checked by cfn-lint (the SAM translator included) inside a minimal
template; serverless.yml output against the Serverless Framework's schema for ``events: - stream:``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdcsync.deploy import FORMATS, lambda_config
from cdcsync.entrypoints.cli import main
from cdcsync.errors import ConfigError
from cdcsync.mapping.compiled import MappingSet
from cdcsync.mapping.loader import load_mappings

ROOT = Path(__file__).parents[3]

# Orders: two filtered mappings (pushed down, ORed); Audit-Log: a wildcard (not pushed down);
# Users: as shipped (no filter).
ORDERS = """\
mappings:
  - table: Orders
    index: orders
    filter:
      eventName: [INSERT, MODIFY]
  - table: Orders
    index: orders-removed
    filter:
      eventName: [REMOVE]
      dynamodb: {Keys: {OrderId: {S: [{prefix: "ORD#"}]}}}
  - table: Audit-Log
    index: audit
    filter:
      dynamodb: {Keys: {Id: {S: [{wildcard: "a*b"}]}}}
"""


@pytest.fixture
def mapping_dir(tmp_path: Path) -> Path:
    (tmp_path / "orders.yaml").write_text(ORDERS)
    (tmp_path / "users.yaml").write_text((ROOT / "mappings" / "users.yaml").read_text())
    return tmp_path


@pytest.fixture
def mappings(mapping_dir: Path) -> MappingSet:
    return load_mappings(mapping_dir)


def _events(text: str, fmt: str) -> dict[str, dict[str, Any]]:
    """The generated per-table settings, keyed by stream reference, in each format's own spelling."""
    data = yaml.safe_load(text)
    if fmt == "serverless":
        return {event["stream"]["arn"]: event["stream"] for event in data["events"]}
    if fmt == "sam":
        return {e["Properties"]["Stream"]["Ref"]: e["Properties"] for e in data["Events"].values()}
    return {r["Properties"]["EventSourceArn"]["Ref"]: r["Properties"] for r in data["Resources"].values()}


def _key(fmt: str, table: str) -> str:
    return "${param:" + table + "StreamArn}" if fmt == "serverless" else f"{table}StreamArn"


@pytest.mark.parametrize("fmt", FORMATS)
def test_lambda_config_filtered_table_exports_same_criteria_as_cli_filters(
    fmt: str, mappings: MappingSet, mapping_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN what `cdcsync filters` prints for a table whose mappings all have filters
    assert main(["filters", "--table", "Orders", "--mappings", str(mapping_dir)]) == 0
    expected = json.loads(capsys.readouterr().out)
    # WHEN the event source configuration is generated
    settings = _events(lambda_config(mappings, format=fmt, tables=["Orders"]), fmt)["" + _key(fmt, "Orders")]
    # THEN it carries the same filters (serverless.yml takes the pattern objects, not their JSON text)
    if fmt == "serverless":
        assert settings["filterPatterns"] == [json.loads(f["Pattern"]) for f in expected["Filters"]]
    else:
        assert settings["FilterCriteria"] == expected


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("table", "reason"),
    [
        (
            "Users",
            "No FilterCriteria: Mapping {dir}/users.yaml:2 of table Users has no filter (every record), so "
            "no FilterCriteria is exported and Lambda delivers every record; that is right for a mapping "
            "that selects items with where,",
        ),
        ("Audit-Log", "No FilterCriteria: Filter 1 of table Audit-Log uses wildcard, which Lambda event"),
    ],
)
def test_lambda_config_nothing_pushed_down_omits_criteria_and_says_why(
    fmt: str, table: str, reason: str, mappings: MappingSet, mapping_dir: Path
) -> None:
    # GIVEN a table with an unfiltered mapping, and one with a filter Lambda cannot evaluate
    # WHEN its configuration is generated
    text = lambda_config(mappings, format=fmt, tables=[table])
    settings = next(iter(_events(text, fmt).values()))
    # THEN no filter is set (every record is delivered) and a comment gives the reason
    assert "FilterCriteria" not in settings
    assert "filterPatterns" not in settings
    comments = " ".join(line.strip()[2:] for line in text.splitlines() if line.lstrip().startswith("# "))
    assert reason.format(dir=mapping_dir) in comments, text


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (
            "serverless",
            {
                "type": "dynamodb",
                "arn": "${param:OrdersStreamArn}",
                "startingPosition": "TRIM_HORIZON",
                "batchSize": 500,
                "batchWindow": 5,
                "parallelizationFactor": 4,
                "functionResponseType": "ReportBatchItemFailures",
                "bisectBatchOnFunctionError": False,
                "maximumRetryAttempts": -1,
                "maximumRecordAgeInSeconds": -1,
                "destinations": {
                    "onFailure": {
                        "arn": "arn:aws:sqs:${aws:region}:${aws:accountId}:${self:service}-${sls:stage}"
                        "-stream-failures",
                        "type": "sqs",
                    }
                },
            },
        ),
        (
            "sam",
            {
                "Stream": {"Ref": "OrdersStreamArn"},
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": 500,
                "MaximumBatchingWindowInSeconds": 5,
                "ParallelizationFactor": 4,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "BisectBatchOnFunctionError": False,
                "MaximumRetryAttempts": -1,
                "MaximumRecordAgeInSeconds": -1,
                "DestinationConfig": {
                    "OnFailure": {"Destination": {"Fn::GetAtt": ["CdcsyncStreamFailures", "Arn"]}}
                },
            },
        ),
        (
            "cloudformation",
            {
                "FunctionName": {"Ref": "CdcsyncFunction"},
                "EventSourceArn": {"Ref": "OrdersStreamArn"},
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": 500,
                "MaximumBatchingWindowInSeconds": 5,
                "ParallelizationFactor": 4,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "BisectBatchOnFunctionError": False,
                "MaximumRetryAttempts": -1,
                "MaximumRecordAgeInSeconds": -1,
                "DestinationConfig": {
                    "OnFailure": {"Destination": {"Fn::GetAtt": ["CdcsyncStreamFailures", "Arn"]}}
                },
            },
        ),
    ],
)
def test_lambda_config_settings_are_spelled_for_each_format(
    fmt: str, expected: dict[str, Any], mappings: MappingSet
) -> None:
    # GIVEN explicit batching settings WHEN the configuration is generated
    text = lambda_config(
        mappings,
        format=fmt,
        tables=["Orders"],
        batch_size=500,
        batching_window=5,
        parallelization=4,
        bisect=False,
    )
    settings = _events(text, fmt)[_key(fmt, "Orders")]
    # THEN every setting is there under the format's own name (the filters are checked above)
    settings.pop("FilterCriteria", None)
    settings.pop("filterPatterns", None)
    assert settings == expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_lambda_config_unlimited_retries_carry_the_reason(fmt: str, mappings: MappingSet) -> None:
    # WHEN any configuration is generated
    lines = lambda_config(mappings, format=fmt, tables=["Users"]).splitlines()
    # THEN the comment right above the retry setting says why Lambda must never discard records
    at = next(n for n, line in enumerate(lines) if "aximumRetryAttempts: -1" in line)
    comment = " ".join(line.strip().removeprefix("# ") for line in lines[at - 3 : at])
    assert comment == (
        "-1: retry until the write succeeds, never discard. Records OpenSearch rejects for good are "
        "already in cdcsync's dead-letter queue (CDCSYNC_DLQ); what Lambda retries failed transiently "
        "(OpenSearch down or throttled), and discarding it would silently lose changes."
    )


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        ((), ["Orders", "Audit-Log", "Users"]),
        (("Users", "Orders", "Users"), ["Users", "Orders"]),
    ],
)
def test_lambda_config_tables_selects_and_orders_tables(
    tables: tuple[str, ...], expected: list[str], mappings: MappingSet
) -> None:
    # GIVEN no table (every mapped table, in mapping order) or a repeated selection
    # WHEN the CloudFormation configuration is generated
    data = yaml.safe_load(lambda_config(mappings, format="cloudformation", tables=tables))
    # THEN one parameter and one event source mapping per table, in that order
    ids = [table.replace("-", "") for table in expected]
    assert list(data["Parameters"]) == [f"{i}StreamArn" for i in ids]
    assert list(data["Resources"]) == [f"{i}StreamEventSourceMapping" for i in ids]


def test_lambda_config_tables_with_clashing_ids_get_distinct_ids(tmp_path: Path) -> None:
    # GIVEN two tables whose names differ only in punctuation
    (tmp_path / "m.yaml").write_text(
        "mappings:\n  - {table: my-table, index: a}\n  - {table: my_table, index: b}\n"
    )
    # WHEN the CloudFormation configuration is generated
    data = yaml.safe_load(lambda_config(load_mappings(tmp_path), format="cloudformation"))
    # THEN each gets its own logical IDs (a hash of the name tells them apart)
    assert len(data["Parameters"]) == len(data["Resources"]) == 2
    assert all(name.startswith("Mytable") for name in data["Parameters"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"tables": ["Orders", "Nope"]},
            "no mapping for table Nope (tables with mappings: Orders, Audit-Log, Users)",
        ),
        (
            {"batch_size": 0},
            "lambda-config: batch size 0 is out of range; Lambda accepts 1 to 10000 records per batch "
            "for a DynamoDB stream",
        ),
        (
            {"batching_window": 301},
            "lambda-config: batching window 301 is out of range; Lambda accepts 0 to 300 seconds for a "
            "DynamoDB stream",
        ),
        (
            {"parallelization": 11},
            "lambda-config: parallelization factor 11 is out of range; Lambda accepts 1 to 10 concurrent "
            "batches per shard for a DynamoDB stream",
        ),
        (
            {"format": "terraform"},
            'lambda-config: unknown format "terraform"; use one of serverless, sam, cloudformation',
        ),
    ],
)
def test_lambda_config_invalid_request_raises_config_error(
    kwargs: dict[str, Any], message: str, mappings: MappingSet
) -> None:
    # GIVEN an unknown table, a setting Lambda rejects or an unknown format WHEN generating THEN ConfigError
    with pytest.raises(ConfigError) as caught:
        lambda_config(mappings, **{"format": "sam", **kwargs})
    assert str(caught.value) == message


# --- serverless.yml: the Serverless Framework's `stream` event schema (lib/plugins/aws/package/compile/
# events/stream.js, v4): additionalProperties false, so an unknown key fails `serverless package`.
SERVERLESS_STREAM_KEYS = {
    "arn": (str, dict),
    "type": (str,),
    "batchSize": (int,),
    "parallelizationFactor": (int,),
    "startingPosition": (str,),
    "startingPositionTimestamp": (int, float),
    "enabled": (bool,),
    "consumer": (bool, str, dict),
    "batchWindow": (int,),
    "maximumRetryAttempts": (int,),
    "bisectBatchOnFunctionError": (bool,),
    "maximumRecordAgeInSeconds": (int,),
    "functionResponseType": (str,),
    "destinations": (dict,),
    "tumblingWindowInSeconds": (int,),
    "filterPatterns": (list,),
}


def test_lambda_config_serverless_uses_only_documented_stream_keys(mappings: MappingSet) -> None:
    # WHEN the serverless.yml events are generated for every table
    events = yaml.safe_load(lambda_config(mappings, format="serverless"))["events"]
    for event in events:
        stream = event["stream"]
        # THEN every key is one the framework knows, with a value of the documented type and range
        assert set(stream) <= set(SERVERLESS_STREAM_KEYS), set(stream) - set(SERVERLESS_STREAM_KEYS)
        for key, value in stream.items():
            assert isinstance(value, SERVERLESS_STREAM_KEYS[key]), (key, value)
        assert stream["type"] == "dynamodb"
        assert stream["startingPosition"] in {"LATEST", "TRIM_HORIZON", "AT_TIMESTAMP"}
        assert stream["functionResponseType"] == "ReportBatchItemFailures"
        assert -1 <= stream["maximumRetryAttempts"] <= 10_000
        # a CloudFormation function as the on-failure ARN requires `type`; nothing else is allowed there
        assert set(stream["destinations"]) == {"onFailure"}
        assert set(stream["destinations"]["onFailure"]) == {"arn", "type"}
        assert stream["destinations"]["onFailure"]["type"] in {"sns", "sqs"}
        assert all(isinstance(p, dict) for p in stream.get("filterPatterns", []))


# --- SAM and CloudFormation: cfn-lint on the output inside a minimal template -----------------------
_FUNCTION = {
    "Runtime": "python3.12",
    "Architectures": ["arm64"],
    "Handler": "cdcsync.aws_lambda.handler",
    "Timeout": 60,
}


def _template(fmt: str, text: str) -> dict[str, Any]:
    fragment = yaml.safe_load(text)
    queue = {"Type": "AWS::SQS::Queue", "Properties": {"SqsManagedSseEnabled": True}}
    if fmt == "sam":
        function = {
            "Type": "AWS::Serverless::Function",
            "Properties": {**_FUNCTION, "CodeUri": "s3://bucket/cdcsync.zip", "Events": fragment["Events"]},
        }
        return {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Transform": "AWS::Serverless-2016-10-31",
            "Parameters": fragment["Parameters"],
            "Resources": {"CdcsyncFunction": function, "CdcsyncStreamFailures": queue},
        }
    role = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        },
    }
    function = {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            **_FUNCTION,
            "Code": {"S3Bucket": "bucket", "S3Key": "cdcsync.zip"},
            "Role": {"Fn::GetAtt": ["CdcsyncRole", "Arn"]},
        },
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": fragment["Parameters"],
        "Resources": {
            "CdcsyncRole": role,
            "CdcsyncFunction": function,
            "CdcsyncStreamFailures": queue,
            **fragment["Resources"],
        },
    }


CFN_LINT = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or shutil.which("cfn-lint")


@pytest.mark.skipif(
    CFN_LINT is None,
    reason="cfn-lint is not installed: add cfn-lint to the dev extras (pip install cfn-lint)",
)
def test_lambda_config_template_output_passes_cfn_lint(mappings: MappingSet, tmp_path: Path) -> None:
    # GIVEN the generated configuration for every table (filtered, unfiltered, with custom settings)
    # inside a minimal template that provides the function and the on-failure queue
    # (one cfn-lint run for all of them: it takes ~5 s to start)
    paths = []
    for fmt in ("sam", "cloudformation"):
        for name, kwargs in {"defaults": {}, "custom": {"batch_size": 10_000, "parallelization": 10}}.items():
            path = tmp_path / f"{fmt}-{name}.json"
            path.write_text(json.dumps(_template(fmt, lambda_config(mappings, format=fmt, **kwargs))))
            paths.append(str(path))
    # WHEN cfn-lint checks it (SAM through its bundled SAM translator)
    result = subprocess.run(
        [str(CFN_LINT), "--regions", "us-east-1", "--", *paths],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    # THEN it finds nothing
    assert result.returncode == 0, result.stdout + result.stderr
