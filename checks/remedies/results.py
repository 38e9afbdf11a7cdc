"""What planning and applying a fix produce: the requests (exactly as sent) and the result.

A `PlannedRequest` is one write as it goes on the wire — method, absolute URL, JSON body — and
never carries a token or a header with one. A `FixResult` says what happened in one of five
outcomes, what was sent, the response status, words for the person and for the admin, and
which checks to run again.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Outcome(StrEnum):
    APPLIED = "applied"  # the write was sent and accepted
    ALREADY_DONE = "already-done"  # the state already held: nothing was sent
    WOULD_APPLY = "would-apply"  # dry run: the precondition holds; `sent` is what would go
    REFUSED = "refused"  # a precondition does not hold (or the change belongs on-premises)
    FAILED = "failed"  # a request failed (permission, throttling, the service said no)


class PlannedRequest(_Frozen):
    """One write, exactly as mailfix sends it (no headers: they would carry the token)."""

    api: Literal["graph", "exo"]
    method: Literal["POST", "PATCH"]
    url: str  # absolute, e.g. https://graph.microsoft.com/v1.0/users/…/assignLicense
    body: dict[str, Any] | None = None  # the JSON body (InvokeCommand: the CmdletInput envelope)
    path: str | None = None  # Graph: the path under /v1.0, unencoded

    @property
    def cmdlet(self) -> str | None:
        if self.api != "exo" or self.body is None:
            return None
        return str(self.body["CmdletInput"]["CmdletName"])

    @property
    def parameters(self) -> dict[str, Any]:
        if self.api != "exo" or self.body is None:
            return {}
        params: dict[str, Any] = self.body["CmdletInput"]["Parameters"]
        return params

    def line(self) -> str:
        """`METHOD URL BODY` on one line, for a terminal or an audit log."""
        text = f"{self.method} {self.url}"
        if self.body is not None:
            text += " " + json.dumps(self.body, separators=(",", ":"))
        return text


class FixResult(_Frozen):
    """The result of `apply` (and of a dry run)."""

    remediation: str  # the remediation's id (the operation), e.g. "enable-protocol"
    idempotency_key: str
    outcome: Outcome
    dry_run: bool = False
    sent: list[PlannedRequest] = Field(default_factory=list)  # dry run: what would be sent
    status: int | None = None  # HTTP status of the write (or of the request that failed)
    message: str  # for the person, in words
    detail: str = ""  # for the admin, in words: what was found, what was done or why not
    reads: list[str] = Field(default_factory=list)  # the requests that checked the precondition
    verify: list[str] = Field(default_factory=list)  # checks to run again to confirm
    subject: str | None = None  # the person's address, when known (for the re-run)
    permission: str | None = None  # a missing permission or role, by its exact name
    grant_where: str | None = None  # where an admin grants it
    hard_to_undo: bool = False

    @property
    def changed(self) -> bool:
        return self.outcome is Outcome.APPLIED

    @property
    def holds(self) -> bool:
        """The fix is in place now (applied, or found already done)."""
        return self.outcome in (Outcome.APPLIED, Outcome.ALREADY_DONE)

    def account(self) -> dict[str, Any]:
        """JSON for an audit log or a card: every field, plus each request as one line."""
        data = self.model_dump(mode="json")
        data["sent_lines"] = [r.line() for r in self.sent]
        return data

    @property
    def ok(self) -> bool:
        """Applied, already done, or (dry run) would apply."""
        return self.outcome in (Outcome.APPLIED, Outcome.ALREADY_DONE, Outcome.WOULD_APPLY)
