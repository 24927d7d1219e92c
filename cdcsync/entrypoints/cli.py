"""``cdcsync`` command line. Exit codes: 0 ok, 1 the check found problems or a failure stopped the
command (run it again), 2 configuration error.

``main`` is the boundary: every cdcsync error becomes one line on stderr and the exit code its
``kind`` promises; anything else is a bug, one line too, with the traceback under ``--debug`` (or
``CDCSYNC_LOG_LEVEL=DEBUG``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError
from opensearchpy.exceptions import OpenSearchException

from cdcsync import __version__
from cdcsync.aws import aws_client, aws_error
from cdcsync.entrypoints.preview import add_preview_parser
from cdcsync.errors import CdcsyncError, ConfigError, MappingError, SettingsError
from cdcsync.logs import TextFormatter, configure_logging, redact_text
from cdcsync.mapping.compiled import CompiledMapping, MappingSet
from cdcsync.mapping.filter_criteria import filter_criteria
from cdcsync.mapping.loader import load_mappings
from cdcsync.mapping.patterns import named_fields
from cdcsync.printable import printable, printable_json
from cdcsync.redrive import redrive
from cdcsync.services import Services
from cdcsync.settings import load_settings
from cdcsync.sink.client import opensearch_error
from cdcsync.sink.indices import apply_indices
from cdcsync.source.synthetic import filter_warnings
from cdcsync.source.table_check import check_tables
from cdcsync.values import dump_json

log = logging.getLogger(__name__)

EXIT_OK, EXIT_PROBLEMS, EXIT_CONFIG = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
RUN_AGAIN = "nothing was lost; run the command again"


def _mappings_path(explicit: str | None) -> str:
    return explicit if explicit is not None else str(load_settings().mappings)


def _summary(mapping: CompiledMapping) -> str:
    """One readable line per mapping: what it reads, selects and writes (``cdcsync validate``)."""
    model = mapping.model
    fields, deletes = model.fields, model.deletes
    parts = [f"id {mapping.id.source if mapping.id else '<key values joined by |>'}"]
    if mapping.routing is not None:
        parts.append(f"routing {mapping.routing.source}")
    parts.append(
        f"filter on {', '.join(named_fields(model.filter))}" if model.filter else "no filter (every record)"
    )
    parts.append(
        f"where on {', '.join(named_fields(model.where))}" if model.where else "no where (every item)"
    )
    shape = [
        f"{count} {what}"
        for count, what in (
            (len(fields.exclude), "excluded"),
            (len(fields.rename), "renamed"),
            (len(fields.computed), "computed"),
        )
        if count
    ]
    chosen = "all" if fields.include is None else f"{len(fields.include)} included"
    parts.append(f"fields: {', '.join([chosen, *shape]) if shape or fields.include else 'whole item'}")
    if mapping.skip_unchanged:
        parts.append("skip_unchanged")
    kinds = (("deletes", deletes.on_remove), ("TTL expiries", deletes.on_ttl_expiry))
    ignored = [what for what, choice in kinds if choice == "ignore"]
    if ignored:
        parts.append(f"deletes: {' and '.join(ignored)} ignored")
    parts.append(f"version {model.version}")
    return f"{mapping.source}: {mapping.name}: {'; '.join(parts)}"


def _validate(args: argparse.Namespace) -> int:
    path = _mappings_path(args.path)
    try:
        mappings = load_mappings(path)
    except MappingError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        print(f"{count} problem{'s' if count != 1 else ''} in {path}", file=sys.stderr)
        return EXIT_PROBLEMS
    for mapping in mappings:
        print(_summary(mapping))
        for warning in mapping.warnings:
            print(warning, file=sys.stderr)
        for warning in filter_warnings(mapping):
            print(f"warning: {warning}", file=sys.stderr)
    if not args.tables:
        return EXIT_OK
    count = _table_problems(mappings, aws_client(None, "dynamodb"))
    if count:
        print(f"{count} problem{'s' if count != 1 else ''} with the tables", file=sys.stderr)
        return EXIT_PROBLEMS
    return EXIT_OK


def _table_problems(mappings: MappingSet, dynamodb: Any) -> int:
    """``validate --tables``: print each mapping's findings on its live table; count what never works.

    The worker runs the same check at start-up (``source/table_check.py``).
    """
    checks = check_tables(mappings, mappings.tables, dynamodb)
    for check in checks:
        print(check.line, file=sys.stderr)
    return sum(check.refuses for check in checks)


def _load(path: str | None) -> MappingSet:
    return load_mappings(_mappings_path(path))


def _filters(args: argparse.Namespace) -> int:
    mappings = _load(args.mappings)
    table_mappings = mappings.for_table(args.table)
    if not table_mappings:
        known = ", ".join(mappings.tables) or "none"
        print(f"no mapping for table {args.table} (tables with mappings: {known})", file=sys.stderr)
        return EXIT_CONFIG
    export = filter_criteria(
        [m.filter for m in table_mappings], table=args.table, names=[m.source for m in table_mappings]
    )
    for warning in export.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if export.criteria is None:
        # Nothing on stdout: a script passing $(cdcsync filters ...) on must not pass "null" on.
        return EXIT_PROBLEMS
    print(orjson.dumps(export.criteria, option=orjson.OPT_INDENT_2).decode())
    return EXIT_OK


def _services(args: argparse.Namespace) -> Services:
    """The composition root of a command (``cdcsync/services.py``), after its logging is set up."""
    settings = load_settings(**({"mappings": args.mappings} if getattr(args, "mappings", None) else {}))
    configure_logging("text", settings.log_level, keys=settings.log_keys)
    return Services(settings)


def _indices_apply(args: argparse.Namespace) -> int:
    """Exit 1 when an index differs from its index_body in a way only a rebuild changes."""
    services = _services(args)
    target = services.target
    mappings = services.mappings
    reports = apply_indices(target.client, mappings, target)
    for report in reports:
        for line in report.lines(applied=True):
            print(line)
    target.check_writes(mappings, "indices apply")
    return EXIT_PROBLEMS if any(report.rebuild for report in reports) else EXIT_OK


def _indices_diff(args: argparse.Namespace) -> int:
    """Change nothing; exit 1 when any index is missing or differs from its index_body."""
    services = _services(args)
    target = services.target
    reports = apply_indices(target.client, services.mappings, target, change=False)
    for report in reports:
        for line in report.lines(applied=False):
            print(line)
    differs = any(report.action == "missing" or report.changed or report.rebuild for report in reports)
    return EXIT_PROBLEMS if differs else EXIT_OK


def _dlq_show(args: argparse.Namespace) -> int:
    queue = _services(args).dead_letters
    stored = queue.read(args.limit)
    for entry in stored:
        letter = entry.letter
        if args.json:
            print(printable_json(letter.to_json().decode()))
            continue
        where = f"{letter.index}/{letter.id}" if letter.index else "-"
        keys = dump_json(letter.keys).decode()
        # Keys, id and reason come from the item (OpenSearch quotes values): escaped, one line each.
        line = (
            f"{letter.last_failure_at:%Y-%m-%dT%H:%M:%SZ} {letter.table} {keys} seq {letter.sequence_number} "
            f"-> {where}: {letter.error.type}: {letter.error.reason} (attempts {letter.attempts})"
        )
        print(printable(line))
    print(
        f"{len(stored)} dead letter{'s' if len(stored) != 1 else ''} in {queue.describe()}", file=sys.stderr
    )
    return EXIT_OK


def _dlq_redrive(args: argparse.Namespace) -> int:
    services = _services(args)
    writer = services.writer
    queue = services.dead_letters
    report = redrive(
        queue,
        mappings=services.mappings,
        items=services.items,
        writer=writer,
        metrics=services.metrics,
        limit=args.limit,
    )
    for problem in report.problems:
        print(printable(problem), file=sys.stderr)  # reasons quote item values
    print(f"redriven {report.redriven}, left {len(report.problems)} in {queue.describe()}")
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(**({"mappings": args.mappings} if args.mappings else {}))
    configure_logging(settings.log_format, settings.log_level, keys=settings.log_keys)
    from cdcsync.entrypoints.worker import run_worker  # noqa: PLC0415 - only `run` needs the worker
    from cdcsync.worker.partition import Partition  # noqa: PLC0415 - only `run` needs it

    return run_worker(
        settings,
        args.table or (),
        wait_for_stream=args.wait_for_stream,
        processes=args.processes,
        partition=Partition.parse(args.partition) if args.partition else None,
        port_fd=args.port_fd,
    )


def _process_count(text: str) -> int:
    """``--processes``: a whole number from 1 to 64."""
    if not text.isdigit() or not 1 <= int(text) <= 64:  # noqa: PLR2004
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 64, got {text!r}")
    return int(text)


def _backfill(args: argparse.Namespace) -> int:
    if args.status:
        return _backfill_status(args)
    if args.table is None:
        raise ConfigError("backfill: --table is required (only --status --run-id ID can do without it)")
    services = _services(args)
    from cdcsync.backfill.run import run_backfill  # noqa: PLC0415 - only backfill needs it

    stop = threading.Event()
    if args.run_id is not None:
        _stop_on_signals(stop)  # SIGTERM (Kubernetes, Step Functions): finish the pages, release the units
    report = run_backfill(
        services.settings,
        args.table,
        segments=args.segments,
        max_rcu=args.max_rcu,
        resume=args.resume,
        from_export=args.from_export,
        allow_old_export=args.allow_old_export,
        services=services,
        run_id=args.run_id,
        workers=args.workers,
        page_items=args.page_items,
        stop=stop,
    )
    print(
        f"backfill of {report.table}: {report.items_read} items read, {report.written} written, "
        f"{report.stale} stale, {report.skipped} skipped, {report.dead_lettered} dead letters "
        f"in {report.seconds:.1f} s ({report.segments} segments)"
    )
    if report.dead_lettered:
        print("see the dead letters with: cdcsync dlq show", file=sys.stderr)
    return EXIT_OK if report.finished else EXIT_PROBLEMS


def _backfill_status(args: argparse.Namespace) -> int:
    if args.run_id is None:
        raise ConfigError("backfill --status: name the run with --run-id ID")
    settings = load_settings()
    configure_logging("text", settings.log_level, keys=settings.log_keys)
    from cdcsync.backfill.status import describe_status, run_status  # noqa: PLC0415 - only --status needs it

    try:  # read-only: a lease table that does not exist is reported, never created
        store = Services(settings).lease_store(f"status-{socket.gethostname()}-{os.getpid()}", create=False)
    except ConfigError as exc:
        raise ConfigError(f"backfill --status: {exc}") from exc
    status = run_status(store, args.run_id, table=args.table, now_ms=time.time_ns() // 1_000_000)
    print(orjson.dumps(status).decode() if args.json else describe_status(status))
    return EXIT_OK


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(signum: int, _frame: object) -> None:
        log.warning(
            "received %s: finishing the pages in flight, then releasing the units",
            signal.Signals(signum).name,
        )
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _verify(args: argparse.Namespace) -> int:
    services = _services(args)
    from cdcsync.verify.run import run_verify  # noqa: PLC0415 - only verify needs it

    report = run_verify(
        services.settings,
        args.table,
        sample=args.sample,
        repair=args.repair,
        services=services,
        out=sys.stdout,
    )
    return int(report.exit_code)


def _rebuild(args: argparse.Namespace) -> int:
    services = _services(args)
    from cdcsync.rebuild.run import Rebuild, duration_seconds  # noqa: PLC0415 - only rebuild needs it

    rebuild = Rebuild(services, args.table, out=sys.stdout, mapping=args.mapping)
    if args.status:
        print(rebuild.status())
    elif args.resume:
        rebuild.resume()
    elif args.rollback:
        rebuild.rollback()
    elif args.finish:
        rebuild.finish()
    else:
        sample = None if args.full_verify else args.sample
        rebuild.start(sample=sample, keep_old_seconds=duration_seconds(args.keep_old))
    return EXIT_OK


def _lambda_config(args: argparse.Namespace) -> int:
    from cdcsync.deploy.lambda_config import lambda_config  # noqa: PLC0415 - only this verb needs it

    text = lambda_config(
        _load(args.mappings),
        format=args.format,
        tables=args.table or (),
        batch_size=args.batch_size,
        batching_window=args.batching_window,
        parallelization=args.parallelization,
        bisect=args.bisect,
    )
    print(text, end="")
    return EXIT_OK


def _add_table_verbs(verbs: Any) -> None:
    """backfill and verify: the verbs that read a whole table."""
    backfill = verbs.add_parser(
        "backfill",
        help="load existing items without losing races with live changes",
        description="Load the table's existing items (parallel scan, or a DynamoDB export to S3) through the "
        "same planner and writer as the stream, versioned below every change made after the scan "
        "started, so it can run beside the live stream. Interrupted runs continue with --resume.",
    )
    backfill.add_argument("--table", help="DynamoDB table name (required, except with --status)")
    backfill.add_argument(
        "--segments",
        type=int,
        help="parallel scan segments (default: from the table size; with --run-id the run's first process "
        "fixes them)",
    )
    backfill.add_argument(
        "--run-id",
        metavar="ID",
        help="join this backfill run, shared by any number of processes and machines through "
        "CDCSYNC_CHECKPOINTS (created by the first); exit 0 once every unit is done, by anyone",
    )
    backfill.add_argument(
        "--workers",
        type=int,
        help="with --run-id: units this process works on at once (default: from the table size, 4 to 16; "
        "4 for an export)",
    )
    backfill.add_argument(
        "--status",
        action="store_true",
        help="with --run-id: units done, in progress, remaining; items/s, ETA",
    )
    backfill.add_argument("--json", action="store_true", help="with --status: one JSON object")
    backfill.add_argument(
        "--page-items",
        type=int,
        help="items per page: the Scan Limit (default 1000; lower for tables of huge items); with --run-id "
        "also an export's items per page",
    )
    backfill.add_argument("--max-rcu", type=float, help="read capacity units per second to stay near")
    backfill.add_argument("--resume", action="store_true", help="continue an interrupted backfill")
    backfill.add_argument(
        "--from-export", metavar="s3://BUCKET/PREFIX", help="load a DynamoDB export instead"
    )
    backfill.add_argument(
        "--allow-old-export",
        action="store_true",
        help="load an export older than the indices keep deletes (index.gc_deletes, at most the stream's "
        "24h); items deleted since can come back: run verify --repair afterwards",
    )
    backfill.add_argument("--mappings", help="mapping file or folder (default: CDCSYNC_MAPPINGS)")
    backfill.set_defaults(run=_backfill)

    verify = verbs.add_parser(
        "verify",
        help="compare table and index; exit 1 on drift",
        description="Read the table (all of it, or a random sample), build the expected documents and "
        "compare them with the index: missing, stale and (full runs) extra documents. --repair rewrites "
        "missing and stale documents from the item just read and deletes extra ones once a consistent read "
        "confirms it.",
    )
    verify.add_argument("--table", required=True, help="DynamoDB table name")
    verify.add_argument(
        "--sample", type=int, help="check a random sample of N items (no extra-document check)"
    )
    verify.add_argument("--repair", action="store_true", help="fix what is found")
    verify.add_argument("--mappings", help="mapping file or folder (default: CDCSYNC_MAPPINGS)")
    verify.set_defaults(run=_verify)


def _add_rebuild_verb(verbs: Any) -> None:
    rebuild = verbs.add_parser(
        "rebuild",
        help="move an index's alias to a new index built from index_body, with zero downtime",
        description="Create NAME-00000(n+1) from the table's index_body, make every writer write both "
        "indices (alias NAME-rebuild, seen within CDCSYNC_TARGETS_REFRESH_SECONDS), backfill and verify it, "
        "then move the alias NAME to it in one atomic call. The old index is kept (and still written) for "
        "--rollback.",
    )
    rebuild.add_argument("--table", required=True, help="the DynamoDB table whose index is rebuilt")
    rebuild.add_argument("--mappings", help="mapping file or folder (default: CDCSYNC_MAPPINGS)")
    rebuild.add_argument(
        "--mapping",
        metavar="INDEX",
        help="which of the table's mappings, by its index: name (needed when several)",
    )
    rebuild.add_argument("--sample", type=int, default=1000, help="items verify checks (default 1000)")
    rebuild.add_argument("--full-verify", action="store_true", help="verify every item, not a sample")
    rebuild.add_argument("--keep-old", default="24h", help="how long --rollback stays possible (default 24h)")
    step = rebuild.add_mutually_exclusive_group()
    step.add_argument("--resume", action="store_true", help="continue an interrupted rebuild")
    step.add_argument("--status", action="store_true", help="say which step the rebuild is at")
    step.add_argument("--rollback", action="store_true", help="point the alias back at the old index")
    step.add_argument("--finish", action="store_true", help="delete the old index (no rollback after)")
    rebuild.set_defaults(run=_rebuild)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdcsync",
        description="Sync DynamoDB Streams into OpenSearch, driven by YAML mapping files.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="print the Python traceback of an error (for bug reports)"
    )
    parser.add_argument("--version", action="version", version=f"cdcsync {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    validate = verbs.add_parser(
        "validate",
        help="check mapping files",
        description="Check mapping files; list every problem as file:line.",
    )
    validate.add_argument("path", nargs="?", help="mapping file or folder (default: CDCSYNC_MAPPINGS)")
    validate.add_argument(
        "--tables",
        action="store_true",
        help="also read each mapped table (DescribeTable) and check the mappings against its stream's "
        "view type and key schema; exit 1 on what the stream cannot carry",
    )
    validate.set_defaults(run=_validate)

    add_preview_parser(verbs)

    filters = verbs.add_parser(
        "filters",
        help="print the Lambda FilterCriteria for a table",
        description="Print the FilterCriteria JSON for a Lambda event source mapping of the table's stream; "
        "exit 1 with the reasons when nothing can be pushed down (a mapping needs every record).",
    )
    filters.add_argument("--table", required=True, help="DynamoDB table name")
    filters.add_argument("--mappings", help="mapping file or folder (default: CDCSYNC_MAPPINGS)")
    filters.set_defaults(run=_filters)

    run = verbs.add_parser(
        "run",
        help="container worker over the tables' streams",
        description="Read the mapped tables' DynamoDB streams and keep their indices in sync until SIGTERM; "
        "serves /metrics, /healthz and /readyz on CDCSYNC_METRICS_ADDR.",
    )
    run.add_argument(
        "--table", action="append", help="only this table (repeatable; default: every mapped table)"
    )
    run.add_argument("--mappings", help="mapping file or folder (default: CDCSYNC_MAPPINGS)")
    run.add_argument(
        "--wait-for-stream",
        action="store_true",
        help="a table without an enabled stream is waited for (WARNING once, read once enabled); "
        "without this flag the worker says how to enable it and exits 2",
    )
    run.add_argument(
        "--processes",
        type=_process_count,
        metavar="N",
        help="worker processes, to use N cores (default: CDCSYNC_WORKER_PROCESSES, 1); over file:// "
        "checkpoints they split the shards, over dynamodb:// they are replicas; one endpoint for all",
    )
    run.add_argument("--partition", help=argparse.SUPPRESS)  # I/N: set by the supervisor for each process
    run.add_argument("--port-fd", type=int, help=argparse.SUPPRESS)  # where that process tells its port
    run.set_defaults(run=_run)

    _add_table_verbs(verbs)

    config = verbs.add_parser(
        "lambda-config",
        help="print the Lambda event source configuration for the mappings",
        description="Print the DynamoDB stream event source configuration (Serverless Framework, SAM or "
        "CloudFormation) generated from the mappings: FilterCriteria, partial batch responses, retries.",
    )
    config.add_argument("--format", required=True, choices=["serverless", "sam", "cloudformation"])
    config.add_argument(
        "--table", action="append", help="only this table (repeatable; default: every mapped table)"
    )
    config.add_argument("--batch-size", type=int, default=100, help="records per invocation (default 100)")
    config.add_argument(
        "--batching-window", type=int, default=1, help="MaximumBatchingWindowInSeconds (default 1)"
    )
    config.add_argument("--parallelization", type=int, default=1, help="ParallelizationFactor (default 1)")
    config.add_argument(
        "--no-bisect", dest="bisect", action="store_false", help="no BisectBatchOnFunctionError"
    )
    config.add_argument("--mappings", help="mapping file or folder (default: CDCSYNC_MAPPINGS)")
    config.set_defaults(run=_lambda_config)

    indices = verbs.add_parser("indices", help="create missing indices", description="Manage indices.")
    indices_verbs = indices.add_subparsers(dest="indices_verb", required=True, metavar="COMMAND")
    apply = indices_verbs.add_parser(
        "apply",
        help="create missing indices from index_body; apply in-place changes",
        description="Create each missing index NAME as NAME-000001 behind the alias NAME, from its mapping's "
        "index_body (index templates for templated names), with index.gc_deletes raised to 24h; warn about "
        "existing indices that keep 60s. Apply new fields and dynamic settings to existing indices; report "
        "what only `cdcsync rebuild --table T` changes (exit 1).",
    )
    apply.add_argument("--mappings", help="mapping file or folder (default: CDCSYNC_MAPPINGS)")
    apply.set_defaults(run=_indices_apply)
    diff = indices_verbs.add_parser(
        "diff",
        help="compare indices with index_body; change nothing",
        description="List how each index differs from its mapping's index_body: missing, what `indices "
        "apply` would change in place, what needs `cdcsync rebuild --table T`. Exit 1 when anything differs.",
    )
    diff.add_argument("--mappings", help="mapping file or folder (default: CDCSYNC_MAPPINGS)")
    diff.set_defaults(run=_indices_diff)

    _add_rebuild_verb(verbs)

    dlq = verbs.add_parser(
        "dlq", help="inspect and re-apply dead letters", description="The dead-letter queue."
    )
    dlq_verbs = dlq.add_subparsers(dest="dlq_verb", required=True, metavar="COMMAND")
    show = dlq_verbs.add_parser(
        "show", help="list dead letters", description="List dead letters (CDCSYNC_DLQ)."
    )
    show.add_argument("--limit", type=int, help="at most this many")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    show.set_defaults(run=_dlq_show)
    redrive_parser = dlq_verbs.add_parser(
        "redrive",
        help="re-read each item from DynamoDB and write it",
        description="Re-read each dead letter's item with a consistent read and write what the table "
        "holds now (or delete the document); remove the entries that succeed, report the rest (exit 1).",
    )
    redrive_parser.add_argument("--limit", type=int, help="at most this many")
    redrive_parser.add_argument("--mappings", help="mapping file or folder (default: CDCSYNC_MAPPINGS)")
    redrive_parser.set_defaults(run=_dlq_redrive)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        print("cdcsync: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the boundary: every failure becomes one line and a code
        return _report(exc, debug=args.debug)
    return code


def _report(exc: Exception, *, debug: bool) -> int:
    """One line on stderr for ``exc`` and the exit code its kind promises (the module docstring).

    Messages quote what others wrote (item keys and values, queued messages, environment values,
    OpenSearch's reasons): every control character is escaped (``printable``), so nothing can move
    the cursor, clear the screen or print a line of its own. Settings and mapping errors list one
    problem a line: those line breaks stay, each problem escaped.
    """
    error = _ours(exc)
    if debug or logging.getLogger("cdcsync").isEnabledFor(logging.DEBUG):
        text = TextFormatter().formatException((type(exc), exc, exc.__traceback__))
        print(_shown(text.split("\n")), file=sys.stderr)
    if error is None:
        print(
            f"cdcsync: unexpected {type(exc).__name__}: {_shown([str(exc)])} (a bug in cdcsync; "
            "run again with --debug for the traceback and report it)",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    suffix = f" ({RUN_AGAIN})" if error.kind == "transient" else ""
    print(f"cdcsync: {_shown(_problems(error))}{suffix}", file=sys.stderr)
    return EXIT_CONFIG if error.kind == "configuration" else EXIT_PROBLEMS


def _problems(error: CdcsyncError) -> list[str]:
    """The problems ``error`` lists, one a line: mapping problems, settings problems (which settings
    escape and join with line breaks themselves), else the one message."""
    if isinstance(error, MappingError):
        return [str(problem) for problem in error.problems]
    if isinstance(error, SettingsError):
        return str(error).split("\n")
    return [str(error)]


def _shown(lines: list[str]) -> str:
    """``lines`` joined by line breaks, each escaped (``printable``) and its secrets masked."""
    return "\n".join(redact_text(printable(line)) for line in lines)


def _ours(exc: Exception) -> CdcsyncError | None:
    """``exc`` as a cdcsync error; an AWS or OpenSearch failure no layer below translated is given
    its kind here (its message then lacks what was being done); None for a bug."""
    if isinstance(exc, CdcsyncError):
        return exc
    if isinstance(exc, ClientError | BotoCoreError):
        return aws_error(exc, call="AWS call", resource="")
    if isinstance(exc, OpenSearchException):
        return opensearch_error(exc, "OpenSearch call")
    return None


if __name__ == "__main__":
    sys.exit(main())
