"""Autodiscover: the POX discovery Outlook and phones do (v1), and the JSON endpoint (v2).

autodiscover.v1 follows reference/exchange-online-diagnostics.md §2.1 (generic order, the
rules on redirects and certificates) and §1.3 (what the Remote Connectivity Analyzer shows):

    1. https://<domain>/autodiscover/autodiscover.xml               (root domain)
    2. https://autodiscover.<domain>/autodiscover/autodiscover.xml
    3. GET http://autodiscover.<domain>/autodiscover/autodiscover.xml -> 302 to HTTPS, POST there
    4. SRV _autodiscover._tcp.<domain> (port 443 only, best priority/weight) -> POST to the target

Outlook tries these one after the other; we race them and rebuild Outlook's order afterwards, so
the wall time is the slowest method we actually need, not their sum (DESIGN.md "Targets"). When a
later method has already worked, an earlier one still pending is waited for only if its server
answers: once it answers our TLS ClientHello (the POST's own handshake completes), it gets to
finish within the check's budget, because its answer decides what Outlook meets first (a slow
website hijacking Autodiscover, KB 3049615). One still silent (no SYN-ACK, no handshake: a black
hole) is recorded as abandoned once it has been silent for a short grace, counted from when it
started waiting: Outlook would have waited there, but the answer no longer changes.

Failures of individual methods inside an overall success are normal (§1.1): for Office 365 the
HTTPS methods fail and the HTTP redirect to autodiscover-s.outlook.com works. The trace marks
those as expected instead of hiding them.

autodiscover.v2 asks the unauthenticated JSON endpoint (§2.7) for the client's protocols.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from checks.address import InvalidAddress, parse_address
from checks.cloud import CloudHosts
from checks.models import Client, Finding, Side, Status, Step
from checks.modules import _pox
from checks.modules._explain import explain
from checks.net.errors import (
    BlockedAddress,
    CertificateInvalid,
    ConnectFailed,
    DnsError,
    NetError,
    NetTimeout,
    ProtocolViolation,
    ResponseTooLarge,
    TlsFailed,
)
from checks.net.seam import MAX_REDIRECTS
from checks.net.types import CertInfo, HttpResponse
from checks.spec import Check, CheckContext

GRACE = 0.3  # seconds of silence after which an earlier method is given up once a later one worked
_MARGIN = 1.0  # seconds kept back from the check's timeout to write the finding
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
EXPECTED_O365 = "Expected for Office 365: "
ABANDONED = "no answer (abandoned: a later method succeeded; Outlook would wait here first)"
UNFINISHED = (
    "its server answers, but did not finish before the check's time ran out "
    "(abandoned: a later method succeeded; Outlook would wait here first)"
)

# Names Microsoft runs. A certificate problem on one of these is not the customer's to fix: a
# Microsoft certificate without the customer's name is the normal Office 365 picture (method 2
# through the autodiscover CNAME), an untrusted one points at TLS inspection on the way.
_MICROSOFT_SUFFIXES = (
    "outlook.com",
    "office365.com",
    "office.com",
    "microsoft.com",
    "microsoftonline.com",
    "office365.us",
    "outlook.cn",
)


def _sentence(text: str) -> str:
    """One sentence with exactly one closing full stop (findings' summaries end with one)."""
    text = " ".join(text.split()).rstrip(".")
    return f"{text}."


def _under(name: str, suffix: str) -> bool:
    name, suffix = name.lower().rstrip("."), suffix.lower().rstrip(".")
    return name == suffix or name.endswith("." + suffix)


def microsoft_host(name: str, cloud: CloudHosts) -> bool:
    """True when `name` is a host Microsoft runs (any cloud), by name alone."""
    own = (cloud.autodiscover_cname, cloud.autodiscover_pox, cloud.exo, cloud.login)
    return any(_under(name, s) for s in (*own, *_MICROSOFT_SUFFIXES))


# --------------------------------------------------------------------------------------------
# autodiscover.v1
# --------------------------------------------------------------------------------------------


class Outcome(StrEnum):
    WORKS = "works"  # a genuine endpoint: 401 with a challenge, or settings
    POX_ERROR = "pox-error"  # a genuine endpoint that answered with a POX <Error>
    REDIRECT_ADDR = "redirect-addr"  # restart the whole discovery with another address
    FAILED = "failed"  # Outlook goes on to the next method
    ABANDONED = "abandoned"  # still silent when a later method had worked (+ grace)
    TIMED_OUT = "timed-out"  # still silent when the check's time ran out
    NOT_NEEDED = "not-needed"  # after the method Outlook stops at


class Fail(StrEnum):
    """Why a method failed. Only some of these matter beyond "Outlook tries the next one"."""

    DNS_MISSING = "dns-missing"  # the name does not exist / has no address
    DNS_ERROR = "dns-error"  # our resolver failed: we cannot tell
    BLOCKED = "blocked"  # the address guard refused every address
    REFUSED = "refused"  # nothing listening
    NO_ANSWER = "no-answer"  # connect or read timed out
    TLS = "tls"  # handshake failed (not the certificate)
    CERT_MICROSOFT_NAME = "cert-microsoft-name"  # Microsoft certificate, not the customer's name
    CERT_MICROSOFT = "cert-microsoft"  # Microsoft host, untrusted/expired certificate
    CERT_CUSTOMER = "cert-customer"  # a host the customer runs: bad certificate
    HTTP_STATUS = "http-status"  # any other HTTP status
    NO_CHALLENGE = "no-challenge"  # 401 without WWW-Authenticate
    HIJACK = "hijack"  # a non-Exchange server answers Autodiscover (IMAP/POP settings)
    NOT_AUTODISCOVER = "not-autodiscover"  # 200 that is no Autodiscover answer (soft 404)
    BAD_REDIRECT = "bad-redirect"  # redirect without Location, or to plain HTTP
    TOO_MANY_REDIRECTS = "too-many-redirects"
    GARBAGE = "garbage"  # not HTTP / oversized
    NO_SRV = "no-srv"  # no usable SRV record
    OTHER = "other"


# Failures that are part of the normal Office 365 picture when a later method works (§1.1).
_BENIGN = frozenset(
    {
        Fail.DNS_MISSING,
        Fail.REFUSED,
        Fail.NO_ANSWER,
        Fail.CERT_MICROSOFT_NAME,
        Fail.HTTP_STATUS,
        Fail.NO_CHALLENGE,
        Fail.NO_SRV,
    }
)
# Failures a client shows the person before a later method works: warn (§1.3, KB 3049615).
_SURFACED = frozenset({Fail.HIJACK, Fail.CERT_CUSTOMER})

_TITLES = {
    1: "HTTPS on the root domain",
    2: "HTTPS on autodiscover.<domain>",
    3: "HTTP redirect from autodiscover.<domain>",
    4: "DNS SRV record",
}


@dataclass
class _Method:
    number: int
    title: str
    round: int
    address: str
    url: str | None = None
    outcome: Outcome = Outcome.FAILED
    fail: Fail | None = None
    detail: str = ""
    endpoint: str | None = None  # the URL that gave the deciding answer
    answer: _pox.PoxAnswer | None = None
    redirect_addr: str | None = None
    cert: dict[str, Any] | None = None
    cert_problem: dict[str, Any] | None = None
    problem: str | None = None  # explain() code of a network failure
    hops: list[dict[str, Any]] = field(default_factory=list)
    substeps: list[Step] = field(default_factory=list)
    failed_step: int | None = None  # index in substeps of the step that decided a failure
    live: bool = False  # the current HTTPS hop's server answered our TLS ClientHello
    silent_since: float = 0.0  # loop time the current hop (or the method) started waiting

    def step(self, name: str, status: Status, detail: str = "") -> None:
        prefix = f"{self.number}.{len(self.substeps) + 1}"
        if self.round:
            prefix = f"R{self.round}.{prefix}"
        self.substeps.append(Step(name=f"{prefix} {name}", status=status, detail=detail))

    def failed(self, fail: Fail, name: str, detail: str) -> None:
        self.step(name, Status.FAIL, detail)
        self.outcome, self.fail, self.detail = Outcome.FAILED, fail, detail
        self.failed_step = len(self.substeps) - 1

    @property
    def terminal(self) -> bool:
        """Outlook stops at this method (it works, or it is a genuine answer it must obey)."""
        return self.outcome in (Outcome.WORKS, Outcome.POX_ERROR, Outcome.REDIRECT_ADDR)

    def header(self) -> Step:
        name = f"Method {self.number}: {self.title}"
        if self.round:
            name = f"Restart {self.round}, method {self.number}: {self.title} ({self.address})"
        status = {
            Outcome.WORKS: Status.PASS,
            Outcome.REDIRECT_ADDR: Status.PASS,
            Outcome.POX_ERROR: Status.FAIL,
            Outcome.FAILED: Status.FAIL,
            Outcome.TIMED_OUT: Status.FAIL,
            Outcome.ABANDONED: Status.WARN,
            Outcome.NOT_NEEDED: Status.SKIP,
        }[self.outcome]
        where = f"{self.url}: " if self.url else ""
        return Step(name=name, status=status, detail=f"{where}{self.detail}".strip())

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.number,
            "name": self.title,
            "address": self.address,
            "url": self.url,
            "outcome": str(self.outcome),
            "detail": self.detail,
        }
        if self.fail:
            out["fail"] = str(self.fail)
        if self.problem:
            out["problem"] = self.problem
        if self.endpoint:
            out["endpoint"] = self.endpoint
        if self.hops:
            out["requests"] = self.hops
            out["status_code"] = self.hops[-1]["status"]
        if self.cert:
            out["certificate"] = self.cert
        if self.cert_problem:
            out["certificate_problem"] = self.cert_problem
        if self.answer and self.answer.kind is _pox.Kind.ERROR:
            out["pox_error"] = _pox_error(self.answer)
        if self.answer and self.answer.protocol_types:
            out["protocol_types"] = list(self.answer.protocol_types)
        if self.redirect_addr:
            out["redirect_address"] = self.redirect_addr
        return out


def _auth_schemes(challenge: str) -> str:
    """`Bearer a="x, y", Basic realm="z"` -> `Bearer, Basic` (parameters are not schemes)."""
    tokens = (part.strip().split(" ")[0] for part in challenge.split(","))
    schemes = [t for t in tokens if t and "=" not in t and '"' not in t]
    return ", ".join(dict.fromkeys(schemes)) or challenge[:40]


def _pox_error(answer: _pox.PoxAnswer) -> dict[str, Any]:
    return {
        "code": answer.error_code,
        "meaning": answer.error_meaning,
        "message": answer.error_message,
    }


def _cert_evidence(cert: CertInfo | None) -> dict[str, Any] | None:
    return dict(cert.evidence()) if cert is not None else None


# explain() problem codes that mean "the name does not exist / has no address": an answer.
_DNS_MISSING = frozenset({"dns-nxdomain", "dns-nodata"})


_CERT_WORDS = {
    "expired": "has expired",
    "not-yet-valid": "is not valid yet",
    "hostname": "does not cover the name",
    "untrusted": "does not chain to a trusted root",
}


def _cert_sentence(exc: CertificateInvalid, host: str) -> str:
    words = _CERT_WORDS.get(exc.reason, f"is invalid ({exc.reason})")
    if exc.reason == "hostname":
        words = f"does not cover {host}"
    who = ""
    if exc.cert is not None:
        who = f" (subject {exc.cert.subject}, issued by {exc.cert.issuer})"
    return f"the certificate{who} {words}"


@dataclass
class _Round:
    address: str
    methods: list[_Method]
    winner: _Method | None


class _Discovery:
    """One round of discovery for one address: four methods raced, judged in Outlook's order."""

    def __init__(
        self, ctx: CheckContext, address: str, provider: _pox.Provider, deadline: float, rnd: int
    ) -> None:
        self.ctx = ctx
        self.net = ctx.net
        self.address = address
        self.domain = address.rpartition("@")[2]
        self.provider = provider
        self.deadline = deadline
        self.round = rnd
        self._body = _pox.request_body(provider, address)
        self._headers = {"Content-Type": "text/xml; charset=utf-8"}
        if provider is _pox.Provider.OUTLOOK:
            self._headers["X-MapiHttpCapability"] = "1"  # as Outlook sends it (§2.4)
        self._chains: dict[str, asyncio.Task[list[str]]] = {}

    def _remaining(self) -> float:
        return max(0.05, self.deadline - asyncio.get_running_loop().time())

    # -- Microsoft or customer? ---------------------------------------------------------------

    async def _cname_chain(self, host: str) -> list[str]:
        try:
            answer = await self.net.query(host, "A")
        except NetError:
            return []
        return [*answer.cname_chain]

    def _lookup_chain(self, host: str) -> asyncio.Task[list[str]]:
        task = self._chains.get(host)
        if task is None:
            task = asyncio.create_task(self._cname_chain(host))
            self._chains[host] = task
        return task

    async def _run_by_microsoft(self, host: str) -> bool:
        """Is `host` Microsoft's, by its name or its CNAME chain (autodiscover -> outlook.com)?"""
        if microsoft_host(host, self.ctx.cloud):
            return True
        chain = await self._lookup_chain(host)
        return any(microsoft_host(name, self.ctx.cloud) for name in chain)

    # -- one HTTP exchange, turned into steps ------------------------------------------------

    async def _network_failure(
        self, m: _Method, exc: NetError, host: str, port: int, action: str
    ) -> None:
        why = explain(exc, host=host, port=port, service="Autodiscover")
        m.problem = why.problem
        if isinstance(exc, DnsError):
            fail = Fail.DNS_MISSING if why.problem in _DNS_MISSING else Fail.DNS_ERROR
            m.failed(fail, f"Resolve {host}", why.summary)
            return
        if isinstance(exc, BlockedAddress):
            m.failed(Fail.BLOCKED, f"Resolve {host}", why.summary)
            return
        m.step(f"Resolve {host}", Status.PASS, "resolved")
        # Refused and silent ports are ordinary here (Outlook simply tries the next method),
        # so the trace says what happened rather than suspecting a firewall.
        if isinstance(exc, ConnectFailed):
            m.failed(
                Fail.REFUSED,
                f"Connect to {host}:{port}",
                f"nothing listening on port {port} (connection refused)",
            )
            return
        if isinstance(exc, NetTimeout):
            m.failed(Fail.NO_ANSWER, f"Connect to {host}:{port}", f"no answer on port {port}")
            return
        m.step(f"Connect to {host}:{port}", Status.PASS, "connected")
        if isinstance(exc, CertificateInvalid):
            await self._certificate_failure(m, exc, host)
            return
        if isinstance(exc, TlsFailed):
            m.failed(Fail.TLS, f"TLS handshake with {host}", why.summary)
            return
        if isinstance(exc, ProtocolViolation | ResponseTooLarge):
            m.failed(Fail.GARBAGE, action, why.summary)
            return
        m.failed(Fail.OTHER, action, why.summary)

    async def _certificate_failure(self, m: _Method, exc: CertificateInvalid, host: str) -> None:
        sentence = _cert_sentence(exc, host)
        m.cert = _cert_evidence(exc.cert)
        problem: dict[str, Any] = {"host": host, "reason": exc.reason}
        if await self._run_by_microsoft(host):
            problem["owner"] = "microsoft"
            if exc.reason == "hostname":
                # autodiscover.<domain> CNAME'd to autodiscover.outlook.com: Microsoft's
                # certificate cannot carry the customer's name. Outlook goes on (§2.1 rule).
                fail, detail = Fail.CERT_MICROSOFT_NAME, f"Microsoft's server: {sentence}"
            else:
                fail = Fail.CERT_MICROSOFT
                detail = (
                    f"Microsoft's server, yet {sentence}: something on the way (a TLS "
                    "inspection proxy?) is replacing Microsoft's certificate"
                )
        else:
            problem["owner"] = "customer"
            fail, detail = Fail.CERT_CUSTOMER, f"{sentence}; Outlook shows a certificate warning"
        m.cert_problem = problem
        m.failed(fail, f"Certificate of {host}", detail)

    def _connected(self, m: _Method, r: HttpResponse, host: str, port: int, https: bool) -> None:
        address = r.hops[-1].address if r.hops and r.hops[-1].address else None
        m.step(f"Resolve {host}", Status.PASS, f"{host} -> {address}" if address else "resolved")
        m.step(f"Connect to {host}:{port}", Status.PASS, "connected")
        if https:
            cert = r.cert
            m.cert = _cert_evidence(cert)
            detail = "valid"
            if cert is not None:
                detail = (
                    f"valid: {cert.subject}, issued by {cert.issuer}, "
                    f"until {cert.not_after.date().isoformat()}"
                )
            m.step(f"Certificate of {host}", Status.PASS, detail)
        for hop in r.hops or []:
            m.hops.append(
                {"method": hop.method, "url": hop.url, "status": hop.status}
                | ({"location": hop.location} if hop.location else {})
            )

    # -- the POX POST, with the redirects Outlook follows -----------------------------------

    async def _post(self, m: _Method, url: str, redirects: int) -> None:
        while True:
            host = urlsplit(url).hostname or ""
            action = f"POST {url}"
            m.live = False
            m.silent_since = asyncio.get_running_loop().time()

            def answered(m: _Method = m) -> None:
                # The server answered our TLS ClientHello: a server that answers is waited
                # for, a silent one (a black hole) is not.
                m.live = True

            try:
                r = await self.net.request(
                    "POST",
                    url,
                    headers=self._headers,
                    content=self._body,
                    follow_redirects=False,
                    timeout=self._remaining(),
                    on_tls_answer=answered,
                )
            except NetError as exc:
                await self._network_failure(m, exc, host, 443, action)
                return
            self._connected(m, r, host, 443, https=True)
            status = r.status

            if status in _REDIRECT_STATUSES:
                target = self._redirect_target(m, url, r.header("location"), redirects, action)
                if target is None:
                    return
                m.step(action, Status.PASS, f"HTTP {status}, redirect to {target}")
                url, redirects = target, redirects + 1
                continue

            if status == 401:
                challenge = r.header("www-authenticate")
                if challenge:
                    schemes = _auth_schemes(challenge)
                    m.step(action, Status.PASS, f"HTTP 401 with a sign-in challenge ({schemes})")
                    m.outcome, m.endpoint = Outcome.WORKS, url
                    m.detail = f"a genuine Autodiscover endpoint answers at {url} (401 challenge)"
                    return
                m.failed(Fail.NO_CHALLENGE, action, "HTTP 401 without a sign-in challenge")
                return

            if status != 200:
                m.failed(Fail.HTTP_STATUS, action, f"HTTP {status}")
                return

            answer = _pox.parse(r.body)
            m.answer = answer
            # KB 3049615 is an Autodiscover-shaped answer from a non-Exchange server; any other
            # 200 (a soft-404 page) Outlook simply moves on from, like from a 404.
            if answer.kind is _pox.Kind.INTERNET_MAIL:
                self._hijack(m, action, answer, r)
                return
            if answer.kind is _pox.Kind.NOT_AUTODISCOVER:
                m.failed(
                    Fail.NOT_AUTODISCOVER,
                    action,
                    f"HTTP 200, not an Autodiscover answer: {answer.note}",
                )
                return
            if answer.kind is _pox.Kind.ERROR:
                m.step(action, Status.FAIL, f"HTTP 200, Autodiscover error {answer.error_code}")
                m.outcome, m.endpoint = Outcome.POX_ERROR, url
                m.detail = (
                    f"Autodiscover answered with error {answer.error_code} "
                    f"({answer.error_meaning})"
                    + (f": {answer.error_message}" if answer.error_message else "")
                )
                return
            if answer.kind is _pox.Kind.REDIRECT_URL:
                target = self._redirect_target(m, url, answer.redirect, redirects, action)
                if target is None:
                    return
                m.step(action, Status.PASS, f"HTTP 200, Action redirectUrl to {target}")
                url, redirects = target, redirects + 1
                continue
            if answer.kind is _pox.Kind.REDIRECT_ADDR:
                m.step(action, Status.PASS, f"HTTP 200, Action redirectAddr to {answer.redirect}")
                m.outcome, m.endpoint = Outcome.REDIRECT_ADDR, url
                m.redirect_addr = answer.redirect or ""
                m.detail = f"Autodiscover redirects to the address {answer.redirect}"
                return
            # settings
            m.step(action, Status.PASS, "HTTP 200, Autodiscover settings")
            m.outcome, m.endpoint = Outcome.WORKS, url
            m.detail = f"Autodiscover settings from {url}"
            return

    def _redirect_target(
        self, m: _Method, url: str, location: str | None, redirects: int, action: str
    ) -> str | None:
        if not location:
            m.failed(Fail.BAD_REDIRECT, action, "a redirect without a target")
            return None
        target = urljoin(url, location.strip())
        if urlsplit(target).scheme.lower() != "https":
            m.failed(
                Fail.BAD_REDIRECT,
                action,
                f"redirect to {target}, which is not HTTPS: Outlook does not follow it",
            )
            return None
        if redirects >= MAX_REDIRECTS:
            m.failed(
                Fail.TOO_MANY_REDIRECTS, action, f"more than {MAX_REDIRECTS} redirects; giving up"
            )
            return None
        return target

    def _hijack(self, m: _Method, action: str, answer: _pox.PoxAnswer, r: HttpResponse) -> None:
        server = r.header("server")
        by = f" ({server})" if server else ""
        what = f"{'/'.join(answer.protocol_types)} settings instead of Exchange's"
        where = "the root-domain web server" if m.number == 1 else "a non-Exchange server"
        m.failed(
            Fail.HIJACK,
            action,
            f"{where}{by} answers Autodiscover with {what} (KB 3049615)",
        )

    # -- the four methods ---------------------------------------------------------------------

    async def _method_https(self, m: _Method, host: str) -> _Method:
        m.url = f"https://{host}/autodiscover/autodiscover.xml"
        await self._post(m, m.url, 0)
        return m

    async def _method_http_redirect(self, m: _Method) -> _Method:
        host = f"autodiscover.{self.domain}"
        url = m.url = f"http://{host}/autodiscover/autodiscover.xml"
        action = f"GET {url}"
        try:
            # Unauthenticated GET over plain HTTP: only a redirect is useful here (§2.1 step 4).
            r = await self.net.request(
                "GET", url, follow_redirects=False, timeout=self._remaining()
            )
        except NetError as exc:
            await self._network_failure(m, exc, host, 80, action)
            return m
        self._connected(m, r, host, 80, https=False)
        if r.status not in _REDIRECT_STATUSES:
            m.failed(Fail.HTTP_STATUS, action, f"HTTP {r.status}; only a redirect is useful here")
            return m
        target = self._redirect_target(m, url, r.header("location"), 0, action)
        if target is None:
            return m
        m.step(action, Status.PASS, f"HTTP {r.status}, redirect to {target}")
        await self._post(m, target, 1)
        return m

    async def _method_srv(self, m: _Method) -> _Method:
        name = f"_autodiscover._tcp.{self.domain}"
        action = f"Look up SRV {name}"
        try:
            answer = await self.net.query(name, "SRV")
        except DnsError as exc:
            m.failed(Fail.DNS_ERROR, action, f"DNS lookup failed: {exc}")
            return m
        except NetError as exc:
            m.failed(Fail.OTHER, action, str(exc))
            return m
        if not answer.exists or not answer.records:
            m.failed(Fail.NO_SRV, action, "no SRV record")
            return m
        candidates: list[tuple[int, int, str]] = []
        for record in answer.records:
            parts = record.split()
            if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]):
                continue
            priority, weight, port, target = int(parts[0]), int(parts[1]), int(parts[2]), parts[3]
            target = target.rstrip(".")
            if port == 443 and target:  # Outlook uses only SRV records on port 443 (§2.1)
                candidates.append((priority, -weight, target))
        if not candidates:
            m.failed(Fail.NO_SRV, action, f"SRV records, but none on port 443: {answer.records}")
            return m
        priority, neg_weight, target = min(candidates)
        m.step(action, Status.PASS, f"{target}:443 (priority {priority}, weight {-neg_weight})")
        m.url = f"https://{target}/autodiscover/autodiscover.xml"
        await self._post(m, m.url, 0)
        return m

    # -- the race -----------------------------------------------------------------------------

    async def run(self) -> _Round:
        # The CNAME of autodiscover.<domain> decides whose certificate a failure is; ask early.
        self._lookup_chain(f"autodiscover.{self.domain}")
        started = asyncio.get_running_loop().time()
        running = [
            _Method(n, _TITLES[n], self.round, self.address, silent_since=started) for n in _TITLES
        ]
        tasks = [
            asyncio.create_task(self._method_https(running[0], self.domain)),
            asyncio.create_task(self._method_https(running[1], f"autodiscover.{self.domain}")),
            asyncio.create_task(self._method_http_redirect(running[2])),
            asyncio.create_task(self._method_srv(running[3])),
        ]
        try:
            methods, winner = await self._judge(tasks, running)
        finally:
            pending = (*tasks, *self._chains.values())
            leftovers = [t for t in pending if not t.done()]
            for t in leftovers:
                t.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
        return _Round(self.address, methods, winner)

    async def _judge(
        self, tasks: list[asyncio.Task[_Method]], running: list[_Method]
    ) -> tuple[list[_Method], _Method | None]:
        """Wait only as long as Outlook's order needs; then read the results in that order.

        Once a method has worked, an earlier one still pending is waited for while its server
        answers (`live`), up to the deadline. One that is silent is given up as soon as it has
        been silent for GRACE — counted from when it started waiting, not from when the later
        method won, so a black hole that has been silent all along costs nothing more.
        """
        loop = asyncio.get_running_loop()
        given_up: set[int] = set()
        while True:
            now = loop.time()
            best = next((i for i, t in enumerate(tasks) if t.done() and t.result().terminal), None)
            until = self.deadline
            if best is None:
                waiting = [t for t in tasks if not t.done()]
            else:
                earlier = [i for i in range(best) if not tasks[i].done() and i not in given_up]
                silent = [i for i in earlier if not running[i].live]
                given_up.update(i for i in silent if now - running[i].silent_since >= GRACE)
                grace_ends = [running[i].silent_since + GRACE for i in silent if i not in given_up]
                until = min([*grace_ends, self.deadline])
                waiting = [tasks[i] for i in earlier if i not in given_up]
            wait = until - now
            if not waiting or wait <= 0:
                break
            await asyncio.wait(waiting, timeout=wait, return_when=asyncio.FIRST_COMPLETED)

        winner_index = best
        methods: list[_Method] = []
        for i, task in enumerate(tasks):
            number = i + 1
            if task.done():
                m = task.result()
                if winner_index is not None and i > winner_index:
                    m = self._not_needed(m, winner_index + 1)
                methods.append(m)
                continue
            m = _Method(number, _TITLES[number], self.round, self.address)
            m.url = _first_url(number, self.domain)
            if winner_index is not None and i < winner_index:
                m.outcome = Outcome.ABANDONED
                m.detail = UNFINISHED if running[i].live else ABANDONED
            elif winner_index is not None:
                m.outcome = Outcome.NOT_NEEDED
                m.detail = f"not needed: method {winner_index + 1} already worked"
            else:
                m.outcome, m.fail = Outcome.TIMED_OUT, Fail.NO_ANSWER
                m.detail = "no answer before the check's time ran out"
            methods.append(m)
        winner = methods[winner_index] if winner_index is not None else None
        return methods, winner

    def _not_needed(self, m: _Method, winner_number: int) -> _Method:
        """A method after the one Outlook stops at: keep what it found, say it does not count."""
        done = _Method(m.number, m.title, m.round, m.address, url=m.url)
        done.outcome = Outcome.NOT_NEEDED
        found = m.detail or str(m.outcome)
        done.detail = f"not needed: method {winner_number} already worked (it found: {found})"
        done.hops, done.cert = m.hops, m.cert
        return done


def _first_url(number: int, domain: str) -> str | None:
    return {
        1: f"https://{domain}/autodiscover/autodiscover.xml",
        2: f"https://autodiscover.{domain}/autodiscover/autodiscover.xml",
        3: f"http://autodiscover.{domain}/autodiscover/autodiscover.xml",
        4: None,
    }[number]


def _provider(client: Client) -> _pox.Provider:
    # Phones ask the MobileSync provider (§2.4); Outlook (and "all") the Outlook provider.
    return _pox.Provider.MOBILESYNC if client is Client.MOBILE else _pox.Provider.OUTLOOK


async def run_v1(ctx: CheckContext) -> Finding:
    check = ctx.current or AUTODISCOVER_V1
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(1.0, check.timeout - _MARGIN)
    provider = _provider(ctx.client)
    tried = [ctx.address.address]
    rounds: list[_Round] = []
    stop_reason: str | None = None

    address = ctx.address.address
    while True:
        rnd = await _Discovery(ctx, address, provider, deadline, len(rounds)).run()
        rounds.append(rnd)
        winner = rnd.winner
        if winner is None or winner.outcome is not Outcome.REDIRECT_ADDR:
            break
        new = winner.redirect_addr or ""
        stop_reason = _bad_redirect_address(new, tried, len(rounds))
        if stop_reason is not None:
            break
        address = parse_address(new).address
        tried.append(address)

    return _judge_v1(check, ctx, provider, rounds, stop_reason)


def _bad_redirect_address(new: str, tried: list[str], rounds: int) -> str | None:
    """Why Outlook would not restart with `new` (§2.1: never the same address, ≤10 hops)."""
    try:
        candidate = parse_address(new).address
    except InvalidAddress as exc:
        return f"Autodiscover redirected to {new!r}, which is not a valid address ({exc})"
    if candidate.lower() in (t.lower() for t in tried):
        return (
            f"Autodiscover redirected to {candidate}, an address already tried: "
            "a redirect loop (clients never follow it)"
        )
    if rounds > MAX_REDIRECTS:
        return f"more than {MAX_REDIRECTS} address redirects; giving up"
    return None


def _mark_expected(m: _Method) -> _Method:
    """Prefix the failure with "Expected for Office 365: " in the header and its step."""
    m.detail = EXPECTED_O365 + m.detail
    if m.failed_step is not None:
        s = m.substeps[m.failed_step]
        m.substeps[m.failed_step] = Step(
            name=s.name, status=s.status, detail=EXPECTED_O365 + s.detail
        )
    return m


def _judge_v1(
    check: Check,
    ctx: CheckContext,
    provider: _pox.Provider,
    rounds: list[_Round],
    stop_reason: str | None,
) -> Finding:
    final = rounds[-1]
    winner = final.winner
    works = winner is not None and winner.outcome is Outcome.WORKS and stop_reason is None
    endpoint = winner.endpoint if works and winner else None
    office365 = bool(endpoint and microsoft_host(urlsplit(endpoint).hostname or "", ctx.cloud))

    # What Outlook meets before the method it stops at (or everything, when none works).
    surfaced: list[_Method] = []
    for rnd in rounds:
        stop = rnd.winner.number if rnd.winner else 5
        for m in rnd.methods:
            if m.number < stop and m.outcome is Outcome.FAILED and m.fail in _SURFACED:
                surfaced.append(m)
            if office365 and m.number < stop and m.outcome is Outcome.FAILED and m.fail in _BENIGN:
                _mark_expected(m)

    steps: list[Step] = []
    for i, rnd in enumerate(rounds):
        if i:
            steps.append(
                Step(
                    name=f"Restart {i}: discovery for {rnd.address}",
                    status=Status.PASS,
                    detail=f"Autodiscover redirected {rounds[i - 1].address} to {rnd.address}",
                )
            )
        for m in rnd.methods:
            steps.append(m.header())
            if m.outcome is not Outcome.NOT_NEEDED:
                steps.extend(m.substeps)
    if stop_reason:
        steps.append(Step(name="Address redirect", status=Status.FAIL, detail=stop_reason))

    all_methods = [m for rnd in rounds for m in rnd.methods]
    hijack = [m for m in all_methods if m.fail is Fail.HIJACK]
    customer_certs = [m.cert_problem for m in all_methods if m.fail is Fail.CERT_CUSTOMER]
    microsoft_certs = [m.cert_problem for m in all_methods if m.fail is Fail.CERT_MICROSOFT]
    pox_error = (
        _pox_error(winner.answer)
        if winner and winner.outcome is Outcome.POX_ERROR and winner.answer
        else None
    )
    evidence: dict[str, Any] = {
        "address": ctx.address.address,
        "provider": str(provider),
        "methods": [m.evidence() for m in all_methods],
        "endpoint": endpoint,
        "method_used": winner.number if works and winner else None,
        "office365": office365,
        "root_domain_hijack": any(m.number == 1 for m in hijack),
        "hijack_urls": [m.url for m in hijack],
        "customer_certificate_problems": customer_certs,
        "microsoft_certificate_problems": microsoft_certs,
        "pox_error": pox_error,
        "redirect_addresses": [rnd.address for rnd in rounds[1:]],
        "expected_failures": [m.number for m in all_methods if m.detail.startswith(EXPECTED_O365)],
    }

    domain = ctx.address.domain
    cname = ctx.cloud.autodiscover_cname
    next_steps: list[str] = []
    if works and winner:
        via = f"method {winner.number} ({winner.title})"
        if surfaced:
            status = Status.WARN
            first = surfaced[0]
            if first.fail is Fail.HIJACK:
                summary = (
                    f"Autodiscover works via {via}, but first {first.url} answers it with "
                    "the wrong server's settings (KB 3049615)"
                )
                next_steps.append(
                    f"Web admin: make {first.url} stop answering (404), so Outlook goes on to "
                    "the right Autodiscover server."
                )
            else:
                problem = first.cert_problem or {}
                summary = (
                    f"Autodiscover works via {via}, but {problem.get('host', first.url)} "
                    f"presents a bad certificate ({problem.get('reason', 'invalid')}) first"
                )
                next_steps.append(
                    f"Admin of {problem.get('host', first.url)}: install a valid certificate "
                    "for that name, or stop serving HTTPS Autodiscover there."
                )
        else:
            status = Status.PASS
            if office365 and winner.number == 3:
                target = urlsplit(endpoint or "").hostname
                summary = (
                    f"Autodiscover works: the HTTP redirect leads to {target}"
                    " (the normal Office 365 path)"
                )
            else:
                summary = f"Autodiscover works via {via}: {endpoint}"
        detail = winner.detail
    elif winner is not None and winner.outcome is Outcome.POX_ERROR:
        status = Status.FAIL
        summary = winner.detail
        detail = (
            f"Method {winner.number} reached a genuine Autodiscover endpoint ({winner.endpoint}), "
            "which answered with an error. The client stops there."
        )
        next_steps += [
            f"Check that {ctx.address.address} is exactly the mailbox's address (or one of its "
            "aliases).",
            "Helpdesk: check that the user exists and has an Exchange Online licence; in a hybrid "
            "setup, check the on-premises Autodiscover service.",
        ]
    elif stop_reason is not None:
        status = Status.FAIL
        summary = stop_reason
        detail = "Autodiscover redirected to another address; discovery cannot go on from there."
        next_steps.append(
            "Helpdesk: check the mailbox's addresses and the target address of its mail user "
            "(hybrid), so that Autodiscover redirects to the mailbox's real address."
        )
    else:
        # A method we could not test because our own DNS failed might be the one that works:
        # then the check cannot decide (error), which the diagnosis reads as dns-failure.
        only_dns_errors = any(m.fail is Fail.DNS_ERROR for m in final.methods)
        status = Status.ERROR if only_dns_errors else Status.FAIL
        summary = (
            "DNS lookups failed, so Autodiscover could not be fully tested"
            if only_dns_errors
            else "The Autodiscover service couldn't be contacted successfully by any method"
        )
        detail = "; ".join(f"method {m.number}: {m.detail}" for m in final.methods)
        if only_dns_errors:
            evidence["problem"] = "dns-failure"
            next_steps.append(
                "Run the diagnosis again in a minute; if DNS keeps failing, ask the network team "
                "whether the DNS servers mailfix uses work (mailfix's network, not necessarily "
                "the person's)."
            )
        else:
            next_steps.append(
                f"DNS admin: create the record autodiscover.{domain} CNAME {cname} "
                "(hybrid: point it at the on-premises Exchange server)."
            )
        if microsoft_certs:
            next_steps.append(
                "Network admin: a Microsoft server's certificate was replaced on the way; "
                "exempt Microsoft 365 hosts from TLS inspection."
            )

    return check.finding(
        status,
        _sentence(summary),
        detail=detail,
        evidence=evidence,
        steps=steps,
        next_steps=list(dict.fromkeys(next_steps)),
    )


# --------------------------------------------------------------------------------------------
# autodiscover.v2
# --------------------------------------------------------------------------------------------

# Protocols asked per client (§2.7): phones want ActiveSync, Outlook the POX endpoint and EWS.
V2_PROTOCOLS: dict[Client, tuple[str, ...]] = {
    Client.MOBILE: ("ActiveSync",),
    Client.OUTLOOK: ("AutodiscoverV1", "Ews"),
    Client.ALL: ("ActiveSync", "AutodiscoverV1"),
}
_V2_HOPS = 3  # Microsoft-internal redirects we follow (alias -> primary address, §2.7)


@dataclass
class _V2:
    protocol: str
    url: str
    status: Status = Status.FAIL
    detail: str = ""
    result_url: str | None = None
    hybrid_location: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    certificate_problem: dict[str, Any] | None = None
    problem: str | None = None  # explain() code when the request failed
    advice: tuple[str, ...] = ()
    retry: bool = False  # the path form is not served: ask the query form
    path_form: _V2 | None = None  # the path-form attempt, when this is the query-form retry

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "url": self.url,
            "result": str(self.status),
            "detail": self.detail,
            "requests": self.requests,
        }
        if self.requests:
            out["status_code"] = self.requests[-1]["status"]
        if self.result_url:
            out["returned_url"] = self.result_url
        if self.hybrid_location:
            out["location"] = self.hybrid_location
        if self.certificate_problem:
            out["certificate_problem"] = self.certificate_problem
        if self.problem:
            out["problem"] = self.problem
        if self.path_form:
            out["path_form"] = self.path_form.evidence()
        return out

    def steps(self) -> list[Step]:
        first = []
        if self.path_form:
            p = self.path_form
            detail = f"{p.detail}; retrying with the query form"
            first = [Step(name=f"GET {p.url}", status=p.status, detail=detail)]
        return [*first, Step(name=f"GET {self.url}", status=self.status, detail=self.detail)]


def _json(body: bytes) -> object:
    """The JSON document in `body`, or None for garbage (deep nesting included)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _v2_error_text(r: HttpResponse) -> str:
    data = _json(r.body)
    if isinstance(data, dict):
        code, message = data.get("ErrorCode"), data.get("ErrorMessage")
        return ": ".join(str(x) for x in (code, message) if x)
    return ""


def _v2_retry_query_form(r: HttpResponse) -> bool:
    """The path form is not served here (404, or a 400 that is not EXO's InvalidProtocol)."""
    if r.status == 404:
        return True
    data = _json(r.body)
    return r.status == 400 and not (
        isinstance(data, dict) and data.get("ErrorCode") == "InvalidProtocol"
    )


async def _v2_probe(ctx: CheckContext, protocol: str, deadline: float) -> _V2:
    """The path form first (what Microsoft's own scripts use); on a 404 or a 400 that is not
    InvalidProtocol, once more with the documented query form (§2.7)."""
    host = ctx.cloud.exo
    mailbox = quote(ctx.address.address, safe="@")
    path = f"https://{host}/autodiscover/autodiscover.json/v1.0/{mailbox}?Protocol={protocol}"
    result = await _v2_get(ctx, _V2(protocol, path), deadline)
    if not result.retry:
        return result
    query = (
        f"https://{host}/autodiscover/autodiscover.json"
        f"?Email={quote(ctx.address.address)}&Protocol={protocol}&RedirectCount=1"
    )
    retried = await _v2_get(ctx, _V2(protocol, query), deadline)
    retried.path_form = result
    return retried


async def _v2_get(ctx: CheckContext, result: _V2, deadline: float) -> _V2:
    host, url = ctx.cloud.exo, result.url
    for _ in range(_V2_HOPS + 1):
        try:
            remaining = max(0.05, deadline - asyncio.get_running_loop().time())
            r = await ctx.net.request(
                "GET",
                url,
                headers={"Accept": "application/json"},
                follow_redirects=False,
                timeout=remaining,
            )
        except NetError as exc:
            where = urlsplit(url).hostname or host
            why = explain(exc, host=where, port=443, service="Autodiscover v2", microsoft=True)
            result.status, result.problem = why.status, why.problem
            result.detail, result.advice = why.summary.rstrip("."), why.next_steps
            if isinstance(exc, CertificateInvalid):
                result.certificate_problem = {
                    "host": where,
                    "reason": exc.reason,
                    "owner": "microsoft" if microsoft_host(where, ctx.cloud) else "other",
                    "certificate": _cert_evidence(exc.cert),
                }
            return result
        location = r.header("location")
        result.requests.append(
            {"method": "GET", "url": url, "status": r.status}
            | ({"location": location} if location else {})
        )
        if r.status in _REDIRECT_STATUSES and location:
            target = urljoin(url, location)
            target_host = urlsplit(target).hostname or ""
            if urlsplit(target).scheme == "https" and microsoft_host(target_host, ctx.cloud):
                url = target
                continue
            # §2.7: EXO answers 302 to the on-premises Autodiscover when the mailbox lives there.
            # We report it and do not follow into someone's network.
            result.status, result.hybrid_location = Status.PASS, target
            result.detail = f"hybrid: the mailbox is on-premises ({target_host})"
            return result
        if r.status == 200:
            data = _json(r.body)
            if (
                isinstance(data, dict)
                and isinstance(data.get("Protocol"), str)
                and isinstance(data.get("Url"), str)
                and data["Url"]
            ):
                result.status, result.result_url = Status.PASS, data["Url"]
                result.detail = data["Url"]
                return result
            result.detail = "HTTP 200, but not an Autodiscover JSON answer"
            return result
        error_text = _v2_error_text(r)
        result.detail = f"HTTP {r.status}" + (f" ({error_text})" if error_text else "")
        result.retry = len(result.requests) == 1 and _v2_retry_query_form(r)
        return result
    result.detail = f"more than {_V2_HOPS} redirects inside Microsoft's service"
    return result


async def run_v2(ctx: CheckContext) -> Finding:
    check = ctx.current or AUTODISCOVER_V2
    protocols = V2_PROTOCOLS.get(ctx.client, V2_PROTOCOLS[Client.ALL])
    deadline = asyncio.get_running_loop().time() + max(1.0, check.timeout - _MARGIN)
    results = list(await asyncio.gather(*(_v2_probe(ctx, p, deadline) for p in protocols)))
    evidence: dict[str, Any] = {
        "address": ctx.address.address,
        "protocols": [r.evidence() for r in results],
        "hybrid": any(r.hybrid_location for r in results),
        "locations": [r.hybrid_location for r in results if r.hybrid_location],
        "microsoft_certificate_problems": [
            r.certificate_problem
            for r in results
            if r.certificate_problem and r.certificate_problem["owner"] == "microsoft"
        ],
    }
    steps = [step for r in results for step in r.steps()]
    failed = [r for r in results if r.status is Status.FAIL]
    errors = [r for r in results if r.status is Status.ERROR]
    hybrid = [r for r in results if r.hybrid_location]
    names = ", ".join(r.protocol for r in results)
    next_steps: list[str] = []
    if failed:
        status = Status.FAIL
        which = ", ".join(r.protocol for r in failed)
        summary = f"Autodiscover v2 failed for {which}: {failed[0].detail}"
        for r in failed:
            next_steps.extend(r.advice)
        if not next_steps:  # Microsoft's endpoint answered, but wrongly
            next_steps += [
                "Check Service health in the Microsoft 365 admin center for Exchange Online.",
                "If it persists, ask the network team whether a proxy answers in Microsoft's "
                f"place for {ctx.cloud.exo}.",
            ]
    elif errors:
        status = Status.ERROR
        summary = "Autodiscover v2 could not be tested: " + errors[0].detail
        for r in errors:
            next_steps.extend(r.advice)
    elif hybrid:
        status = Status.PASS
        where = urlsplit(hybrid[0].hybrid_location or "").hostname
        summary = (
            f"Hybrid: Exchange Online sends {names} discovery to on-premises ({where}); "
            "the mailbox is on-premises"
        )
    else:
        status = Status.PASS
        summary = f"Autodiscover v2 returns URLs for {names}"
    detail = "; ".join(f"{r.protocol}: {r.detail}" for r in results)
    return check.finding(
        status,
        _sentence(summary),
        detail=detail,
        evidence=evidence,
        steps=steps,
        next_steps=list(dict.fromkeys(next_steps)),
    )


AUTODISCOVER_V1 = Check(
    id="autodiscover.v1",
    title="Autodiscover (Outlook's discovery methods)",
    side=Side.DNS,
    clients=frozenset({Client.OUTLOOK, Client.MOBILE}),
    run=run_v1,
)
AUTODISCOVER_V2 = Check(
    id="autodiscover.v2",
    title="Autodiscover v2 (JSON)",
    side=Side.SERVICE,
    clients=frozenset({Client.OUTLOOK, Client.MOBILE}),
    run=run_v2,
)

CHECKS: tuple[Check, ...] = (AUTODISCOVER_V1, AUTODISCOVER_V2)
