"""Mappings against their live tables: stream view type and key schema (``DescribeTable``).

``cdcsync validate --tables`` prints the findings; the worker checks at start-up, refusing to start
on what can never work and logging what works with limits (``mapping.checks.table_findings``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cdcsync.mapping.checks import TableFinding, table_findings
from cdcsync.mapping.compiled import MappingSet
from cdcsync.source.shards import stream_view_and_keys


@dataclass(frozen=True, slots=True)
class TableCheck:
    """One finding, located: ``file:line: key: message`` (``file:line: warning: key: message``)."""

    line: str
    refuses: bool
    key: str  # the mapping key it is about ("table": the table has no enabled stream)


def check_tables(mappings: MappingSet, tables: Iterable[str], dynamodb: Any) -> list[TableCheck]:
    """Each mapping of ``tables`` against its table (one DescribeTable per table), in file order."""
    checks: list[tuple[str, int, TableCheck]] = []
    for table in tables:
        view, key_names = stream_view_and_keys(dynamodb, table)
        for mapping in mappings.for_table(table):
            for finding in table_findings(mapping, view, key_names):
                checks.append(_located(mapping.source_of(finding.key), finding))
    return [check for _, _, check in sorted(checks, key=lambda entry: entry[:2])]


def _located(where: str, finding: TableFinding) -> tuple[str, int, TableCheck]:
    file, _, line = where.rpartition(":")
    label = finding.key if finding.refuses else f"warning: {finding.key}"
    return file, int(line), TableCheck(f"{where}: {label}: {finding.message}", finding.refuses, finding.key)
