"""Can this network reach Exchange Online's client ports? HTTPS, IMAP, POP and SMTP submission.

Hosts and ports: exchange-online-diagnostics.md §7 (IMAP 993 and POP 995 implicit TLS on the
EXO host, SMTP AUTH submission on 587 with STARTTLS), sovereign clouds via `ctx.cloud`.
Nothing here signs in: the probes stop at the greeting / the AUTH advertisement and say
goodbye (LOGOUT / QUIT). An unreachable port is `fail` (the network blocks it); `error` only
when we could not tell (our DNS failed, the guard refused the address).

Every finding's evidence carries `stage` (where it stopped: dns, connect, tls, greeting, ehlo,
starttls, auth, or done) next to the `problem` code from `_explain`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from checks.models import Client, Finding, Side, Status, Step
from checks.modules._explain import Explanation, explain
from checks.net.errors import NetError, ProtocolViolation
from checks.net.seam import Connection
from checks.net.types import TlsInfo
from checks.spec import Check, CheckContext

SMTP_PORT = 587
IMAP_PORT = 993
POP_PORT = 995
MAX_REPLY_LINES = 64  # an SMTP reply longer than this is not a mail server talking
EHLO_NAME = "mailfix.invalid"  # RFC 2606 reserved name: we are a probe, not a mail server


_SERVICE_STEPS = [
    "Check Service health in the Microsoft 365 admin center for Exchange Online.",
    "Try again in a few minutes; if it persists, an administrator opens a case with Microsoft.",
]


def _printable(raw: bytes, limit: int = 200) -> str:
    text = raw.decode("ascii", errors="replace").strip()
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tls_evidence(info: TlsInfo) -> dict[str, Any]:
    return {
        "address": info.address,
        "tls_version": info.version,
        "cipher": info.cipher,
        "certificate": info.cert.evidence(),
    }


def _tls_detail(info: TlsInfo) -> str:
    until = f"{info.cert.not_after:%Y-%m-%d}"
    return f"{info.version}, certificate {info.cert.subject} valid until {until}"


def _stage_step(why: Explanation, host: str, port: int) -> Step:
    name = {
        "dns": f"Resolve {host}",
        "connect": f"Connect to {host}:{port}",
        "tls": "TLS handshake and certificate",
    }.get(why.stage, f"Answer from {host}:{port}")
    return why.step(name)


def _failed(
    check: Check,
    why: Explanation,
    steps: list[Step],
    *,
    stage: str,
    summary: str | None = None,
    next_steps: tuple[str, ...] = (),
    evidence: dict[str, Any] | None = None,
) -> Finding:
    return why.finding(
        check,
        summary=summary,
        evidence={**(evidence or {}), "stage": stage},
        next_steps=next_steps,
        steps=steps,
    )


def _explain_ms(exc: NetError, host: str, port: int, service: str) -> Explanation:
    return explain(exc, host=host, port=port, service=service, microsoft=True)


# --- net.https --------------------------------------------------------------------------------


async def _https(ctx: CheckContext) -> Finding:
    host, port = ctx.cloud.exo, 443
    try:
        info = await ctx.net.tls_probe(host, port)
    except NetError as exc:
        why = _explain_ms(exc, host, port, "HTTPS")
        return _failed(HTTPS, why, [_stage_step(why, host, port)], stage=why.stage)
    steps = [
        Step(name=f"Resolve {host}", status=Status.PASS, detail=info.address),
        Step(name=f"Connect to {host}:{port}", status=Status.PASS),
        Step(name="TLS handshake and certificate", status=Status.PASS, detail=_tls_detail(info)),
    ]
    return HTTPS.finding(
        Status.PASS,
        f"{host} answers on port {port} with a valid Microsoft certificate.",
        evidence={"host": host, "port": port, **_tls_evidence(info), "stage": "done"},
        steps=steps,
    )


# --- net.imap / net.pop -----------------------------------------------------------------------


async def _greeting_probe(
    ctx: CheckContext,
    check: Check,
    *,
    port: int,
    service: str,
    ok: bytes,
    goodbye: bytes,
) -> Finding:
    """Implicit TLS to the EXO host, read the greeting, say goodbye. Never signs in."""
    host = ctx.cloud.exo
    steps: list[Step] = []
    try:
        conn = await ctx.net.open_tcp(host, port, tls=True)
    except NetError as exc:
        why = _explain_ms(exc, host, port, service)
        if why.problem in {"connect-failed", "timeout"}:
            summary = (
                f"{service} (port {port}) on {host} cannot be reached: a firewall or the network "
                f"blocks port {port}."
            )
            return _failed(
                check, why, [_stage_step(why, host, port)], stage=why.stage, summary=summary
            )
        return _failed(check, why, [_stage_step(why, host, port)], stage=why.stage)
    try:
        info = conn.tls
        steps.append(
            Step(name=f"Connect to {host}:{port}", status=Status.PASS, detail=conn.address)
        )
        if info is not None:
            steps.append(
                Step(
                    name="TLS handshake and certificate",
                    status=Status.PASS,
                    detail=_tls_detail(info),
                )
            )
        try:
            line = await conn.readline()
        except NetError as exc:
            why = _explain_ms(exc, host, port, service)
            steps.append(why.step("Greeting"))
            return _failed(
                check,
                why,
                steps,
                stage="greeting",
                summary=f"{host}:{port} accepted the connection but sent no {service} greeting.",
            )
        greeting = _printable(line)
        evidence: dict[str, Any] = {
            "host": host,
            "port": port,
            "greeting": greeting,
            **(_tls_evidence(info) if info is not None else {}),
        }
        if not line.startswith(ok):
            steps.append(Step(name="Greeting", status=Status.FAIL, detail=greeting))
            if line.startswith((b"* BYE", b"-ERR")):
                return check.finding(
                    Status.FAIL,
                    f"{host} refused the {service} session at once ({greeting}).",
                    evidence={**evidence, "problem": "service-refused", "stage": "greeting"},
                    next_steps=_SERVICE_STEPS,
                    steps=steps,
                )
            why = _explain_ms(ProtocolViolation(greeting, host=host), host, port, service)
            return _failed(
                check,
                why,
                steps,
                stage="greeting",
                summary=f"Something answered on {host}:{port}, but not with a {service} greeting.",
                evidence=evidence,
            )
        steps.append(Step(name="Greeting", status=Status.PASS, detail=greeting))
        with contextlib.suppress(NetError, OSError):
            await conn.write(goodbye)
        return check.finding(
            Status.PASS,
            f"{service} on {host}:{port} answers over TLS with a valid certificate.",
            evidence={**evidence, "stage": "done"},
            steps=steps,
        )
    finally:
        with contextlib.suppress(NetError, OSError):
            await conn.aclose()


async def _imap(ctx: CheckContext) -> Finding:
    return await _greeting_probe(
        ctx, IMAP, port=IMAP_PORT, service="IMAP", ok=b"* OK", goodbye=b"a1 LOGOUT\r\n"
    )


async def _pop(ctx: CheckContext) -> Finding:
    return await _greeting_probe(
        ctx, POP, port=POP_PORT, service="POP", ok=b"+OK", goodbye=b"QUIT\r\n"
    )


# --- net.smtp ---------------------------------------------------------------------------------


class _SmtpReply:
    def __init__(self, code: int, lines: list[str]) -> None:
        self.code = code
        self.lines = lines  # text after "NNN-" / "NNN "

    @property
    def text(self) -> str:
        return _printable(" ".join(self.lines).encode())

    def keywords(self) -> dict[str, str]:
        """EHLO extensions: KEYWORD -> parameters (the first line is the greeting)."""
        out: dict[str, str] = {}
        for line in self.lines[1:]:
            word, _, params = line.strip().partition(" ")
            if word:
                out[word.upper()] = params.strip()
        return out


async def _reply(conn: Connection, host: str) -> _SmtpReply:
    """One (possibly multi-line) SMTP reply (RFC 5321 §4.2); garbage -> ProtocolViolation."""
    lines: list[str] = []
    code = 0
    for _ in range(MAX_REPLY_LINES):
        raw = await conn.readline()
        text = raw.decode("ascii", errors="replace").rstrip("\r\n")
        head, sep = text[:3], text[3:4]
        if not head.isdigit() or sep not in {"", " ", "-"} or (code and int(head) != code):
            raise ProtocolViolation(f"not an SMTP reply: {_printable(raw, 80)!r}", host=host)
        code = int(head)
        lines.append(text[4:])
        if sep != "-":
            return _SmtpReply(code, lines)
    raise ProtocolViolation(f"SMTP reply longer than {MAX_REPLY_LINES} lines", host=host)


def _masked(reply: _SmtpReply) -> bool:
    """A banner of asterisks: a firewall's SMTP inspection (e.g. Cisco ASA) rewrote it."""
    text = " ".join(reply.lines)
    return text.count("*") >= max(4, len(text) // 2)


async def _smtp(ctx: CheckContext) -> Finding:
    host, port = ctx.cloud.smtp, SMTP_PORT
    steps: list[Step] = []
    evidence: dict[str, Any] = {"host": host, "port": port}
    try:
        conn = await ctx.net.open_tcp(host, port)
    except NetError as exc:
        why = _explain_ms(exc, host, port, "SMTP submission")
        summary = None
        if why.problem in {"connect-failed", "timeout"}:
            summary = (
                f"SMTP submission (port {port}) on {host} cannot be reached: a firewall, the "
                f"network or the internet provider blocks port {port}."
            )
        return _failed(
            SMTP,
            why,
            [_stage_step(why, host, port)],
            stage=why.stage,
            summary=summary,
            next_steps=(
                "mailfix tested from the network it runs on. Some internet providers and guest "
                "networks block outgoing mail ports: if the person's app fails too, try another "
                "network to confirm.",
            )
            if summary
            else (),
        )
    steps.append(Step(name=f"Connect to {host}:{port}", status=Status.PASS, detail=conn.address))
    stage = "greeting"
    try:
        greeting = await _reply(conn, host)
        evidence["greeting"] = greeting.text
        if greeting.code != 220:
            steps.append(Step(name="Greeting (220)", status=Status.FAIL, detail=greeting.text))
            return SMTP.finding(
                Status.FAIL,
                f"{host} refused the SMTP session: {greeting.code} {greeting.text}".rstrip(".")
                + ".",
                evidence={**evidence, "problem": "service-refused", "stage": stage},
                next_steps=_SERVICE_STEPS,
                steps=steps,
            )
        steps.append(Step(name="Greeting (220)", status=Status.PASS, detail=greeting.text))

        stage = "ehlo"
        await conn.write(f"EHLO {EHLO_NAME}\r\n".encode())
        ehlo = await _reply(conn, host)
        if ehlo.code != 250:
            steps.append(Step(name="EHLO", status=Status.FAIL, detail=f"{ehlo.code} {ehlo.text}"))
            return _smtp_broken(
                steps, evidence, stage, f"{host} did not accept EHLO ({ehlo.code} {ehlo.text})."
            )
        offered = ehlo.keywords()
        evidence["extensions"] = sorted(offered)[:30]
        steps.append(Step(name="EHLO", status=Status.PASS, detail=", ".join(sorted(offered))))

        stage = "starttls"
        if "STARTTLS" not in offered:
            steps.append(Step(name="STARTTLS offered", status=Status.FAIL))
            masked = _masked(greeting)
            return _smtp_broken(
                steps,
                evidence,
                stage,
                f"{host}:{port} does not offer STARTTLS, so no mail app can send securely.",
                detail=(
                    "The greeting is masked with asterisks: a firewall's SMTP inspection "
                    "(for example Cisco ASA/PIX 'fixup smtp' or 'inspect esmtp') is rewriting "
                    "the session and removing STARTTLS."
                    if masked
                    else "Exchange Online always offers STARTTLS on port 587: a firewall or "
                    "proxy with SMTP inspection is rewriting the session."
                ),
                next_steps=[
                    "Ask the network team to turn off SMTP/ESMTP inspection for "
                    f"{host} port {port}."
                ],
            )
        steps.append(Step(name="STARTTLS offered", status=Status.PASS))
        await conn.write(b"STARTTLS\r\n")
        ready = await _reply(conn, host)
        if ready.code != 220:
            steps.append(
                Step(name="STARTTLS", status=Status.FAIL, detail=f"{ready.code} {ready.text}")
            )
            return _smtp_broken(
                steps,
                evidence,
                stage,
                f"{host} refused STARTTLS ({ready.code} {ready.text}).",
            )
        stage = "tls"
        info = await conn.start_tls()
        evidence.update(_tls_evidence(info))
        steps.append(
            Step(
                name="STARTTLS handshake and certificate",
                status=Status.PASS,
                detail=_tls_detail(info),
            )
        )

        stage = "auth"
        await conn.write(f"EHLO {EHLO_NAME}\r\n".encode())
        ehlo2 = await _reply(conn, host)
        offered2 = ehlo2.keywords() if ehlo2.code == 250 else {}
        evidence["extensions_after_tls"] = sorted(offered2)[:30]
        auth = offered2.get("AUTH")
        if auth is None:
            steps.append(Step(name="AUTH offered after TLS", status=Status.FAIL, detail=ehlo2.text))
            return _smtp_broken(
                steps,
                evidence,
                stage,
                f"{host} does not offer sign-in (AUTH) after STARTTLS, so mail apps cannot send.",
                detail="Exchange Online advertises AUTH on port 587 once TLS is up; a device in "
                "between is rewriting the session.",
                problem="smtp-no-auth",
            )
        evidence["auth_mechanisms"] = auth.split()[:10]
        steps.append(Step(name="AUTH offered after TLS", status=Status.PASS, detail=auth))
        with contextlib.suppress(NetError, OSError):
            await conn.write(b"QUIT\r\n")
        return SMTP.finding(
            Status.PASS,
            f"SMTP submission on {host}:{port} works up to sign-in: STARTTLS with a valid "
            f"certificate, then AUTH {auth}.".replace("  ", " "),
            evidence={**evidence, "stage": "done"},
            steps=steps,
        )
    except NetError as exc:
        why = _explain_ms(exc, host, port, "SMTP submission")
        name = {
            "greeting": "Greeting (220)",
            "ehlo": "EHLO",
            "starttls": "STARTTLS",
            "tls": "STARTTLS handshake and certificate",
            "auth": "AUTH offered after TLS",
        }[stage]
        steps.append(why.step(name))
        summary = None
        if stage != "tls" and why.problem in {"connect-failed", "timeout", "protocol"}:
            summary = f"The SMTP session with {host}:{port} broke off at {name}: {why.summary}"
        return _failed(SMTP, why, steps, stage=stage, summary=summary, evidence=evidence)
    finally:
        with contextlib.suppress(NetError, OSError):
            await conn.aclose()


def _smtp_broken(
    steps: list[Step],
    evidence: dict[str, Any],
    stage: str,
    summary: str,
    *,
    detail: str = "",
    problem: str = "smtp-starttls-broken",
    next_steps: list[str] | None = None,
) -> Finding:
    return SMTP.finding(
        Status.FAIL,
        summary,
        detail=detail,
        evidence={**evidence, "problem": problem, "stage": stage},
        next_steps=next_steps
        or [
            "Ask the network team whether a firewall or proxy inspects or rewrites SMTP on "
            f"port {SMTP_PORT}, and to let {evidence['host']} through untouched.",
            "mailfix tested from the network it runs on: if the person's app fails too, try "
            "another network (for example a phone hotspot) to confirm.",
        ],
        steps=steps,
    )


HTTPS = Check(
    "net.https",
    "HTTPS to Exchange Online",
    Side.NETWORK,
    frozenset({Client.OUTLOOK, Client.MOBILE, Client.WEB}),
    _https,
    timeout=15.0,
)
IMAP = Check(
    "net.imap", "IMAP port 993", Side.NETWORK, frozenset({Client.IMAP}), _imap, timeout=15.0
)
POP = Check("net.pop", "POP port 995", Side.NETWORK, frozenset({Client.POP}), _pop, timeout=15.0)
SMTP = Check(
    "net.smtp",
    "SMTP submission port 587",
    Side.NETWORK,
    frozenset({Client.SMTP, Client.IMAP, Client.POP}),
    _smtp,
    timeout=20.0,
)

CHECKS: tuple[Check, ...] = (HTTPS, IMAP, POP, SMTP)
