"""Teams inbound authentication: the bearer token checked by us before botbuilder sees anything,
and the SDK's configuration (reference/chat-platforms.md §B2-§B3).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import jwt
from botbuilder.core import TurnContext
from botbuilder.schema import (
    Activity,
    CallerIdConstants,
)
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import (
    AuthenticateRequestResult,
    AuthenticationConstants,
    BotFrameworkAuthentication,
    ClaimsIdentity,
    ConnectorFactory,
    EmulatorValidation,
    JwtTokenValidation,
    UserTokenClient,
)
from jwt.algorithms import RSAAlgorithm

from bot.limits import parse_json_object
from bot.settings import TeamsAppType

log = logging.getLogger(__name__)


# --- settings -> the SDK's configuration ----------------------------------------------------


@dataclass(frozen=True)
class AdapterConfig:
    """What `ConfigurationBotFrameworkAuthentication` reads (attribute names are the SDK's).

    The SDK reads each attribute with `getattr(config, name, None)`, so None means unset. Any
    of the endpoint attributes switches it from its built-in public-cloud authentication to
    the parameterized one, which needs them all: see `with_openid_metadata`.
    """

    APP_ID: str
    APP_PASSWORD: str
    APP_TYPE: str
    APP_TENANTID: str
    TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL: str | None = None
    TO_BOT_FROM_CHANNEL_TOKEN_ISSUER: str | None = None
    TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL: str | None = None
    TO_CHANNEL_FROM_BOT_LOGIN_URL: str | None = None
    TO_CHANNEL_FROM_BOT_OAUTH_SCOPE: str | None = None
    OAUTH_URL: str | None = None
    CALLER_ID: str | None = None

    def with_openid_metadata(self, url: str) -> AdapterConfig:
        """Inbound tokens' signing keys from `url`; every other endpoint the public cloud's.

        These are the values `_PublicCloudBotFrameworkAuthentication` uses, so only where the
        keys come from changes: the issuer must still be https://api.botframework.com, and
        replies still get their tokens from the public cloud's login.
        """
        return replace(
            self,
            TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL=url,
            TO_BOT_FROM_CHANNEL_TOKEN_ISSUER=AuthenticationConstants.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER,
            TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL=(
                AuthenticationConstants.TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL
            ),
            TO_CHANNEL_FROM_BOT_LOGIN_URL=AuthenticationConstants.TO_CHANNEL_FROM_BOT_LOGIN_URL_PREFIX,
            TO_CHANNEL_FROM_BOT_OAUTH_SCOPE=AuthenticationConstants.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE,
            OAUTH_URL=AuthenticationConstants.OAUTH_URL,
            CALLER_ID=CallerIdConstants.public_azure_channel,
        )


MAX_CONNECTORS = 64  # connector clients kept: one per (app id, scope, serviceUrl, audience)


class _SharedConnectors(ConnectorFactory):  # type: ignore[misc]
    """The SDK's connector factory, with its clients kept and shared between turns.

    The SDK builds a new `ConnectorClient` (credentials, msrest configuration, serialisers) for
    every activity and every proactive turn: the largest part of a Teams turn's CPU, measured in
    bench/ack.py. A client depends only on the app id, the scope it asks tokens for, the
    serviceUrl and the audience; botbuilder's older `BotFrameworkAdapter` kept them the same
    way. Bounded, least recently used first out.
    """

    def __init__(
        self,
        inner: ConnectorFactory,
        identity: ClaimsIdentity | None,
        cache: OrderedDict[tuple[Any, ...], ConnectorClient],
    ) -> None:
        self._inner = inner
        claims = identity.claims if identity is not None else {}
        self._app_id = JwtTokenValidation.get_app_id_from_claims(claims) if claims else None
        self._scope = getattr(inner, "_to_channel_from_bot_oauth_scope", None)
        self._cache = cache

    async def create(self, service_url: str, audience: str | None = None) -> ConnectorClient:
        key = (type(self._inner), self._app_id, self._scope, service_url, audience)
        client = self._cache.get(key)
        if client is not None:
            self._cache.move_to_end(key)
            return client
        client = await self._inner.create(service_url, audience)
        self._cache[key] = client
        while len(self._cache) > MAX_CONNECTORS:
            self._cache.popitem(last=False)
        return client


class MappedAuthentication(BotFrameworkAuthentication):  # type: ignore[misc]
    """Delegates to the SDK's authentication; a token it cannot read is a 401, not a 500.

    The SDK raises `PermissionError` (-> 401) for a missing or rejected token, but lets PyJWT's
    errors (bad encoding, bad signature, expired) and its own bare `Exception`s escape (-> 500,
    §B2). Transport errors while fetching signing keys stay errors: that is our outage, not the
    caller's fault.
    """

    def __init__(
        self, inner: BotFrameworkAuthentication, verifier: TokenVerifier | None = None
    ) -> None:
        self._inner = inner
        self._verifier = verifier
        self._user_token_clients: dict[str | None, UserTokenClient] = {}
        self._connectors: OrderedDict[tuple[Any, ...], ConnectorClient] = OrderedDict()

    def result_for(self, verified: Verified) -> AuthenticateRequestResult:
        """What the SDK's own check would return, for a token `TokenVerifier` accepted."""
        identity = ClaimsIdentity(verified.claims, True)
        result = AuthenticateRequestResult()
        result.claims_identity = identity
        result.audience = self._inner.get_originating_audience()
        result.caller_id = CallerIdConstants.public_azure_channel if verified.channel else None
        result.connector_factory = self.create_connector_factory(identity)
        return result

    async def authenticate_request(
        self, activity: Activity, auth_header: str
    ) -> AuthenticateRequestResult:
        if self._verifier is not None and auth_header:
            # Never the SDK's path for a token: it fetches keys with blocking I/O (§B3).
            try:
                verified = await self._verifier.verify(auth_header)
            except KeysUnavailable as exc:
                raise ConnectionError(str(exc)) from exc
            why = self._verifier.admits(verified, activity.serialize())
            if why is not None:
                raise PermissionError(why)
            return self.result_for(verified)
        try:
            result: AuthenticateRequestResult = await self._inner.authenticate_request(
                activity, auth_header
            )
        except (PermissionError, OSError, TimeoutError):
            raise  # requests' errors are OSErrors too
        except Exception as exc:
            log.info("Teams request refused: unreadable token (%s)", type(exc).__name__)
            raise PermissionError("invalid token") from exc
        if result.connector_factory is not None:
            result.connector_factory = _SharedConnectors(
                result.connector_factory, result.claims_identity, self._connectors
            )
        return result

    async def authenticate_streaming_request(
        self, auth_header: str, channel_id_header: str
    ) -> AuthenticateRequestResult:
        return await self._inner.authenticate_streaming_request(auth_header, channel_id_header)

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        inner = self._inner.create_connector_factory(claims_identity)
        return _SharedConnectors(inner, claims_identity, self._connectors)

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> UserTokenClient:
        # The SDK builds a new client (credentials, a requests session, msrest config) for every
        # activity and every proactive turn — about a third of an invoke's CPU, measured in
        # bench/ack.py. It depends only on the app id in the claims; we never use OAuth cards,
        # so one per app id is plenty.
        app_id = JwtTokenValidation.get_app_id_from_claims(claims_identity.claims)
        client = self._user_token_clients.get(app_id)
        if client is None:
            client = await self._inner.create_user_token_client(claims_identity)
            self._user_token_clients[app_id] = client
        return client

    def create_bot_framework_client(self) -> Any:
        return self._inner.create_bot_framework_client()

    def get_originating_audience(self) -> str:
        return str(self._inner.get_originating_audience())

    async def authenticate_channel_request(self, auth_header: str) -> ClaimsIdentity:
        return await self._inner.authenticate_channel_request(auth_header)


OUTBOUND_TOKEN_TIMEOUT = 10.0  # seconds for the bot's own token (msal, in a worker thread)


async def token_off_the_loop(ctx: TurnContext, key: str) -> None:
    """Fetch the bot's outbound token in a worker thread before the turn sends anything.

    The SDK signs each Bot Connector call with `credentials.get_access_token()`, a synchronous
    msal call: on a cold cache it goes to the network on the event loop's thread, stalling
    every request the server is serving. Fetched here first, the SDK's own call finds it in
    msal's cache. If it cannot be had, the turn fails now instead of blocking later.
    """
    client = ctx.turn_state.get(key)
    credentials = getattr(getattr(client, "config", None), "credentials", None)
    should = getattr(credentials, "_should_set_token", None)
    if credentials is None or should is None or not should(None):
        return  # anonymous (no app id): nothing to fetch
    try:
        async with asyncio.timeout(OUTBOUND_TOKEN_TIMEOUT):
            await asyncio.to_thread(credentials.get_access_token)
    except Exception as exc:
        log.warning("the bot's outbound token could not be fetched (%s)", type(exc).__name__)
        raise ConnectionError("the bot's outbound token could not be fetched") from exc


def well_formed_authorization(header: str | None) -> bool:
    """No header (the SDK decides), or `Bearer <a JWT whose header and payload are JSON>`."""
    if header is None:
        return True
    scheme, _, token = header.strip().partition(" ")
    if scheme != "Bearer" or not token or " " in token:
        return False
    parts = token.split(".")
    if len(parts) != 3:
        return False
    for part in parts[:2]:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        except (binascii.Error, ValueError):
            return False
        if not isinstance(decoded, dict):
            return False
    return True


# --- inbound tokens, checked by us (reference/chat-platforms.md §B3) -------------------------
#
# The SDK's own check fetches OpenID metadata with blocking `requests` on the event loop, for
# any issuer a token names, before the signature is checked; failures are not cached; tokens
# without `exp` pass. Ours: everything the token says about itself first (the issuer — only
# those the Bot Framework documents for this app type —, RS256, the audience, `exp` required and
# not past, `nbf`, a channel token's service URL), so a forged token never makes us fetch
# anything; then keys fetched with aiohttp under a timeout, cached for a day, failures
# remembered with back-off, concurrent refreshes shared. An unknown key id against a current
# key set is the token's fault (401) even when the refetch fails; only a token that passes
# every check while no current key set can be had is our outage (503).

CHANNEL_ISSUER = AuthenticationConstants.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER  # api.botframework.com
ENTRA_METADATA_URL = AuthenticationConstants.TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL
# The Bot Framework Emulator's issuers (botframework/connector/auth/emulator_validation.py).
EMULATOR_ISSUERS = tuple(EmulatorValidation.TO_BOT_FROM_EMULATOR_TOKEN_VALIDATION_PARAMETERS.issuer)
CLOCK_SKEW = 300  # seconds; the SDK's clock_tolerance for channel tokens
KEYS_TTL = 24 * 3600.0  # the SDK refreshes OpenID metadata daily
KEYS_TIMEOUT = 5.0  # seconds for metadata + keys together
UNKNOWN_KID_REFRESH = 300.0  # an unknown key id refetches at most this often
BACKOFF = (5.0, 300.0)  # first and longest wait after a failed fetch
MAX_DOCUMENT = 256 * 1024  # bytes of metadata or JWKS we read
TEAMS_CHANNEL = "msteams"
EMULATOR_CHANNEL = "emulator"


class KeysUnavailable(Exception):
    """The signing keys could not be fetched (our outage: 503, not the caller's fault);
    `retry_after`: seconds until the next fetch is tried."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class _Key:
    public: Any
    endorsements: tuple[str, ...]


class SigningKeys:
    """The signing keys published behind one OpenID metadata URL (its `jwks_uri`)."""

    def __init__(
        self,
        metadata_url: str,
        *,
        timeout: float = KEYS_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metadata_url = metadata_url
        self.timeout = timeout
        self._clock = clock
        self.fetches = 0
        self._keys: dict[str, _Key] = {}
        self._fetched = -1e18  # monotonic time of the last successful fetch
        self._attempted = -1e18  # ... and of the last attempt
        self._failures = 0
        self._retry_at = 0.0
        self._inflight: asyncio.Future[None] | None = None

    async def key(self, kid: str) -> _Key | None:
        """The key `kid`, fetching (once, for every waiter) only when it is due.

        None when the issuer does not publish `kid`: a fresh key set without it (refetched at
        most every `UNKNOWN_KID_REFRESH`; a refetch that fails or is backing off leaves the
        fresh set the answer). KeysUnavailable only when there is no fresh set to decide with.
        """
        now = self._clock()
        fresh = now - self._fetched < KEYS_TTL
        if fresh and kid in self._keys:
            return self._keys[kid]
        if fresh and now - self._attempted < UNKNOWN_KID_REFRESH:
            return None  # an unknown key id does not make us refetch on every request
        try:
            if now < self._retry_at:
                raise KeysUnavailable(
                    "signing keys unavailable (backing off)", retry_after=self._retry_at - now
                )
            if self._inflight is None:
                self._inflight = asyncio.ensure_future(self._refresh())
                self._inflight.add_done_callback(self._done)
            await asyncio.shield(self._inflight)
        except KeysUnavailable:
            if kid in self._keys:  # a day-old key beats no answer while the host is down
                return self._keys[kid]
            if fresh:  # the set we hold is current and does not list it: not a key of theirs
                return None
            raise
        return self._keys.get(kid)

    def _done(self, future: asyncio.Future[None]) -> None:
        self._inflight = None
        if not future.cancelled():
            future.exception()  # retrieved here: waiters re-raise it themselves

    async def _refresh(self) -> None:
        self._attempted = self._clock()
        self.fetches += 1
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with aiohttp.ClientSession(timeout=timeout, trust_env=True) as session:
                metadata = await _get_json(session, self.metadata_url)
                jwks_uri = metadata.get("jwks_uri")
                if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http")):
                    raise ValueError("the metadata has no jwks_uri")
                document = await _get_json(session, jwks_uri)
            keys = _parse_jwks(document)
        except Exception as exc:
            self._failures += 1
            wait = min(BACKOFF[1], BACKOFF[0] * 2 ** (self._failures - 1))
            self._retry_at = self._clock() + wait
            log.warning(
                "Teams signing keys could not be fetched (%s); next try in %.0f s",
                type(exc).__name__,
                wait,
            )
            raise KeysUnavailable("signing keys unavailable", retry_after=wait) from exc
        self._keys = keys
        self._fetched = self._clock()
        self._failures = 0
        self._retry_at = 0.0


async def _get_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url, allow_redirects=False) as response:
        response.raise_for_status()
        data = await response.content.read(MAX_DOCUMENT + 1)
    if len(data) > MAX_DOCUMENT:
        raise ValueError("document too large")
    return parse_json_object(data)


def _parse_jwks(document: Mapping[str, Any]) -> dict[str, _Key]:
    keys: dict[str, _Key] = {}
    for entry in document.get("keys") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("kty") != "RSA":
            continue
        try:
            public = RSAAlgorithm.from_jwk(json.dumps(entry))
        except Exception as exc:  # one bad key does not spoil the others
            log.info("a signing key was skipped (%s)", type(exc).__name__)
            continue
        endorsements = entry.get("endorsements")
        keys[entry["kid"]] = _Key(
            public,
            tuple(e for e in endorsements if isinstance(e, str))
            if isinstance(endorsements, list)
            else (),
        )
    if not keys:
        raise ValueError("no usable RSA keys")
    return keys


@dataclass(frozen=True)
class Verified:
    """A token whose signature, issuer, audience and lifetime were checked."""

    token: str
    claims: dict[str, Any]
    endorsements: tuple[str, ...]
    channel: bool  # issued by the Bot Framework channel service (not Entra / the Emulator)


class TokenVerifier:
    """Checks inbound Bot Framework tokens without the SDK's blocking path (§B3)."""

    def __init__(
        self,
        app_id: str,
        *,
        channel_metadata_url: str | None = None,
        app_type: TeamsAppType = TeamsAppType.MULTI_TENANT,
        tenant_id: str | None = None,
        emulator: bool = False,
        timeout: float = KEYS_TIMEOUT,
    ) -> None:
        self.app_id = app_id
        self.emulator = emulator
        channel_keys = SigningKeys(
            channel_metadata_url or AuthenticationConstants.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL,
            timeout=timeout,
        )
        self.issuers: dict[str, SigningKeys] = {CHANNEL_ISSUER: channel_keys}
        entra: SigningKeys | None = None
        if app_type is TeamsAppType.SINGLE_TENANT and tenant_id:
            # A single-tenant bot's channel tokens may come from its own tenant (v1 / v2).
            entra = SigningKeys(ENTRA_METADATA_URL, timeout=timeout)
            for template in (
                AuthenticationConstants.VALID_TOKEN_ISSUER_URL_TEMPLATE_V1,
                AuthenticationConstants.VALID_TOKEN_ISSUER_URL_TEMPLATE_V2,
            ):
                self.issuers[template.format(tenant_id)] = entra
        if emulator:  # `mailfix demo` only
            entra = entra or SigningKeys(ENTRA_METADATA_URL, timeout=timeout)
            for issuer in EMULATOR_ISSUERS:
                self.issuers[issuer] = entra
        self.channels = {TEAMS_CHANNEL, EMULATOR_CHANNEL} if emulator else {TEAMS_CHANNEL}

    async def verify(self, header: str) -> Verified:
        """The checked token from `Authorization: Bearer …`. PermissionError when it is not
        good; KeysUnavailable when the keys to check it cannot be had.

        Everything the token says about itself is checked before any key is fetched, so a
        forged token is refused (401) even while the key host is down; only a token that passes
        every one of those checks waits for keys (and gets 503 when there are none to be had).
        """
        scheme, _, token = header.strip().partition(" ")
        if scheme != "Bearer" or not token:
            raise PermissionError("not a bearer token")
        try:
            head = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise PermissionError("unreadable token") from None
        issuer = unverified.get("iss")
        # The issuer first: a token naming any other never makes us fetch anything.
        if not isinstance(issuer, str) or issuer not in self.issuers:
            raise PermissionError("issuer not accepted")
        keys = self.issuers[issuer]
        if head.get("alg") != "RS256" or not isinstance(head.get("kid"), str):
            raise PermissionError("algorithm or key id not accepted")
        channel = issuer == CHANNEL_ISSUER
        self._check_claims(token, issuer, channel)  # the same checks as below, without the key
        key = await keys.key(head["kid"])
        if key is None:
            raise PermissionError("unknown signing key")
        claims = self._check_claims(token, issuer, channel, key.public)
        return Verified(token, claims, key.endorsements, channel)

    def _check_claims(
        self, token: str, issuer: str, channel: bool, key: Any = None
    ) -> dict[str, Any]:
        """The token's claims, checked: issuer, audience, `exp` present and not past, `nbf`
        and `iat` (PyJWT's checks, with the SDK's clock skew), the app it is for, and for a
        channel token its `serviceurl` (compared with the activity later, in `admits`). With
        `key`, the RS256 signature too; without, nothing that needs the key."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                issuer=issuer,
                audience=self.app_id if channel else None,
                leeway=CLOCK_SKEW,
                options={
                    "verify_signature": key is not None,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "verify_iat": True,
                    "verify_iss": True,
                    "verify_aud": channel,
                    "require": ["exp", "iss"],
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise PermissionError(f"the token has no {exc.claim}") from None
        except jwt.PyJWTError as exc:
            raise PermissionError(f"token refused ({type(exc).__name__})") from None
        if channel:
            service_url = claims.get("serviceurl")
            if not isinstance(service_url, str) or not service_url:
                raise PermissionError("the token names no service URL")
        else:
            # Entra / Emulator tokens name the bot in appid (v1) or azp (v2), as the SDK checks.
            named = (claims.get("appid"), claims.get("azp"), claims.get("aud"))
            if self.app_id not in named:
                raise PermissionError("the token is for another app")
        return claims

    def admits(self, verified: Verified, activity: Mapping[str, Any]) -> str | None:
        """Why this checked token does not cover this activity, or None when it does."""
        channel_id = activity.get("channelId")
        if channel_id not in self.channels:
            return "channel not accepted"
        if verified.endorsements and channel_id not in verified.endorsements:
            return "the signing key is not endorsed for this channel"
        if verified.channel and verified.claims.get("serviceurl") != activity.get("serviceUrl"):
            return "the token is for another service URL"
        return None
