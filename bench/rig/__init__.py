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

``bench/capacity.py`` drives them; see docs/operations.md, "Capacity".
"""
