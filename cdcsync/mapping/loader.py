"""Load mapping files and report every problem as ``file:line: key.path: message``."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
from pathlib import Path as FsPath
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel

from cdcsync.errors import MappingError, MappingProblem
from cdcsync.mapping.checks import filter_trap_warning, filter_warning
from cdcsync.mapping.compiled import CompiledMapping, MappingSet, compile_mapping
from cdcsync.mapping.model import MappingModel
from cdcsync.mapping.yaml_lines import LocatedDocument, Path, load_documents

MAPPING_SUFFIXES = (".yaml", ".yml")


_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "a boolean"),
    ((int, float), "a number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "a mapping"),
)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    for types, name in _KINDS:
        if isinstance(value, types):
            return name
    return f"a {type(value).__name__}"


def _model_at(path: Path) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping node at ``path`` (for 'expected one of')."""
    model: type[BaseModel] | None = MappingModel
    for part in path:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        model = next((a for a in candidates if issubclass(a, BaseModel)), None)
    return model


_EXPECTED = {
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "int_type": "expected an integer",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "list_type": "expected a list",
}


_FIXED = {"missing": "required key is missing", "string_too_short": "must not be empty"}


def _message(error: Any, path: Path) -> str:
    kind = error["type"]
    found = error.get("input")
    if kind in _EXPECTED:
        message = f"{_EXPECTED[kind]}, got {_kind(found)}"
    elif kind == "extra_forbidden":
        model = _model_at(path[:-1])
        known = list(model.model_fields) if model else []
        close = difflib.get_close_matches(str(path[-1]), known, n=1, cutoff=0.6) if path else []
        if close:
            message = f'unknown key (did you mean "{close[0]}"?)'
        else:
            message = "unknown key" + (f" (expected one of: {', '.join(known)})" if known else "")
    elif kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        message = f'expected one of {expected.replace(" or ", ", ")}, got "{found}"'
    elif kind == "value_error":
        message = str(error["ctx"]["error"])
    else:
        message = _FIXED.get(kind, str(error["msg"]))
    return message


def _locate(path: Path, message: str, document: LocatedDocument, file: str) -> MappingProblem:
    dotted = ".".join(str(p) for p in path)
    return MappingProblem(file, document.line_of(path), f"{dotted}: {message}" if dotted else message)


# Stand-ins for required keys a broken mapping lacks, so the rest of it can still be checked.
_STAND_INS = {"table": "-", "index": "stand-in"}


def _without_broken_keys(raw: Any, errors: list[Any]) -> MappingModel | None:
    """``raw`` minus the keys pydantic refused (a nested error drops its second-level key, such as
    ``fields.rename``), with stand-ins for missing required keys: what is left is still checked for
    meaning, so a file's problems of every kind come out in one pass. None if nothing is left."""
    if not isinstance(raw, dict):
        return None
    kept = copy.deepcopy(raw)
    for error in errors:
        loc = error["loc"][:2] if len(error["loc"]) > 1 else error["loc"][:1]
        parent: Any = kept
        for part in loc[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent.pop(loc[-1], None)
    for key, stand_in in _STAND_INS.items():
        kept.setdefault(key, stand_in)
    try:
        return MappingModel.model_validate(kept)
    except pydantic.ValidationError:
        return None


def _validate(
    raw: Any, prefix: Path, document: LocatedDocument, file: str
) -> tuple[list[CompiledMapping], list[MappingProblem]]:
    problems = []
    try:
        model: MappingModel | None = MappingModel.model_validate(raw)
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            path = (*prefix, *error["loc"])
            problems.append(_locate(path, _message(error, path[len(prefix) :]), document, file))
        model = _without_broken_keys(raw, exc.errors())
    if model is None:
        return [], problems
    compiled, found = compile_mapping(model, f"{file}:{document.line_of(prefix)}")
    problems += [_locate((*prefix, *path), message, document, file) for path, message in found]
    if problems:
        return [], problems
    if compiled is not None:
        line = document.line_of((*prefix, "filter"))
        found_warnings = (filter_trap_warning(compiled), filter_warning(compiled))
        warnings = tuple(f"{file}:{line}: warning: {w}" for w in found_warnings if w is not None)
        lines = {key: document.line_of((*prefix, key)) for key in raw if isinstance(key, str)}
        compiled = dataclasses.replace(compiled, warnings=warnings, key_lines=lines)
    return ([compiled] if compiled else []), problems


def _load_file(file: FsPath, display: str) -> tuple[list[CompiledMapping], list[MappingProblem]]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [MappingProblem(display, None, f"cannot read the file: {exc}")]
    mappings: list[CompiledMapping] = []
    problems: list[MappingProblem] = []
    try:
        documents = list(load_documents(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        return [], [MappingProblem(display, mark.line + 1 if mark else None, f"invalid YAML: {reason}")]
    for document in documents:
        for path, line, first in document.duplicates:
            dotted = ".".join(str(p) for p in path)
            problems.append(
                MappingProblem(display, line, f"{dotted}: duplicate key (first set on line {first})")
            )
        value = document.value
        if value is None:
            continue
        if isinstance(value, dict) and "mappings" in value:
            for extra in value.keys() - {"mappings"}:
                problems.append(
                    _locate(
                        (str(extra),),
                        "unknown key next to mappings: (a list file holds only mappings:)",
                        document,
                        display,
                    )
                )
            entries = value["mappings"]
            if not isinstance(entries, list):
                problems.append(
                    _locate(("mappings",), f"expected a list, got {_kind(entries)}", document, display)
                )
                continue
            for position, entry in enumerate(entries):
                found, found_problems = _validate(entry, ("mappings", position), document, display)
                mappings += found
                problems += found_problems
        elif isinstance(value, dict):
            found, found_problems = _validate(value, (), document, display)
            mappings += found
            problems += found_problems
        else:
            problems.append(
                MappingProblem(
                    display,
                    document.line_of(()),
                    f"expected a mapping with table and index keys, or a mappings: list, got {_kind(value)}",
                )
            )
    if not mappings and not problems:
        problems.append(MappingProblem(display, None, "no mapping found in the file"))
    return mappings, sorted(problems, key=lambda problem: problem.line or 0)


def mapping_files(path: str | FsPath) -> list[FsPath]:
    """The mapping files at ``path``: the file itself, or every *.yaml / *.yml below the folder.

    Each file counts once, however many names lead to it. Names starting with a dot are skipped,
    files and folders alike: a Kubernetes ConfigMap mount holds its files in ``..<timestamp>/``
    behind a ``..data`` link, with ``users.yaml -> ..data/users.yaml`` beside them, and only that
    last name is the user's; ``.git`` and editor files are not mappings either. Linked folders are
    followed (a git-sync checkout is one), once each, so a link back up cannot loop. Of several
    names for one file the one nearest the top is kept (then the first in sorted order), so
    ``file:line`` messages are stable.
    """
    root = FsPath(path)
    if not root.is_dir():
        return [root]
    found: dict[FsPath, FsPath] = {}  # resolved file -> the name it was found under first
    visited: set[FsPath] = set()
    for folder, folders, files in os.walk(root, followlinks=True):
        here = FsPath(folder)
        if here.resolve() in visited:
            folders.clear()  # reached again through a link: already walked
            continue
        visited.add(here.resolve())
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(files):
            file = here / name
            if name.startswith(".") or file.suffix not in MAPPING_SUFFIXES or not file.is_file():
                continue
            found.setdefault(file.resolve(), file)
    return sorted(set(found.values()))


def _duplicate_targets(mappings: list[CompiledMapping]) -> list[MappingProblem]:
    """Two mappings of one table writing one index (or index template): each would overwrite the other."""
    first: dict[tuple[str, str], CompiledMapping] = {}
    problems = []
    for mapping in mappings:
        target = (mapping.table, mapping.index.source)
        if target not in first:
            first[target] = mapping
            continue
        file, _, line = mapping.source.rpartition(":")
        problems.append(
            MappingProblem(
                file,
                int(line),
                f'table {mapping.table}: index "{mapping.index.source}" is also written by the mapping at '
                f"{first[target].source}; two mappings writing one index for one table overwrite each "
                "other's documents (merge them into one mapping, or give each its own index)",
            )
        )
    return problems


def load_mappings(path: str | FsPath) -> MappingSet:
    """Load and compile every mapping at ``path``; raise ``MappingError`` listing every problem."""
    root = FsPath(path)
    if not root.exists():
        raise MappingError([MappingProblem(str(root), None, "no such file or folder (set CDCSYNC_MAPPINGS)")])
    files = mapping_files(root)
    if not files:
        raise MappingError(
            [MappingProblem(str(root), None, "the folder holds no *.yaml or *.yml mapping file")]
        )
    mappings: list[CompiledMapping] = []
    problems: list[MappingProblem] = []
    for file in files:
        found, found_problems = _load_file(file, str(file))
        mappings += found
        problems += found_problems
    problems += _duplicate_targets(mappings)
    if problems:
        rank = {str(file): position for position, file in enumerate(files)}
        raise MappingError(sorted(problems, key=lambda p: (rank.get(p.file, len(rank)), p.line or 0)))
    return MappingSet(tuple(mappings))
