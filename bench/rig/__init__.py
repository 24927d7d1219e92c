"""The capacity rig: fast stand-ins for DynamoDB (Streams, Scan) and OpenSearch ``_bulk``.

Every module runs as its own process (``python -m rig.streams_scan``, ``python -m rig.bulk_sink``,
with ``bench/`` on ``PYTHONPATH``, or ``python bench/rig/streams_scan.py``), prints
``{"url": "http://127.0.0.1:PORT"}`` as its first line, as osmem-server does, and exits when its
stdin closes; and every module is importable (``rig.processes`` starts them, pinned to a CPU).

- ``dataset``: records and items generated from a seed: INSERT/MODIFY/REMOVE over a key space per
  shard (whole-second creation times), each pre-serialised to JSON bytes, and the table's final state.
- ``streams_scan``: DescribeTable, ListStreams, DescribeStream, GetShardIterator, GetRecords, Scan.
- ``bulk_sink``: ``_bulk`` and the document API with external versions kept in memory, and what
  cdcsync reads at start; ``/_rig/state`` dumps every document for a comparison with the table.
- ``naive``: the consumers most teams write (GetRecords poller, single-threaded scan), as processes.
- ``processes``: starting the stand-ins, CPU pinning, CPU time and peak RSS of a process tree.
- ``selftest``: each stand-in's own capacity, measured by a tight client loop.

``bench/capacity.py`` drives them; see docs/operations.md, "Capacity". To measure something else
on the same rig (e.g. backfill items/s for 1, 2 and 4 processes over one table)::

    with stand_in("streams_scan", cpus={1}) as streams, stand_in("bulk_sink", cpus={1}) as sink:
        streams.post("/_rig/tables", {"names": ["t1", "t2"], "shards": 0, "items": 30_000,
                                      "scan_latency_ms": 20})   # one dataset, two table names
        sink.post("/t1", {"settings": {"index": {"number_of_shards": 1}}}, method="PUT")
        ...  # run the consumers with AWS_ENDPOINT_URL_DYNAMODB=streams.url, the sink's URL
        first = streams.get("/_rig/stats?table=t1")["first_at"]   # first Scan answer, epoch s
        last = sink.get("/_rig/stats")["t1"]["last_at"]           # last write, epoch s
        docs = sink.get("/_rig/state?index=t1")["docs"]           # == streams.get("/_rig/expected?table=t1")

``capacity.drain`` does that for one consumer command, with CPU and RSS of its process tree.
"""
