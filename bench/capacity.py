"""Capacity of cdcsync on a rig that is never the bottleneck, each path beside its naive counterpart.

    .venv/bin/python bench/capacity.py [--quick] [--json] [--only worker,backfill,lambda,latency]

The rig (bench/rig/): ``streams_scan`` (DynamoDB Streams + Scan from memory) and ``bulk_sink``
(``_bulk`` with external versions kept in memory) run on one CPU; the consumer under test runs
pinned to another (``--consumer-cpus``, default: the first CPU; ``--rig-cpus`` the rest), so one
consumer process gets one core, as the targets are stated. Measured in one run:

- worker: ``cdcsync run`` (a real process: file checkpoints and DLQ in a temp dir, metrics on a free
  port) and the naive poller (``rig/naive.py worker``) draining the same pre-generated backlog
  (``--records`` INSERT/MODIFY/REMOVE records over 1, 8 and 64 shards). records/s = records /
  (last write at the sink - first GetRecords answer with records), so start-up is not counted; CPU
  per record = the process tree's user+system CPU over that window (/proc, sampled every 0.1 s);
  peak RSS = VmHWM (the largest process of the tree).
- backfill: ``cdcsync backfill --table T --segments N`` and the naive single-threaded scan
  (``rig/naive.py backfill``) over ``--items`` items with ``--scan-latency-ms`` per Scan page.
  items/s from the first Scan answer to the last write.
- shared (``--only shared``, not in the default set): 1, 2 and 4 ``cdcsync backfill --run-id``
  processes joining one run of ``--shared-segments`` segments (file checkpoints under flock), items/s
  and CPU per item of the whole group; run it with ``--consumer-cpus 0,1`` to let them use both cores.
- lambda: the handler's warm CPU per record vs bench/lambda_e2e.py's naive handler (``rig/lambda_cpu.py``).
- latency: a live 1-shard stream appending new items at a steady rate (whole-second creation
  times); put-to-written = when the sink applied the document - when the record was appended.
  At ``--low-rate`` for cdcsync and the naive poller, then at 80 % of cdcsync's measured 1-shard
  records/s; the first ``--warmup`` seconds are left out.
- converged: after every cdcsync run the sink's documents equal the table's final state (latest
  image per key, deleted keys absent); true only if all did.

The rig's own capacity (a tight client loop, per second of its own CPU) is measured first; a
consumer within 2x of it, or a rig busier than half its core during a run, is flagged. Set
``CDCSYNC_*`` variables (e.g. ``CDCSYNC_AWS_FAST_READS``) in the environment to measure them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "bench")]

from rig.processes import Served, cpu_seconds, peak_rss_mb, pin, stand_in  # noqa: E402
from rig.selftest import check_sink, check_streams, sink_capacity, streams_capacity  # noqa: E402

MAPPING = """\
table: {table}
index: {index}
id: "{{Id}}"
deletes: {{on_remove: delete, on_ttl_expiry: delete}}
version: stream
index_body: {body}
"""
INDEX_BODY = {"settings": {"index": {"number_of_shards": 1, "gc_deletes": "24h"}}}
POLL = 0.1
# Checkpoints and dead letters on tmpfs: the file store fsyncs every checkpoint (10-40 ms on this
# machine's disk), and it stands in for the DynamoDB lease table here, not for a disk.
SCRATCH = "/dev/shm"  # noqa: S108 - tmpfs on purpose, see above
QUIET = 0.5  # the sink idle this long after the last record was read: time to compare states
SETTLE = 30.0  # after a live run: how long the last records may take to arrive
CONVERGE_WAIT = 20.0  # cdcsync may be retrying: how long an idle sink unlike the table is waited on
TARGETS = {
    "worker_1_shard_vs_naive": ">= 3x",
    "worker_64_shards_rss_mb": "< 200",
    "backfill_8_segments_vs_naive": ">= 4x",
    "latency_p99_at_80pct_s": "< 1.5",
    "latency_p99_low_rate_vs_naive": "<= 2x",
    "lambda_cpu_vs_naive": "<= 0.5x",
}


@dataclass
class Rig:
    streams: Served
    sink: Served
    env: dict[str, str]
    workdir: Path
    consumer_cpus: set[int] | None
    args: argparse.Namespace
    warnings: list[str] = field(default_factory=list)
    converged: list[bool] = field(default_factory=list)
    capacity: dict[str, Any] = field(default_factory=dict)

    def rig_cpu(self) -> float:
        return self.streams.cpu_seconds() + self.sink.cpu_seconds()


@dataclass
class Run:
    """One consumer's run: how much it moved, over which window, its CPU and memory."""

    name: str
    moved: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    rss_mb: float = 0.0
    rss_total_mb: float = 0.0
    rig_share: float = 0.0  # rig CPU / wall over the window: near 1 means the rig was the bound
    converged: bool | None = None
    mismatch: tuple[int, int, int] = (0, 0, 0)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.moved / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.moved * 1e6 if self.moved else 0.0


# --- consumers ----------------------------------------------------------------------------------


def cdcsync_env(rig: Rig, table: str, index: str) -> dict[str, str]:
    mapping = rig.workdir / f"{table}.yaml"
    mapping.write_text(MAPPING.format(table=table, index=index, body=json.dumps(INDEX_BODY)))
    return {
        **rig.env,
        "CDCSYNC_MAPPINGS": str(mapping),
        "CDCSYNC_OPENSEARCH_URL": rig.sink.url,
        "CDCSYNC_DLQ": f"file://{rig.workdir / f'{table}-dlq.jsonl'}",
        "CDCSYNC_CHECKPOINTS": f"file://{rig.workdir / f'{table}-checkpoints.json'}",
        "CDCSYNC_METRICS_ADDR": "127.0.0.1:0",
        "CDCSYNC_LOG_FORMAT": "text",
    }


def consumer_command(
    rig: Rig, who: str, path: str, table: str, index: str
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of one consumer (``path``: worker or backfill)."""
    if who == "naive":
        return [sys.executable, str(REPO / "bench/rig/naive.py"), path, table, index, rig.sink.url], rig.env
    extra = (rig.args.run_args if path == "worker" else rig.args.backfill_args).split()
    if path == "worker":
        command = ["run", *extra]
    elif path == "shared":
        # N processes joining one run; the shell waits a moment so that it is pinned before it forks
        # each process takes its share of the units at once (more threads than units left idle)
        workers = -(-rig.args.shared_segments // rig.args.processes_now)
        one = [sys.executable, "-m", "cdcsync.entrypoints.cli", "backfill", "--table", table,
               "--run-id", f"{table}-run", "--segments", str(rig.args.shared_segments),
               "--workers", str(workers), *extra]  # fmt: skip
        line = " ".join(shlex.quote(part) for part in one)
        script = f"sleep 0.3; for i in $(seq {rig.args.processes_now}); do {line} & done; wait"
        return ["sh", "-c", script], cdcsync_env(rig, table, index)
    else:
        command = ["backfill", "--table", table, "--segments", str(rig.args.segments_now), *extra]
    return [sys.executable, "-m", "cdcsync.entrypoints.cli", *command], cdcsync_env(rig, table, index)


@contextlib.contextmanager
def consumer(
    rig: Rig, command: list[str], env: dict[str, str], log_name: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a consumer pinned to the consumer CPUs; SIGTERM (then kill) on exit."""
    with open(rig.workdir / log_name, "wb") as log:
        # Its own process group: a consumer that is a shell over several processes (the shared
        # phase) is stopped whole, and no process outlives the run to take CPU from the next one.
        process = subprocess.Popen(  # noqa: S603 - our interpreter, our arguments
            command, env=env, cwd=rig.args.cdcsync_repo, stdin=subprocess.PIPE, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
        pin(process.pid, rig.consumer_cpus)
        try:
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=35)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def log_tail(rig: Rig, log_name: str) -> str:
    text = (rig.workdir / log_name).read_text(errors="replace").strip().splitlines()
    return "\n    ".join(text[-8:])


# --- the state check ------------------------------------------------------------------------------


def compare(rig: Rig, table: str, index: str) -> tuple[int, int, int]:
    """(documents unlike the table's final state, documents missing, documents the table has not)."""
    expected = rig.streams.get(f"/_rig/expected?table={table}")
    docs = rig.sink.get(f"/_rig/state?index={index}")["docs"]
    differ = sum(1 for doc_id, item in expected.items() if doc_id in docs and docs[doc_id]["source"] != item)
    return differ, len(expected.keys() - docs.keys()), len(docs.keys() - expected.keys())


# --- one drain ------------------------------------------------------------------------------------


@dataclass
class Samples:
    """(epoch s, consumer CPU s, rig CPU s) every POLL."""

    rows: list[tuple[float, float, float]] = field(default_factory=list)

    def take(self, rig: Rig, pid: int) -> None:
        self.rows.append((time.time(), cpu_seconds(pid), rig.rig_cpu()))

    def window(self, start: float, end: float) -> tuple[float, float, float]:
        """(wall, consumer CPU, rig CPU) from the last sample before ``start`` to the first after ``end``."""
        before = max(
            (row for row in self.rows if row[0] <= start), default=self.rows[0], key=lambda row: row[0]
        )
        after = min(
            (row for row in self.rows if row[0] >= end), default=self.rows[-1], key=lambda row: row[0]
        )
        return after[0] - before[0], after[1] - before[1], after[2] - before[2]


def drain(rig: Rig, who: str, path: str, table: str, total: int) -> Run:
    """Run one consumer over ``table`` (into the index of that name) until the sink holds the table's
    final state, or time out."""
    index = table
    command, env = consumer_command(rig, who, path, table, index)
    log_name = f"{table}.log"
    run, samples = Run(who), Samples()
    deadline = time.time() + rig.args.drain_timeout
    compared = 0.0
    with consumer(rig, command, env, log_name) as process:
        while time.time() < deadline:
            samples.take(rig, process.pid)
            run.rss_mb, run.rss_total_mb = (
                max(a, b)
                for a, b in zip(peak_rss_mb(process.pid), (run.rss_mb, run.rss_total_mb), strict=True)
            )
            reads = rig.streams.get(f"/_rig/stats?table={table}")
            writes = rig.sink.get("/_rig/stats").get(index, {})
            read_all = reads["records"] >= total if path == "worker" else process.poll() is not None
            quiet = time.time() - (writes.get("last_at") or time.time())
            if read_all and quiet > QUIET and time.time() - compared > 1.0:
                run.mismatch, compared = compare(rig, table, index), time.time()
                if not any(run.mismatch):
                    break
                if quiet > CONVERGE_WAIT:
                    rig.warnings.append(
                        f"{who} {path} {table}: not converged (unlike, missing, extra) {run.mismatch}"
                    )
                    break
            if process.poll() is not None and (path == "worker" or process.returncode != 0):
                rig.warnings.append(
                    f"{who} {path} {table} exited with {process.returncode}: {log_tail(rig, log_name)}"
                )
                break
            time.sleep(POLL)
        else:
            rig.warnings.append(
                f"{who} {path} {table}: not converged after {rig.args.drain_timeout:g} s {run.mismatch}"
            )
        samples.take(rig, process.pid)
        writes = rig.sink.get("/_rig/stats").get(index, {})
        reads = rig.streams.get(f"/_rig/stats?table={table}")
    run.converged = not any(run.mismatch)
    if reads.get("first_at") and writes.get("last_at"):
        run.seconds, run.cpu_s, rig_cpu = samples.window(reads["first_at"], writes["last_at"])
        run.seconds = writes["last_at"] - reads["first_at"]
        run.moved = total
        run.rig_share = rig_cpu / run.seconds if run.seconds > 0 else 0.0
        if run.rig_share > 0.5:
            rig.warnings.append(
                f"{who} {path} {table}: the rig used {run.rig_share:.0%} of its core; it may be the bound"
            )
    return run


def pair(rig: Rig, path: str, label: str, spec: dict[str, Any], *, total: int, turn: int) -> dict[str, Run]:
    """cdcsync and naive over two tables of the same data; who goes first alternates with ``turn``."""
    names = {who: f"{path[0]}{label}-{turn}-{who}" for who in ("cdcsync", "naive")}
    rig.streams.post("/_rig/tables", {"names": list(names.values()), **spec})
    runs = {}
    for who in ("cdcsync", "naive")[:: 1 if turn % 2 == 0 else -1]:
        rig.sink.post(f"/{names[who]}", INDEX_BODY, method="PUT")
        runs[who] = drain(rig, who, path, names[who], total)
        if who == "cdcsync":
            rig.converged.append(bool(runs[who].converged))
    return runs


# --- the phases -------------------------------------------------------------------------------------


def row(runs: dict[str, Run], rate: str, unit: str) -> dict[str, Any]:
    """One line of the worker or backfill table: wall rates, CPU per record, memory, the rig's share."""
    ours, naive = runs["cdcsync"], runs["naive"]
    return {
        f"cdcsync_{rate}": round(ours.rate),
        f"naive_{rate}": round(naive.rate),
        "ratio": _ratio(ours.rate, naive.rate),
        f"cpu_us_per_{unit}": round(ours.cpu_us, 1),
        f"naive_cpu_us_per_{unit}": round(naive.cpu_us, 1),
        # what one dedicated core would do if CPU were the only bound: robust on a shared machine
        "cpu_ratio": _ratio(naive.cpu_us, ours.cpu_us),
        "rss_mb": round(ours.rss_mb, 1),
        "naive_rss_mb": round(naive.rss_mb, 1),
        "converged": ours.converged,
        "naive_converged": naive.converged,
        "rig_cpu_share": round(max(ours.rig_share, naive.rig_share), 2),
    }


def worker_phase(rig: Rig) -> dict[str, Any]:
    results = {}
    for turn, shards in enumerate(int(s) for s in rig.args.shards.split(",")):
        spec = {"shards": shards, "records": rig.args.records, "seed": shards}
        results[str(shards)] = row(
            pair(rig, "worker", str(shards), spec, total=rig.args.records, turn=turn), "rps", "record"
        )
        _progress(f"worker {shards} shards", results[str(shards)])
    return results


def backfill_phase(rig: Rig) -> dict[str, Any]:
    results = {}
    spec = {"shards": 0, "items": rig.args.items, "seed": 99, "scan_latency_ms": rig.args.scan_latency_ms}
    for turn, segments in enumerate(int(s) for s in rig.args.segments.split(",")):
        rig.args.segments_now = segments
        results[str(segments)] = row(
            pair(rig, "backfill", str(segments), spec, total=rig.args.items, turn=turn), "ips", "item"
        )
        _progress(f"backfill {segments} segments", results[str(segments)])
    return results


def shared_phase(rig: Rig) -> dict[str, Any]:
    """Backfill processes joining one run (``--run-id``, file checkpoints shared under flock): items/s
    for each process count, all processes on the consumer CPUs (give it several: ``--consumer-cpus``)."""
    results: dict[str, Any] = {}
    spec = {"shards": 0, "items": rig.args.items, "seed": 77, "scan_latency_ms": rig.args.scan_latency_ms}
    # The naive scan on the same CPUs and data, once: it is one thread whatever the CPUs.
    rig.streams.post("/_rig/tables", {"names": ["s-naive"], **spec})
    rig.sink.post("/s-naive", INDEX_BODY, method="PUT")
    naive = drain(rig, "naive", "backfill", "s-naive", rig.args.items)
    naive_row = {"naive_ips": round(naive.rate), "cpu_us_per_item": round(naive.cpu_us, 1)}
    _progress("shared backfill, naive scan", naive_row)
    for processes in (int(p) for p in rig.args.processes.split(",")):
        rig.args.processes_now = processes
        table = f"s{processes}"
        rig.streams.post("/_rig/tables", {"names": [table], **spec})
        rig.sink.post(f"/{table}", INDEX_BODY, method="PUT")
        run = drain(rig, "cdcsync", "shared", table, rig.args.items)
        rig.converged.append(bool(run.converged))
        results[str(processes)] = {
            "cdcsync_ips": round(run.rate),
            "naive_ips": round(naive.rate),
            "ratio": _ratio(run.rate, naive.rate),
            "segments": rig.args.shared_segments,
            "cpu_us_per_item": round(run.cpu_us, 1),
            "naive_cpu_us_per_item": round(naive.cpu_us, 1),
            "rss_mb": round(run.rss_mb, 1),
            "rss_total_mb": round(run.rss_total_mb, 1),
            "converged": run.converged,
            "rig_cpu_share": round(run.rig_share, 2),
        }
        _progress(f"shared backfill, {processes} processes", results[str(processes)])
    return results


def lambda_phase(rig: Rig) -> dict[str, Any]:
    command = [
        sys.executable,
        str(REPO / "bench/rig/lambda_cpu.py"),
        rig.sink.url,
        "--records",
        str(rig.args.lambda_records),
    ]
    with consumer(rig, command, rig.env, "lambda.log") as process:
        process.wait(timeout=600)
    lines = (rig.workdir / "lambda.log").read_text().strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        rig.warnings.append(f"lambda: no result: {log_tail(rig, 'lambda.log')}")
        return {}
    result["ratio"] = _ratio(result["cdcsync_us_per_record"], result["naive_us_per_record"])
    rig.converged.append(bool(result["converged"]))
    _progress("lambda", result)
    return result


def live(rig: Rig, who: str, rate: float, label: str) -> dict[str, Any]:
    """One consumer over a live 1-shard stream at ``rate`` records/s: put-to-written latencies."""
    table = f"l{label}-{who}"
    seconds = rig.args.latency_seconds
    rig.streams.post(
        "/_rig/tables", {"names": [table], "shards": 1, "live": {"rate": rate, "seconds": seconds}}
    )
    rig.sink.post(f"/{table}", INDEX_BODY, method="PUT")
    command, env = consumer_command(rig, who, "worker", table, table)
    with consumer(rig, command, env, f"{table}.log") as process:
        deadline = time.time() + 60
        while rig.streams.get(f"/_rig/stats?table={table}")["shards_read"] < 1 and time.time() < deadline:
            if process.poll() is not None:
                rig.warnings.append(
                    f"{who} latency run exited with {process.returncode}: {log_tail(rig, f'{table}.log')}"
                )
                return {}
            time.sleep(POLL)
        began = time.time()
        rig.streams.post(f"/_rig/start?table={table}")
        time.sleep(seconds)
        while not (stats := rig.streams.get(f"/_rig/stats?table={table}"))["live_done"]:
            time.sleep(POLL)
        settle = time.time() + SETTLE
        while (
            time.time() < settle
            and rig.sink.get("/_rig/stats").get(table, {}).get("docs", 0) < stats["total_records"]
        ):
            time.sleep(POLL)
    puts = rig.streams.get(f"/_rig/puts?table={table}")
    docs = rig.sink.get(f"/_rig/state?index={table}")["docs"]
    now = time.time()
    kept = {key: put for key, put in puts.items() if put >= began + rig.args.warmup}
    # A record still missing counts with the time waited so far: a lower bound of its latency.
    latencies = sorted((docs[key]["at"] if key in docs else now) - put for key, put in kept.items())
    mismatch = compare(rig, table, table)
    if who == "cdcsync":
        rig.converged.append(not any(mismatch))
    if not latencies:
        return {"missing": len(kept)}
    return {
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3),
        "max_s": round(latencies[-1], 3),
        "at_rps": round(stats["live_achieved"] or rate),
        "samples": len(latencies),
        "missing": len(kept.keys() - docs.keys()),
        "converged": not any(mismatch),
    }


def latency_phase(rig: Rig, one_shard_rps: float | None) -> dict[str, Any]:
    low = {
        who: live(
            rig,
            who,
            rig.args.low_rate,
            "low",
        )
        for who in ("cdcsync", "naive")
    }
    result: dict[str, Any] = {
        "low_rate": {"at_rps": rig.args.low_rate, **{f"{w}": v for w, v in low.items()}}
    }
    _progress("latency at a low rate", result["low_rate"])
    rate = 0.8 * (one_shard_rps or rig.args.high_rate)
    loaded = live(rig, "cdcsync", rate, "load")
    result |= {
        "p50_s": loaded.get("p50_s"),
        "p99_s": loaded.get("p99_s"),
        "at_rps": loaded.get("at_rps", round(rate)),
    }
    result["at_load"] = loaded
    _progress("latency at 80 % of 1-shard capacity", loaded)
    return result


# --- report ------------------------------------------------------------------------------------------


def _ratio(ours: float, theirs: float) -> float | None:
    return round(ours / theirs, 2) if theirs else None


def _progress(what: str, values: object) -> None:
    print(f"  {what}: {json.dumps(values)}", file=sys.stderr, flush=True)


def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    worker, backfill, latency = (
        result.get("worker", {}),
        result.get("backfill", {}),
        result.get("worker_latency", {}),
    )
    low = latency.get("low_rate", {})
    p99_low = (low.get("cdcsync", {}).get("p99_s"), low.get("naive", {}).get("p99_s"))
    found = {
        "worker_1_shard_vs_naive": (worker.get("1", {}).get("ratio"), lambda v: v >= 3),
        "worker_64_shards_rss_mb": (worker.get("64", {}).get("rss_mb"), lambda v: v < 200),
        "backfill_8_segments_vs_naive": (backfill.get("8", {}).get("ratio"), lambda v: v >= 4),
        "latency_p99_at_80pct_s": (latency.get("p99_s"), lambda v: v < 1.5),
        "latency_p99_low_rate_vs_naive": (
            _ratio(*p99_low) if None not in p99_low else None,  # type: ignore[arg-type]
            lambda v: v <= 2,
        ),
        "lambda_cpu_vs_naive": (result.get("lambda", {}).get("ratio"), lambda v: v <= 0.5),
    }
    out = {}
    for name, (value, test) in found.items():
        met: Callable[[Any], bool] = test
        out[name] = {
            "value": value,
            "target": TARGETS[name],
            "met": None if value is None else bool(met(value)),
        }
    return out


def print_table(result: dict[str, Any]) -> None:
    rig = result["rig"]
    print(
        f"\nrig capacity per core: GetRecords {rig['get_records_per_cpu_s']:,.0f} records/s, Scan "
        f"{rig['scan_per_cpu_s']:,.0f} items/s, _bulk {rig['bulk_per_cpu_s']:,.0f} actions/s; consumer CPUs "
        f"{rig['consumer_cpus']}, rig CPUs {rig['rig_cpus']}"
    )
    for path, label, rate, unit in (
        ("worker", "shards", "rps", "record"),
        ("backfill", "segm.", "ips", "item"),
    ):
        if not result.get(path):
            continue
        print(
            f"\n{path:<10}{'cdcsync/s':>11}{'naive/s':>10}{'ratio':>7}{'us/' + unit:>11}{'naive':>8}"
            f"{'CPU adv':>10}{'RSS MB':>8}{'naive':>7}{'rig':>6}"
        )
        for count, line in result[path].items():
            print(
                f"{count + ' ' + label:<10}{line['cdcsync_' + rate]:>11,}{line['naive_' + rate]:>10,}"
                f"{line['ratio'] or 0:>6.2f}x{line['cpu_us_per_' + unit]:>11}"
                f"{line['naive_cpu_us_per_' + unit]:>8}{line['cpu_ratio'] or 0:>9.2f}x"
                f"{line['rss_mb']:>8}{line['naive_rss_mb']:>7}{line['rig_cpu_share']:>6.0%}"
            )
    print("(ratio: cdcsync/naive wall rate; CPU adv: naive/cdcsync CPU per record; rig: its CPU share)")
    if result.get("backfill_processes"):
        rows = result["backfill_processes"]
        first = rows[min(rows, key=int)]["cdcsync_ips"] or 1
        print(
            f"\n{'shared run':<12}{'items/s':>9}{'vs 1':>7}{'naive/s':>9}{'ratio':>7}{'us/item':>9}"
            f"{'RSS MB/proc':>13}{'rig':>6}"
        )
        for count, line in rows.items():
            print(
                f"{count + ' proc.':<12}{line['cdcsync_ips']:>9,}{line['cdcsync_ips'] / first:>6.2f}x"
                f"{line.get('naive_ips', 0):>9,}{line.get('ratio') or 0:>6.2f}x"
                f"{line['cpu_us_per_item']:>9}{line['rss_mb']:>13}{line['rig_cpu_share']:>6.0%}"
            )
    if result.get("lambda"):
        row = result["lambda"]
        print(
            f"\nlambda warm CPU per record: cdcsync {row['cdcsync_us_per_record']:.1f} us, naive "
            f"{row['naive_us_per_record']:.1f} us (cdcsync/naive {row['ratio']}x)"
        )
    if result.get("worker_latency"):
        latency = result["worker_latency"]
        for who, row in latency["low_rate"].items():
            if isinstance(row, dict):
                print(
                    f"latency {who} at {latency['low_rate']['at_rps']:g}/s: "
                    f"p50 {row.get('p50_s')} s, p99 {row.get('p99_s')} s"
                )
        print(
            f"latency cdcsync at {latency['at_rps']}/s (80 % of 1 shard): "
            f"p50 {latency['p50_s']} s, p99 {latency['p99_s']} s"
        )
    print(f"\nconverged (every cdcsync run left the index equal to the table): {result['converged']}")
    print("\ntargets:")
    for name, row in result["targets"].items():
        verdict = "not measured" if row["met"] is None else ("met" if row["met"] else "NOT met")
        print(f"  {name:<32} {row['target']:>7}  {row['value']!s:>8}  {verdict}")
    for warning in result["warnings"]:
        print(f"! {warning}")


# --- main --------------------------------------------------------------------------------------------


def cpu_split(args: argparse.Namespace) -> tuple[set[int] | None, set[int] | None]:
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    consumer = {int(c) for c in args.consumer_cpus.split(",")} if args.consumer_cpus else {available[0]}
    rig = {int(c) for c in args.rig_cpus.split(",")} if args.rig_cpus else set(available) - consumer
    return consumer, rig or None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    parser.add_argument("--quick", action="store_true", help="smaller runs: the whole run under 3 minutes")
    parser.add_argument("--only", default="worker,backfill,lambda,latency", help="phases to run")
    parser.add_argument("--shards", default="1,8,64")
    parser.add_argument("--segments", default="1,4,8")
    parser.add_argument(
        "--records", type=int, help="backlog records per worker run (default 100,000; quick 10,000)"
    )
    parser.add_argument(
        "--items", type=int, help="table items per backfill run (default 90,000; quick 10,000)"
    )
    parser.add_argument("--processes", default="1,2,4", help="process counts of the shared phase")
    parser.add_argument("--shared-segments", type=int, default=16, help="segments of a shared run")
    parser.add_argument("--scan-latency-ms", type=float, default=20.0, help="slept per Scan page")
    parser.add_argument(
        "--lambda-records", type=int, help="records through each handler (default 20,000; quick 4,000)"
    )
    parser.add_argument("--low-rate", type=float, default=50.0, help="records/s of the low-rate latency runs")
    parser.add_argument(
        "--high-rate", type=float, default=2000.0, help="1-shard capacity when the worker phase is skipped"
    )
    parser.add_argument(
        "--latency-seconds", type=float, help="seconds of steady writes per latency run (default 15; quick 6)"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of latency samples left out")
    parser.add_argument("--drain-timeout", type=float, default=240.0)
    parser.add_argument("--consumer-cpus", help="CPUs of the consumer under test (default: the first)")
    parser.add_argument("--rig-cpus", help="CPUs of the rig (default: the others)")
    parser.add_argument("--run-args", default="", help="extra arguments of cdcsync run (e.g. --processes 2)")
    parser.add_argument("--backfill-args", default="", help="extra arguments of cdcsync backfill")
    parser.add_argument("--workdir", help="keep mappings, checkpoints and consumer logs here")
    parser.add_argument(
        "--cdcsync-repo",
        type=Path,
        default=REPO,
        help="measure the cdcsync package of this checkout (e.g. a `git archive` of main, for before/after)",
    )
    parser.add_argument("--table-from", metavar="JSON", help="print the table of a saved --json result")
    args = parser.parse_args()
    args.records = args.records or (10_000 if args.quick else 100_000)
    args.items = args.items or (10_000 if args.quick else 90_000)
    args.lambda_records = args.lambda_records or (4_000 if args.quick else 20_000)
    args.latency_seconds = args.latency_seconds or (6.0 if args.quick else 15.0)
    args.segments_now = 1
    args.processes_now = 1
    return args


def main() -> None:
    args = parse_args()
    if args.table_from:
        print_table(json.loads(Path(args.table_from).read_text()))
        return
    phases = set(args.only.split(","))
    consumer_cpus, rig_cpus = cpu_split(args)
    pin(os.getpid(), rig_cpus)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "rig",
        "AWS_SECRET_ACCESS_KEY": "rig",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONPATH": os.pathsep.join([str(args.cdcsync_repo), str(REPO / "bench")]),
        "RIG_CDCSYNC_REPO": str(args.cdcsync_repo),
    }
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(dir=SCRATCH if os.path.isdir(SCRATCH) else None) as scratch,
        stand_in("streams_scan", cpus=rig_cpus) as streams,
        stand_in("bulk_sink", cpus=rig_cpus) as sink,
    ):
        env["AWS_ENDPOINT_URL_DYNAMODB"] = env["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"] = streams.url
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        rig = Rig(streams, sink, env, workdir, consumer_cpus, args)
        check_streams(streams)
        check_sink(sink)
        capacity = streams_capacity(streams, 1.0)
        capacity["bulk"] = sink_capacity(sink, 1.0)
        result: dict[str, Any] = {
            "rig": {
                "get_records_per_cpu_s": round(capacity["get_records"]["per_cpu_second"]),
                "scan_per_cpu_s": round(capacity["scan"]["per_cpu_second"]),
                "bulk_per_cpu_s": round(capacity["bulk"]["per_cpu_second"]),
                "consumer_cpus": sorted(consumer_cpus) if consumer_cpus else "any",
                "rig_cpus": sorted(rig_cpus) if rig_cpus else "any",
            }
        }
        _progress("rig", result["rig"])
        if "worker" in phases:
            result["worker"] = worker_phase(rig)
        if "backfill" in phases:
            result["backfill"] = backfill_phase(rig)
        if "shared" in phases:
            result["backfill_processes"] = shared_phase(rig)
        if "lambda" in phases:
            result["lambda"] = lambda_phase(rig)
        if "latency" in phases:
            one = result.get("worker", {}).get("1", {}).get("cdcsync_rps")
            result["worker_latency"] = latency_phase(rig, one)
        bound = min(result["rig"]["get_records_per_cpu_s"], result["rig"]["bulk_per_cpu_s"])
        for shards, row in result.get("worker", {}).items():
            if 2 * max(row["cdcsync_rps"], row["naive_rps"]) > bound:
                rig.warnings.append(
                    f"worker {shards} shards: a consumer is within 2x of the rig's capacity ({bound:,}/s)"
                )
        result["converged"] = bool(rig.converged) and all(rig.converged)
        result["targets"] = targets(result)
        result["warnings"] = rig.warnings
        result["seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
        print(f"\n({result['seconds']:.0f} s; numbers from this machine, {time.strftime('%Y-%m-%d')})")


if __name__ == "__main__":
    main()
