"""What a user sees when something is wrong: one line on stderr and the exit code README promises.

Each case runs the real command line (``python -m cdcsync.entrypoints.cli``) against the local
servers, or against a closed port for a service that is down; none may print a traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.fault_proxy import fault_proxy
from tests.support.servers import free_port

RUN_AGAIN = "(nothing was lost; run the command again)"


@dataclass
class Cli:
    """The command line of one test: a mapping of its table, local servers, files in ``tmp``."""

    table: str
    index: str
    tmp: Path
    env: dict[str, str]

    def __call__(self, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
        merged = {**self.env, **env}
        done = subprocess.run(
            [sys.executable, "-m", "cdcsync.entrypoints.cli", *args],
            env={name: value for name, value in merged.items() if value is not None},
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done


@pytest.fixture
def cli(
    tmp_path: Path, unique_name: str, dynamodb: Any, opensearch: Any, opensearch_url: str, moto_endpoint: str
) -> Iterator[Cli]:
    table = f"Orders-{unique_name}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "Pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "Pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    for number in range(3):
        dynamodb.put_item(TableName=table, Item={"Pk": {"S": f"order-{number}"}, "Total": {"N": "7"}})
    (tmp_path / "mappings.yaml").write_text(f"table: {table}\nindex: {unique_name}\n")
    opensearch.indices.create(index=unique_name)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "CDCSYNC_MAPPINGS": str(tmp_path / "mappings.yaml"),
        "CDCSYNC_OPENSEARCH_URL": opensearch_url,
        "CDCSYNC_DLQ": f"file://{tmp_path / 'dlq.jsonl'}",
        "CDCSYNC_CHECKPOINTS": f"file://{tmp_path / 'checkpoints.json'}",
        "CDCSYNC_LOG_FORMAT": "text",
    }
    yield Cli(table, unique_name, tmp_path, env)
    dynamodb.delete_table(TableName=table)


# --- the region ------------------------------------------------------------------------------------


def test_cli_region_only_aws_region_set_reaches_the_table(cli: Cli) -> None:
    # GIVEN only AWS_REGION, as README step 2, Compose and Kubernetes set it
    # WHEN verify reads the table THEN it finds it and compares (3 items, none indexed yet)
    done = cli("verify", "--table", cli.table, AWS_REGION="us-east-1", AWS_DEFAULT_REGION=None)
    assert done.stdout.splitlines()[0] == "checked 3 items: 3 missing, 0 stale, 0 extra"
    assert done.returncode == 1


def test_cli_region_aws_region_wins_over_aws_default_region(cli: Cli) -> None:
    # GIVEN the table in us-east-1, AWS_REGION naming it and AWS_DEFAULT_REGION another region
    # WHEN verify runs THEN AWS_REGION wins, as in the AWS CLI v2
    done = cli("verify", "--table", cli.table, AWS_REGION="us-east-1", AWS_DEFAULT_REGION="eu-west-1")
    assert done.stdout.splitlines()[0] == "checked 3 items: 3 missing, 0 stale, 0 extra"
    assert done.returncode == 1


@pytest.mark.parametrize("verb", ["verify", "backfill"])
def test_cli_region_missing_exits_2_naming_both_variables(cli: Cli, verb: str) -> None:
    done = cli(verb, "--table", cli.table, AWS_REGION=None, AWS_DEFAULT_REGION=None)
    assert done.stderr == (
        "cdcsync: no AWS region: set AWS_REGION or AWS_DEFAULT_REGION (or a region in the AWS profile)\n"
    )
    assert done.returncode == 2


# --- services that do not answer ----------------------------------------------------------------------


def test_cli_indices_apply_opensearch_down_exits_1_with_one_line(cli: Cli) -> None:
    port = free_port()
    done = cli("indices", "apply", CDCSYNC_OPENSEARCH_URL=f"http://127.0.0.1:{port}")
    assert done.stderr == (
        f'cdcsync: indices apply: index "{cli.index}": OpenSearch does not answer '
        f"(HTTPConnection(host='127.0.0.1', port={port}): Failed to establish a new connection: "
        f"[Errno 111] Connection refused); check that it runs and CDCSYNC_OPENSEARCH_URL {RUN_AGAIN}\n"
    )
    assert done.returncode == 1


@pytest.mark.parametrize("verb", ["verify", "backfill"])
def test_cli_dynamodb_unreachable_exits_1_in_verify_and_backfill_alike(cli: Cli, verb: str) -> None:
    port = free_port()
    done = cli(verb, "--table", cli.table, AWS_ENDPOINT_URL_DYNAMODB=f"http://127.0.0.1:{port}")
    assert done.stderr == (
        f"cdcsync: {verb}: DescribeTable table {cli.table}: cannot reach AWS (Could not connect to the "
        f'endpoint URL: "http://127.0.0.1:{port}/"); check the network and AWS_ENDPOINT_URL* {RUN_AGAIN}\n'
    )
    assert done.returncode == 1


def test_cli_backfill_opensearch_down_stops_before_scanning_with_one_line(cli: Cli) -> None:
    port = free_port()
    done = cli("backfill", "--table", cli.table, CDCSYNC_OPENSEARCH_URL=f"http://127.0.0.1:{port}")
    assert done.stderr == (
        f"cdcsync: backfill of {cli.table}: OpenSearch does not answer "
        f"(HTTPConnection(host='127.0.0.1', port={port}): Failed to establish a new connection: "
        f"[Errno 111] Connection refused); check that it runs and CDCSYNC_OPENSEARCH_URL {RUN_AGAIN}\n"
    )
    assert done.returncode == 1
    assert not (cli.tmp / "checkpoints.json").exists()  # nothing was scanned


def test_cli_backfill_opensearch_failing_collapses_warnings_and_ends_with_one_instruction(
    cli: Cli, opensearch_url: str
) -> None:
    # GIVEN an OpenSearch that answers GET / but fails every bulk request, and a small retry budget
    with fault_proxy(opensearch_url) as proxy:
        proxy.fail(times=1000, status=503, path=r"_bulk")
        # WHEN the table is backfilled
        done = cli(
            "backfill", "--table", cli.table, "--segments", "1",
            CDCSYNC_OPENSEARCH_URL=proxy.url, CDCSYNC_MAX_RETRIES="2", CDCSYNC_RETRY_MAX_SECONDS="1",
        )  # fmt: skip
    lines = done.stderr.splitlines()
    # THEN each kind of retry warning is logged once, not once per request
    assert sum("bulk request of 3 actions failed, will retry" in line for line in lines) == 1, lines
    assert sum("failed transiently" in line for line in lines) == 1, lines
    # AND it ends with one instruction, not a second one contradicting it
    assert lines[-1] == (
        f"cdcsync: backfill of {cli.table}: 3 records of page 0 of segment 0 still failing after 3 attempts "
        "(see the warnings above); the checkpoint is before this page: fix OpenSearch, then run again "
        "with --resume"
    )
    assert "run the command again" not in done.stderr
    assert done.returncode == 1


# --- configuration -------------------------------------------------------------------------------------


def test_cli_run_metrics_port_in_use_exits_2_with_one_line(cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("run", CDCSYNC_METRICS_ADDR=f"127.0.0.1:{port}")
    assert done.stderr.splitlines()[-1] == (
        f"cdcsync: CDCSYNC_METRICS_ADDR=127.0.0.1:{port}: cannot listen there (Address already in use); "
        "stop what uses the port or choose another one (port 0 picks a free one)"
    )
    assert done.returncode == 2


@pytest.mark.parametrize(
    ("target", "line"),
    [
        (
            "sqs://missing-queue",
            "cdcsync: cannot read dead letters from sqs://missing-queue: queue does not exist (check "
            "CDCSYNC_DLQ names an existing queue in region us-east-1)",
        ),
        (
            "s3://missing-bucket/letters",
            "cdcsync: cannot list dead letters in s3://missing-bucket/letters: bucket does not exist (check "
            "CDCSYNC_DLQ names an existing bucket in region us-east-1)",
        ),
    ],
)
def test_cli_dlq_show_missing_queue_or_bucket_exits_2_with_one_line(cli: Cli, target: str, line: str) -> None:
    done = cli("dlq", "show", CDCSYNC_DLQ=target)
    assert done.stderr == f"{line}\n"
    assert done.returncode == 2


def test_cli_dlq_show_malformed_line_exits_1_with_one_line(cli: Cli) -> None:
    (cli.tmp / "dlq.jsonl").write_text("not json\n")
    done = cli("dlq", "show")
    assert done.stderr == (
        f"cdcsync: {cli.tmp / 'dlq.jsonl'}:1: not a dead letter (Invalid JSON: expected ident at line 1 "
        "column 2); fix or delete this entry, then read again\n"
    )
    assert done.returncode == 1
