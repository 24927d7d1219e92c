"""The consumers most teams write, as processes beside cdcsync's.

    python bench/rig/naive.py worker TABLE INDEX OPENSEARCH_URL
    python bench/rig/naive.py backfill TABLE INDEX OPENSEARCH_URL

- worker: one boto3 client (its defaults: 10 pooled connections), one thread per shard of the
  table's stream: GetShardIterator TRIM_HORIZON, then GetRecords in a loop, ``TypeDeserializer``,
  ``json.dumps(default=...)`` for Decimal and sets, ``opensearchpy.helpers.bulk`` of index/delete
  actions per page, no versions; 0.25 s sleep after an empty page. Runs until SIGTERM or stdin EOF.
- backfill: one Scan after another (1 MB pages), the same conversion, ``helpers.bulk`` per page;
  exits when the table is read.

AWS endpoints and credentials come from the environment, as for cdcsync.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer
from naive_handler import plain  # bench/ is on PYTHONPATH: one naive conversion for every baseline
from opensearchpy import OpenSearch, helpers

EMPTY_SLEEP = 0.25


def actions(
    records: list[dict[str, Any]], index: str, deserializer: TypeDeserializer
) -> list[dict[str, Any]]:
    out = []
    for record in records:
        body = record["dynamodb"]
        doc_id = str(deserializer.deserialize(body["Keys"]["Id"]))
        if record["eventName"] == "REMOVE":
            out.append({"_op_type": "delete", "_index": index, "_id": doc_id})
            continue
        document = {name: deserializer.deserialize(value) for name, value in body["NewImage"].items()}
        out.append(
            {
                "_op_type": "index",
                "_index": index,
                "_id": doc_id,
                "_source": json.dumps(document, default=plain),
            }
        )
    return out


def worker(table: str, index: str, opensearch_url: str) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    dynamodb: Any = boto3.client("dynamodb")
    streams: Any = boto3.client("dynamodbstreams")
    client = OpenSearch(hosts=[opensearch_url], timeout=60)
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shards, start = [], None
    while True:
        page = streams.describe_stream(StreamArn=arn, **({"ExclusiveStartShardId": start} if start else {}))
        shards += [shard["ShardId"] for shard in page["StreamDescription"]["Shards"]]
        start = page["StreamDescription"].get("LastEvaluatedShardId")
        if not start:
            break

    def read(shard_id: str) -> None:
        deserializer = TypeDeserializer()
        request = {"StreamArn": arn, "ShardId": shard_id, "ShardIteratorType": "TRIM_HORIZON"}
        iterator = streams.get_shard_iterator(**request)["ShardIterator"]
        while iterator and not stop.is_set():
            page = streams.get_records(ShardIterator=iterator)
            iterator = page.get("NextShardIterator")
            if page["Records"]:
                helpers.bulk(client, actions(page["Records"], index, deserializer), ignore_status=(404,))
            else:
                stop.wait(EMPTY_SLEEP)

    threads = [threading.Thread(target=read, args=(shard,), daemon=True) for shard in shards]
    for thread in threads:
        thread.start()
    stop.wait()


def backfill(table: str, index: str, opensearch_url: str) -> None:
    dynamodb: Any = boto3.client("dynamodb")
    client = OpenSearch(hosts=[opensearch_url], timeout=60)
    deserializer = TypeDeserializer()
    request: dict[str, Any] = {"TableName": table}
    while True:
        page = dynamodb.scan(**request)
        batch = []
        for item in page["Items"]:
            document = {name: deserializer.deserialize(value) for name, value in item.items()}
            source = json.dumps(document, default=plain)
            batch.append(
                {"_op_type": "index", "_index": index, "_id": str(document["Id"]), "_source": source}
            )
        helpers.bulk(client, batch)
        if "LastEvaluatedKey" not in page:
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def main() -> None:
    kind, table, index, url = sys.argv[1:5]
    {"worker": worker, "backfill": backfill}[kind](table, index, url)


if __name__ == "__main__":
    main()
