"""Typed fixes an admin may approve (issue 6 item 4).

- `checks.remedies.propose`: the builders tenant checks call (a `Remediation` per fix).
- `plan`, `apply`, `canonical` (`checks.remedies.api`): what the approval flow and
  `mailfix fix` call; `FixResult`, `Outcome`, `PlannedRequest` are what they return.
  `approval_executor(settings)` is `apply` in the shape `dialogs.approval` expects.
- `checks.remedies.verify`: run the affected checks again after a fix.
"""

from __future__ import annotations

from checks.remedies.api import apply, approval_executor, canonical, plan
from checks.remedies.executors import InvalidProposal
from checks.remedies.results import FixResult, Outcome, PlannedRequest

__all__ = [
    "FixResult",
    "InvalidProposal",
    "Outcome",
    "PlannedRequest",
    "apply",
    "approval_executor",
    "canonical",
    "plan",
]
