"""A mapping ready to run: patterns, templates and JMESPath compiled once at load time."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jmespath
import jmespath.exceptions

from cdcsync.errors import PatternError
from cdcsync.mapping.expressions import call_problems
from cdcsync.mapping.model import VERSION_ATTRIBUTE_PREFIX, MappingModel
from cdcsync.mapping.patterns import Pattern, compile_pattern
from cdcsync.mapping.projection import Projection
from cdcsync.mapping.templates import Template, parse_template

Path = tuple[str | int, ...]

# OpenSearch refuses these in index names; uppercase is refused too.
_INDEX_FORBIDDEN = re.compile(r'[\\/*?"<>| ,#:]')


@dataclass(frozen=True, slots=True)
class CompiledMapping:
    """One mapping as the planner uses it. ``source`` is ``file:line`` of its first key."""

    source: str
    table: str
    index: Template
    id: Template | None
    routing: Template | None
    filter: Pattern | None
    where: Pattern | None
    projection: Projection
    skip_unchanged: bool
    delete_on_remove: bool
    delete_on_ttl_expiry: bool
    version_attribute: str | None
    index_body: dict[str, Any] | None
    model: MappingModel = field(repr=False, compare=False)
    where_fields: frozenset[str] = frozenset()  # top-level attributes the where pattern names
    # The filter as it applies to the record that wrote an OldImage, to match on this record (see
    # old_image_filters): () trusts every OldImage, None none.
    old_image_filters: tuple[Pattern, ...] | None = ()
    # ``file:line: warning: ...`` lines about a valid mapping (cdcsync validate prints them).
    warnings: tuple[str, ...] = field(default=(), compare=False)
    key_lines: dict[str, int] = field(default_factory=dict, compare=False)  # top-level key -> line

    def source_of(self, key: str) -> str:
        """``file:line`` of one of the mapping's keys (of the mapping when the key is not written)."""
        file, _, line = self.source.rpartition(":")
        return f"{file}:{self.key_lines.get(key, line)}"

    @property
    def compares_old_image(self) -> bool:
        """Whether planning an index write looks at the old image (moves, skip_unchanged)."""
        return self.skip_unchanged or self.places_by_item

    @property
    def places_by_item(self) -> bool:
        """Whether the document's place (index, routing) depends on the item, so it can move."""
        return not self.index.is_literal or self.routing is not None

    @property
    def name(self) -> str:
        """Human name used in logs and dead letters: ``Users -> users``."""
        return f"{self.table} -> {self.index.source}"


@dataclass(frozen=True)
class MappingSet:
    """All loaded mappings, looked up by table name."""

    mappings: tuple[CompiledMapping, ...]
    _by_table: dict[str, tuple[CompiledMapping, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_table: dict[str, list[CompiledMapping]] = {}
        for mapping in self.mappings:
            by_table.setdefault(mapping.table, []).append(mapping)
        object.__setattr__(self, "_by_table", {t: tuple(ms) for t, ms in by_table.items()})

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(self._by_table)

    def for_table(self, table: str) -> tuple[CompiledMapping, ...]:
        return self._by_table.get(table, ())

    def __iter__(self) -> Iterator[CompiledMapping]:
        return iter(self.mappings)

    def __len__(self) -> int:
        return len(self.mappings)


# What the record that wrote an item's OldImage (an INSERT or MODIFY of the same item, whose
# NewImage it was) surely shared with this record. Anything else a filter names (the earlier
# record's own OldImage, sequence number, time, size, event id) is unknown.
_SHARED_RECORD_FIELDS = frozenset(
    {
        "eventName",
        "eventSource",
        "eventVersion",
        "awsRegion",
        "eventSourceARN",
        "tableName",
        "recordFormat",
        "userIdentity",  # known: an INSERT or MODIFY has none
    }
)
_SHARED_DYNAMODB_FIELDS = frozenset({"Keys", "NewImage", "StreamViewType"})


def filter_can_judge_old_image(
    pattern: dict[str, Any], shared: frozenset[str] = _SHARED_RECORD_FIELDS
) -> bool:
    """Whether a filter can be asked if the record that wrote an OldImage passed it.

    That record is rebuilt from this one (its NewImage is this OldImage, its eventName INSERT or
    MODIFY, no userIdentity: only TTL removals carry one); a filter naming a field it cannot
    rebuild cannot answer, and the OldImage is then never trusted.
    """
    for key, value in pattern.items():
        if key == "$or" and isinstance(value, list):
            if not all(filter_can_judge_old_image(alt, shared) for alt in value if isinstance(alt, dict)):
                return False
        elif key == "dynamodb" and shared is _SHARED_RECORD_FIELDS and isinstance(value, dict):
            if not filter_can_judge_old_image(value, _SHARED_DYNAMODB_FIELDS):
                return False
        elif key not in shared:
            return False
    return True


def old_image_filters(pattern: dict[str, Any]) -> tuple[Pattern, ...] | None:
    """``pattern`` rewritten to ask, of a record, whether the record that wrote its OldImage passed.

    That record was an INSERT or a MODIFY (which one is unknown, so both must pass) whose NewImage
    is this OldImage, without userIdentity (only TTL removals carry one), sharing the keys, table and
    stream. So ``eventName`` and ``userIdentity`` conditions are decided here, once, and
    ``dynamodb.NewImage`` becomes ``dynamodb.OldImage``: planning then costs one match per pattern
    and builds nothing. Returns None when no OldImage can pass (or the filter names what that
    record need not share), and () when every one does.
    """
    if not filter_can_judge_old_image(pattern):
        return None
    rewritten: list[dict[str, Any]] = []
    for event in ("INSERT", "MODIFY"):
        earlier = _as_earlier_record(pattern, event)
        if earlier is None:
            return None
        if earlier and earlier not in rewritten:
            rewritten.append(earlier)
    return tuple(compile_pattern(part) for part in rewritten)


def _as_earlier_record(pattern: dict[str, Any], event: str) -> dict[str, Any] | None:
    """``pattern`` for an earlier ``event`` record, on this record; None: never matches, {}: always."""
    result: dict[str, Any] = {}
    for key, value in pattern.items():
        if key == "$or":
            alternatives: list[dict[str, Any]] = []
            for alternative in value:
                earlier = _as_earlier_record(alternative, event)
                if earlier == {}:
                    break  # this alternative always matches, and so does the $or
                if earlier is not None:
                    alternatives.append(earlier)
            else:
                if not alternatives:
                    return None
                result["$or"] = alternatives if len(alternatives) > 1 else alternatives * 2  # AWS wants two
        elif key in ("eventName", "userIdentity"):
            if not compile_pattern({key: value}).matches({"eventName": event}):
                return None
        elif key == "dynamodb":
            result[key] = _new_image_as_old(value)
        else:
            result[key] = value
    return result


def _new_image_as_old(pattern: dict[str, Any]) -> dict[str, Any]:
    return {
        ("OldImage" if key == "NewImage" else key): (
            [_new_image_as_old(alternative) for alternative in value] if key == "$or" else value
        )
        for key, value in pattern.items()
    }


@dataclass
class _Problems:
    items: list[tuple[Path, str]] = field(default_factory=list)

    def add(self, path: Path, message: str) -> None:
        self.items.append((path, message))


def _top_level_fields(pattern: dict[str, Any]) -> frozenset[str]:
    names: set[str] = set()
    for key, value in pattern.items():
        if key == "$or" and isinstance(value, list):
            for alternative in value:
                if isinstance(alternative, dict):
                    names |= _top_level_fields(alternative)
        else:
            names.add(key)
    return frozenset(names)


_DYNAMODB_TAGS = frozenset({"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"})


def _check_plain_where(pattern: dict[str, Any], path: Path, problems: _Problems) -> None:
    """``where`` sees plain item values; a DynamoDB-typed leaf there would silently never match."""
    for key, value in pattern.items():
        if key == "$or" and isinstance(value, list):
            for position, alternative in enumerate(value):
                if isinstance(alternative, dict):
                    _check_plain_where(alternative, (*path, key, position), problems)
        elif isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _DYNAMODB_TAGS:
            tag = next(iter(value))
            problems.add(
                (*path, key, tag),
                f"where is matched on plain item values, not DynamoDB JSON: write {key}: [...] "
                f"instead of {key}: {{{tag}: [...]}}",
            )


def _template(value: str | None, path: Path, problems: _Problems) -> Template | None:
    if value is None:
        return None
    try:
        return parse_template(value)
    except ValueError as exc:
        problems.add(path, str(exc))
        return None


def _pattern(value: dict[str, Any] | None, path: Path, problems: _Problems) -> Pattern | None:
    if value is None:
        return None
    try:
        return compile_pattern(value)
    except PatternError as exc:
        problems.add((*path, *exc.path), exc.message)
        return None


def _check_index_name(index: Template, problems: _Problems) -> None:
    literal = "".join(index.literals)
    reasons = []
    if literal != literal.lower():
        reasons.append("must be lowercase")
    if bad := sorted(set(_INDEX_FORBIDDEN.findall(literal))):
        reasons.append(f"must not contain {' '.join(repr(c) for c in bad)}")
    if index.literals[0][:1] in {"-", "_", "+"}:
        reasons.append("must not start with '-', '_' or '+'")
    if reasons:
        problems.add(
            ("index",), f'"{index.source}" is not a valid OpenSearch index name: {"; ".join(reasons)}'
        )


def _projection(model: MappingModel, problems: _Problems) -> Projection:
    fields = model.fields
    computed = []
    for name, expression in fields.computed.items():
        try:
            parsed = jmespath.compile(expression)
        except jmespath.exceptions.ParseError as exc:
            # jmespath's own message spans three lines; keep one line per problem.
            reason = "incomplete expression" if exc.token_value is None else exc.msg
            problems.add(
                ("fields", "computed", name),
                f'"{expression}" is not valid JMESPath: {reason} at character {exc.lex_position + 1}',
            )
            continue
        for problem in call_problems(parsed):
            problems.add(("fields", "computed", name), f'"{expression}" {problem}')
        computed.append((name, parsed))
    if fields.include is not None:
        for position, name in enumerate(fields.exclude):
            if name in fields.include:
                problems.add(("fields", "exclude", position), f"{name} is both included and excluded")
    targets: dict[str, str] = {}
    for source, target in fields.rename.items():
        if target in targets:
            problems.add(
                ("fields", "rename", source), f"{source} and {targets[target]} are both renamed to {target}"
            )
        targets[target] = source
    for name in fields.computed:
        if name in targets:
            problems.add(("fields", "computed", name), f"{name} is also the new name of {targets[name]}")
    return Projection(
        include=None if fields.include is None else frozenset(fields.include),
        exclude=frozenset(fields.exclude),
        rename=dict(fields.rename),
        computed=tuple(computed),
    )


def compile_mapping(
    model: MappingModel, source: str
) -> tuple[CompiledMapping | None, list[tuple[Path, str]]]:
    """Compile one validated model. Returns the mapping, or None and every problem found."""
    problems = _Problems()
    index = _template(model.index, ("index",), problems)
    if index is not None:
        _check_index_name(index, problems)
    id_template = _template(model.id, ("id",), problems)
    routing = _template(model.routing, ("routing",), problems)
    filter_pattern = _pattern(model.filter, ("filter",), problems)
    where = _pattern(model.where, ("where",), problems)
    if model.where is not None:
        _check_plain_where(model.where, ("where",), problems)
    projection = _projection(model, problems)
    if problems.items or index is None:
        return None, problems.items
    version_attribute = (
        model.version.removeprefix(VERSION_ATTRIBUTE_PREFIX) if model.version != "stream" else None
    )
    index_body = model.index_body.model_dump() if model.index_body is not None else None
    mapping = CompiledMapping(
        source=source,
        table=model.table,
        index=index,
        id=id_template,
        routing=routing,
        filter=filter_pattern,
        where=where,
        projection=projection,
        skip_unchanged=model.skip_unchanged,
        delete_on_remove=model.deletes.on_remove == "delete",
        delete_on_ttl_expiry=model.deletes.on_ttl_expiry == "delete",
        version_attribute=version_attribute,
        index_body=index_body,
        model=model,
        where_fields=_top_level_fields(model.where) if model.where else frozenset(),
        old_image_filters=() if model.filter is None else old_image_filters(model.filter),
    )
    return mapping, []
