"""Streams a table had before its current one, found in the table's unfinished checkpoints.

A worker that runs while the table's stream is replaced (disabled and enabled again, e.g. to
change its view type) reads the old stream's rest to its end. A worker started *after* that knows
only the current stream: the store's ``sync_shards`` hands it the unfinished leases of the table's
other streams. Each such stream is judged once (``old_stream_origin``):

- of the table as it is now (created with or after it): read like a stream replaced while the
  worker runs, to its end; if it is gone (past its 24 h retention), its unread shards are finished
  as trimmed, counted in ``cdcsync_trimmed_data_total`` with an ERROR line saying to backfill;
- of a table deleted and created again since, or of unknown age: ignored, with one WARNING naming
  both ARNs and ``verify`` (its records are of items of a table that no longer exists).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cdcsync.checkpoint import Lease
from cdcsync.source.shards import old_stream_origin, table_created_at

log = logging.getLogger(__name__)

_WHY_IGNORED = {
    "earlier table": "the table was recreated after that stream was created",
    "unknown": "it cannot be told whether the table was recreated since (no creation times to compare)",
}


@dataclass
class OldStreams:
    dynamodb: Any
    streams: Any
    _ignored: set[tuple[str, str]] = field(default_factory=set)  # (table, ARN) judged foreign, said

    def follow(self, table: str, current: str, leftovers: Sequence[Lease], arns: list[str]) -> None:
        """Add to ``arns`` (the streams read) the old streams of ``leftovers`` that are the table's.

        ``leftovers`` are the unfinished leases of the table's streams not in ``arns``.
        """
        counts = Counter(lease.stream_arn for lease in leftovers)
        judged = sorted(arn for arn in counts if (table, arn) not in self._ignored and arn not in arns)
        if not judged:
            return
        table_created = table_created_at(self.dynamodb, table)
        for arn in judged:
            origin = old_stream_origin(self.streams, arn, table_created)
            if origin in ("readable", "gone"):
                arns.insert(0, arn)  # oldest first
                then = (
                    "reading the rest of it to its end"
                    if origin == "readable"
                    else "it is gone (past its 24 h retention): its unread shards are finished as trimmed"
                )
                log.warning(
                    "table %s: stream %s has unfinished checkpoints and was replaced by %s while no worker "
                    "ran: %s",
                    table, arn, current, then,
                    extra={"table": table},
                )  # fmt: skip
                continue
            self._ignored.add((table, arn))
            count = counts[arn]
            log.warning(
                "table %s: ignoring the checkpoints of %d unfinished shard%s of stream %s, which is not the "
                "table's stream now (%s): %s; what was not read from it is not synced (compare with: "
                "cdcsync verify --table %s)",
                table, count, "" if count == 1 else "s", arn, current, _WHY_IGNORED[origin], table,
                extra={"table": table},
            )  # fmt: skip
