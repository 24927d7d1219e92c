"""``cdcsync`` command line. Exit codes: 0 ok, 1 the check found problems, 2 configuration error."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import orjson

from cdcsync.errors import ConfigError, MappingError
from cdcsync.mapping.compiled import CompiledMapping, MappingSet
from cdcsync.mapping.filter_criteria import filter_criteria
from cdcsync.mapping.loader import load_mappings
from cdcsync.settings import load_settings

EXIT_OK, EXIT_PROBLEMS, EXIT_CONFIG = 0, 1, 2


def _mappings_path(explicit: str | None) -> str:
    return explicit if explicit is not None else str(load_settings().mappings)


def _summary(mapping: CompiledMapping) -> str:
    fields = mapping.model.fields
    parts = [
        f"id {mapping.id.source if mapping.id else '<keys joined by |>'}",
        f"filter {'yes' if mapping.filter else 'no'}",
        f"where {'yes' if mapping.where else 'no'}",
        f"fields {'all' if fields.include is None else len(fields.include)}"
        + (f" -{len(fields.exclude)}" if fields.exclude else "")
        + (f" +{len(fields.computed)} computed" if fields.computed else ""),
        f"version {mapping.model.version}",
    ]
    return f"{mapping.source}: {mapping.name} ({', '.join(parts)})"


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
    return EXIT_OK


def _load(path: str | None) -> MappingSet:
    return load_mappings(_mappings_path(path))


def _filters(args: argparse.Namespace) -> int:
    mappings = _load(args.mappings)
    table_mappings = mappings.for_table(args.table)
    if not table_mappings:
        known = ", ".join(mappings.tables) or "none"
        print(f"no mapping for table {args.table} (tables with mappings: {known})", file=sys.stderr)
        return EXIT_CONFIG
    export = filter_criteria([m.filter for m in table_mappings], table=args.table)
    for warning in export.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(orjson.dumps(export.criteria, option=orjson.OPT_INDENT_2).decode())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdcsync",
        description="Sync DynamoDB Streams into OpenSearch, driven by YAML mapping files.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    validate = verbs.add_parser(
        "validate",
        help="check mapping files",
        description="Check mapping files; list every problem as file:line.",
    )
    validate.add_argument("path", nargs="?", help="mapping file or folder (default: CDCSYNC_MAPPINGS)")
    validate.set_defaults(run=_validate)

    filters = verbs.add_parser(
        "filters",
        help="print the Lambda FilterCriteria for a table",
        description="Print the FilterCriteria JSON for a Lambda event source mapping of the table's stream "
        "(null when the mappings need every record).",
    )
    filters.add_argument("--table", required=True, help="DynamoDB table name")
    filters.add_argument("--mappings", help="mapping file or folder (default: CDCSYNC_MAPPINGS)")
    filters.set_defaults(run=_filters)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"cdcsync: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return code


if __name__ == "__main__":
    sys.exit(main())
