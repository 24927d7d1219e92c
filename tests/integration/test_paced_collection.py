"""Garbage collection paced for pages (cdcsync/garbage.py) still frees young cycles as work goes on."""

from __future__ import annotations

import gc
import logging
import tracemalloc

from opensearchpy import OpenSearch, Urllib3HttpConnection

from cdcsync.garbage import paced_collection
from cdcsync.metrics import NullMetrics
from cdcsync.plan.actions import IndexAction
from cdcsync.sink.bulk import BulkWriter, RetryBudget
from cdcsync.sink.client import ExactJSONSerializer
from tests.support.records import change, compiled
from tests.support.servers import free_port


def test_paced_collection_bodies_of_bulk_requests_refused_are_freed_as_work_goes_on() -> None:
    # GIVEN a writer whose OpenSearch refuses connections: urllib3 leaves each failed try's ~1 MB
    # body in a reference cycle through its frames (reference counting alone never frees it)
    client = OpenSearch(
        hosts=[f"http://127.0.0.1:{free_port()}"], max_retries=0, retry_on_timeout=False,
        connection_class=Urllib3HttpConnection, serializer=ExactJSONSerializer(),
    )  # fmt: skip
    writer = BulkWriter(
        client, NullMetrics(), budget=RetryBudget(max_retries=6, first_wait=0.0), sleep=lambda _: None
    )
    mapping = compiled(table="Users", index="users")
    record = change("INSERT", {"id": {"S": "1"}}, {"id": {"S": "1"}})
    actions = [
        IndexAction("users", str(n), None, 1, {"a": "x" * 100_000}, mapping, record) for n in range(10)
    ]
    with paced_collection(seconds=3600):  # the timer far away: only what runs as work goes on counts
        # no log records: pytest's capture would keep the failures (and so the bodies) alive
        logging.disable(logging.CRITICAL)
        tracemalloc.start()
        try:
            # WHEN the write fails 7 times and work goes on (the next pages' containers)
            writer.write(actions)
            work = [[n] for n in range(20_000)]
            del work
            held = tracemalloc.get_traced_memory()[0]
            gc.collect()
            waiting = held - tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
            logging.disable(logging.NOTSET)
    # THEN the failed tries' bodies (7 MB) were not left for the timer's collection
    assert waiting < 1_000_000, f"{waiting / 1e6:.1f} MB of cyclic garbage waited for the timer"
