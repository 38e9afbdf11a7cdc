"""The registry rejects an inconsistent catalogue at start-up."""

from __future__ import annotations

import pytest

from checks.models import Side
from checks.registry import RegistryError, validate
from checks.spec import EVERY_CLIENT, Check


def check(check_id: str, *deps: str) -> Check:
    return Check(
        id=check_id, title=check_id, side=Side.DNS, clients=EVERY_CLIENT, run=None, depends_on=deps
    )


def test_sorted_by_id() -> None:
    assert [c.id for c in validate([check("b"), check("a"), check("c")])] == ["a", "b", "c"]


def test_duplicate_rejected() -> None:
    with pytest.raises(RegistryError, match="duplicate check id 'a'"):
        validate([check("a"), check("b"), check("a")])


def test_unknown_dependency_rejected() -> None:
    with pytest.raises(RegistryError, match="unknown check 'zz'"):
        validate([check("a", "zz")])


def test_cycle_rejected() -> None:
    with pytest.raises(RegistryError, match="cycle: a -> b -> c -> a"):
        validate([check("a", "b"), check("b", "c"), check("c", "a")])
