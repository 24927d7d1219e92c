"""Which index names a mapping's index claims (verify walks only its own)."""

from __future__ import annotations

import pytest

from cdcsync.verify.scope import claims
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
