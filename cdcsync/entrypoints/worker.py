"""``cdcsync run``: the container worker. Builds the stages from settings, serves metrics, handles signals.

With ``--processes N`` (``CDCSYNC_WORKER_PROCESSES``) above 1 it supervises N worker processes
instead (``worker/processes.py``); each of them is ``cdcsync run --partition I/N``.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

import boto3

from cdcsync.aws import STREAMS_POOL_CONNECTIONS, aws_client
from cdcsync.errors import CdcsyncError, ConfigError
from cdcsync.mapping.compiled import MappingSet
from cdcsync.metrics import PrometheusMetrics
from cdcsync.services import Services
from cdcsync.settings import FileTarget, Settings
from cdcsync.sink.target import Target
from cdcsync.source.fast_reads import with_fast_reads
from cdcsync.source.table_check import check_tables
from cdcsync.worker.arenas import cap_malloc_arenas
from cdcsync.worker.coordinator import Coordinator
from cdcsync.worker.http import Endpoints, MetricsServer
from cdcsync.worker.partition import Partition, PartitionedLeaseStore
from cdcsync.worker.processes import Supervisor, WorkerProcess, child_command, install_signal_handlers

log = logging.getLogger(__name__)


def worker_id() -> str:
    """Unique per process, readable in the lease table: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def build_coordinator(
    settings: Settings,
    tables: Sequence[str] = (),
    *,
    session: boto3.Session | None = None,
    wait_for_stream: bool = False,
) -> tuple[Coordinator, PrometheusMetrics]:
    """The worker's coordinator and metrics, built without contacting OpenSearch."""
    coordinator, metrics, _ = _build(settings, tables, session, wait_for_stream=wait_for_stream)
    return coordinator, metrics


def _build(
    settings: Settings,
    tables: Sequence[str],
    session: boto3.Session | None,
    *,
    wait_for_stream: bool = False,
    partition: Partition | None = None,
) -> tuple[Coordinator, PrometheusMetrics, Target]:
    metrics = PrometheusMetrics()
    services = Services(settings, session=session, metrics=metrics)
    mappings = services.mappings
    chosen = _chosen_tables(mappings, tables)
    services.writer  # noqa: B018 - a bad OpenSearch setting is reported before the tables are checked
    check_tables_at_start(mappings, chosen, services.dynamodb)
    pipeline = services.pipeline
    target = services.target

    coordinator = Coordinator(
        tables=chosen,
        store=services.lease_store(worker_id()),
        pipeline=pipeline,
        metrics=metrics,
        dynamodb=services.dynamodb,
        streams=with_fast_reads(
            aws_client(services.session, "dynamodbstreams", pool=STREAMS_POOL_CONNECTIONS),
            enabled=settings.aws_fast_reads,
        ),
        check_opensearch=lambda: target.ready(mappings),
        round_seconds=settings.lease_seconds / 3,
        wait_for_stream=wait_for_stream,
    )
    if partition is not None and isinstance(settings.checkpoint_target, FileTarget):
        # One file, N processes: each reads its share of the shards. Over dynamodb:// the lease
        # table balances the processes like replicas.
        coordinator.store = PartitionedLeaseStore(coordinator.store, partition)
    return coordinator, metrics, target


def _chosen_tables(mappings: MappingSet, tables: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(tables) or mappings.tables
    unknown = [table for table in chosen if not mappings.for_table(table)]
    if unknown:
        raise ConfigError(
            f"no mapping for table {', '.join(unknown)} (tables with mappings: {', '.join(mappings.tables)})"
        )
    return chosen


def check_tables_at_start(mappings: MappingSet, tables: Sequence[str], dynamodb: Any) -> None:
    """``validate --tables`` at start-up: refuse to start (exit 2) on what can never work (a record
    kind that is a dead letter every time: an id over non-key attributes, deletes that need an old
    image the stream lacks), log a WARNING for what works with limits. A table without a stream, or
    one DescribeTable cannot read now, is left to the coordinator's rounds, which report it."""
    refusing = []
    for table in tables:
        try:
            checks = check_tables(mappings, [table], dynamodb)
        except CdcsyncError as exc:
            log.warning("could not check the mappings of table %s against it at start-up: %s", table, exc)
            continue
        for check in checks:
            if check.key == "table":
                continue  # no stream: the coordinator says so (exit 2, or waits with --wait-for-stream)
            if check.refuses:
                log.error("%s", check.line)
                refusing.append(check)
            else:
                log.warning("%s", check.line)
    if refusing:
        count = len(refusing)
        raise ConfigError(
            f"{count} mapping problem{'s' if count != 1 else ''} with the tables' streams or keys (logged "
            "above) would dead-letter records every time; fix them (cdcsync validate --tables lists them)"
        )


def run_worker(
    settings: Settings,
    tables: Sequence[str] = (),
    *,
    wait_for_stream: bool = False,
    processes: int | None = None,
    partition: Partition | None = None,
    port_fd: int | None = None,
) -> int:
    """Run until SIGTERM or SIGINT (0); a table without a stream stops it (``ConfigError``, exit 2).

    ``processes`` (default ``CDCSYNC_WORKER_PROCESSES``) above 1: supervise that many worker
    processes instead. ``partition`` and ``port_fd`` are given to each of them: which share of the
    shards it reads (``file://`` stores), and the pipe on which it tells the supervisor its port.
    """
    count = processes if processes is not None else settings.worker_processes
    if partition is None and count > 1:
        return run_processes(settings, tables, count, wait_for_stream=wait_for_stream)
    cap_malloc_arenas()  # before any shard thread: 64 shards in ~130 MB, not ~200 (worker/arenas.py)
    coordinator, metrics, target = _build(
        settings, tables, None, wait_for_stream=wait_for_stream, partition=partition
    )
    mappings = coordinator.pipeline.mappings
    # Before the first write: the target must honour external versions (exit 2 when it does not).
    target.check_writes([m for table in coordinator.tables for m in mappings.for_table(table)], "run")
    host, port = settings.metrics_host_port
    endpoints = Endpoints(metrics.registry, coordinator.health, stuck_after=3 * coordinator.round_seconds)
    server = MetricsServer((host, port), endpoints)
    server.start()
    port = server.server_address[1]  # the port bound: CDCSYNC_METRICS_ADDR may say 0 (any free one)
    if port_fd is not None:  # the supervisor scrapes this port
        os.write(port_fd, f"{port}\n".encode())
        os.close(port_fd)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: finishing in-flight writes, then exiting", signal.Signals(signum).name)
        coordinator.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if partition is not None:
        _stop_when_orphaned(coordinator.stopping)
    which = f"process {partition}: " if partition is not None else ""
    log.info(
        "%ssyncing %s; metrics on http://%s:%d/metrics", which, ", ".join(coordinator.tables), host, port
    )
    try:
        coordinator.run()
    finally:
        server.shutdown()
        server.server_close()
    log.info("stopped")
    return 0


def _stop_when_orphaned(stopping: threading.Event) -> None:
    """A process of ``run --processes N`` stops when its supervisor is gone (killed with SIGKILL):
    nobody would restart or stop it, and a new ``run`` would read its shards too."""
    parent = os.getppid()

    def watch() -> None:
        while not stopping.wait(1.0):
            if os.getppid() != parent:
                log.warning(
                    "the supervisor (pid %d) is gone: finishing in-flight writes, then exiting", parent
                )
                stopping.set()

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def run_processes(settings: Settings, tables: Sequence[str], count: int, *, wait_for_stream: bool) -> int:
    """``run --processes N``: N worker processes under one supervisor, one endpoint for the group.

    The mappings and tables are checked here first, so a mistake is one line, not N.
    """
    chosen = _chosen_tables(Services(settings).mappings, tables)
    env = {
        **os.environ,
        "CDCSYNC_METRICS_ADDR": "127.0.0.1:0",  # each process on loopback; the group's endpoint is ours
        "CDCSYNC_WORKER_PROCESSES": "1",
    }
    command = child_command(chosen, str(settings.mappings), wait_for_stream=wait_for_stream)
    supervisor = Supervisor([WorkerProcess(n, count, command, env) for n in range(1, count + 1)])
    host, port = settings.metrics_host_port
    server = MetricsServer((host, port), supervisor)
    server.start()
    install_signal_handlers(supervisor)
    split = "shards split by hash" if isinstance(settings.checkpoint_target, FileTarget) else "replicas"
    log.info(
        "syncing %s with %d worker processes (%s); metrics on http://%s:%d/metrics",
        ", ".join(chosen),
        count,
        split,
        host,
        server.server_address[1],
    )
    try:
        code = supervisor.run()
    finally:
        server.shutdown()
        server.server_close()
    log.info("stopped (exit %d)", code)
    return code
