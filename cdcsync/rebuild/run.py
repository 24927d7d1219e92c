"""``cdcsync rebuild --table T``: move the alias ``NAME`` to a new index built from ``index_body``.

Steps, each saved in the checkpoint store under ``rebuild|<table>`` so ``--resume`` continues:

1. ``created``: ``NAME-00000(n+1)`` from the mapping's ``index_body``, with the alias
   ``NAME-rebuild``. From then on every writer (``sink/copies.py``) writes each action to both.
2. ``waited``: the rebuild waits ``CDCSYNC_TARGETS_REFRESH_SECONDS`` plus a margin from the alias's
   creation, so every writer has seen it before the table is read: no change made after the scan
   starts can reach only the old index.
3. ``backfilled``: the existing backfill (read versions, resumable) through the alias; its writes
   reach both indices, versioned, so the live stream's newer changes win in both.
4. ``verified``: ``verify --sample N`` (or full) of the new index; drift stops the rebuild here.
5. ``swapped``: one ``_aliases`` call moves ``NAME`` (write index) to the new index and
   ``NAME-rebuild`` to the old one: writers keep copying to the old index, so ``--rollback``
   (the same call reversed) loses no change for as long as the old index is kept.
6. ``finished`` (``--finish``, or the next rebuild once ``--keep-old`` has passed): ``NAME-rebuild``
   is removed, the rebuild waits the refresh period (a writer still copying would re-create the
   index), then deletes the old index.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from opensearchpy import OpenSearch

from cdcsync.backfill.run import run_backfill
from cdcsync.errors import ConfigError, FatalError
from cdcsync.mapping.compiled import CompiledMapping, MappingSet
from cdcsync.services import Services
from cdcsync.sink.copies import rebuild_alias
from cdcsync.sink.indices import creation_body, physical_name, write_index
from cdcsync.verify.compare import Drift
from cdcsync.verify.report import VerifyReport
from cdcsync.verify.run import build_verifier, verify

log = logging.getLogger(__name__)

# Beyond the refresh period: a writer's refresh runs at its next batch, which may take this long.
WAIT_MARGIN_SECONDS = 5.0
_GENERATION = re.compile(r"-(\d{6})$")


class RebuildStoppedError(FatalError):
    """A rebuild step did not complete; ``--resume`` continues from the saved step."""


def _mapping(mappings: MappingSet, table: str, name: str | None) -> CompiledMapping:
    """The mapping rebuilt: the table's only one, or the one whose ``index:`` is ``name``."""
    found = mappings.for_table(table)
    if not found:
        known = ", ".join(mappings.tables) or "none"
        raise ConfigError(f"rebuild: no mapping for table {table} (tables with mappings: {known})")
    choices = ", ".join(m.index.source for m in found)
    if name is not None:
        found = tuple(m for m in found if m.index.source == name)
        if len(found) != 1:
            raise ConfigError(
                f"rebuild: table {table} has {'no' if not found else len(found)} mappings with index "
                f'"{name}"; --mapping takes one of: {choices}'
            )
    if len(found) > 1:
        raise ConfigError(
            f"rebuild: table {table} has {len(found)} mappings; say which index to rebuild with "
            f"--mapping, one of: {choices}"
        )
    mapping = found[0]
    if not mapping.index.is_literal:
        raise ConfigError(
            f'rebuild: {mapping.source}: index "{mapping.index.source}" is templated; rebuild supports '
            "literal index names for now: use the manual procedure in docs/runbooks.md"
        )
    return mapping


class Rebuild:
    """One table's rebuild: its state, saved after every step."""

    def __init__(
        self,
        services: Services,
        table: str,
        *,
        out: TextIO,
        mapping: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.services = services
        self.table = table
        self.out = out
        self.sleep = sleep
        self.wall_ms = wall_ms
        self.mapping = _mapping(services.mappings, table, mapping)
        self.name = self.mapping.index.source
        self.client = services.client
        self.store = services.lease_store(f"rebuild-{socket.gethostname()}-{os.getpid()}")
        # A table's only mapping keeps the key it had before --mapping; each of several has its own.
        several = len(services.mappings.for_table(table)) > 1
        self.key = f"rebuild|{table}|{self.name}" if several else f"rebuild|{table}"

    def load(self) -> dict[str, Any] | None:
        return self.store.load_progress(self.key)

    def save(self, state: dict[str, Any], step: str) -> None:
        state["step"] = step
        state[f"{step}_at_ms"] = self.wall_ms()
        self.store.save_progress(self.key, state)
        self.services.metrics.rebuild_step(self.table, self.name, step)
        print(f"rebuild of {self.table}: {step} ({state['old']} -> {state['new']})", file=self.out)

    def status(self) -> str:
        state = self.load()
        if state is None:
            return f"rebuild of {self.table}: none"
        line = f"rebuild of {self.table}: {state['step']} ({state['old']} -> {state['new']})"
        if state["step"] == "swapped":
            until = state["swapped_at_ms"] + state["keep_old_ms"]
            line += f"; {state['old']} kept for --rollback until {_iso(until)}, then --finish deletes it"
        return line

    def start(self, *, sample: int | None, keep_old_seconds: float) -> None:
        state = self.load()
        if state is not None and state["step"] not in ("finished", "rolled_back"):
            if state["step"] != "swapped" or self.wall_ms() < state["swapped_at_ms"] + state["keep_old_ms"]:
                raise ConfigError(
                    f"rebuild of {self.table}: a rebuild is at step {state['step']}; run cdcsync rebuild "
                    f"--table {self.table} with --resume, --rollback or --finish first"
                )
            self.finish()
        if not self.client.indices.exists_alias(name=self.name):
            raise ConfigError(
                f'rebuild of {self.table}: "{self.name}" is a concrete index, not an alias; adopt it first '
                '(docs/runbooks.md, "Field mapping drift") or use the manual procedure there'
            )
        old = write_index(self.client, self.name)
        match = _GENERATION.search(old)
        new = physical_name(self.name, int(match[1]) + 1 if match else 2)
        state = {"old": old, "new": new, "sample": sample, "keep_old_ms": int(keep_old_seconds * 1000)}
        body = creation_body(self.mapping, self.services.target.dialect)
        body["aliases"] = {rebuild_alias(self.name): {}}
        self.client.indices.create(index=new, body=body)
        self.services.metrics.rebuild_backfill_items(self.table, self.name, 0)
        self.save(state, "created")
        self.resume()

    def resume(self) -> None:
        state = self.load()
        if state is None or state["step"] in ("swapped", "finished", "rolled_back"):
            raise ConfigError(f"rebuild of {self.table}: nothing to resume ({self.status()})")
        settings = self.services.settings
        if state["step"] == "created":
            wait_ms = (settings.targets_refresh_seconds + WAIT_MARGIN_SECONDS) * 1000
            left = state["created_at_ms"] + wait_ms - self.wall_ms()
            if left > 0:
                print(f"rebuild of {self.table}: waiting {left / 1000:.1f} s for every writer to see "
                      f"{rebuild_alias(self.name)}", file=self.out)  # fmt: skip
                self.sleep(left / 1000)
            self.save(state, "waited")
        if state["step"] == "waited":
            resume = bool(state.get("backfill_started"))
            state["backfill_started"] = True
            self.store.save_progress(self.key, state)
            report = run_backfill(
                settings, self.table, resume=resume, services=self.services, on_page=self._backfilled_page
            )
            if not report.finished:
                raise RebuildStoppedError(
                    f"rebuild of {self.table}: the backfill of {state['new']} did not finish; "
                    f"run cdcsync rebuild --table {self.table} --resume"
                )
            self.save(state, "backfilled")
        if state["step"] == "backfilled":
            self._verify(state)
            self.save(state, "verified")
        self._swap(state)

    def _backfilled_page(self, _unit: int, _page: int) -> None:
        """``cdcsync_rebuild_backfill_items``: the backfill's own count, in its checkpoint (resumes too)."""
        progress = self.store.load_progress(f"backfill|{self.table}") or {}
        self.services.metrics.rebuild_backfill_items(
            self.table, self.name, int(progress.get("items_read", 0))
        )

    def _verify(self, state: dict[str, Any]) -> None:
        """Verify the new index against the table. Under live writes a document may lag the table
        (its change is on its way); a drift the old index shares, version for version, is that lag
        and not the rebuild's, and is left out (counted in a note)."""
        index = dataclasses.replace(self.mapping.index, source=state["new"], literals=(state["new"],))
        only_new = MappingSet((dataclasses.replace(self.mapping, index=index),))
        settings = self.services.settings
        services = Services(
            settings, session=self.services.session, metrics=self.services.metrics, mappings=only_new
        )
        verifier, item_count = build_verifier(settings, self.table, sample=state["sample"], services=services)
        shared = _SharedLag(self.client, state["old"], state["new"])
        verifier.report = _RebuildReport(table=self.table, sample=state["sample"], shared=shared)
        report = verify(verifier, item_count, self.out)
        if shared.count:
            print(f"{shared.count} documents lag the table in both indices alike (live writes): "
                  "not counted", file=self.out)  # fmt: skip
        if report.exit_code != 0:
            raise RebuildStoppedError(
                f"rebuild of {self.table}: verify of {state['new']} found differences (above); the alias "
                f"still points at {state['old']}: fix them (cdcsync verify --repair) and run --resume, "
                "or --rollback"
            )

    def _swap(self, state: dict[str, Any]) -> None:
        old, new, rebuild = state["old"], state["new"], rebuild_alias(self.name)
        self.client.indices.update_aliases(
            body={
                "actions": [
                    {"remove": {"index": old, "alias": self.name}},
                    {"add": {"index": new, "alias": self.name, "is_write_index": True}},
                    {"remove": {"index": new, "alias": rebuild}},
                    {"add": {"index": old, "alias": rebuild}},
                ]
            }
        )
        self.save(state, "swapped")

    def rollback(self) -> None:
        state = self.load()
        if state is None or state["step"] in ("finished", "rolled_back"):
            raise ConfigError(f"rebuild of {self.table}: nothing to roll back ({self.status()})")
        old, new, rebuild = state["old"], state["new"], rebuild_alias(self.name)
        actions: list[dict[str, Any]] = [{"remove": {"index": new, "alias": rebuild}}]
        if state["step"] == "swapped":
            actions = [
                {"remove": {"index": new, "alias": self.name}},
                {"add": {"index": old, "alias": self.name, "is_write_index": True}},
                {"remove": {"index": old, "alias": rebuild}},
            ]
        self.client.indices.update_aliases(body={"actions": actions})
        self._drop(new)
        self.save(state, "rolled_back")

    def finish(self) -> None:
        state = self.load()
        if state is None or state["step"] != "swapped":
            raise ConfigError(f"rebuild of {self.table}: nothing to finish ({self.status()})")
        self.client.indices.delete_alias(index=state["old"], name=rebuild_alias(self.name), ignore=[404])
        self._drop(state["old"])
        self.save(state, "finished")

    def _drop(self, index: str) -> None:
        """Delete ``index`` once no writer can still be copying to it (it would come back)."""
        self.sleep(self.services.settings.targets_refresh_seconds + WAIT_MARGIN_SECONDS)
        self.client.indices.delete(index=index, ignore=[404])


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(s|m|h|d)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> float:
    """``--keep-old``: ``90s``, ``30m``, ``24h``, ``7d``."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"--keep-old: expected a duration such as 30m, 24h or 7d, got {text!r}")
    return float(match[1]) * _UNIT_SECONDS[match[2]]


class _SharedLag:
    """Whether a drift of the new index is the same document, same version, in the old one."""

    def __init__(self, client: OpenSearch, old: str, new: str) -> None:
        self.client, self.old, self.new = client, old, new
        self.count = 0

    def __call__(self, drift: Drift) -> bool:
        if self._version(self.old, drift) != self._version(self.new, drift):
            return False
        self.count += 1
        return True

    def _version(self, index: str, drift: Drift) -> int | None:
        params = {"routing": drift.routing} if drift.routing is not None else {}
        found = self.client.get(index=index, id=drift.id, params=params, ignore=[404])
        return int(found["_version"]) if found.get("found") else None


@dataclass
class _RebuildReport(VerifyReport):
    shared: Callable[[Drift], bool] = field(default=lambda _: False, repr=False)

    def record(self, drifts: Iterable[Drift]) -> None:
        super().record([drift for drift in drifts if not self.shared(drift)])


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
