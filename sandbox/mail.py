"""IMAP, POP3 and SMTP submission servers that greet and answer like Exchange Online.

Just enough protocol for a connectivity check: greeting, capabilities, STARTTLS, a refused
sign-in (the sandbox has no passwords), polite goodbyes, and the protocol's own error form for
anything else. Faults are knobs on `MailConfig`. Every read is bounded in size and time, and no
input — however odd — crashes a server.

Wire shapes follow Exchange Online (reference/exchange-online-diagnostics.md §7 for hosts and
ports; greetings and capability lines as EXO sends them today).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

MAX_LINE = 4096  # longer command lines get the protocol's error and the connection is closed
IDLE_TIMEOUT = 30.0  # seconds a client may stay silent before we hang up
TLS_HANDSHAKE_TIMEOUT = 10.0

# EXO's submission size limit as it advertises it in EHLO (150 MB).
SMTP_SIZE = 157286400


class MailProtocol(StrEnum):
    IMAP = "imap"  # implicit TLS, 993
    POP = "pop"  # implicit TLS, 995
    SMTP = "smtp"  # plain greeting, STARTTLS, 587


class MailConfig(BaseModel):
    """One mail listener's behaviour, faults included."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: MailProtocol
    # The back-end server name EXO puts in greetings (a different one per connection there).
    server_name: str = "SN4PR0501CA0012.namprd05.prod.outlook.com"
    starttls_offered: bool = True  # SMTP: advertise STARTTLS (a middlebox may strip it)
    starttls_broken: bool = False  # SMTP: answer 220 to STARTTLS, then send garbage, not TLS
    auth_after_tls: bool = True  # SMTP: advertise AUTH once TLS is up
    greeting: str | None = None  # replace the greeting line (a different server answering)
    garbage_greeting: bool = False  # send random bytes instead of a greeting and hang up
    greeting_delay_ms: int = 0  # wait this long before greeting (slow server)


Log = Callable[[str], None]


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    log: Log

    async def send(self, *lines: str) -> None:
        self.writer.write("".join(f"{line}\r\n" for line in lines).encode("utf-8"))
        await self.writer.drain()

    async def line(self) -> str | None:
        """The next line without CRLF; None on EOF, overlong line or idle timeout."""
        try:
            raw = await asyncio.wait_for(self.reader.readline(), IDLE_TIMEOUT)
        except (ValueError, asyncio.LimitOverrunError):  # over the StreamReader limit
            return None
        except TimeoutError:
            return None
        if not raw or not raw.endswith(b"\n"):
            return None
        return raw.rstrip(b"\r\n").decode("utf-8", errors="replace")


def _banner_token(server_name: str) -> str:
    """EXO ends IMAP/POP greetings with a base64 token naming the serving back end."""
    return base64.b64encode(server_name.upper().encode("ascii", errors="replace")).decode()


class MailServer:
    """Serves one listener. `handle` is the asyncio.start_server callback.

    `tls` is the server context: for IMAP/POP the listener wraps the socket itself (implicit
    TLS); for SMTP it is used by STARTTLS.
    """

    def __init__(self, config: MailConfig, tls: ssl.SSLContext | None, *, log: Log) -> None:
        self.config = config
        self.tls = tls
        self._log = log
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        conn = _Conn(reader, writer, self._log)
        try:
            await self._session(conn)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError):
            pass  # the client went away mid-conversation: nothing to answer
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            if task is not None:
                self._tasks.discard(task)

    async def aclose(self) -> None:
        """Hang up on every open session and wait for their handlers to finish."""
        for writer in list(self._writers):
            writer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _session(self, conn: _Conn) -> None:
        cfg = self.config
        if cfg.greeting_delay_ms:
            await asyncio.sleep(cfg.greeting_delay_ms / 1000)
        if cfg.garbage_greeting:
            self._log("greeting: garbage")
            conn.writer.write(os.urandom(64))
            await conn.writer.drain()
            return
        session: Callable[[_Conn], Awaitable[None]] = {
            MailProtocol.IMAP: self._imap,
            MailProtocol.POP: self._pop,
            MailProtocol.SMTP: self._smtp,
        }[cfg.protocol]
        await session(conn)

    # ---- IMAP4rev1 (RFC 3501) -----------------------------------------------------------

    async def _imap(self, conn: _Conn) -> None:
        cfg = self.config
        token = _banner_token(cfg.server_name)
        ready = f"* OK The Microsoft Exchange IMAP4 service is ready. [{token}]"
        await conn.send(cfg.greeting or ready)
        while (line := await conn.line()) is not None:
            tag, _, rest = line.partition(" ")
            verb, _, args = rest.partition(" ")
            verb = verb.upper()
            if not tag or not verb:
                await conn.send("* BAD Command Error. 10")
                continue
            self._log(f"imap {verb}")
            if verb == "CAPABILITY":
                await conn.send(
                    "* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS ID "
                    "UNSELECT CHILDREN IDLE NAMESPACE LITERAL+",
                    f"{tag} OK CAPABILITY completed.",
                )
            elif verb == "NOOP":
                await conn.send(f"{tag} OK NOOP completed.")
            elif verb == "ID":
                await conn.send("* ID NIL", f"{tag} OK ID completed.")
            elif verb == "LOGOUT":
                await conn.send(
                    "* BYE Microsoft Exchange Server IMAP4 server signing off.",
                    f"{tag} OK LOGOUT completed.",
                )
                return
            elif verb == "LOGIN":
                await conn.send(f"{tag} NO LOGIN failed.")
            elif verb == "AUTHENTICATE":
                mechanism, _, initial = args.partition(" ")
                if mechanism.upper() not in {"PLAIN", "XOAUTH2"}:
                    await conn.send(
                        f"{tag} NO The specified authentication package is not supported."
                    )
                    continue
                if not initial:  # no SASL-IR: ask for the response, then refuse it
                    await conn.send("+ ")
                    if await conn.line() is None:
                        return
                await conn.send(f"{tag} NO AUTHENTICATE failed.")
            else:
                await conn.send(f"{tag} BAD Command Error. 10")
        # Overlong line, idle client or EOF: EXO says goodbye the same way.
        with contextlib.suppress(ConnectionError, OSError):
            await conn.send("* BYE Connection is closed. 13")

    # ---- POP3 (RFC 1939, RFC 2449) -------------------------------------------------------

    async def _pop(self, conn: _Conn) -> None:
        cfg = self.config
        token = _banner_token(cfg.server_name)
        ready = f"+OK The Microsoft Exchange POP3 service is ready. [{token}]"
        await conn.send(cfg.greeting or ready)
        while (line := await conn.line()) is not None:
            verb, _, args = line.partition(" ")
            verb = verb.upper()
            self._log(f"pop {verb}" if verb.isalpha() and len(verb) <= 8 else "pop ?")
            if verb == "CAPA":
                await conn.send("+OK", "TOP", "UIDL", "SASL PLAIN XOAUTH2", "USER", ".")
            elif verb == "USER":
                await conn.send("+OK")
            elif verb == "PASS":
                await conn.send("-ERR Logon failure: unknown user name or bad password.")
            elif verb == "AUTH":
                mechanism, _, initial = args.partition(" ")
                if mechanism.upper() not in {"PLAIN", "XOAUTH2"}:
                    await conn.send("-ERR Unrecognized authentication type.")
                    continue
                if not initial:
                    await conn.send("+ ")
                    if await conn.line() is None:
                        return
                await conn.send("-ERR Logon failure: unknown user name or bad password.")
            elif verb == "QUIT":
                await conn.send("+OK Microsoft Exchange Server POP3 server signing off.")
                return
            elif verb in {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL"}:
                await conn.send("-ERR Command is not valid in this state.")
            else:
                await conn.send("-ERR Protocol error. 14")

    # ---- SMTP submission (RFC 5321, RFC 3207 STARTTLS, RFC 4954 AUTH) --------------------

    async def _smtp(self, conn: _Conn) -> None:
        cfg = self.config
        date = formatdate(localtime=False, usegmt=False)  # RFC 5322 date, "+0000"
        await conn.send(
            cfg.greeting or f"220 {cfg.server_name} Microsoft ESMTP MAIL Service ready at {date}"
        )
        secure = False
        greeted = False
        while (line := await conn.line()) is not None:
            verb, _, args = line.partition(" ")
            verb = verb.upper()
            self._log(f"smtp {verb}" if verb.isalpha() and len(verb) <= 10 else "smtp ?")
            if verb in {"EHLO", "HELO"}:
                if not args.strip():
                    await conn.send("501 5.5.4 Invalid domain name")
                    continue
                greeted = True
                if verb == "HELO":
                    await conn.send(f"250 {cfg.server_name} Hello [127.0.0.1]")
                else:
                    await conn.send(*self._ehlo_lines(secure))
            elif verb == "STARTTLS":
                if secure or not cfg.starttls_offered or self.tls is None:
                    await conn.send("500 5.3.3 Unrecognized command 'STARTTLS'")
                    continue
                await conn.send("220 2.0.0 SMTP server ready")
                if cfg.starttls_broken:
                    self._log("smtp starttls: garbage")
                    conn.writer.write(os.urandom(256))
                    await conn.writer.drain()
                    return
                await conn.writer.start_tls(self.tls, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
                self._log("smtp tls")
                secure, greeted = True, False  # RFC 3207 §4.2: forget everything, EHLO again
            elif verb == "AUTH":
                if not (secure and cfg.auth_after_tls and greeted):
                    await conn.send("504 5.7.4 Unrecognized authentication type")
                    continue
                mechanism, _, initial = args.partition(" ")
                if mechanism.upper() == "LOGIN":
                    prompts = ["VXNlcm5hbWU6", "UGFzc3dvcmQ6"]  # "Username:", "Password:"
                    if initial:
                        prompts = prompts[1:]
                    for prompt in prompts:
                        await conn.send(f"334 {prompt}")
                        if await conn.line() is None:
                            return
                elif mechanism.upper() == "XOAUTH2":
                    if not initial:
                        await conn.send("334 ")
                        if await conn.line() is None:
                            return
                else:
                    await conn.send("504 5.7.4 Unrecognized authentication type")
                    continue
                await conn.send("535 5.7.3 Authentication unsuccessful")
            elif verb in {"MAIL", "RCPT", "DATA", "BDAT"}:
                await conn.send("530 5.7.57 Client not authenticated to send mail.")
            elif verb == "NOOP":
                await conn.send("250 2.0.0 OK")
            elif verb == "RSET":
                await conn.send("250 2.0.0 Resetting")
            elif verb == "QUIT":
                await conn.send("221 2.0.0 Service closing transmission channel")
                return
            else:
                await conn.send("500 5.3.3 Unrecognized command")

    def _ehlo_lines(self, secure: bool) -> list[str]:
        cfg = self.config
        features = [f"SIZE {SMTP_SIZE}", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES"]
        if not secure and cfg.starttls_offered:
            features.append("STARTTLS")
        if secure and cfg.auth_after_tls:
            features.append("AUTH LOGIN XOAUTH2")
        features += ["8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8"]
        lines = [f"{cfg.server_name} Hello [127.0.0.1]", *features]
        return [f"250-{text}" for text in lines[:-1]] + [f"250 {lines[-1]}"]
