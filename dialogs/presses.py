"""Which press of a button acts: one recorded press per logical action, whichever replica.

The turn pipeline (`dialogs.pipeline`, which every adapter goes through) records a button
press with `CaseStore.press(key)` (one INSERT on a unique key) before acting, and acts only when
its INSERT won. The key says what "the same press" means:

- a follow-up on a person's check (Run again, That fixed it, Escalate) happens once per check
  and person, however many times and on however many replicas it is pressed: four concurrent
  "Run again" presses start one diagnosis;
- a case-card button (Claim, Ask, Resolve, Approve, Reject) is one click: a platform retry or
  the same click delivered to two replicas acts once. Two different clicks are two presses —
  the case store's conditional updates decide what the second one may still do (a case is
  claimed once, a fix applied once).

    key = follow_up_key(Platform.SLACK, Action.RUN_AGAIN, diagnosis_id, person_id)
    if key and not await cases.press(key, kind=..., actor=person_id, platform=...):
        ...  # tell the person `ALREADY[action]`
"""

from __future__ import annotations

from dialogs.models import Action, Platform

# Buttons that act at most once per check and person (Details only shows something).
ONCE_PER_CHECK = frozenset({Action.RUN_AGAIN, Action.FIXED, Action.ESCALATE})

# What a press that lost is told (the winner's words come from the flow).
ALREADY = {
    Action.RUN_AGAIN: "This check was already run again: see the newer results.",
    Action.FIXED: "You already told me this was fixed. Thanks!",
    Action.ESCALATE: "You already asked the helpdesk about this check; an agent will pick it up.",
}


def follow_up_key(
    platform: Platform, action: Action | None, diagnosis_id: str | None, person_id: str
) -> str | None:
    """The press key of a follow-up button, or None when the button is not a once-only one."""
    if action not in ONCE_PER_CHECK or not diagnosis_id:
        return None
    assert action is not None
    return f"follow-up:{action.value}:{diagnosis_id}:{platform.value}:{person_id}"


def click_key(platform: Platform, workspace: str | None, person_id: str, *parts: str) -> str:
    """The press key of one click (the platform's action id, the value, the click's own id)."""
    return ":".join(["click", platform.value, workspace or "-", person_id, *parts])
