"""``cdcsync run --processes N``: a supervisor and N worker processes, to use more than one core.

One Python process reads, plans and writes on one core at a time (the GIL), whatever its shard
count. With ``--processes N`` (or ``CDCSYNC_WORKER_PROCESSES``) the ``run`` process becomes a
supervisor that starts N worker processes, ``cdcsync run --partition I/N``, and does no syncing
itself:

- **Who reads what.** Over a ``file://`` store the processes split the shards by a stable hash
  (``worker/partition.py``), lineage read from the shared file. Over ``dynamodb://`` they are plain
  replicas with their own worker ids, balanced by the lease table like replicas on other hosts.
- **A process that dies is started again** (killed, out of memory, a bug, a transient failure at
  start-up): after 1 s, doubling to 30 s while it keeps dying within a minute of its start; counted
  in ``cdcsync_worker_process_restarts_total``. Over ``file://`` the new process reads the same
  shards from their checkpoints; over ``dynamodb://`` its predecessor's leases expire and are taken.
- **A configuration error stops the group**: a process that exits 2 (its log line says why) makes
  the supervisor stop the others and exit 2, as one process would.
- **SIGTERM or SIGINT** is passed to every process; each finishes its in-flight writes and releases
  its leases (within 30 s, as one process does), and the supervisor exits with the worst exit code.
- **One endpoint for the group** on ``CDCSYNC_METRICS_ADDR``: the processes serve theirs on
  loopback ports of their own (each tells the supervisor its port through a pipe), scraped every
  second. ``/metrics`` is their sum (counters, histograms; ``cdcsync_shards_owned``), or their
  largest value (the other gauges: lags and ages), plus the supervisor's restarts; ``/readyz`` is
  ready when every process is, with each one's lines; ``/healthz`` is healthy while the supervisor
  runs and every process is healthy or within a minute of its start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import FrameType

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from cdcsync.worker.http import PATHS, Answer, refusal, text_answer

log = logging.getLogger(__name__)

RESTART_PAUSE = (1.0, 30.0)  # first and longest pause before a dead process is started again
STEADY_SECONDS = 60.0  # a process that ran this long is restarted after the first pause again
START_GRACE_SECONDS = 60.0  # /healthz does not count a process this new (it is starting up)
SCRAPE_SECONDS = 1.0
SCRAPE_TIMEOUT_SECONDS = 2.0
SHUTDOWN_SECONDS = 35.0  # each process ends its writes within 30 s of SIGTERM
EXIT_CONFIG = 2
SUMMED_GAUGES = frozenset({"cdcsync_shards_owned"})  # per-process parts of a whole; other gauges: max
RESTARTS = "cdcsync_worker_process_restarts_total"


@dataclass
class WorkerProcess:
    """One of the N: its command, the running process, and what its endpoint said last."""

    number: int  # 1-based, as the logs name it
    count: int
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    port: int | None = None
    started: float = 0.0
    restart_at: float | None = None
    pause: float = RESTART_PAUSE[0]
    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # path -> (status, body)
    _port_pipe: int | None = None
    _port_text: bytes = b""

    @property
    def name(self) -> str:
        pid = self.process.pid if self.process is not None else "-"
        return f"process {self.number}/{self.count} (pid {pid})"

    def start(self) -> None:
        read, write = os.pipe()
        os.set_blocking(read, False)
        command = [*self.command, "--partition", f"{self.number}/{self.count}", "--port-fd", str(write)]
        try:
            self.process = subprocess.Popen(command, env=self.env, pass_fds=(write,))  # noqa: S603 - our own CLI
        finally:
            os.close(write)
        self._port_pipe, self._port_text, self.port = read, b"", None
        self.answers = {}
        self.started = time.monotonic()
        self.restart_at = None
        log.info("started %s", self.name)

    def read_port(self) -> None:
        """Take the port the process writes to its pipe once its endpoint listens."""
        if self._port_pipe is None:
            return
        try:
            chunk = os.read(self._port_pipe, 64)
        except BlockingIOError:
            return
        self._port_text += chunk
        if not chunk or self._port_text.endswith(b"\n"):
            os.close(self._port_pipe)
            self._port_pipe = None
            text = self._port_text.strip()
            self.port = int(text) if text.isdigit() else None

    def close(self) -> None:
        if self._port_pipe is not None:
            os.close(self._port_pipe)
            self._port_pipe = None


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit {code}"


def worst_exit_code(codes: Iterable[int | None]) -> int:
    """The group's exit code: 2 if a process had a configuration error, else 1 if any failed."""
    worst = 0
    for code in codes:
        if code == EXIT_CONFIG:
            return EXIT_CONFIG
        if code != 0:
            worst = 1
    return worst


def merge_metrics(texts: Sequence[str], restarts: int) -> bytes:
    """The processes' ``/metrics`` as one: summed, or for gauges (``SUMMED_GAUGES`` aside) the largest."""
    families: dict[str, Metric] = {}
    values: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            for sample in family.samples:
                key = (family.name, sample.name, tuple(sorted(sample.labels.items())))
                if key not in values:
                    values[key] = sample.value
                elif family.name.endswith("_created"):
                    values[key] = min(values[key], sample.value)
                elif family.type == "gauge" and family.name not in SUMMED_GAUGES:
                    values[key] = max(values[key], sample.value)
                else:
                    values[key] += sample.value
    for (family_name, sample_name, labels), value in values.items():
        families[family_name].add_sample(sample_name, dict(labels), value)
    own = Metric(
        RESTARTS.removesuffix("_total"),
        "Worker processes of run --processes N started again after they ended unexpectedly.",
        "counter",
    )
    own.add_sample(RESTARTS, {}, float(restarts))
    families[own.name] = own

    class _Merged:
        def collect(self) -> list[Metric]:
            return list(families.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return generate_latest(registry)


@dataclass
class Supervisor:
    """Runs the N processes until ``stopping`` is set or one stops on a configuration error."""

    processes: list[WorkerProcess]
    stopping: threading.Event = field(default_factory=threading.Event)
    restarts: int = 0
    last_tick: float = 0.0
    exit_code: int | None = None  # set when a process ended on a configuration error
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def run(self) -> int:
        """Start the processes and keep them running; the group's exit code once they have stopped."""
        for worker in self.processes:
            worker.start()
        scraper = threading.Thread(target=self._scrape_forever, name="scrape-processes", daemon=True)
        scraper.start()
        try:
            while not self.stopping.is_set():
                self._tick()
                self.stopping.wait(0.2)
        finally:
            codes = self._stop_all()
        if self.exit_code is not None:
            return self.exit_code
        return worst_exit_code(codes)

    def _tick(self) -> None:
        now = time.monotonic()
        self.last_tick = now
        for worker in self.processes:
            worker.read_port()
            if worker.process is None:
                continue
            code = worker.process.poll()
            if code is None and worker.restart_at is None:
                continue
            if worker.restart_at is None:  # it just ended
                self._ended(worker, code if code is not None else 1, now)
                if self.stopping.is_set():
                    return
            elif now >= worker.restart_at:
                with self._lock:
                    self.restarts += 1
                worker.start()

    def _ended(self, worker: WorkerProcess, code: int, now: float) -> None:
        worker.close()
        worker.port = None
        if code == EXIT_CONFIG:
            log.error(
                "%s stopped on a configuration error (exit 2; its log says why): stopping every process",
                worker.name,
            )
            self.exit_code = EXIT_CONFIG
            self.stopping.set()
            return
        if now - worker.started >= STEADY_SECONDS:
            worker.pause = RESTART_PAUSE[0]
        log.warning(
            "%s ended unexpectedly (%s); starting it again in %.0f s",
            worker.name,
            _exit_text(code),
            worker.pause,
        )
        worker.restart_at = now + worker.pause
        worker.pause = min(worker.pause * 2, RESTART_PAUSE[1])

    def _stop_all(self) -> list[int | None]:
        running = [w for w in self.processes if w.process is not None and w.process.poll() is None]
        for worker in running:
            if worker.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_SECONDS
        codes: list[int | None] = []
        for worker in self.processes:
            worker.close()
            if worker.process is None:
                continue
            try:
                code = worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error(  # noqa: TRY400 - the timeout is the news, not its traceback
                    "%s did not stop within %.0f s of SIGTERM; killing it", worker.name, SHUTDOWN_SECONDS
                )
                worker.process.kill()
                code = worker.process.wait()
            codes.append(code if worker in running else 0)  # an earlier end was dealt with then
        return codes

    # --- the group's endpoint --------------------------------------------------------------------------
    def _scrape_forever(self) -> None:
        while not self.stopping.is_set():
            for worker in self.processes:
                port = worker.port
                answers = {path: _get(port, path) for path in PATHS} if port is not None else {}
                worker.answers = answers
            self.stopping.wait(SCRAPE_SECONDS)

    def answer(self, method: str, path: str) -> Answer:
        """``/metrics``, ``/healthz`` and ``/readyz`` of the whole group (``Answering``)."""
        if (refused := refusal(method, path)) is not None:
            return refused
        if path == "/metrics":
            texts = [w.answers["/metrics"][1].decode() for w in self.processes if "/metrics" in w.answers]
            texts = [t for t in texts if t]
            return Answer(200, merge_metrics(texts, self.restarts), CONTENT_TYPE_LATEST)
        if path == "/healthz":
            return self._healthz()
        return self._readyz()

    def _healthz(self) -> Answer:
        now = time.monotonic()
        age = now - self.last_tick
        lines = [f"supervisor: last check {age:.0f} s ago"]
        healthy = self.last_tick > 0 and age < 10 * SCRAPE_SECONDS
        for worker in self.processes:
            status, body = worker.answers.get("/healthz", (0, b"starting"))
            new = now - worker.started < START_GRACE_SECONDS or worker.restart_at is not None
            healthy = healthy and (status == 200 or new)  # noqa: PLR2004
            lines.append(f"{worker.name}: {body.decode(errors='replace').strip() or status}")
        return text_answer(
            200 if healthy else 503, f"{'ok' if healthy else 'stuck'}\n" + "\n".join(lines) + "\n"
        )

    def _readyz(self) -> Answer:
        ready = True
        lines = []
        for worker in self.processes:
            status, body = worker.answers.get("/readyz", (0, b"not started yet\n"))
            ready = ready and status == 200  # noqa: PLR2004
            text = body.decode(errors="replace").strip().replace("\n", f"\n{worker.name}: ")
            lines.append(f"{worker.name}: {text}")
        return text_answer(200 if ready else 503, "\n".join(lines) + "\n")


def _get(port: int, path: str) -> tuple[int, bytes]:
    """A loopback GET of one process's endpoint: (status, body); (0, why) when it does not answer."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}{path}", timeout=SCRAPE_TIMEOUT_SECONDS
        ) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except OSError as exc:
        return 0, f"not answering: {exc}\n".encode()


def child_command(tables: Sequence[str], mappings: str, *, wait_for_stream: bool) -> list[str]:
    """``cdcsync run`` as each process runs it (``--partition`` and ``--port-fd`` added per process)."""
    command = [sys.executable, "-m", "cdcsync.entrypoints.cli", "run", "--mappings", mappings]
    for table in tables:
        command += ["--table", table]
    if wait_for_stream:
        command.append("--wait-for-stream")
    return command


def install_signal_handlers(supervisor: Supervisor) -> None:
    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info(
            "received %s: stopping the %d worker processes (each finishes its in-flight writes)",
            signal.Signals(signum).name,
            len(supervisor.processes),
        )
        supervisor.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
