"""Typed results of a diagnosis: what checks find, and what the report contract carries.

Everything here is frozen data. Checks build `Finding`s; the runner stamps durations; the
diagnosis step ranks `Cause`s; `cards/` alone decides how any of it looks.
The JSON shape of `Report` is a public contract (DESIGN.md, "Report"): change it only on purpose.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

REPORT_SCHEMA: Literal["mailfix.report/1"] = "mailfix.report/1"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Status(StrEnum):
    """Outcome of one check. `error` means the check itself could not decide."""

    PASS = "pass"  # noqa: S105 - a status, not a password
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"
    SKIP = "skip"


class Side(StrEnum):
    """Where a cause lives: who has to act on it."""

    DEVICE = "device"
    NETWORK = "network"
    DNS = "dns"
    IDENTITY = "identity"
    ADMIN = "admin"
    SERVICE = "service"


class Client(StrEnum):
    """The mail app family a diagnosis is for (CLI `--client`)."""

    OUTLOOK = "outlook"
    MOBILE = "mobile"
    IMAP = "imap"
    POP = "pop"
    SMTP = "smtp"
    WEB = "web"
    ALL = "all"


class Step(_Frozen):
    """One node of a step trace (like the Remote Connectivity Analyzer's tree)."""

    name: str
    status: Status
    detail: str = ""


class Remediation(_Frozen):
    """A fix an admin may approve: what, the exact operation and target, a precondition, an
    idempotency key. Built by `checks.remedies.propose` for tenant findings; network checks
    leave it None; `checks.remedies` plans and applies it.

    Report contract: `id`, `title`, `api`, `action`, `params` are the original fields; the
    others were added later with defaults, so a remediation stored before them still reads.
    """

    id: str  # the operation: enable-protocol | release-device | enable-exchange-plan | …
    title: str  # words for the approver: "Switch ActiveSync on for ana@contoso.com"
    api: Literal["graph", "exo"]
    action: str  # the cmdlet ("Set-CASMailbox") or Graph method and path template
    params: dict[str, Any] = Field(default_factory=dict)  # the operation's arguments
    target: str = ""  # the object it changes: a mailbox address or a directory object id
    operation: str = ""  # the exact operation written out, as an admin would type or send it
    precondition: str = ""  # what must hold before it is applied (the executor reads it first)
    idempotency_key: str = ""  # the same fix for the same object always has the same key
    hard_to_undo: bool = False  # restore a user, enable an account: may need two approvers
    verify: list[str] = Field(default_factory=list)  # checks to run again after applying

    @model_validator(mode="before")
    @classmethod
    def _derive_key(cls, data: Any) -> Any:
        """A remediation stored before idempotency keys existed gets one from its content."""
        if isinstance(data, dict) and not data.get("idempotency_key"):
            content = json.dumps(
                [data.get("id"), data.get("target", ""), data.get("params") or {}],
                sort_keys=True,
                default=str,
            )
            digest = hashlib.sha256(content.encode()).hexdigest()[:16]
            data = {**data, "idempotency_key": f"{data.get('id')}:{digest}"}
        return data


class Finding(_Frozen):
    """What one check found. Exactly one per check id in every report."""

    check: str
    status: Status
    summary: str
    detail: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)
    next_steps: list[str] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    duration_ms: int = 0
    remediation: Remediation | None = None


class Cause(_Frozen):
    """A ranked explanation of the problem, backed by the checks that point at it."""

    id: str
    title: str
    confidence: float = Field(ge=0.0, le=1.0)
    checks: list[str] = Field(default_factory=list)
    side: Side


class Report(_Frozen):
    """The `--json` output and what the bot stores (contract `mailfix.report/1`)."""

    schema_: Literal["mailfix.report/1"] = Field(default=REPORT_SCHEMA, alias="schema")
    address: str
    client: Client
    duration_ms: int
    findings: list[Finding]
    causes: list[Cause]

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def finding(self, check_id: str) -> Finding:
        for f in self.findings:
            if f.check == check_id:
                return f
        raise KeyError(check_id)

    @property
    def top_cause(self) -> Cause | None:
        return self.causes[0] if self.causes else None

    def to_json(self, *, indent: int | None = None) -> str:
        return self.model_dump_json(by_alias=True, indent=indent)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)
