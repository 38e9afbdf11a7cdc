"""DNS records Microsoft 365 expects for the person's domain: MX, the autodiscover CNAME, SPF.

What "right" means comes from `ctx.cloud` (sovereign clouds have other targets); the static
reference is exchange-online-diagnostics.md §2.9 (create-dns-records-at-any-dns-hosting-provider).
A DNS failure of our own resolver is `error` (we could not decide); NXDOMAIN or "no such
record" is an answer and therefore `fail`.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from checks.models import Finding, Side, Status
from checks.modules._explain import explain
from checks.net.errors import DnsError
from checks.net.types import DnsAnswer
from checks.spec import EVERY_CLIENT, Check, CheckContext

MAX_CNAME_HOPS = 8
SPF_MAX_LOOKUPS = 10  # RFC 7208 §4.6.4: at most 10 DNS-querying mechanisms per evaluation
# Seconds of dns.spf's timeout kept free after the include walk, so a walk through silent
# includes still ends in a finding instead of the runner's time-limit error.
SPF_WALK_MARGIN = 1.5

# Host-name labels that usually mean an on-premises Exchange server (hybrid) rather than a
# web host or a stale record. A hint for the wording only, never for the status.
_ONPREM_HINT = re.compile(r"(^|[.-])(mail|owa|exchange|exch\d*|cas|webmail|hybrid|ex\d+)([.-]|$)")


def _host(record: str) -> str:
    return record.strip().rstrip(".").lower()


def _domain_missing(check: Check, domain: str, answer: DnsAnswer) -> Finding:
    return check.finding(
        Status.FAIL,
        f"The domain {domain} does not exist in DNS.",
        detail="The DNS answered NXDOMAIN: no record of any kind exists for this name, so no "
        "mail app can find a server for it.",
        evidence={"name": answer.name, "rcode": answer.rcode, "problem": "domain-not-found"},
        next_steps=[
            f"Check the spelling of the address (the part after the @: {domain}).",
            f"If it is spelled right, ask whoever registered {domain} whether it is still "
            "registered and has working DNS.",
        ],
    )


def _dns_error(
    check: Check, exc: DnsError, domain: str, evidence: dict[str, Any] | None = None
) -> Finding:
    why = explain(exc, host=exc.name)
    return why.finding(
        check,
        summary=f"mailfix could not read the DNS of {domain}: {why.summary}",
        evidence=evidence,
    )


# --- dns.mx -----------------------------------------------------------------------------------


async def _mx(ctx: CheckContext) -> Finding:
    check = MX
    domain = ctx.address.domain
    try:
        answer = await ctx.net.query(domain, "MX")
    except DnsError as exc:
        return _dns_error(check, exc, domain)
    if not answer.exists:
        return _domain_missing(check, domain, answer)
    mx: list[tuple[int, str]] = []
    for record in answer.records:
        pref, _, host = record.strip().partition(" ")
        mx.append((int(pref) if pref.isdigit() else 0, _host(host)))
    mx.sort()
    evidence: dict[str, Any] = {"mx": [f"{p} {h or '.'}" for p, h in mx]}
    exo_example = f"{domain.replace('.', '-')}{ctx.cloud.mx_suffixes[0]}"
    add_step = (
        f"Ask whoever runs DNS for {domain} to add the MX record shown in the Microsoft 365 "
        f"admin center (Settings → Domains → {domain}), usually {exo_example}."
    )
    if not mx:
        return check.finding(
            Status.FAIL,
            f"{domain} has no MX record, so mail sent to it cannot be delivered.",
            evidence={**evidence, "problem": "mx-missing"},
            next_steps=[add_step],
        )
    if any(not h for _, h in mx):
        # RFC 7505 null MX ("0 ."): the domain says it accepts no mail at all.
        return check.finding(
            Status.FAIL,
            f"{domain} publishes a null MX record: it declares that it accepts no mail.",
            evidence={**evidence, "problem": "mx-missing"},
            next_steps=[f"Ask whoever runs DNS for {domain} to replace it: {add_step}"],
        )
    elsewhere = [h for _, h in mx if not h.endswith(ctx.cloud.mx_suffixes)]
    if not elsewhere:
        return check.finding(
            Status.PASS,
            f"Mail for {domain} is routed to Exchange Online ({mx[0][1]}).",
            evidence=evidence,
        )
    evidence.update(elsewhere=elsewhere, problem="mx-not-exchange-online")
    some = "All" if len(elsewhere) == len(mx) else "Some"
    return check.finding(
        Status.WARN,
        f"{some} MX records of {domain} point outside Exchange Online "
        f"({', '.join(elsewhere[:3])}), so incoming mail may bypass it.",
        detail="This is expected when a mail filtering service (a secure mail gateway) sits in "
        "front of Exchange Online, or during a migration; otherwise mail is going to an old "
        "server. It does not stop a mail app from signing in, only where new mail arrives.",
        evidence=evidence,
        next_steps=[
            f"Ask the mail administrator whether {', '.join(elsewhere[:3])} is a filtering "
            "service or an old server.",
            f"If it is an old server: {add_step}, and remove the old MX records.",
        ],
    )


# --- dns.autodiscover -------------------------------------------------------------------------


async def _cname_chain(
    ctx: CheckContext, name: str, expected: str
) -> tuple[list[str], DnsError | None]:
    """The CNAME targets starting at `name`, in order (bounded, loop-safe), and the DnsError
    that cut the walk short, if one did (the chain is then what was read before it).

    The walk ends at `expected`: where that name points next is Microsoft's business, and a
    failed lookup there must not turn a correct record into an `error`.
    """
    chain: list[str] = []
    current = name
    for _ in range(MAX_CNAME_HOPS):
        try:
            answer = await ctx.net.query(current, "CNAME")
        except DnsError as exc:
            return chain, exc
        targets = [_host(r) for r in answer.records] if answer.exists else []
        if not targets or targets[0] in chain or targets[0] == name:
            break
        chain.append(targets[0])
        if targets[0] == expected:
            break
        current = targets[0]
    return chain, None


async def _addresses(ctx: CheckContext, name: str) -> tuple[bool, list[str]]:
    """(name exists, its A and AAAA records). With A records in hand, a failed AAAA lookup
    (a server that drops AAAA queries) is ignored, as the seam's resolve() does."""
    a = await ctx.net.query(name, "A")
    if not a.exists:
        return False, []
    try:
        aaaa = await ctx.net.query(name, "AAAA")
    except DnsError:
        if not a.records:
            raise
        return True, list(a.records)
    return True, [*a.records, *(aaaa.records if aaaa.exists else [])]


async def _autodiscover(ctx: CheckContext) -> Finding:
    check = AUTODISCOVER
    domain = ctx.address.domain
    name = f"autodiscover.{domain}"
    expected = ctx.cloud.autodiscover_cname.lower()
    add_step = (
        f"Ask whoever runs DNS for {domain} to add CNAME autodiscover → {expected} "
        "(if the organisation is hybrid, it must point to the on-premises Exchange server "
        "instead; check with the mail administrator first)."
    )
    chain, failed = await _cname_chain(ctx, name, expected)
    if expected in chain:
        return check.finding(
            Status.PASS,
            f"{name} is a CNAME to {expected}, as Microsoft 365 expects.",
            evidence={"name": name, "cname_chain": chain},
        )
    if failed is not None:
        return _dns_error(check, failed, domain, {"name": name, "cname_chain": chain})
    try:
        final = chain[-1] if chain else name
        exists, addresses = await _addresses(ctx, final)
    except DnsError as exc:
        return _dns_error(check, exc, domain)
    evidence: dict[str, Any] = {"name": name, "cname_chain": chain, "addresses": addresses[:10]}
    if not chain and not addresses:
        return check.finding(
            Status.FAIL,
            f"{name} has no DNS record, so Outlook and phones cannot find the mailbox settings.",
            detail='Without it Outlook shows "An encrypted connection to your mail services is '
            'not available" or keeps asking for a password; most often the record was never '
            "added, or was lost in a DNS change.",
            evidence={**evidence, "problem": "autodiscover-dns-missing"},
            next_steps=[add_step],
        )
    if not addresses:
        return check.finding(
            Status.FAIL,
            f"{name} points to {final}, which {'has no address' if exists else 'does not exist'}"
            ", so Autodiscover cannot work.",
            evidence={**evidence, "problem": "autodiscover-dns-missing"},
            next_steps=[f"Ask whoever runs DNS for {domain} to replace that record: {add_step}"],
        )
    target = chain[0] if chain else ", ".join(addresses[:3])
    looks_onprem = bool(chain and _ONPREM_HINT.search(final)) or not chain
    microsoft_other = [h for h in chain if _is_microsoft(h)]
    if microsoft_other:
        reading = (
            f"It points to another Microsoft name ({microsoft_other[0]}), not the documented "
            f"{expected}: probably a stale or mistyped record, or one for another Microsoft cloud."
        )
    elif looks_onprem:
        reading = (
            "That looks like an on-premises Exchange server: normal while the organisation is "
            "hybrid (mailboxes still on-premises or being migrated), stale once every mailbox is "
            "in Exchange Online."
        )
    else:
        reading = (
            "That does not look like Exchange: probably a stale record or a web host; Outlook "
            "may then find the wrong server or show certificate warnings."
        )
    return check.finding(
        Status.WARN,
        f"{name} resolves, but to {target} instead of {expected}.",
        detail=reading,
        evidence={
            **evidence,
            "looks_on_premises": looks_onprem and not microsoft_other,
            "problem": "autodiscover-dns-elsewhere",
        },
        next_steps=[
            "Ask the mail administrator whether any mailboxes are still on an on-premises "
            "Exchange server (hybrid). If yes, this record is right.",
            f"If every mailbox is in Exchange Online: ask whoever runs DNS for {domain} to change "
            f"it to CNAME autodiscover → {expected}.",
        ],
    )


def _is_microsoft(host: str) -> bool:
    return host.endswith(
        (".outlook.com", ".office365.com", ".office365.us", ".outlook.cn", ".microsoft.com")
    )


# --- dns.spf ----------------------------------------------------------------------------------


def _spf_records(records: list[str]) -> list[str]:
    out = []
    for text in records:
        t = text.strip()
        if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 "):
            out.append(t)
    return out


def _spf_targets(record: str) -> tuple[set[str], list[str]]:
    """(hosts named by include: in `record`, names to follow: include: and redirect=)."""
    includes: set[str] = set()
    follow: list[str] = []
    for term in record.split()[1:]:
        lower = term.lower().lstrip("+-~?")
        if lower.startswith("include:"):
            host = _host(lower[len("include:") :])
            includes.add(host)
            follow.append(host)
        elif lower.startswith("redirect="):
            follow.append(_host(lower[len("redirect=") :]))
    return includes, follow


async def _spf_txt(ctx: CheckContext, name: str) -> list[str] | None:
    """The TXT records of `name` (none when it does not exist); None when the lookup failed."""
    try:
        answer = await ctx.net.query(name, "TXT")
    except DnsError:
        return None
    return answer.records if answer.exists else []


async def _spf_includes(
    ctx: CheckContext, record: str, wanted: str, budget: float
) -> tuple[str | None, list[str]]:
    """(the chain of names through which `record` includes `wanted`, or None if it does not;
    the names whose lookup failed or did not finish within `budget` seconds).

    Breadth-first, the lookups of one level concurrently, at most SPF_MAX_LOOKUPS in all.
    """
    includes, follow = _spf_targets(record)
    if wanted in includes:
        return "directly", []
    level = [(name, name) for name in follow if "%" not in name]  # no macro expansion
    seen: set[str] = set()
    failed: list[str] = []
    lookups = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    while level and lookups < SPF_MAX_LOOKUPS:
        batch: list[tuple[str, str]] = []
        for name, via in level:
            if name not in seen and lookups + len(batch) < SPF_MAX_LOOKUPS:
                seen.add(name)
                batch.append((name, via))
        lookups += len(batch)
        tasks = [(loop.create_task(_spf_txt(ctx, name)), name, via) for name, via in batch]
        remaining = deadline - loop.time()
        done: set[asyncio.Task[list[str] | None]] = set()
        if tasks and remaining > 0:
            done, _ = await asyncio.wait([t for t, _, _ in tasks], timeout=remaining)
        level = []
        for task, name, via in tasks:
            if task not in done:
                task.cancel()  # out of time: what it would say stays unknown
                failed.append(name)
                continue
            records = task.result()
            if records is None:
                failed.append(name)
                continue
            for nested in _spf_records(records)[:1]:
                inc, more = _spf_targets(nested)
                if wanted in inc:
                    for other, _, _ in tasks:
                        other.cancel()
                    return f"through {via}", failed
                level.extend((n, via) for n in more if "%" not in n)
        if len(done) < len(tasks):
            break
    return None, failed


async def _spf(ctx: CheckContext) -> Finding:
    check = SPF
    domain = ctx.address.domain
    wanted = ctx.cloud.spf_include.lower()
    good = f"v=spf1 include:{wanted} -all"
    started = asyncio.get_running_loop().time()
    try:
        answer = await ctx.net.query(domain, "TXT")
    except DnsError as exc:
        return _dns_error(check, exc, domain)
    if not answer.exists:
        return _domain_missing(check, domain, answer)
    spf = _spf_records(answer.records)
    evidence: dict[str, Any] = {"spf": spf}
    if not spf:
        return check.finding(
            Status.FAIL,
            f"{domain} has no SPF record, so mail it sends may be marked as spam.",
            evidence={**evidence, "problem": "spf-missing"},
            next_steps=[f'Ask whoever runs DNS for {domain} to add the TXT record "{good}".'],
        )
    if len(spf) > 1:
        return check.finding(
            Status.FAIL,
            f"{domain} has {len(spf)} SPF records; receivers treat that as an error, so mail it "
            "sends may be rejected or marked as spam.",
            detail="RFC 7208 §4.5: more than one v=spf1 record is a permanent error.",
            evidence={**evidence, "problem": "spf-multiple"},
            next_steps=[
                f"Ask whoever runs DNS for {domain} to merge them into one TXT record that "
                f"includes {wanted} and every other service that sends mail for {domain}."
            ],
        )
    elapsed = asyncio.get_running_loop().time() - started
    budget = max(0.0, check.timeout - SPF_WALK_MARGIN - elapsed)
    via, failed = await _spf_includes(ctx, spf[0], wanted, budget)
    if via is not None:
        return check.finding(
            Status.PASS,
            f"{domain} has one SPF record and it includes {wanted}.",
            detail=f"Included {via}.",
            evidence={**evidence, "included": via},
        )
    if failed:
        names = ", ".join(failed[:3]) + (" …" if len(failed) > 3 else "")
        return check.finding(
            Status.WARN,
            f"mailfix could not verify whether the SPF record of {domain} includes {wanted}: "
            f"the DNS lookup of {names} failed.",
            detail="The record does not include it directly, and the names it includes could "
            "not all be read, so it may still be included through one of them.",
            evidence={**evidence, "unverified_includes": failed, "problem": "spf-unverified"},
            next_steps=[
                "Run the diagnosis again in a minute.",
                f"If it keeps failing, ask whoever runs DNS for {domain} to check that the SPF "
                f"record includes {wanted} (directly or through one of its includes) and that "
                f"every name it includes answers ({names}).",
            ],
        )
    return check.finding(
        Status.WARN,
        f"The SPF record of {domain} does not include {wanted}, so mail sent through Exchange "
        "Online may be marked as spam.",
        evidence={**evidence, "problem": "spf-no-exchange-online"},
        next_steps=[
            f"Ask whoever runs DNS for {domain} to add include:{wanted} to the existing SPF "
            "record (keep one record; do not add a second)."
        ],
    )


MX = Check("dns.mx", "MX records", Side.DNS, EVERY_CLIENT, _mx, timeout=10.0)
AUTODISCOVER = Check(
    "dns.autodiscover",
    "Autodiscover DNS record",
    Side.DNS,
    EVERY_CLIENT,
    _autodiscover,
    timeout=10.0,
)
SPF = Check("dns.spf", "SPF record", Side.DNS, EVERY_CLIENT, _spf, timeout=10.0)

CHECKS: tuple[Check, ...] = (MX, AUTODISCOVER, SPF)
