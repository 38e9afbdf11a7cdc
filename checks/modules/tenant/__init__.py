"""Tenant checks (admin consent): what only an admin can see inside the tenant.

They read Microsoft Graph and the Exchange Online admin API through `checks.tenant` (reference
§5, §6) and change nothing in the tenant. Without tenant settings every one is `skip` with the
reason, so the report keeps exactly one finding per catalogue id (DESIGN.md, "Report").
"""

from __future__ import annotations

from checks.modules.tenant import access, activity, identity, mailbox
from checks.spec import Check

CHECKS: tuple[Check, ...] = identity.CHECKS + mailbox.CHECKS + access.CHECKS + activity.CHECKS
