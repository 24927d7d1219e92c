"""Checks of valid mappings: the filter trap (a filter that skips what must delete), view types."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cdcsync.mapping.checks import filter_trap_warning
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
    path.write_text("table: T\nindex: t\n" + textwrap.dedent(text))
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
