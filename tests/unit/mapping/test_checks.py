"""Checks of valid mappings: the filter trap (a filter that skips what must delete), view types."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cdcsync.mapping.checks import filter_trap_warning, table_findings
from cdcsync.mapping.compiled import CompiledMapping
from cdcsync.mapping.loader import load_mappings

_ADVICE = (
    "; express membership with where, which deletes an item that stops matching, and filter only "
    "records this mapping never needs"
)
_REMOVES = "REMOVE records (a deleted item's document stays in the index)"
_EXITS = "MODIFY records that take an item out of where (its document stays in the index)"
_CHANGES = "MODIFY records (the document keeps the item's old values)"


def _mapping(tmp_path: Path, text: str) -> CompiledMapping:
    path = tmp_path / "m.yaml"
    index = "" if text.startswith("index:") else "index: t\n"
    path.write_text("table: T\n" + index + textwrap.dedent(text))
    (mapping,) = load_mappings(path)
    return mapping


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", None, id="no-filter"),
        pytest.param("filter: {eventName: [INSERT, MODIFY, REMOVE]}\n", None, id="every-event"),
        pytest.param("filter: {eventSource: ['aws:dynamodb']}\n", None, id="same-on-every-record"),
        # Keys never change: a key condition skips all of an item's records or none.
        pytest.param("filter: {dynamodb: {Keys: {PK: {S: [{prefix: 'ORDER#'}]}}}}\n", None, id="keys-only"),
        # The docs' old example: skips every REMOVE, and the MODIFY that makes an item a draft.
        pytest.param(
            "filter:\n  eventName: [INSERT, MODIFY]\n"
            "  dynamodb: {NewImage: {Status: {S: [{anything-but: [draft]}]}}}\n",
            f"filter: can skip {_REMOVES} and {_CHANGES}{_ADVICE}",
            id="docs-new-image-anything-but",
        ),
        pytest.param(
            "filter: {dynamodb: {NewImage: {Status: {S: [live]}}}}\nwhere: {Status: [live]}\n",
            f"filter: can skip {_REMOVES} and {_EXITS}{_ADVICE}",
            id="image-filter-with-where",
        ),
        pytest.param(
            "filter: {eventName: [INSERT, MODIFY]}\n",
            f"filter: can skip {_REMOVES}{_ADVICE}",
            id="no-removes",
        ),
        # A REMOVE that would only be ignored may be skipped.
        pytest.param(
            "filter: {eventName: [INSERT, MODIFY]}\ndeletes: {on_remove: ignore, on_ttl_expiry: ignore}\n",
            None,
            id="no-removes-deletes-ignored",
        ),
        pytest.param(
            "filter: {userIdentity: {principalId: [{exists: false}]}}\n",
            f"filter: can skip REMOVE records of TTL expiries (a deleted item's document stays in the "
            f"index){_ADVICE}",
            id="skips-ttl-removes",
        ),
        pytest.param(
            "filter: {userIdentity: {principalId: [{exists: false}]}}\ndeletes: {on_ttl_expiry: ignore}\n",
            None,
            id="skips-ttl-removes-ignored",
        ),
        pytest.param(
            "filter:\n  $or:\n    - eventName: [REMOVE]\n    - dynamodb: {NewImage: {Status: {S: [live]}}}\n",
            f"filter: can skip {_CHANGES}{_ADVICE}",
            id="or-passes-removes",
        ),
        pytest.param(
            "filter: {eventName: [INSERT, REMOVE]}\nwhere: {Status: [live]}\n",
            f"filter: can skip {_EXITS}{_ADVICE}",
            id="no-modifies-with-where",
        ),
        # Dotted keys are the nested path (event-ruler): the same trap.
        pytest.param(
            "filter: {dynamodb.NewImage.Status.S: [live]}\n",
            f"filter: can skip {_REMOVES} and {_CHANGES}{_ADVICE}",
            id="dotted-image-filter",
        ),
    ],
)
def test_filter_trap_warning_filter_that_can_skip_a_delete_or_exit_warns(
    tmp_path: Path, text: str, expected: str | None
) -> None:
    # GIVEN a valid mapping WHEN its filter is checked THEN it warns exactly when the filter can skip a
    # record that must delete or change the document
    assert filter_trap_warning(_mapping(tmp_path, text)) == expected


_NEW_AND_OLD = (
    "; fix: stream NEW_AND_OLD_IMAGES (a view type cannot change in place: disable the stream, enable it "
    "with NEW_AND_OLD_IMAGES, then run cdcsync backfill)"
)
_UNKNOWN_PLACE = (
    "a document moved meanwhile stays in its old place (counted in cdcsync_unknown_location_writes_total) "
    "and a REMOVE is a dead letter (unknown_location)"
)


@pytest.mark.parametrize(
    ("text", "view", "expected"),
    [
        pytest.param('id: "{UserId}"\n', "NEW_AND_OLD_IMAGES", [], id="fine"),
        pytest.param(
            "",
            None,
            [
                (
                    True,
                    "table",
                    "table T has no enabled stream: nothing reaches the index; enable one: aws dynamodb "
                    "update-table --table-name T --stream-specification "
                    "StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES",
                )
            ],
            id="no-stream",
        ),
        pytest.param(
            'id: "{UserID}"\n',
            "NEW_AND_OLD_IMAGES",
            [
                (
                    True,
                    "id",
                    '"{UserID}" names UserID, not a key attribute of table T (keys: UserId): every record is '
                    'a dead letter; write "{UserId}"',
                )
            ],
            id="id-typo",
        ),
        pytest.param(
            'id: "{Email}"\n',
            "NEW_AND_OLD_IMAGES",
            [
                (
                    True,
                    "id",
                    '"{Email}" names Email, not a key attribute of table T (keys: UserId): every record is '
                    "a dead letter; name only key attributes (a REMOVE carries nothing else)",
                )
            ],
            id="id-not-a-key",
        ),
        pytest.param(
            'routing: "{userid}"\n',
            "NEW_AND_OLD_IMAGES",
            [
                (
                    False,
                    "routing",
                    '"{userid}" names userid, not a key attribute of table T (keys: UserId): an item '
                    'without it is a dead letter; if you meant the key, write "{UserId}"',
                )
            ],
            id="routing-looks-like-key",
        ),
        pytest.param('routing: "{Region}"\n', "NEW_AND_OLD_IMAGES", [], id="routing-other-attribute"),
        pytest.param(
            'index: "t-{Region}"\nskip_unchanged: true\nwhere: {Status: [live]}\nversion: attribute:Rev\n',
            "NEW_IMAGE",
            [
                (
                    True,
                    "index",
                    f'"t-{{Region}}" needs the old image to find a document, which the table\'s NEW_IMAGE '
                    f"stream does not carry: {_UNKNOWN_PLACE}{_NEW_AND_OLD}",
                ),
                (
                    False,
                    "where",
                    "names Status, not only key attributes, and the table's NEW_IMAGE stream carries no old "
                    "image: each write of an item outside where deletes its document, indexed or not"
                    f"{_NEW_AND_OLD}",
                ),
                (
                    False,
                    "skip_unchanged",
                    "needs the old image, which the table's NEW_IMAGE stream does not carry: every MODIFY "
                    f"is written{_NEW_AND_OLD}",
                ),
                (
                    True,
                    "version",
                    "attribute:Rev needs the old image to version a delete, which the table's NEW_IMAGE "
                    f"stream does not carry: every REMOVE is a dead letter{_NEW_AND_OLD}, or set deletes: "
                    "{on_remove: ignore, on_ttl_expiry: ignore}",
                ),
            ],
            id="new-image-limits",
        ),
        pytest.param(
            'index: "t-{UserId}"\nwhere: {UserId: [{numeric: [">", 5]}]}\nversion: attribute:Rev\n'
            "deletes: {on_remove: ignore, on_ttl_expiry: ignore}\n",
            "KEYS_ONLY",
            [],
            id="keys-only-by-keys",
        ),
    ],
)
def test_table_findings_mapping_against_stream_view_and_keys(
    tmp_path: Path, text: str, view: str | None, expected: list[tuple[bool, str, str]]
) -> None:
    # GIVEN a valid mapping and the table's stream view type and key schema
    mapping = _mapping(tmp_path, text)
    # WHEN checked THEN each finding says what fails, whether it can never work, and the fix
    findings = table_findings(mapping, view, frozenset({"UserId"}))
    assert [(f.refuses, f.key, f.message) for f in findings] == expected
