"""A Lambda handler wired to the local servers, for the integration tests."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from opensearchpy import OpenSearch

from cdcsync.dlq.letter import DeadLetter
from cdcsync.entrypoints.aws_lambda import LambdaRuntime, build_runtime
from cdcsync.metrics import PrometheusMetrics
from cdcsync.settings import load_settings
from tests.support.records import stream_record


@dataclass
class FakeContext:
    """What the handler uses of Lambda's context object."""

    remaining_ms: int = 60_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class LambdaWorld:
    table: str
    index: str
    runtime: LambdaRuntime
    metrics: PrometheusMetrics
    opensearch: OpenSearch
    dlq_path: Path
    dynamodb: Any
    sequence: int = field(default=10**20)

    @property
    def arn(self) -> str:
        return f"arn:aws:dynamodb:us-east-1:123456789012:table/{self.table}/stream/2026-01-01T00:00:00.000"

    def record(
        self,
        event: str,
        key: int,
        new: dict[str, Any] | None = None,
        old: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        self.sequence += 1
        kwargs.setdefault("sequence", str(self.sequence))
        return stream_record(event, {"UserId": key}, new, old, arn=self.arn, **kwargs)

    def invoke(self, *records: dict[str, Any], remaining_ms: int = 60_000) -> dict[str, Any]:
        return self.runtime.handle({"Records": list(records)}, FakeContext(remaining_ms))

    def doc(self, doc_id: str) -> dict[str, Any] | None:
        answer = self.opensearch.get(index=self.index, id=doc_id, ignore=[404])  # type: ignore[call-arg]
        return answer["_source"] if answer.get("found") else None

    def docs(self) -> dict[str, dict[str, Any]]:
        self.opensearch.indices.refresh(index=self.index)
        hits = self.opensearch.search(index=self.index, body={"query": {"match_all": {}}, "size": 1000})
        return {hit["_id"]: hit["_source"] for hit in hits["hits"]["hits"]}

    def dead_letters(self) -> list[DeadLetter]:
        if not self.dlq_path.exists():
            return []
        return [
            DeadLetter.from_json(line, where=str(self.dlq_path))
            for line in self.dlq_path.read_bytes().splitlines()
        ]

    def counter(self, event: str, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "cdcsync_records_total", {"table": self.table, "event": event, "outcome": outcome}
        )
        return value or 0.0


def make_world(
    tmp_path: Path,
    *,
    unique_name: str,
    opensearch: OpenSearch,
    opensearch_url: str,
    dynamodb: Any,
    mapping: str = "",
    retries: int = 3,
    key_type: str = "N",
    **settings: Any,
) -> LambdaWorld:
    """``settings``: further ``load_settings`` overrides (``dlq_content="keys"``, ...)."""
    table = f"Users-{unique_name}"
    index = unique_name
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "UserId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "UserId", "AttributeType": key_type}],
        BillingMode="PAY_PER_REQUEST",
    )
    mapping_file = tmp_path / "mappings.yaml"
    mapping_file.write_text(f'table: {table}\nindex: {index}\nid: "{{UserId}}"\n' + textwrap.dedent(mapping))
    dlq_path = tmp_path / "dlq.jsonl"
    settings = load_settings(
        mappings=mapping_file,
        opensearch_url=opensearch_url,
        dlq=f"file://{dlq_path}",
        max_retries=retries,
        retry_max_seconds=5,
        _env_file=None,
        **settings,
    )
    metrics = PrometheusMetrics()
    runtime = build_runtime(settings, session=boto3.Session(), metrics=metrics)
    return LambdaWorld(table, index, runtime, metrics, opensearch, dlq_path, dynamodb)


WorldFactory = Callable[..., LambdaWorld]  # make_world bound to one test's servers and names
