"""Dual writes during a rebuild: which other index gets a copy of each action.

``cdcsync rebuild`` points the alias ``NAME-rebuild`` at the new physical index while it fills it.
Every writer reads those aliases from the cluster (one ``GET /_alias/*-rebuild``) and re-reads
them at least every ``CDCSYNC_TARGETS_REFRESH_SECONDS``; an action for ``NAME`` is then written to
``NAME`` and to the index behind ``NAME-rebuild``, with the same external version, so the order in
which the two copies land does not matter. Copies go to the physical index, never to the alias
name: a write to an alias that was just removed would create an index of that name.

A writer that cannot read the aliases does not write (``TransientError``: the records are retried),
since writing only the old index while a rebuild scans the table could lose a change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import OpenSearchException

from cdcsync.sink.client import opensearch_error

log = logging.getLogger(__name__)

REBUILD_SUFFIX = "-rebuild"


def rebuild_alias(name: str) -> str:
    """The alias that names a rebuild's new index for the index (or alias) ``name``."""
    return f"{name}{REBUILD_SUFFIX}"


def read_copies(client: OpenSearch) -> dict[str, str]:
    """``{NAME: physical index behind NAME-rebuild}`` for every rebuild under way."""
    answer: Mapping[str, Any] = client.indices.get_alias(name=f"*{REBUILD_SUFFIX}", ignore=[404])
    copies: dict[str, str] = {}
    for index, entry in answer.items():
        if not isinstance(entry, Mapping):
            continue  # a 404 answer: {"error": ..., "status": 404}
        for alias in entry.get("aliases", {}):
            if alias.endswith(REBUILD_SUFFIX) and alias != index:
                copies[alias.removesuffix(REBUILD_SUFFIX)] = str(index)
    return copies


class IndexCopies:
    """The copies one writer makes, re-read from the cluster every ``refresh_seconds``."""

    def __init__(
        self,
        client: OpenSearch,
        refresh_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._copies: dict[str, str] = {}
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def targets(self) -> dict[str, str]:
        """``{NAME: new index}`` as of at most ``refresh_seconds`` ago; raises ``TransientError``."""
        with self._lock:
            now = self.clock()
            if self._read_at is None or now - self._read_at >= self.refresh_seconds:
                try:
                    copies = read_copies(self.client)
                except OpenSearchException as exc:
                    raise opensearch_error(exc, "reading the rebuild aliases (*-rebuild)") from exc
                if copies != self._copies:
                    log.info(
                        "dual writes: %s",
                        ", ".join(f"{name} -> {index}" for name, index in sorted(copies.items())) or "none",
                    )
                self._copies, self._read_at = copies, now
            return dict(self._copies)
