"""App-only tokens through msal, with msal's HTTP on the project's network seam.

msal is synchronous. It runs in a worker thread (`asyncio.to_thread`); its `http_client` is a
bridge that hands every request back to the event loop (`asyncio.run_coroutine_threadsafe`)
and runs it through `Network.request`, so MAILFIX_DNS_SERVERS, MAILFIX_CA_BUNDLE and the
address guard apply to msal as to every check: the OpenID configuration, instance discovery
(msal asks it when a token request fails, and for unfamiliar authorities) and the token
request. The loop never blocks.

One `ConfidentialClientApplication` per tenant configuration lives for the whole process, so
its token cache (and msal's own refresh before expiry) serves every diagnosis. The bridge finds
the diagnosis it works for (its Network, its deadline) in a context variable set inside the
worker thread, so concurrent diagnoses share the application and never each other's network.

The client secret goes only into msal's token request body. Nothing here logs a body, a token
or a secret; error messages are built from Entra's error codes, never from what we sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import hashlib
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import msal
import msal.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from checks.cloud import CloudHosts
from checks.net.errors import NetError, NetTimeout
from checks.net.seam import Network
from checks.settings import CheckSettings
from checks.tenant.errors import TenantAuthFailed, TenantError, TenantUnavailable, Throttled

# What an Entra token error means, in words an admin can act on (reference §5.4 and the Entra
# error-code reference it cites; the 7000xxx client-credential codes are from the same page).
_TOKEN_ERRORS: dict[int, str] = {
    7000215: "the client secret is wrong (MAILFIX_CLIENT_SECRET does not match the app's secret)",
    7000222: "the client secret has expired; create a new one in the app registration",
    700016: "the application (MAILFIX_CLIENT_ID) is not found in this tenant, or has no "
    "admin consent there",
    700027: "the client certificate is not registered on the app, or its signature is wrong",
    90002: "the tenant (MAILFIX_TENANT_ID) does not exist",
    900023: "MAILFIX_TENANT_ID is not a valid tenant id or domain",
    7000112: "the application is disabled",
    700024: "the client assertion (certificate) is not within its valid time range",
}

_AADSTS = re.compile(r"AADSTS(\d+)")


def token_error_words(aadsts: int | None) -> str | None:
    """What a refused token request means, in words (None for a code we do not know)."""
    return _TOKEN_ERRORS.get(aadsts) if aadsts is not None else None


class _BridgeResponse:
    """The response shape msal reads: status_code, text, headers, raise_for_status()."""

    def __init__(self, status_code: int, text: str, headers: Mapping[str, str]) -> None:
        self.status_code = status_code
        self.text = text
        self.headers = dict(headers)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise _DiscoveryFailed(f"the sign-in service answered HTTP {self.status_code}")


class _DiscoveryFailed(TenantUnavailable):
    """msal's own check of a discovery answer failed (it calls raise_for_status on those)."""


@dataclass
class _Call:
    """One token acquisition: which loop and seam the worker thread's requests go through."""

    loop: asyncio.AbstractEventLoop
    net: Network
    deadline: float | None
    sent: list[str] = field(default_factory=list)  # "GET https://login…" (no bodies)
    last_status: int | None = None  # of the last token POST
    last_retry_after: float | None = None
    last_post_text: str = ""  # the token endpoint's answer (an answer: it holds no secret)
    abandoned: threading.Event = field(default_factory=threading.Event)
    pending: set[concurrent.futures.Future[Any]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def budget(self, asked: float | None) -> float:
        total = self.net.timeouts.total if asked is None else min(asked, self.net.timeouts.total)
        if self.deadline is not None:
            total = min(total, self.deadline - time.monotonic())
        return max(0.0, total)


_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("tenant_call", default=None)


class SeamHttpClient:
    """msal's `http_client`: every request goes back to the event loop and through the seam."""

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **_: Any,
    ) -> _BridgeResponse:
        return self._send("GET", url, params, None, headers, timeout)

    def post(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **_: Any,
    ) -> _BridgeResponse:
        return self._send("POST", url, params, data, headers, timeout)

    def close(self) -> None:  # msal may call it; the seam belongs to the diagnosis
        return None

    def _send(  # noqa: PLR0917 - msal's get/post hand everything on
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        data: Mapping[str, Any] | str | bytes | None,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> _BridgeResponse:
        call = _CALL.get()
        if call is None:  # msal used outside `acquire_token`: refuse rather than go around the seam
            raise RuntimeError("msal tried to reach the network outside a tenant call")
        if call.abandoned.is_set():
            raise TenantUnavailable("the diagnosis no longer waits for this sign-in")
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(dict(params))}"
        send_headers = dict(headers or {})
        content: bytes | None = None
        if data is not None:
            if isinstance(data, Mapping):
                content = urlencode(dict(data)).encode()
                send_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
            else:
                content = data.encode() if isinstance(data, str) else data
        budget = call.budget(timeout)
        call.sent.append(f"{method} {url.split('?', 1)[0]}")
        future = asyncio.run_coroutine_threadsafe(
            call.net.request(method, url, headers=send_headers, content=content, timeout=budget),
            call.loop,
        )
        with call.lock:
            call.pending.add(future)
        try:
            response = future.result(timeout=budget + 1.0)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise NetTimeout(f"{url}: no answer within {budget:g} s") from exc
        except concurrent.futures.CancelledError as exc:
            raise TenantUnavailable("the diagnosis no longer waits for this sign-in") from exc
        finally:
            with call.lock:
                call.pending.discard(future)
        if method == "POST":  # the token request (discovery GETs that follow do not count)
            call.last_status = response.status
            call.last_retry_after = _retry_after(response.headers.get("retry-after"))
            call.last_post_text = response.body.decode("utf-8", errors="replace")
        text = response.body.decode("utf-8", errors="replace")
        return _BridgeResponse(response.status, text, response.headers)


_BRIDGE = SeamHttpClient()


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# --- the applications ---------------------------------------------------------------------


_APPS: dict[tuple[str, ...], msal.ConfidentialClientApplication] = {}
_APPS_LOCK = threading.Lock()


def forget_applications() -> None:
    """Drop every cached msal application and its token cache (tests; a credential rotation)."""
    with _APPS_LOCK:
        _APPS.clear()
        _SCOPE_LOCKS.clear()


def _app_key(settings: CheckSettings, cloud: CloudHosts) -> tuple[str, ...]:
    secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
    cert = str(settings.client_certificate or "")
    return (
        cloud.login,
        settings.tenant_id or "",
        settings.client_id or "",
        hashlib.sha256(secret.encode()).hexdigest(),
        cert,
        str(settings.ca_bundle or ""),
        ",".join(f"{s.host}:{s.port}" for s in settings.dns_servers),
    )


def _certificate_credential(settings: CheckSettings) -> dict[str, str]:
    """MAILFIX_CLIENT_CERTIFICATE: one PEM holding the certificate and its private key."""
    path = settings.client_certificate
    assert path is not None
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise TenantAuthFailed(
            f"the client certificate file {path} cannot be read ({exc.strerror})"
        ) from None
    password = settings.client_certificate_password
    passphrase = password.get_secret_value().encode() if password else None
    key_block = re.search(
        rb"-----BEGIN (?:ENCRYPTED |RSA |EC )?PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
        pem,
        re.DOTALL,
    )
    cert_block = re.search(
        rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem, re.DOTALL
    )
    if key_block is None or cert_block is None:
        raise TenantAuthFailed(
            f"the client certificate file {path} must hold both the certificate and its private "
            "key in PEM form"
        )
    try:
        key = serialization.load_pem_private_key(key_block.group(0), passphrase)
        x509.load_pem_x509_certificate(cert_block.group(0))
    except (ValueError, TypeError):
        hint = (
            "check MAILFIX_CLIENT_CERTIFICATE_PASSWORD"
            if b"ENCRYPTED" in key_block.group(0)
            else "it is not a valid PEM certificate and key"
        )
        raise TenantAuthFailed(
            f"the client certificate file {path} could not be read: {hint}"
        ) from None
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    # With public_certificate msal computes the SHA-256 thumbprint (x5t#S256) and sends x5c.
    return {"private_key": private_pem, "public_certificate": cert_block.group(0).decode()}


def _application(settings: CheckSettings, cloud: CloudHosts) -> msal.ConfidentialClientApplication:
    """The shared application for these settings (built on first use: msal fetches the
    authority's OpenID configuration then, through the bridge). Runs in a worker thread."""
    key = _app_key(settings, cloud)
    with _APPS_LOCK:
        app = _APPS.get(key)
        if app is not None:
            return app
        credential: str | dict[str, str]
        if settings.client_certificate is not None:
            credential = _certificate_credential(settings)
        elif settings.client_secret is not None:
            credential = settings.client_secret.get_secret_value()
        else:
            raise TenantAuthFailed("no client secret or certificate is configured")
        try:
            app = msal.ConfidentialClientApplication(
                settings.client_id,
                client_credential=credential,
                authority=f"https://{cloud.login}/{settings.tenant_id}",
                http_client=_BRIDGE,
            )
        except ValueError as exc:  # msal: the OpenID configuration was refused (4xx)
            raise TenantAuthFailed(
                f"{cloud.login} does not know the tenant {settings.tenant_id!r} "
                "(check MAILFIX_TENANT_ID and MAILFIX_CLOUD)",
                request=f"GET https://{cloud.login}/{settings.tenant_id}/v2.0/"
                ".well-known/openid-configuration",
            ) from exc
        _APPS[key] = app
        return app


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float  # time.monotonic()
    requests: tuple[str, ...]  # what msal sent for it ("POST https://login…/token"); empty = cache


_SCOPE_LOCKS: dict[tuple[tuple[str, ...], str], threading.Lock] = {}


def _acquire_in_thread(
    call: _Call, settings: CheckSettings, cloud: CloudHosts, scope: str
) -> tuple[dict[str, Any], float]:
    _CALL.set(call)  # this worker thread's context only (asyncio.to_thread copies a context)
    app = _application(settings, cloud)
    with _APPS_LOCK:
        lock = _SCOPE_LOCKS.setdefault((_app_key(settings, cloud), scope), threading.Lock())
    # Concurrent diagnoses wait for the first token request instead of each sending one; the
    # others then read msal's cache.
    with lock:
        if call.abandoned.is_set():
            raise TenantUnavailable("the diagnosis no longer waits for this sign-in")
        started = time.monotonic()
        result: dict[str, Any] = app.acquire_token_for_client(scopes=[scope])
    return result, started


def forget_token(settings: CheckSettings, cloud: CloudHosts, token: str) -> None:
    """Drop one access token from msal's cache (the resource said it is no longer valid)."""
    with _APPS_LOCK:
        app = _APPS.get(_app_key(settings, cloud))
    if app is None:
        return
    cache = app.token_cache
    for entry in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
        if entry.get("secret") == token:
            cache.remove_at(entry)


async def acquire_token(
    settings: CheckSettings,
    cloud: CloudHosts,
    net: Network,
    scope: str,
    *,
    deadline: float | None,
) -> Token:
    """An app-only access token for `scope` (msal's cache first; msal refreshes before expiry).

    Raises TenantAuthFailed (refused: AADSTS code kept), Throttled, TenantUnavailable (the seam
    failed — the address guard included — or the sign-in service answered 5xx).
    """
    call = _Call(loop=asyncio.get_running_loop(), net=net, deadline=deadline)
    token_url = f"POST https://{cloud.login}/{settings.tenant_id}/oauth2/v2.0/token"
    try:
        result, started = await asyncio.to_thread(_acquire_in_thread, call, settings, cloud, scope)
    except asyncio.CancelledError:
        call.abandoned.set()
        with call.lock:
            for future in list(call.pending):
                future.cancel()
        raise
    except (_DiscoveryFailed, msal.exceptions.MsalError, ValueError, KeyError) as exc:
        # msal checks its discovery answers itself (raise_for_status, JSON, keys) and asks
        # instance discovery after a refused token request: when that fails too, the refusal
        # is still the news. Otherwise the sign-in service gave an answer msal could not use.
        refused = _json_object(call.last_post_text)
        if refused.get("error"):
            raise _token_error(refused, call, token_url) from None
        where = call.sent[-1] if call.sent else token_url
        raise TenantUnavailable(
            f"the sign-in service gave an unusable answer ({type(exc).__name__})", request=where
        ) from exc
    except TenantError as exc:
        exc.request = exc.request or (call.sent[-1] if call.sent else token_url)
        raise
    except NetError as exc:
        where = call.sent[-1] if call.sent else token_url
        raise TenantUnavailable(
            f"could not reach the sign-in service: {exc}", request=where
        ) from exc
    if "access_token" in result:
        expires_in = float(result.get("expires_in") or 300)
        return Token(
            value=str(result["access_token"]),
            expires_at=started + expires_in,
            requests=tuple(call.sent),
        )
    raise _token_error(result, call, token_url)


def _json_object(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _token_error(result: Mapping[str, Any], call: _Call, token_url: str) -> TenantError:
    codes = [int(c) for c in result.get("error_codes") or [] if str(c).isdigit()]
    description = str(result.get("error_description") or "")
    if not codes:
        found = _AADSTS.search(description)
        if found:
            codes = [int(found.group(1))]
    code = codes[0] if codes else None
    error = str(result.get("error") or "")
    if call.last_status in (429, 503) or error == "temporarily_unavailable":
        return Throttled(
            "the sign-in service is throttling mailfix's token requests",
            request=token_url,
            retry_after=call.last_retry_after or 0.0,
            code=error or None,
        )
    if call.last_status is not None and call.last_status >= 500:
        return TenantUnavailable(
            f"the sign-in service answered HTTP {call.last_status}", request=token_url, code=error
        )
    meaning = _TOKEN_ERRORS.get(code or -1)
    if meaning is None:
        # Entra's first sentence, without trace / correlation ids and timestamps.
        first = description.splitlines()[0] if description else ""
        first = re.sub(r"\s*(Trace ID|Correlation ID|Timestamp):.*$", "", first)
        meaning = first[:300] or (error or "the token request was refused")
    prefix = f"AADSTS{code}: " if code else ""
    return TenantAuthFailed(
        f"The sign-in service refused mailfix's app-only token: {prefix}{meaning}.",
        request=token_url,
        aadsts=code,
        code=error or None,
    )
