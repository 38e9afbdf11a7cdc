"""Three-valued answers: a condition matches, does not, or cannot be told from what mailfix knows.

mailfix sees the tenant's configuration but not the person's sign-in: their IP address, their
device's compliance, their sign-in risk. A condition that depends on one of those is `UNKNOWN`,
never guessed, and the evaluators carry the reason so the finding can say what was not evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class Tri(Enum):
    NO = 0
    UNKNOWN = 1
    YES = 2

    @staticmethod
    def of(value: bool) -> Tri:
        return Tri.YES if value else Tri.NO

    def __invert__(self) -> Tri:
        if self is Tri.UNKNOWN:
            return Tri.UNKNOWN
        return Tri.NO if self is Tri.YES else Tri.YES

    def __and__(self, other: Tri) -> Tri:
        return self if self.value <= other.value else other

    def __or__(self, other: Tri) -> Tri:
        return self if self.value >= other.value else other


def any_of(values: Iterable[Tri]) -> Tri:
    """OR over `values`; NO for none (an empty condition list matches nothing)."""
    out = Tri.NO
    for v in values:
        out = out | v
        if out is Tri.YES:
            break
    return out


def all_of(values: Iterable[Tri]) -> Tri:
    """AND over `values`; YES for none (no condition configured restricts nothing)."""
    out = Tri.YES
    for v in values:
        out = out & v
        if out is Tri.NO:
            break
    return out
