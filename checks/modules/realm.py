"""Is the domain in Microsoft 365, and if it signs in through AD FS, is AD FS healthy?

Home-realm discovery (GetUserRealm, exchange-online-diagnostics.md §4.1) tells Managed /
Federated / Unknown. For Federated we read the AD FS federation metadata (§4.2) over verified
TLS and the token-signing certificates in it (§4.3: every KeyDescriptor use="signing"; warn
inside 30 days). The RCA's federated-user failures we mirror: metadata unreachable, HTTP 503
(AD FS / WAP down), TLS certificate problems, expired token-signing certificate (§1.3).

`user_realm(ctx)` is shared: any check may call it; GetUserRealm runs once per diagnosis.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from checks.models import Finding, Side, Status, Step
from checks.modules._explain import explain
from checks.modules._xml import XmlRejected, children, local, parse_xml
from checks.net.errors import DnsError, NetError, ProtocolViolation
from checks.spec import EVERY_CLIENT, Check, CheckContext

NamespaceType = Literal["Managed", "Federated", "Unknown"]

EXPIRY_WARNING_DAYS = 30  # §4.3
MAX_REALM_BYTES = 64 * 1024
MAX_METADATA_BYTES = 1024 * 1024
METADATA_PATH = "/FederationMetadata/2007-06/FederationMetadata.xml"  # §4.2
_NAMESPACE_TYPES: dict[str, NamespaceType] = {
    "managed": "Managed",
    "federated": "Federated",
    "unknown": "Unknown",
}
# GetUserRealm on the worldwide login host names the cloud a tenant lives in (§4.1
# CloudInstanceName): "microsoftonline.us" there means a US Government tenant, which the
# worldwide hosts do not serve. Only this direction is flagged: what the sovereign login hosts
# answer for CloudInstanceName is not in our sources.
_WORLDWIDE_LOGIN = "login.microsoftonline.com"
_US_GOVERNMENT_INSTANCE = "microsoftonline.us"


@dataclass(frozen=True)
class RealmInfo:
    """What GetUserRealm says about the address's domain."""

    namespace_type: NamespaceType
    login: str | None = None
    domain_name: str | None = None
    federation_brand_name: str | None = None
    cloud_instance_name: str | None = None
    auth_url: str | None = None  # passive sign-in (AD FS /adfs/ls/…)
    sts_auth_url: str | None = None  # active WS-Trust endpoint (XML form only)
    mex_url: str | None = None  # WS-MetadataExchange (XML form only)
    source: Literal["xml", "json"] = "xml"

    @property
    def federated(self) -> bool:
        return self.namespace_type == "Federated"

    @property
    def sts_host(self) -> str | None:
        """The federation server's host name, from the first usable https URL."""
        for url in (self.sts_auth_url, self.auth_url, self.mex_url):
            if not url:
                continue
            try:
                parts = urlsplit(url)
            except ValueError:
                continue
            if parts.scheme.lower() == "https" and parts.hostname:
                return parts.hostname.lower()
        return None

    def evidence(self) -> dict[str, Any]:
        fields = {
            "namespace_type": self.namespace_type,
            "domain_name": self.domain_name,
            "federation_brand_name": self.federation_brand_name,
            "cloud_instance_name": self.cloud_instance_name,
            "sts_host": self.sts_host,
        }
        return {k: v for k, v in fields.items() if v is not None}


def parse_realm(body: bytes) -> RealmInfo:
    """GetUserRealm's XML (`&xml=1`) or JSON answer. Raises ValueError on anything else."""
    stripped = body.lstrip()
    if stripped.startswith(b"{"):
        return _realm_from_json(stripped)
    root = parse_xml(body, max_bytes=MAX_REALM_BYTES)
    if local(root.tag) != "RealmInfo":
        raise ValueError(f"XML, but <{local(root.tag)[:40]}> instead of <RealmInfo>")
    values = {local(el.tag): (el.text or "").strip() for el in root}
    return _realm(values, "xml")


def _realm_from_json(body: bytes) -> RealmInfo:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ValueError("not valid JSON") from exc
    if not isinstance(data, dict):
        raise ValueError("JSON, but not an object")
    return _realm({k: v if isinstance(v, str) else "" for k, v in data.items()}, "json")


def _realm(values: dict[str, str], source: Literal["xml", "json"]) -> RealmInfo:
    raw = values.get("NameSpaceType", "")
    kind = _NAMESPACE_TYPES.get(raw.lower())
    if kind is None:
        raise ValueError(f"NameSpaceType {raw[:40]!r} is not Managed, Federated or Unknown")
    return RealmInfo(
        namespace_type=kind,
        login=values.get("Login") or None,
        domain_name=values.get("DomainName") or None,
        federation_brand_name=values.get("FederationBrandName") or None,
        cloud_instance_name=values.get("CloudInstanceName") or None,
        auth_url=values.get("AuthURL") or None,
        sts_auth_url=values.get("STSAuthURL") or None,
        mex_url=values.get("MEXURL") or None,
        source=source,
    )


async def user_realm(ctx: CheckContext) -> RealmInfo:
    """GetUserRealm for the diagnosis's address, once per diagnosis (memo key "realm").

    Raises NetError: the seam's own errors, or ProtocolViolation when login.* answered with
    something that is not a RealmInfo (an HTTP error status, garbage).
    """

    async def ask(url: str) -> RealmInfo:
        resp = await ctx.net.request("GET", url, max_body=MAX_REALM_BYTES)
        if resp.status != 200:
            raise ProtocolViolation(f"GetUserRealm answered HTTP {resp.status}", host=host)
        try:
            return parse_realm(resp.body)
        except ValueError as exc:  # XmlRejected is a ValueError too
            raise ProtocolViolation(f"GetUserRealm answered garbage: {exc}", host=host) from exc

    async def fetch() -> RealmInfo:
        url = f"https://{host}/getuserrealm.srf?login={login}"
        # The XML form carries the active STS and MEX URLs (§4.1); JSON is the endpoint's
        # default form, asked for only when the XML one is refused or unreadable.
        try:
            return await ask(url + "&xml=1")
        except ProtocolViolation as first:
            try:
                return await ask(url)
            except ProtocolViolation:
                raise first from None

    host = ctx.cloud.login
    login = quote(ctx.address.address, safe="@")
    return await ctx.memo("realm", fetch)


# --- token-signing certificates ---------------------------------------------------------------


@dataclass(frozen=True)
class SigningCert:
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    sha256: str

    def days_left(self, now: datetime) -> int:
        return (self.not_after - now).days

    def state(self, now: datetime) -> str:
        if self.not_after <= now:
            return "expired"
        if self.not_before > now:
            return "not-yet-valid"
        if self.days_left(now) < EXPIRY_WARNING_DAYS:
            return "expiring"
        return "valid"

    def evidence(self, now: datetime) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "days_left": self.days_left(now),
            "state": self.state(now),
            "sha256": self.sha256,
        }


def signing_certificates(body: bytes) -> tuple[list[SigningCert], int]:
    """Token-signing certificates in federation metadata (deduplicated) and how many were
    unreadable. Raises ValueError if `body` is not an EntityDescriptor."""
    root = parse_xml(body, max_bytes=MAX_METADATA_BYTES)
    if local(root.tag) not in {"EntityDescriptor", "EntitiesDescriptor"}:
        raise ValueError(f"XML, but <{local(root.tag)[:40]}> instead of <EntityDescriptor>")
    found: dict[str, SigningCert] = {}
    unreadable = 0
    for key in children(root, "KeyDescriptor"):
        # SAML metadata §2.4.1.1: no `use` means the key serves both signing and encryption.
        if key.get("use", "signing") != "signing":
            continue
        for el in children(key, "X509Certificate"):
            try:
                der = base64.b64decode("".join((el.text or "").split()), validate=True)
                cert = _signing_cert(der)
            except Exception:  # hostile metadata: cryptography raises more than ValueError
                unreadable += 1
                continue
            found.setdefault(cert.sha256, cert)
    return list(found.values()), unreadable


def _signing_cert(der: bytes) -> SigningCert:
    cert = x509.load_der_x509_certificate(der)
    return SigningCert(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


# --- the check --------------------------------------------------------------------------------


async def _federation(ctx: CheckContext) -> Finding:
    domain = ctx.address.domain
    login_host = ctx.cloud.login
    realm_step = f"GetUserRealm on {login_host}"
    try:
        realm = await user_realm(ctx)
    except NetError as exc:
        why = explain(
            exc,
            host=login_host,
            port=443,
            service="home-realm discovery",
            microsoft=True,
            status=Status.ERROR,
        )
        return why.finding(
            FEDERATION,
            summary=f"mailfix could not ask Microsoft how {domain} signs in: {why.summary}",
            steps=[why.step(realm_step)],
        )
    evidence = realm.evidence()
    steps = [Step(name=realm_step, status=Status.PASS, detail=realm.namespace_type)]
    if realm.namespace_type == "Unknown":
        steps[0] = Step(name=realm_step, status=Status.FAIL, detail="Unknown")
        return FEDERATION.finding(
            Status.FAIL,
            f"Microsoft 365 does not know the domain {domain}.",
            detail="GetUserRealm answered NameSpaceType Unknown: no Microsoft 365 organisation "
            "has added and verified this domain, so no mailbox can have an address in it.",
            evidence={**evidence, "problem": "domain-not-in-m365"},
            next_steps=[
                f"Check the spelling of the address (the part after the @: {domain}).",
                f"Ask a Microsoft 365 administrator whether {domain} is listed and verified in "
                "the admin center under Settings → Domains; if not, add and verify it.",
            ],
            steps=steps,
        )
    instance = (realm.cloud_instance_name or "").lower()
    if login_host == _WORLDWIDE_LOGIN and instance == _US_GOVERNMENT_INSTANCE:
        return FEDERATION.finding(
            Status.WARN,
            f"{domain} belongs to a Microsoft 365 organisation in the US Government cloud "
            f"({instance}), but mailfix is set up for the worldwide cloud.",
            evidence={**evidence, "problem": "other-cloud"},
            next_steps=[
                "An administrator sets MAILFIX_CLOUD to the organisation's cloud (gcchigh or "
                "dod) and runs the diagnosis again.",
            ],
            steps=steps,
        )
    if not realm.federated:
        return FEDERATION.finding(
            Status.PASS,
            f"{domain} is in Microsoft 365 and signs in directly with Microsoft (managed).",
            evidence=evidence,
            steps=steps,
        )
    return await _check_adfs(ctx, realm, evidence, steps)


async def _check_adfs(
    ctx: CheckContext, realm: RealmInfo, evidence: dict[str, Any], steps: list[Step]
) -> Finding:
    domain = ctx.address.domain
    sts = realm.sts_host
    brand = realm.federation_brand_name or domain
    if sts is None:
        steps.append(Step(name="Find the AD FS server", status=Status.ERROR))
        return FEDERATION.finding(
            Status.ERROR,
            f"{domain} signs in through its own federation server, but Microsoft lists no "
            "https address for it.",
            evidence={**evidence, "problem": "adfs-unreachable"},
            next_steps=[
                "An administrator checks the domain's federation settings in Microsoft Entra "
                "(the sign-in and metadata addresses)."
            ],
            steps=steps,
        )
    steps.append(Step(name="Find the AD FS server", status=Status.PASS, detail=sts))
    url = f"https://{sts}{METADATA_PATH}"
    evidence["metadata_url"] = url
    fetch_step = f"Fetch {url}"
    admin_fix = (
        f"Ask the administrator of {brand}'s AD FS servers (and the Web Application Proxy in "
        "front of them) to check they are running and reachable from the internet on port 443."
    )
    try:
        resp = await ctx.net.request("GET", url, max_body=MAX_METADATA_BYTES)
    except NetError as exc:
        why = explain(exc, host=sts, port=443, service="the AD FS server")
        steps.append(why.step(fetch_step))
        if isinstance(exc, DnsError) and why.status is Status.ERROR:
            # Our own resolver failed (timeout, SERVFAIL …): nothing is known about AD FS, so
            # the problem stays explain()'s dns-* code, which the diagnosis reads as dns-failure.
            return why.finding(
                FEDERATION,
                summary=f"mailfix could not look up {domain}'s AD FS server {sts}: {why.summary}",
                evidence={**evidence, "network_problem": why.problem},
                steps=steps,
            )
        is_cert = why.stage == "tls" and why.problem.startswith("certificate")
        return why.finding(
            FEDERATION,
            summary=f"{domain} signs in through AD FS at {sts}, which cannot be reached "
            f"securely: {why.summary}",
            evidence={
                **evidence,
                "network_problem": why.problem,
                "problem": "adfs-certificate-invalid" if is_cert else "adfs-unreachable",
            },
            next_steps=() if is_cert else (admin_fix,),
            steps=steps,
        )
    evidence["http_status"] = resp.status
    if resp.cert is not None:
        evidence["tls_certificate"] = resp.cert.evidence()
    if resp.status == 404:
        steps.append(Step(name=fetch_step, status=Status.ERROR, detail="HTTP 404"))
        return FEDERATION.finding(
            Status.ERROR,
            f"{sts} does not publish AD FS federation metadata, so mailfix cannot check its "
            "token-signing certificate.",
            detail="If the identity provider is not AD FS (Okta, Ping, …), that is expected; if "
            "it is AD FS, its metadata endpoint is turned off.",
            evidence={**evidence, "problem": "adfs-metadata-not-found"},
            next_steps=[
                f"Ask the administrator of {brand}'s sign-in service to check its token-signing "
                "certificate's expiry date in its own console.",
            ],
            steps=steps,
        )
    if resp.status != 200:
        down = resp.status == 503
        steps.append(Step(name=fetch_step, status=Status.FAIL, detail=f"HTTP {resp.status}"))
        return FEDERATION.finding(
            Status.FAIL,
            f"AD FS at {sts} is down or unreachable (HTTP 503), so federated sign-in to "
            f"{domain} fails."
            if down
            else f"AD FS at {sts} answered HTTP {resp.status} instead of its federation metadata.",
            detail="HTTP 503 means AD FS or the Web Application Proxy in front of it is not "
            "serving requests."
            if down
            else "",
            evidence={**evidence, "problem": "adfs-unreachable"},
            next_steps=[admin_fix],
            steps=steps,
        )
    try:
        certs, unreadable = signing_certificates(resp.body)
    except (XmlRejected, ValueError) as exc:
        steps.append(Step(name=fetch_step, status=Status.FAIL, detail=str(exc)[:200]))
        return FEDERATION.finding(
            Status.FAIL,
            f"{sts} answered, but not with AD FS federation metadata ({str(exc)[:80]}).",
            detail="Often a proxy or a web page answering in AD FS's place.",
            evidence={**evidence, "problem": "adfs-metadata-invalid"},
            next_steps=[admin_fix],
            steps=steps,
        )
    steps.append(Step(name=fetch_step, status=Status.PASS, detail="HTTP 200"))
    return _judge_certs(
        domain=domain,
        sts=sts,
        brand=brand,
        certs=certs,
        unreadable=unreadable,
        evidence=evidence,
        steps=steps,
    )


def _judge_certs(
    *,
    domain: str,
    sts: str,
    brand: str,
    certs: list[SigningCert],
    unreadable: int,
    evidence: dict[str, Any],
    steps: list[Step],
) -> Finding:
    now = datetime.now(UTC)
    certs = sorted(certs, key=lambda c: c.not_after)
    evidence = {
        **evidence,
        "signing_certificates": [c.evidence(now) for c in certs[:10]],
        "unreadable_certificates": unreadable,
    }
    cert_step = "Token-signing certificates"
    renew = (
        f"Ask the administrator of {brand}'s AD FS to renew the token-signing certificate and "
        'update the federation trust with Microsoft 365 (Microsoft Entra Connect → "Manage '
        'federation", or Update-MgDomainFederationConfiguration).'
    )
    valid = [c for c in certs if c.state(now) in {"valid", "expiring"}]
    if not valid:
        expired = any(c.state(now) == "expired" for c in certs)
        detail = (
            "expired " + ", ".join(f"{c.not_after:%Y-%m-%d}" for c in certs)
            if certs
            else "none readable"
        )
        steps.append(Step(name=cert_step, status=Status.FAIL, detail=detail))
        summary = (
            f"The AD FS token-signing certificate of {domain} has expired, so federated sign-in "
            "fails."
            if expired
            else f"AD FS at {sts} publishes no valid token-signing certificate, so federated "
            "sign-in fails."
        )
        return FEDERATION.finding(
            Status.FAIL,
            summary,
            evidence={
                **evidence,
                "problem": "adfs-token-signing-expired" if expired else "adfs-metadata-invalid",
            },
            next_steps=[renew],
            steps=steps,
        )
    worrying = [c for c in certs if c.state(now) in {"expired", "expiring"}]
    if worrying:
        first = worrying[0]
        newest = max(valid, key=lambda c: c.not_after)
        if first.state(now) == "expired":
            summary = (
                f"AD FS at {sts} still publishes an expired token-signing certificate "
                f"(expired {first.not_after:%Y-%m-%d})."
            )
        else:
            summary = (
                f"The AD FS token-signing certificate of {domain} expires in "
                f"{first.days_left(now)} days ({first.not_after:%Y-%m-%d})."
            )
        newer = newest is not first and newest.state(now) == "valid"
        detail = (
            f"A newer certificate valid until {newest.not_after:%Y-%m-%d} is also published: "
            "sign-in keeps working only if Microsoft 365 trusts it too."
            if newer
            else "When it expires, every federated sign-in fails until the trust is updated."
        )
        steps.append(Step(name=cert_step, status=Status.WARN, detail=summary))
        return FEDERATION.finding(
            Status.WARN,
            summary,
            detail=detail,
            evidence={**evidence, "problem": "adfs-token-signing-expiring"},
            next_steps=[
                f"Ask the administrator of {brand}'s AD FS to make sure the new token-signing "
                "certificate is in place and Microsoft 365's federation trust is updated with it "
                "before the old one expires.",
            ],
            steps=steps,
        )
    until = min(c.not_after for c in valid)
    steps.append(Step(name=cert_step, status=Status.PASS, detail=f"valid until {until:%Y-%m-%d}"))
    return FEDERATION.finding(
        Status.PASS,
        f"{domain} signs in through AD FS at {sts}, which is reachable and whose token-signing "
        f"certificate is valid until {until:%Y-%m-%d}.",
        evidence=evidence,
        steps=steps,
    )


FEDERATION = Check(
    "realm.federation",
    "Microsoft 365 domain and sign-in (federation)",
    Side.IDENTITY,
    EVERY_CLIENT,
    _federation,
    timeout=20.0,
)

CHECKS: tuple[Check, ...] = (FEDERATION,)
