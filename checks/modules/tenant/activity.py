"""tenant.signins and tenant.service_health (Microsoft Graph, reference §5, §5.4, §5.5).

tenant.signins: the person's failed sign-ins to Exchange Online in the last 48 hours, each
explained in plain words from its AADSTS code (the table in §5.4), the Conditional Access
policy named for 53003. `fail` when the latest attempt still fails, `warn` when failures are
followed by a success.
tenant.service_health: open Exchange Online incidents and advisories from the service
announcements (`issues`, ServiceHealth.Read.All), by id (EX…), matched to this app where the
issue says which app it hits.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from checks.models import Client, Finding, Side, Status
from checks.spec import EVERY_CLIENT, Check, CheckContext
from checks.symptoms import Symptom, classify_symptom
from checks.tenant import reads
from checks.tenant.errors import TenantError
from checks.tenant.findings import tenant_error_finding
from checks.tenant.models import ServiceHealthIssue, SignIn

# AADSTS code -> (what happened, what to do). Reference §5.4 (Entra error-code reference).
AADSTS: dict[int, tuple[str, str]] = {
    50126: (
        "the password (or the user name) was wrong",
        "Type the password again in the app. If it was changed recently, every app and phone "
        "still using the old one must be updated; if it is forgotten, reset it.",
    ),
    50053: (
        "the account was locked after too many wrong passwords (or a sign-in from a "
        "suspicious address was blocked)",
        "Stop every app or phone that still tries an old password, wait a few minutes for the "
        "lock to lift, then sign in with the right password.",
    ),
    50055: (
        "the password has expired",
        "Change the password (for example at office.com), then enter the new one in the app.",
    ),
    50144: (
        "the on-premises password has expired",
        "Change the password the way the organisation does on its network, then enter the "
        "new one in the app.",
    ),
    50057: (
        "the account is disabled",
        "An administrator unblocks sign-in for the account (see the account finding).",
    ),
    50034: (
        "no account with this user name exists in the organisation",
        "Check the user name the app signs in with; it must be the work address.",
    ),
    51004: (
        "the user name is not in the organisation's directory",
        "Check the user name the app signs in with; it must be the work address.",
    ),
    50076: (
        "multi-factor authentication is required, and this app cannot ask for it",
        "Use an app that signs in through a Microsoft account page (modern authentication), "
        "for example Outlook, instead of a password-only app.",
    ),
    50079: (
        "the person must register for multi-factor authentication first",
        "Sign in once at https://aka.ms/mfasetup in a browser and register a phone or the "
        "Authenticator app, then try the mail app again.",
    ),
    50072: (
        "the person must register for multi-factor authentication first",
        "Sign in once at https://aka.ms/mfasetup in a browser and register, then try again.",
    ),
    50074: (
        "the multi-factor check was not completed",
        "Approve the sign-in request (Authenticator or text message) when the app asks.",
    ),
    50158: (
        "an external security check (third-party MFA or a custom control) was not passed",
        "Complete the organisation's extra security check when asked; the helpdesk can see "
        "which one.",
    ),
    53000: (
        "a Conditional Access policy requires a compliant (managed) device",
        "Enrol the phone or computer in the organisation's device management (Intune Company "
        "Portal), or use a managed device.",
    ),
    53001: (
        "a Conditional Access policy requires a device joined to the organisation's domain",
        "Use a company computer, or ask the helpdesk which devices are allowed.",
    ),
    53002: (
        "a Conditional Access policy allows only approved apps, such as Outlook for iOS and "
        "Android",
        "Use the Outlook app instead of the phone's built-in mail app.",
    ),
    53003: (
        "a Conditional Access policy blocked the sign-in",
        "An administrator checks the named policy: it blocks this kind of sign-in (often "
        "legacy apps or sign-ins from some places).",
    ),
    53004: (
        "the person must complete security registration because of a risk on the account",
        "Sign in at https://aka.ms/mysecurityinfo in a browser and finish the registration.",
    ),
    50131: (
        "Conditional Access refused the sign-in",
        "An administrator checks the sign-in log entry for the policy that applied.",
    ),
    50097: (
        "the device must authenticate itself first",
        "Use a registered company device, or ask the helpdesk to register this one.",
    ),
    50129: (
        "the device is not joined to the workplace",
        "Register the device with the organisation (Settings > Accounts > Access work).",
    ),
    50105: (
        "the person is not assigned to the application that signs in",
        "An administrator assigns the person to the application in Entra ID.",
    ),
    65001: (
        "consent for the app that signs in is missing",
        "An administrator grants consent to the app, or the person uses an approved app.",
    ),
    700016: (
        "the application that signs in is not known in this organisation",
        "Use an app the organisation allows; an administrator can check the app id in the "
        "sign-in log.",
    ),
    90072: (
        "the account is not a member of this organisation's directory",
        "Sign in with the work account of this organisation, not a personal or guest account.",
    ),
}
_CA_CODES = frozenset({53000, 53001, 53002, 53003, 53004, 50131})
# Exchange Online's resource id (§6.3) and the legacy protocols that only reach Exchange (§5.4).
_EXCHANGE_CLIENT_APPS = frozenset(
    {
        "exchange activesync",
        "imap4",
        "pop3",
        "authenticated smtp",
        "exchange web services",
        "mapi over http",
        "outlook anywhere (rpc over http)",
        "autodiscover",
        "offline address book",
    }
)


# Failures about the account itself, whatever app signs in: they matter to every client.
_ACCOUNT_CODES = frozenset({50034, 50053, 50055, 50057, 50144, 51004})
# The `clientAppUsed` values of each client family's sign-ins (reference §5.4), lower case.
_CLIENT_APPS: dict[Client, frozenset[str]] = {
    Client.OUTLOOK: frozenset(
        {
            "mobile apps and desktop clients",
            "mapi over http",
            "exchange web services",
            "outlook anywhere (rpc over http)",
            "autodiscover",
            "offline address book",
        }
    ),
    Client.MOBILE: frozenset({"exchange activesync", "mobile apps and desktop clients"}),
    Client.IMAP: frozenset({"imap4"}),
    Client.POP: frozenset({"pop3"}),
    Client.SMTP: frozenset({"authenticated smtp"}),
    Client.WEB: frozenset({"browser"}),
}


def _concerns(s: SignIn, client: Client) -> bool:
    """Whether a failed sign-in can explain this client's trouble: the account's own problems
    always do; an app's refusal only for the app family that signed in."""
    if client is Client.ALL or s.status.error_code in _ACCOUNT_CODES:
        return True
    used = (s.client_app_used or "").lower()
    return not used or used in _CLIENT_APPS[client]


def _meaning(code: int) -> tuple[str, str]:
    if 80001 <= code <= 80013:
        return (
            "the organisation's pass-through authentication agents could not check the "
            "password against the on-premises directory",
            "An administrator checks the pass-through authentication agents in Entra Connect.",
        )
    if 81004 <= code <= 81010:
        return (
            "seamless single sign-on (Kerberos) failed",
            "Sign in with the password when asked; an administrator checks Seamless SSO.",
        )
    return AADSTS.get(
        code,
        (
            f"the sign-in was refused (error {code})",
            f"An administrator looks up AADSTS{code} in the sign-in log entry.",
        ),
    )


def _to_exchange(s: SignIn) -> bool:
    if s.resource_id == reads.EXO_APP_ID:
        return True
    if "exchange" in (s.resource_display_name or "").lower():
        return True
    return (s.client_app_used or "").lower() in _EXCHANGE_CLIENT_APPS


def _failed_policy(s: SignIn) -> str | None:
    for policy in s.applied_conditional_access_policies:
        if policy.result == "failure":
            return policy.display_name or policy.id
    return None


def _ago(when: str, now: datetime) -> str:
    try:
        stamp = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        return when
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    minutes = max(0, int((now - stamp).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min ago"
    hours = minutes // 60
    return f"{hours} h ago" if hours < 48 else f"{hours // 24} days ago"


async def _signins(ctx: CheckContext) -> Finding:
    try:
        found = await reads.user(ctx)
    except TenantError as exc:
        return tenant_error_finding(SIGNINS, exc, reading="sign-in logs")
    user = found.value.user
    if user is None:
        return SIGNINS.finding(
            Status.SKIP,
            "No live account owns this address, so there are no sign-ins to read.",
            evidence={"requests": list(found.requests)},
        )
    try:
        read = await reads.signins(ctx, user.user_principal_name)
    except TenantError as exc:
        return tenant_error_finding(SIGNINS, exc, found.requests, reading="sign-in logs")
    now = datetime.now(UTC)
    relevant = [s for s in read.value if _to_exchange(s) and _concerns(s, ctx.client)]
    failures = [s for s in relevant if s.status.error_code != 0]
    others = sorted(
        {
            s.client_app_used or "another app"
            for s in read.value
            if _to_exchange(s) and s.status.error_code != 0 and not _concerns(s, ctx.client)
        }
    )
    requests = list(read.requests)
    if not failures:
        elsewhere = (
            f" Sign-ins from other apps did fail ({', '.join(others)}); they do not explain "
            "this app's trouble."
            if others
            else ""
        )
        return SIGNINS.finding(
            Status.PASS,
            "No sign-in to Exchange Online from this kind of app failed in the last 48 hours"
            + (f" ({len(relevant)} succeeded)." if relevant else ".")
            + elsewhere,
            evidence={
                "problem": None,
                "failures": [],
                "other_apps_failing": others,
                "requests": requests,
            },
        )
    listed: list[dict[str, Any]] = [
        {
            "when": s.created,
            "code": s.status.error_code,
            "meaning": _meaning(s.status.error_code)[0],
            "app": s.app_display_name,
            "client_app": s.client_app_used,
            "policy": _failed_policy(s),
        }
        for s in failures[:10]
    ]
    counts = Counter(s.status.error_code for s in failures)
    newest_code = failures[0].status.error_code
    top_code = max(counts, key=lambda c: (counts[c], c == newest_code))
    top = next(s for s in failures if s.status.error_code == top_code)
    meaning, advice = _meaning(top_code)
    policy = _failed_policy(top) if top_code in _CA_CODES else None
    still_failing = relevant[0].status.error_code != 0
    enabled_since = relevant[0].status.error_code == 50057 and user.account_enabled is True
    if enabled_since:  # the account was enabled after these refusals: they are history
        still_failing = False
    how = f" with {top.client_app_used}" if top.client_app_used else ""
    named = f" (policy {policy})" if policy else ""
    summary = (
        f"{len(failures)} sign-in{'s' if len(failures) != 1 else ''} to Exchange Online failed "
        f"in the last 48 hours, most often because {meaning}{named}: AADSTS{top_code}{how}, "
        f"{_ago(top.created, now)}."
    )
    steps = [advice]
    if policy:
        steps.append(
            f"The policy is '{policy}' (Entra admin center > Protection > Conditional Access)."
        )
    if enabled_since:
        steps.append(
            "The account is enabled now; these refusals came before. Sign in again in the app."
        )
    elif not still_failing:
        steps.append("The latest sign-in succeeded, so this may already be solved.")
    evidence: dict[str, Any] = {
        "problem": "signin-failures",
        "failures": listed,
        "top_code": top_code,
        "still_failing": still_failing,
        "requests": requests,
    }
    if policy:
        evidence["policy"] = policy
    return SIGNINS.finding(
        Status.FAIL if still_failing else Status.WARN,
        summary,
        evidence=evidence,
        next_steps=steps,
    )


# --- tenant.service_health --------------------------------------------------------------------

# Words that tie an issue to one kind of app (matched in title, feature and impact text).
CLIENT_WORDS: dict[Client, tuple[str, ...]] = {
    Client.MOBILE: ("mobile", "activesync", "ios", "android", "phone"),
    Client.IMAP: ("imap",),
    Client.POP: ("pop3", "pop "),
    Client.SMTP: ("smtp", "client submission"),
    Client.OUTLOOK: (
        "outlook desktop",
        "outlook for windows",
        "outlook for mac",
        "mapi",
        "autodiscover",
    ),
    Client.WEB: ("outlook on the web", "owa", "browser"),
}
_CLOSED = frozenset(
    {
        "serviceRestored",
        "falsePositive",
        "postIncidentReviewPublished",
        "resolved",
        "serviceOperational",
    }
)


# Words that tie an issue to what the person describes (checks.symptoms).
SYMPTOM_WORDS: dict[Symptom, tuple[str, ...]] = {
    Symptom.CANNOT_SEND: ("send", "submission", "smtp", "outbound"),
    Symptom.PHONE_STOPPED_SYNCING: ("sync", "mobile", "activesync", "ios", "android"),
    Symptom.PASSWORD_PROMPTS: ("sign in", "sign-in", "authenticat", "password", "credential"),
    Symptom.CANNOT_CONNECT: ("connect", "access"),
    Symptom.ENCRYPTED_CONNECTION_UNAVAILABLE: ("encrypt", "tls", "certificate"),
}


def _matches_symptom(issue: ServiceHealthIssue, symptom: Symptom | None) -> bool:
    words = SYMPTOM_WORDS.get(symptom) if symptom is not None else None
    return bool(words) and any(w in _text(issue) for w in words or ())


def _text(issue: ServiceHealthIssue) -> str:
    parts = (issue.title, issue.feature, issue.feature_group, issue.impact_description)
    return " ".join(p for p in parts if p).lower() + " "


def _matches(issue: ServiceHealthIssue, client: Client) -> bool:
    """Does the issue plausibly hit this app? Generic issues (no app named) do."""
    text = _text(issue)
    named = {c for c, words in CLIENT_WORDS.items() if any(w in text for w in words)}
    if not named:
        return True
    return client is Client.ALL or client in named


async def _service_health(ctx: CheckContext) -> Finding:
    try:
        read = await reads.service_issues(ctx)
    except TenantError as exc:
        return tenant_error_finding(HEALTH, exc, reading="Exchange Online service health")
    requests = list(read.requests)
    open_issues = [i for i in read.value if not i.is_resolved and i.status not in _CLOSED]
    symptom = classify_symptom(ctx.symptom)
    listed: list[dict[str, Any]] = [
        {
            "id": i.id,
            "title": i.title,
            "classification": i.classification,
            "status": i.status,
            "feature": i.feature,
            "matches_client": _matches(i, ctx.client),
            "matches_symptom": _matches_symptom(i, symptom),
        }
        for i in open_issues
    ]
    listed.sort(
        key=lambda i: (
            not i["matches_client"],
            not i["matches_symptom"],
            i["classification"] != "incident",
        )
    )
    evidence: dict[str, Any] = {"issues": listed, "requests": requests}
    incidents = [i for i in listed if i["classification"] == "incident" and i["matches_client"]]
    if incidents:
        first = incidents[0]
        ids = ", ".join(i["id"] for i in incidents)
        said = " and matches what the person describes" if first["matches_symptom"] else ""
        return HEALTH.finding(
            Status.FAIL,
            f"Microsoft has an open Exchange Online incident that can explain this{said}: "
            f"{first['id']} — {first['title'].rstrip('.')}.",
            evidence={**evidence, "problem": "service-incident"},
            next_steps=[
                "This is a problem at Microsoft, not on the device: nothing needs to be changed "
                "or set up again.",
                f"An administrator follows {ids} in the Microsoft 365 admin center > Health > "
                "Service health; the app recovers when Microsoft fixes it.",
            ],
        )
    if listed:
        first = listed[0]
        kind = "advisory" if first["classification"] != "incident" else "incident (another app)"
        return HEALTH.finding(
            Status.WARN,
            f"Exchange Online has {len(listed)} open notice{'s' if len(listed) != 1 else ''} "
            f"from Microsoft; the first is an {kind}: {first['id']} — "
            f"{first['title'].rstrip('.')}.",
            evidence={**evidence, "problem": "service-advisory"},
            next_steps=[
                f"An administrator reads {first['id']} in the Microsoft 365 admin center > "
                "Health > Service health to see whether it affects this person.",
            ],
        )
    return HEALTH.finding(
        Status.PASS,
        "Microsoft reports no open Exchange Online incident or advisory.",
        evidence={**evidence, "problem": None},
    )


SIGNINS = Check(
    id="tenant.signins",
    title="Recent sign-in failures",
    side=Side.IDENTITY,
    clients=EVERY_CLIENT,
    run=_signins,
    needs_tenant=True,
)
HEALTH = Check(
    id="tenant.service_health",
    title="Exchange Online service health",
    side=Side.SERVICE,
    clients=EVERY_CLIENT,
    run=_service_health,
    needs_tenant=True,
)

CHECKS: tuple[Check, ...] = (SIGNINS, HEALTH)
