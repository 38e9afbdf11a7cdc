"""The check catalogue: an explicit list of check families, validated at start-up.

Discover → load → validate, each a plain step (the way flake8 finds its plugins): the families
are listed here by hand (no register-on-import), their checks are sorted by id for determinism,
and a duplicate id, an unknown dependency or a dependency cycle stops the program at import.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType

from checks.modules import activesync, autodiscover, dns, ports, realm, tenant
from checks.spec import Check

FAMILIES: tuple[ModuleType, ...] = (activesync, autodiscover, dns, ports, realm, tenant)


class RegistryError(RuntimeError):
    """The catalogue is inconsistent; a programming error caught at start-up."""


def load_checks(families: Iterable[ModuleType] = FAMILIES) -> tuple[Check, ...]:
    checks: list[Check] = []
    for family in families:
        declared = getattr(family, "CHECKS", None)
        if not isinstance(declared, tuple) or not all(isinstance(c, Check) for c in declared):
            raise RegistryError(f"{family.__name__}.CHECKS must be a tuple of Check")
        checks.extend(declared)
    return validate(checks)


def validate(checks: Iterable[Check]) -> tuple[Check, ...]:
    ordered = tuple(sorted(checks, key=lambda c: c.id))
    seen: set[str] = set()
    for check in ordered:
        if check.id in seen:
            raise RegistryError(f"duplicate check id {check.id!r}")
        seen.add(check.id)
    by_id = {c.id: c for c in ordered}
    for check in ordered:
        for dep in check.depends_on:
            if dep not in by_id:
                raise RegistryError(f"{check.id} depends on unknown check {dep!r}")
    _reject_cycles(by_id)
    return ordered


def _reject_cycles(by_id: dict[str, Check]) -> None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished

    def visit(check_id: str, path: tuple[str, ...]) -> None:
        if state.get(check_id) == 2:
            return
        if state.get(check_id) == 1:
            cycle = " -> ".join((*path[path.index(check_id) :], check_id))
            raise RegistryError(f"dependency cycle: {cycle}")
        state[check_id] = 1
        for dep in by_id[check_id].depends_on:
            visit(dep, (*path, check_id))
        state[check_id] = 2

    for check_id in by_id:
        visit(check_id, ())


CATALOGUE: tuple[Check, ...] = load_checks()
CATALOGUE_IDS: tuple[str, ...] = tuple(c.id for c in CATALOGUE)


def get_check(check_id: str) -> Check:
    for check in CATALOGUE:
        if check.id == check_id:
            return check
    raise KeyError(check_id)
