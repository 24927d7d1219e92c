"""Which index names a mapping's index claims (verify walks only its own)."""

from __future__ import annotations

import pytest

from cdcsync.verify.scope import claims, scope_in
from tests.support.records import compiled


@pytest.mark.parametrize(
    ("index", "name", "claimed"),
    [
        ("orders-{Region}", "orders-eu", True),
        ("orders-{Region}", "orders-v2-eu", True),  # Region "V2-EU" renders it: another mapping decides
        ("orders-{Region}", "orders", False),
        ("orders-{Region}", "old-orders-eu", False),
        ("orders-{Region}-{Year}", "orders-eu-2026", True),
        ("orders-{Region}-{Year}", "orders-eu", False),
        ("orders", "orders", True),
        ("orders", "orders-eu", False),
    ],
)
def test_claims_full_match_of_template_or_literal(index: str, name: str, claimed: bool) -> None:
    assert claims(compiled(table="T", index=index), name) is claimed


@pytest.mark.parametrize(
    ("index", "name", "aliases", "scope"),
    [
        ("orders", "orders-000001", ("orders",), "orders"),  # a literal alias claims the index behind it
        ("orders", "orders-000001", ("other",), None),
        ("orders-{Region}", "x-1", ("orders-eu",), "orders-eu"),  # the alias's name is rendered
        ("orders-{Region}", "orders-eu", ("orders-all",), "orders-eu"),  # its own name first
        ("orders-{Region}", "x-1", ("orders",), None),
    ],
)
def test_scope_in_index_known_by_an_alias_names_the_alias(
    index: str, name: str, aliases: tuple[str, ...], scope: str | None
) -> None:
    mapping = compiled(table="T", index=index)
    assert scope_in(mapping, name, aliases) == scope
    assert claims(mapping, name, aliases) is (scope is not None)
