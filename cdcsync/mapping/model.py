"""The mapping file schema, as pydantic models (structure only).

Structure is checked here; meaning (patterns, templates, JMESPath) is compiled by
``cdcsync.mapping.compiled`` so that every problem can be reported with its file and line.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

VERSION_ATTRIBUTE_PREFIX = "attribute:"
_VERSION_RE = re.compile(r"^(stream|attribute:\S+)$")

DeleteChoice = Literal["delete", "ignore"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FieldsModel(_Strict):
    """Which item attributes become document fields, under which names."""

    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    rename: dict[str, str] = Field(default_factory=dict)
    computed: dict[str, str] = Field(default_factory=dict)


class DeletesModel(_Strict):
    """What a REMOVE record does to the document: user deletes and TTL expiries can differ."""

    on_remove: DeleteChoice = "delete"
    on_ttl_expiry: DeleteChoice = "delete"


class IndexBodyModel(_Strict):
    """The body of the create-index request used when the index is missing."""

    settings: dict[str, Any] = Field(default_factory=dict)
    mappings: dict[str, Any] = Field(default_factory=dict)
    aliases: dict[str, Any] = Field(default_factory=dict)


class MappingModel(_Strict):
    """One table -> index mapping, exactly the keys of the contract."""

    table: str = Field(min_length=1)
    index: str = Field(min_length=1)
    id: str | None = None
    routing: str | None = None
    filter: dict[str, Any] | None = None
    where: dict[str, Any] | None = None
    fields: FieldsModel = Field(default_factory=FieldsModel)
    # Off by default: skipping needs the old image and would also skip the repair of a document
    # that an earlier failure left missing. Turn it on for write-heavy tables.
    skip_unchanged: bool = False
    deletes: DeletesModel = Field(default_factory=DeletesModel)
    version: str = "stream"
    index_body: IndexBodyModel | None = None

    @field_validator("version")
    @classmethod
    def _version_form(cls, value: str) -> str:
        if not _VERSION_RE.match(value):
            raise ValueError(f'expected "stream" or "attribute:<Name>", got "{value}"')
        return value


class MappingListModel(_Strict):
    """A file holding several mappings under one ``mappings:`` key."""

    mappings: list[MappingModel]
