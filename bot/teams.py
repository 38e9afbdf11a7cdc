"""Teams side: a thin translator between Bot Framework activities and our Turn / Reply models.

The only module that imports botbuilder / botframework (DESIGN.md: the SDK is archived upstream,
so a move to the Microsoft 365 Agents SDK stays inside this file).

In (POST /api/messages, `CloudAdapter`):
- a message "mailfix [address]" in a personal chat, or "@mailfix …" in a channel or group chat
  -> `Turn(START)` -> the intake card, sent as a new message;
- the intake card's `Action.Execute` (invoke `adaptiveCard/action`, verb `mailfix.intake`) or its
  `Action.Submit` fallback (a message activity whose `value` holds the data) -> `Turn(SUBMIT)`;
- a results card button (verbs `mailfix.run_again|fixed|escalate`, both paths) -> `Turn(ACTION)`.
Out: `Reply` -> Bot Connector calls (`send`, one function): a new message (POST) or the same
message edited in place (PUT, `update_activity`).

The helpdesk loop (dialogs/helpdesk.py decides everything; this only translates):
- the app added to a team (`conversationUpdate`, the bot in membersAdded, channelData.team) ->
  the team's reference and service URL in the database (`teams:team:{id}`, `teams:service_url`),
  so any replica can post proactively; removal is recorded too;
- `helpdesk_channel()` -> `TeamsHelpdesk`, the Teams `HelpdeskChannel`: a case card starts a new
  thread in MAILFIX_HELPDESK_TEAMS_CHANNEL (§B5), its ref stored by the Helpdesk so any replica
  edits it in place; the person is told in their personal chat, a question with a box to answer;
  a refusal (403 not installed, 404 wrong channel id, 401 credentials) becomes words;
- case card buttons (verbs `dialogs.cases.CaseAction`, both paths) -> `dialogs.case_buttons.press`
  with the token-verified `aadObjectId` as the actor, never the card's data; answered with the
  card as that user sees it; Teams' automatic refresh (refresh.userIds: the approvers) gets the
  approver's view, everyone else the card without Approve / Reject;
- `doctor_post` -> `mailfix doctor`'s Teams half: a test card, or what is wrong in words.

How a card action is answered (reference/chat-platforms.md §B4-§B6):
- the flow's first reply is pulled at once (no checks run before it: at most a store write). For
  `Action.Execute` it becomes the invoke response, so the card the person pressed is replaced in
  place by the progress card (or the form with its errors); for `Action.Submit` the same card is
  edited with `update_activity`, its id being the activity's `replyToId`;
- the rest of the flow (the checks, then results) runs on the runtime's task supervisor and edits
  that same message, after the HTTP response has been written: Teams waits at most 15 s (§B6),
  and an edit must not overtake the invoke response it follows;
- a crash edits the card to the error card, never silence. Teams retries deliveries (§B6): an
  activity id seen before is answered without running anything again (`runtime.events`).

Two SDK bugs are worked around here:
- `ActivityHandler` serialises invoke bodies to dicts and `CloudAdapter.process` serialises them
  again, which fails (HTTP 500; headline finding 1): `on_invoke_activity` returns msrest models;
- a malformed `Authorization` header raises `jwt.DecodeError` -> HTTP 500 (§B2): it is refused
  with 401 before the adapter sees it, and token errors inside the SDK are mapped to 401 as well.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import html
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, ClassVar

import aiohttp
import jwt
from aiohttp import web
from botbuilder.core import CardFactory, InvokeResponse, MessageFactory, TurnContext
from botbuilder.core.serializer_helper import serializer_helper
from botbuilder.core.teams import TeamsActivityHandler
from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
)
from botbuilder.schema import (
    Activity,
    ActivityTypes,
    AdaptiveCardInvokeResponse,
    CallerIdConstants,
    ChannelAccount,
    ConversationAccount,
    ConversationParameters,
    ConversationReference,
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
from botframework.connector.teams import TeamsConnectorClient
from jwt.algorithms import RSAAlgorithm

from bot.limits import BadBody, parse_json_object
from bot.runtime import Handler, Runtime
from bot.settings import Settings, TeamsAppType
from cards import Target, render
from cards.data import ErrorData
from dialogs.approval import Actor
from dialogs.case_buttons import BadPress, card_for, case_number, press
from dialogs.cases import Case, CaseAction, CaseState
from dialogs.helpdesk import Helpdesk, Posted
from dialogs.intake import address_from_text
from dialogs.models import (
    Action,
    CardSpec,
    FormErrors,
    Notice,
    Person,
    Platform,
    Post,
    Reply,
    ShowForm,
    Turn,
    TurnKind,
    Update,
)
from dialogs.presses import click_key

log = logging.getLogger(__name__)

COMMAND = "mailfix"
HELP = "help"  # with COMMAND, the manifest's command menu (bot/manifests.py TEAMS_COMMANDS)
INTAKE = "mailfix.intake"
CARD_ACTION = "adaptiveCard/action"
ADAPTIVE = "application/vnd.microsoft.card.adaptive"
MESSAGE = "application/vnd.microsoft.activity.message"
ERROR = "application/vnd.microsoft.error"

FIRST_REPLY_TIMEOUT = 8.0  # seconds; the invoke answer must beat Teams' 15 s (§B6)
EMAIL_LOOKUP_TIMEOUT = 3.0
EMAIL_CACHE = 10_000

HELP_TEXT = (
    "I find out why Outlook, a phone or another mail app cannot reach an Exchange Online "
    "mailbox. Type mailfix (or mailfix name@contoso.com) here, or @mention me with mailfix in "
    "a channel, and fill in the short form. I never ask for a password."
)
UNKNOWN_BUTTON = "I don't know that button. Please use the buttons on the card."
ALREADY_PRESSED = "This click was already handled."
STILL_WORKING = "Working on it: this card updates when it is done."
NO_HELPDESK = "The helpdesk is not set up on this server, so this button does nothing here."

# The helpdesk loop (dialogs/helpdesk.py): the person's answer to a helpdesk question comes
# back from a small card in their chat (`answer_card`), verb ANSWER, text in ANSWER_INPUT.
ANSWER = "mailfix.case.answer"
ANSWER_INPUT = "answer"
MAX_ANSWER = 2000
CASE_VERBS = frozenset(a.value for a in CaseAction) | {ANSWER}
# conversation_refs keys: what any replica needs to post proactively (§B5).
TEAM_KEY = "teams:team:{}"  # a team the app is installed in: its reference and details
SERVICE_URL_KEY = "teams:service_url"  # the latest installation's service URL and tenant
HELPDESK_TEAM_KEY = "teams:helpdesk_team"  # the installed team that holds the helpdesk channel
CHANNELS_TIMEOUT = 10.0
PERSON_KEY = "teams:person:{}"  # a person's personal chat with the bot (by Entra object id)
WAITING_KEY = "teams:waiting:{}"  # the case whose question a person (Entra id) may answer
USER_KEY = "teams:user:{}"  # an Entra object id's Teams user id (MRI, "29:…")
MEMBER_LOOKUP_TIMEOUT = 3.0
ALREADY = "Already on it: this card updates when the checks finish."

_MENTION = re.compile(r"<at\b[^>]*>.*?</at>", re.IGNORECASE | re.DOTALL)
# Work to start once the HTTP response is written, collected per request (see `TeamsBot.handle`).
_AFTER: ContextVar[list[tuple[Coroutine[Any, Any, None], Recipient | None, str]] | None] = (
    ContextVar("mailfix_teams_after", default=None)
)


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
# without `exp` pass. Ours: the issuer first (only those the Bot Framework documents for this
# app type), `exp` required, keys fetched with aiohttp under a timeout, cached for a day,
# failures remembered with back-off, concurrent refreshes shared.

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
    """The signing keys could not be fetched (our outage: 503, not the caller's fault)."""


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
        """The key `kid`, fetching (once, for every waiter) only when it is due."""
        now = self._clock()
        fresh = now - self._fetched < KEYS_TTL
        if fresh and kid in self._keys:
            return self._keys[kid]
        if fresh and now - self._attempted < UNKNOWN_KID_REFRESH:
            return None  # an unknown key id does not make us refetch on every request
        try:
            if now < self._retry_at:
                raise KeysUnavailable("signing keys unavailable (backing off)")
            if self._inflight is None:
                self._inflight = asyncio.ensure_future(self._refresh())
                self._inflight.add_done_callback(self._done)
            await asyncio.shield(self._inflight)
        except KeysUnavailable:
            if kid in self._keys:  # a day-old key beats no answer while the host is down
                return self._keys[kid]
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
            raise KeysUnavailable("signing keys unavailable") from exc
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
        good; KeysUnavailable when the keys to check it cannot be had."""
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
        keys = self.issuers.get(issuer) if isinstance(issuer, str) else None
        if keys is None:
            raise PermissionError("issuer not accepted")
        if head.get("alg") != "RS256" or not isinstance(head.get("kid"), str):
            raise PermissionError("algorithm or key id not accepted")
        if not isinstance(unverified.get("exp"), int | float):
            raise PermissionError("the token has no expiry")
        key = await keys.key(head["kid"])
        if key is None:
            raise PermissionError("unknown signing key")
        channel = issuer == CHANNEL_ISSUER
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public,
                algorithms=["RS256"],
                issuer=issuer,
                audience=self.app_id if channel else None,
                leeway=CLOCK_SKEW,
                options={"require": ["exp", "iss"], "verify_aud": channel},
            )
        except jwt.PyJWTError as exc:
            raise PermissionError(f"token refused ({type(exc).__name__})") from None
        # Entra / Emulator tokens name the bot in appid (v1) or azp (v2), as the SDK checks.
        named = (claims.get("appid"), claims.get("azp"), claims.get("aud"))
        if not channel and self.app_id not in named:
            raise PermissionError("the token is for another app")
        return Verified(token, claims, key.endorsements, channel)

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


# --- invoke bodies (msrest models, never dicts: headline finding 1) --------------------------


class _TextInvokeResponse(AdaptiveCardInvokeResponse):  # type: ignore[misc]
    """The same wire shape with a string `value` (the SDK's model types `value` as a dict)."""

    _attribute_map: ClassVar[dict[str, dict[str, str]]] = {
        **AdaptiveCardInvokeResponse._attribute_map,
        "value": {"key": "value", "type": "object"},
    }


def card_response(card: dict[str, Any]) -> InvokeResponse:
    body = AdaptiveCardInvokeResponse(status_code=200, type=ADAPTIVE, value=card)
    return InvokeResponse(status=int(HTTPStatus.OK), body=body)


def text_response(text: str) -> InvokeResponse:
    """A message Teams shows on the card; the card itself stays as it is."""
    body = _TextInvokeResponse(status_code=200, type=MESSAGE, value=text)
    return InvokeResponse(status=int(HTTPStatus.OK), body=body)


def error_response(status: HTTPStatus, code: str, message: str) -> InvokeResponse:
    body = AdaptiveCardInvokeResponse(
        status_code=int(status), type=ERROR, value={"code": code, "message": message}
    )
    return InvokeResponse(status=int(status), body=body)


# --- translation in --------------------------------------------------------------------------


@dataclass
class Recipient:
    """One exchange with a person: where to write, and which messages carry which card."""

    reference: ConversationReference
    card_id: str | None = None  # the message whose card was used (edited in place)
    adopt: bool = False  # the next form or first post replaces that card (intake submissions)
    posted: dict[str, str | None] = field(default_factory=dict)  # Reply key -> activity id


def person_of(activity: Activity, email: str | None = None) -> Person:
    user = activity.from_property
    conversation = activity.conversation
    tenant = getattr(conversation, "tenant_id", None)
    if not tenant and isinstance(activity.channel_data, dict):
        found = activity.channel_data.get("tenant")
        tenant = found.get("id") if isinstance(found, dict) else None
    aad = getattr(user, "aad_object_id", None)
    return Person(
        # The Entra object id is the same in every chat and is what approvals check (§B4).
        # `handle` refuses activities without one, except the Emulator's in `mailfix demo`
        # (its "from.id" is all it has).
        id=aad if aad else f"emulator:{user.id}",
        name=user.name or None,
        email=email,
        workspace=tenant or None,
    )


def command_of(activity: Activity) -> tuple[str, str] | None:
    """("start", arguments) / ("help", "") for a typed message, None when it is not for us.

    The bot's own @mention is cut out by the exact text of its mention entity. The SDK's
    `TurnContext.remove_recipient_mention` is not used: it regex-replaces *every* occurrence of
    the bot's name, so "@mailfix mailfix-lab@contoso.com" would lose part of the address.
    """
    text = activity.text or ""
    recipient = getattr(activity.recipient, "id", None)
    for entity in activity.entities or []:
        props = getattr(entity, "additional_properties", None)
        if str(getattr(entity, "type", "")).lower() != "mention" or not isinstance(props, dict):
            continue
        mentioned, said = props.get("mentioned"), props.get("text")
        if isinstance(mentioned, dict) and mentioned.get("id") == recipient and said:
            text = text.replace(str(said), " ", 1)
    text = _MENTION.sub(" ", text)  # other people's mentions are not arguments
    words = html.unescape(text).replace("\xa0", " ").split()
    first = words[0].lower().lstrip("/@") if words else ""
    if first == HELP and len(words) == 1:
        return HELP, ""
    if first == COMMAND:
        return "start", " ".join(words[1:])
    personal = getattr(activity.conversation, "conversation_type", None) == "personal"
    if not personal:
        # Channels and group chats deliver only messages that @mention the bot: any is for us.
        return "start", " ".join(words)
    if address_from_text(" ".join(words)):
        return "start", " ".join(words)
    return None


# --- the bot ---------------------------------------------------------------------------------


class _Handler(TeamsActivityHandler):  # type: ignore[misc]
    """Routes the SDK's callbacks to `TeamsBot`; everything else keeps the SDK's defaults."""

    def __init__(self, bot: TeamsBot) -> None:
        super().__init__()
        self.bot = bot

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        await self.bot.on_message(turn_context)

    async def on_conversation_update_activity(self, turn_context: TurnContext) -> None:
        # Not the SDK's: for every member added other than the bot it fetches the member (a
        # network call per event) and we need none of it.
        await self.bot.on_conversation_update(turn_context)

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        # Not `on_adaptive_card_invoke`: its answer goes through `_create_invoke_response`,
        # which serialises it once too often (headline finding 1).
        if turn_context.activity.name == CARD_ACTION:
            return await self.bot.on_card_action(turn_context)
        return await super().on_invoke_activity(turn_context)


class TeamsBot:
    """The adapter, the activity handler, and the translation both ways."""

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.app_id = settings.teams_app_id or ""
        password = settings.teams_app_password
        config = AdapterConfig(
            APP_ID=self.app_id,
            APP_PASSWORD=password.get_secret_value() if password is not None else "",
            APP_TYPE=settings.teams_app_type.value,
            APP_TENANTID=settings.teams_app_tenant_id or "",
        )
        if settings.teams_openid_metadata_url:
            config = config.with_openid_metadata(settings.teams_openid_metadata_url)
        if not self.app_id:
            log.warning(
                "MAILFIX_TEAMS_APP_ID is empty: Teams requests are NOT authenticated and the "
                "bot talks to any serviceUrl a request names. For local development only."
            )
        try:
            auth = ConfigurationBotFrameworkAuthentication(config)
        except Exception as exc:  # the SDK raises bare Exceptions for missing settings
            raise ValueError(f"Teams settings: {exc}") from exc
        self.verifier = TokenVerifier(
            self.app_id,
            channel_metadata_url=settings.teams_openid_metadata_url,
            app_type=settings.teams_app_type,
            tenant_id=settings.teams_app_tenant_id,
            emulator=settings.teams_emulator,
            timeout=settings.teams_keys_timeout,
        )
        self.emulator = settings.teams_emulator
        self.adapter = CloudAdapter(MappedAuthentication(auth, self.verifier))
        self.handler = _Handler(self)
        self._emails: dict[str, str | None] = {}
        self._helpdesk: Helpdesk | None = None
        self._channel: TeamsHelpdesk | None = None
        self._service_url_saved: tuple[str, str | None] | None = None
        self._mris: dict[str, str] = {}  # Entra object id -> Teams user id, saved already
        self.case_action_timeout = FIRST_REPLY_TIMEOUT  # seconds a case button's answer waits

    # --- the helpdesk loop -----------------------------------------------------------------------

    @property
    def helpdesk(self) -> Helpdesk | None:
        """The helpdesk loop, once the server wired one (set here, or on the runtime)."""
        found = self._helpdesk
        if found is None:
            found = getattr(self.runtime, "helpdesk", None) or self.runtime.extras.get("helpdesk")
        return found if isinstance(found, Helpdesk) else None

    @helpdesk.setter
    def helpdesk(self, value: Helpdesk | None) -> None:
        self._helpdesk = value

    def helpdesk_channel(self) -> TeamsHelpdesk:
        """The Teams half of `dialogs.helpdesk.HelpdeskChannel` (one per bot)."""
        if self._channel is None:
            self._channel = TeamsHelpdesk(self, self.runtime.settings.helpdesk_teams_channel)
        return self._channel

    # --- HTTP ----------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """`POST /api/messages`: the token first, then the body, then botbuilder.

        With an app id, nothing from the body is parsed before the token's signature, issuer,
        audience and expiry are checked; then the activity must match the token (channel,
        service URL, endorsements) and name its sender by Entra object id.
        """
        if self.runtime.closing:
            return _problem(503, "shutting_down", "The server is shutting down; retry shortly.")
        if request.content_type != "application/json":
            return _problem(415, "unsupported_media_type", "Send the activity as JSON.")
        header = request.headers.get("Authorization")
        if not well_formed_authorization(header):
            return _unauthorized("The Authorization header is not a bearer token.")
        verified: Verified | None = None
        if self.app_id:
            if header is None:
                return _unauthorized("A bearer token is required.")
            try:
                verified = await self.verifier.verify(header)
            except PermissionError as exc:
                log.warning("Teams request refused: %s", exc)
                return _unauthorized("The token is not valid for this bot.")
            except KeysUnavailable:
                return _problem(
                    503,
                    "unavailable",
                    "The keys to check this token cannot be fetched right now; retry shortly.",
                    headers={"Retry-After": "30"},
                )
        elif header is not None:
            # No app id: nothing to check a token against, so none is taken (the Emulator
            # sends none when it has no app id either).
            log.warning("Teams request refused: a token sent to a bot without an app id")
            return _unauthorized("This bot has no app id; send no token.")
        try:
            body = parse_json_object(await request.read())
        except BadBody as exc:
            log.warning("Teams request refused: %s", exc)
            return _problem(exc.status, exc.code, str(exc))
        problem = _activity_problem(body) or self._sender_problem(body)
        activity = None if problem else _read_activity(body)
        if activity is None:
            problem = problem or "The activity does not have the Bot Framework shape."
            log.warning("Teams request refused: %s", problem)
            return _problem(400, "bad_request", problem)
        if verified is not None:
            why = self.verifier.admits(verified, body)
            if why is not None:
                log.warning("Teams request refused: %s", why)
                return _unauthorized("The token does not cover this activity.")
        elif body.get("channelId") not in self.verifier.channels:
            log.warning("Teams request refused: channel not accepted")
            return _problem(400, "bad_request", "The activity is not from Microsoft Teams.")
        try:
            auth = await self._authenticated(activity, verified)
        except PermissionError as exc:
            log.warning("Teams request refused: %s", exc)
            return _unauthorized("The token is not valid for this bot.")
        return await self._process(request, activity, auth)

    def _sender_problem(self, body: Mapping[str, Any]) -> str | None:
        """Identity is the Entra object id (`aadObjectId`) alone; only the Emulator has none."""
        if body.get("type") not in (ActivityTypes.message, ActivityTypes.invoke):
            return None
        sender = body.get("from") or {}
        aad = sender.get("aadObjectId")
        if isinstance(aad, str) and aad:
            return None
        if self.emulator and body.get("channelId") == EMULATOR_CHANNEL:
            return None
        return "The activity does not name its sender's Entra object id."

    async def _authenticated(
        self, activity: Activity, verified: Verified | None
    ) -> AuthenticateRequestResult:
        if verified is None:  # no app id: the SDK's anonymous claims (no network)
            result: AuthenticateRequestResult = (
                await self.adapter.bot_framework_authentication.authenticate_request(activity, "")
            )
            return result
        auth = self.adapter.bot_framework_authentication
        assert isinstance(auth, MappedAuthentication)
        return auth.result_for(verified)

    async def _process(
        self, request: web.Request, activity: Activity, auth: AuthenticateRequestResult
    ) -> web.StreamResponse:
        """What `CloudAdapter.process` does, on the activity we already read and checked."""
        if activity.type == ActivityTypes.message:
            # A message needs only its 201: the turn (the SDK's pipeline, the database, the
            # replies) runs after it, off the request path (bench/ack.py).
            self._spawn(self._message_turn(activity, auth), None, "teams.message")
            return web.Response(status=201)
        after: list[tuple[Coroutine[Any, Any, None], Recipient | None, str]] = []
        token = _AFTER.set(after)
        try:
            invoke = await self.adapter.process_activity(auth, activity, self.handler.on_turn)
        except PermissionError as exc:
            for work, _, _ in after:
                work.close()
            log.warning("Teams request refused: %s", exc)
            return _unauthorized("The token is not valid for this bot.")
        except BaseException:
            for work, _, _ in after:
                work.close()
            raise
        finally:
            _AFTER.reset(token)
        response: web.StreamResponse
        if invoke:
            response = web.json_response(data=serializer_helper(invoke.body), status=invoke.status)
        else:
            response = web.Response(status=201)
        if after:
            # Send the answer first: an edit must never reach Teams before the invoke response
            # whose card it edits.
            try:
                await response.prepare(request)
                await response.write_eof()
            finally:
                for work, target, name in after:
                    self._spawn(work, target, name)
        return response

    async def _message_turn(self, activity: Activity, auth: AuthenticateRequestResult) -> None:
        """A message's turn, after its 201; the work it queues starts when the turn is done."""
        after: list[tuple[Coroutine[Any, Any, None], Recipient | None, str]] = []
        token = _AFTER.set(after)
        try:
            await self.adapter.process_activity(auth, activity, self.handler.on_turn)
        except BaseException:
            for work, _, _ in after:
                work.close()
            raise
        finally:
            _AFTER.reset(token)
        for work, target, name in after:
            self._spawn(work, target, name)

    # --- activities ----------------------------------------------------------------------------

    async def on_message(self, ctx: TurnContext) -> None:
        activity = ctx.activity
        if not await self._first_time(activity):
            return
        self._remember(activity)
        if isinstance(activity.value, dict):  # an Action.Submit fallback (§B4)
            data = dict(activity.value)
            verb = data.pop("verb", None)
            if isinstance(verb, str) and verb in CASE_VERBS:
                target = Recipient(reference=TurnContext.get_conversation_reference(activity))
                words = await self._case_submit(activity, str(verb), data)
                self._after(self._stream(target, Notice(text=words), None), target, "teams.case")
                return
            target, first, rest = await self._card_turn(activity, verb, data)
            self._after(self._stream(target, first, rest), target, "teams.card_submit")
            return
        command = command_of(activity)
        target = Recipient(reference=TurnContext.get_conversation_reference(activity))
        if command is None:
            answered = await self._typed_answer(activity)
            if answered is not None:
                self._after(self._stream(target, Notice(text=answered), None), target, "teams.case")
                return
        if command is None or command[0] == HELP:
            self._after(self._stream(target, Notice(text=HELP_TEXT), None), target, "teams.help")
            return
        person = person_of(activity, self._emails.get(activity.from_property.id))
        turn = Turn(
            platform=Platform.TEAMS,
            kind=TurnKind.START,
            person=person,
            conversation=activity.conversation.id,
            text=command[1],
            id=activity.id,
        )
        limit = await self.runtime.peek(person.id)
        if not limit.allowed:
            notice = Notice(text=self.runtime.limiter.message(limit))
            self._after(self._stream(target, notice, None), target, "teams.rate_limited")
            return
        self._after(self._open_form(target, turn, activity), target, "teams.open_form")

    async def on_conversation_update(self, ctx: TurnContext) -> None:
        """The app added to (or removed from) a team: remember where to post (§B5)."""
        activity = ctx.activity
        if not await self._first_time(activity):
            return
        bot_id = getattr(activity.recipient, "id", None)
        added = any(m.id == bot_id for m in activity.members_added or [])
        removed = any(m.id == bot_id for m in activity.members_removed or [])
        team = _team_of(activity)
        if team is None:
            if added:  # a personal chat or group chat: proactive messages to it
                self._remember(activity)
            return
        if removed:
            self._after(self._save_team(activity, team, installed=False), None, "teams.team")
        elif added or isinstance(activity.service_url, str):
            work = self._save_team(activity, team, installed=True, channels=True)
            self._after(work, None, "teams.team")

    async def _save_team(
        self, activity: Activity, team: dict[str, Any], *, installed: bool, channels: bool = False
    ) -> None:
        """Store the team's installation; `channels`: also read its channels (installation
        events only, not every message from a team)."""
        save = getattr(self.runtime.store, "save_conversation_ref", None)
        service_url = activity.service_url
        if save is None or not isinstance(service_url, str):
            return
        tenant = person_of(activity).workspace
        reference = TurnContext.get_conversation_reference(activity).serialize()
        record = {
            "reference": reference,
            "team_id": team["id"],
            "team_name": team.get("name") or None,
            "tenant_id": tenant,
            "service_url": service_url,
            "bot_id": getattr(activity.recipient, "id", None),
            "installed": installed,
        }
        await save(TEAM_KEY.format(team["id"]), Platform.TEAMS, record)
        load = getattr(self.runtime.store, "conversation_ref", None)
        for key in (SERVICE_URL_KEY, HELPDESK_TEAM_KEY):
            latest = await load(key) if load is not None and not installed else None
            if latest is not None and latest.get("team_id") == team["id"]:
                # The team we post with has removed the app: say so on posting.
                await save(key, Platform.TEAMS, {**latest, "installed": False})
                self._service_url_saved = None
        log.info("Teams: the app is %s team %s", "in" if installed else "no longer in", team["id"])
        if not installed:
            return
        summary = {k: v for k, v in record.items() if k != "reference"}
        await save(SERVICE_URL_KEY, Platform.TEAMS, summary)
        self._service_url_saved = (service_url, tenant)
        listed = await self._channels_of(record) if channels else None
        if listed is None:
            return
        await save(TEAM_KEY.format(team["id"]), Platform.TEAMS, {**record, "channels": listed})
        wanted = self.runtime.settings.helpdesk_teams_channel
        named = next((c for c in listed if c["id"] == wanted), None)
        if named is not None:
            # This team holds the helpdesk channel: post with it, whoever installs the app
            # elsewhere later (another team, another tenant).
            helpdesk = {**summary, "channel_name": named["name"] or "General"}
            await save(HELPDESK_TEAM_KEY, Platform.TEAMS, helpdesk)

    async def _channels_of(self, record: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The team's channels (GET /v3/teams/{id}/conversations), or None when not to be had."""
        reference = ConversationReference().deserialize(record["reference"])
        found: list[dict[str, Any]] = []

        async def logic(ctx: TurnContext) -> None:
            client = ctx.turn_state.get(self.adapter.BOT_CONNECTOR_CLIENT_KEY)
            teams = TeamsConnectorClient(client.config.credentials, record["service_url"])
            # The SDK's Teams client is synchronous (requests): off the event loop.
            async with asyncio.timeout(CHANNELS_TIMEOUT):
                listed = await asyncio.to_thread(teams.teams.get_teams_channels, record["team_id"])
            for channel in listed.conversations or []:
                if isinstance(channel.id, str) and channel.id:
                    found.append({"id": channel.id, "name": channel.name or None})

        try:
            await self._continue(Recipient(reference=reference), logic)
        except Exception as exc:  # a nicety: posting still works from the service URL
            log.info("the channels of Teams team %s: %s", record["team_id"], type(exc).__name__)
            return None
        return found

    async def on_card_action(self, ctx: TurnContext) -> InvokeResponse:
        activity = ctx.activity
        value = activity.value if isinstance(activity.value, dict) else {}
        action = value.get("action")
        if not isinstance(action, dict) or action.get("type") != "Action.Execute":
            return error_response(
                HTTPStatus.BAD_REQUEST, "BadRequest", "Only Action.Execute is supported."
            )
        if not await self._first_time(activity):
            return text_response(ALREADY)
        self._remember(activity)
        data = action.get("data")
        data = dict(data) if isinstance(data, dict) else {}
        data.pop("verb", None)
        if isinstance(action.get("verb"), str) and action["verb"] in CASE_VERBS:
            return await self._case_invoke(activity, str(action["verb"]), data)
        target, first, rest = await self._card_turn(activity, action.get("verb"), data)
        response, leftover = self._answer(target, first)
        if leftover is not None or rest is not None:
            self._after(self._stream(target, leftover, rest), target, "teams.card_action")
        return response

    async def _card_turn(
        self, activity: Activity, verb: Any, data: dict[str, Any]
    ) -> tuple[Recipient, Reply | None, AsyncIterator[Reply] | None]:
        """A card was used (either path): the flow's first reply now, and the rest."""
        target = Recipient(
            reference=TurnContext.get_conversation_reference(activity),
            card_id=activity.reply_to_id or None,
        )
        person = person_of(activity, self._emails.get(activity.from_property.id))
        conversation = self.runtime.conversation
        if verb == INTAKE:
            target.adopt = True
            turn = Turn(
                platform=Platform.TEAMS,
                kind=TurnKind.SUBMIT,
                person=person,
                conversation=activity.conversation.id,
                values=data,
                id=activity.id,
            )
            checked = conversation.check_form(turn)
            if isinstance(checked, FormErrors):
                form_again = getattr(conversation, "form_again", None)
                return target, (form_again(turn, checked) if form_again else checked), None
            limit = await self.runtime.take(person.id)
            if not limit.allowed:
                return target, Notice(text=self.runtime.limiter.message(limit)), None
            replies = conversation.run(turn, checked)
        else:
            try:
                action = Action(verb)
            except ValueError:
                return target, Notice(text=UNKNOWN_BUTTON), None
            did = data.get("diagnosis_id")
            turn = Turn(
                platform=Platform.TEAMS,
                kind=TurnKind.ACTION,
                person=person,
                conversation=activity.conversation.id,
                action=action,
                diagnosis_id=did if isinstance(did, str) and did else None,
                values=data,
                id=activity.id,
            )
            if action is Action.RUN_AGAIN:
                limit = await self.runtime.take(person.id)
                if not limit.allowed:
                    return target, Notice(text=self.runtime.limiter.message(limit)), None
            replies = conversation.act(turn)
        return target, *(await self._first(replies))

    async def _first(
        self, replies: AsyncIterator[Reply]
    ) -> tuple[Reply | None, AsyncIterator[Reply] | None]:
        """The flow's first reply (no check runs before it), bounded in time."""
        try:
            async with asyncio.timeout(FIRST_REPLY_TIMEOUT):
                return await anext(replies), replies
        except StopAsyncIteration:
            return None, None
        except Exception:
            log.exception("a Teams card action failed before its first reply")
            await _close(replies)
            return Update(card=crash_card(), key="error"), None

    def _answer(
        self, target: Recipient, first: Reply | None
    ) -> tuple[InvokeResponse, Reply | None]:
        """The invoke response for the first reply, and what is left to send another way."""
        match first:
            case ShowForm(card=card):
                target.adopt = False
                return card_response(_adaptive(card)), None
            case Post(card=card, key=key) if target.adopt:
                target.adopt = False
                target.posted[key] = target.card_id
                return card_response(_adaptive(card)), None
            case Update(card=card, key=key):
                target.posted[key] = target.posted.get(key) or target.card_id
                return card_response(_adaptive(card)), None
            case Notice(text=text):
                return text_response(text), None
            case FormErrors(errors=errors):
                return text_response("Please check: " + "; ".join(errors.values())), None
            case None:
                return text_response("Done."), None
            case _:  # a new message, not a change of this card: send it, keep the card
                return text_response("Working on it…"), first

    # --- the case card's buttons (dialogs.case_buttons decides; this translates) -----------------

    def _actor(self, activity: Activity) -> Actor:
        """Who clicked, as the token-verified activity says: the Entra object id, never the
        card's data (§B4: the refresh only decides what each user sees)."""
        person = person_of(activity)
        return Actor(
            id=person.id,
            name=person.name or "A Teams user",
            platform=Platform.TEAMS.value,
            workspace=person.workspace,
        )

    async def _case_invoke(
        self, activity: Activity, verb: str, data: dict[str, Any]
    ) -> InvokeResponse:
        """An Action.Execute on a case card (or the person's answer card)."""
        helpdesk = self.helpdesk
        if helpdesk is None:
            return text_response(NO_HELPDESK)
        actor = self._actor(activity)
        if verb == ANSWER:
            words, card = await self._answer_case(helpdesk, actor, data)
            return card_response(_adaptive(card)) if card is not None else text_response(words)
        action = CaseAction(verb)
        if action is CaseAction.REFRESH:
            # Teams asks for the card as this user sees it: automatically for the users in
            # refresh.userIds (the approvers), or from the card's "Refresh" menu (§B4).
            number = case_number(data.get("case"))
            if number is None or await helpdesk.cases.case(number) is None:
                return error_response(HTTPStatus.BAD_REQUEST, "BadRequest", "No such case.")
            return card_response(_adaptive(await card_for(helpdesk, number, actor)))
        if not await self._press_once(helpdesk, activity, actor, verb, data):
            return text_response(ALREADY_PRESSED)
        # Approving applies the fix and re-runs checks: it may outlast Teams' 15 s (§B6). The
        # answer waits a bounded time; past it the work goes on in the background and the
        # card is edited in place when it is done (Helpdesk -> TeamsHelpdesk.update).
        work = asyncio.ensure_future(press(helpdesk, action, data, data, actor))
        try:
            async with asyncio.timeout(self.case_action_timeout):
                pressed = await asyncio.shield(work)
        except BadPress as exc:
            return error_response(HTTPStatus.BAD_REQUEST, "BadRequest", str(exc))
        except TimeoutError:
            self._after(_finish(work), None, "teams.case_action")
            return text_response(STILL_WORKING)
        if not pressed.ok or pressed.case is None:
            return text_response(pressed.words or "Nothing changed.")
        # The card everyone gets was already edited in place (Helpdesk -> TeamsHelpdesk.update);
        # the presser's own copy becomes the card as they see it.
        return card_response(_adaptive(await card_for(helpdesk, pressed.case, actor)))

    async def _case_submit(self, activity: Activity, verb: str, data: dict[str, Any]) -> str:
        """The same buttons through the Action.Submit fallback: the answer is a message."""
        helpdesk = self.helpdesk
        if helpdesk is None:
            return NO_HELPDESK
        actor = self._actor(activity)
        if verb == ANSWER:
            return (await self._answer_case(helpdesk, actor, data))[0]
        action = CaseAction(verb)
        if action is CaseAction.REFRESH:
            return "This card is up to date."
        if not await self._press_once(helpdesk, activity, actor, verb, data):
            return ALREADY_PRESSED
        try:
            pressed = await press(helpdesk, action, data, data, actor)
        except BadPress as exc:
            return str(exc)
        return pressed.words or "Done."

    async def _press_once(
        self, helpdesk: Helpdesk, activity: Activity, actor: Actor, verb: str, data: Any
    ) -> bool:
        """Record this click (one row per click, any replica): False for a second delivery of
        it. Teams redelivers an activity with the same id (§B6)."""
        value = str(data.get("proposal") or data.get("case") or "")
        key = click_key(
            Platform.TEAMS, actor.workspace, actor.id, verb, value, str(activity.id or "")
        )
        if not activity.id:
            return True
        won = await helpdesk.cases.press(key, kind=verb, actor=actor.id, platform=Platform.TEAMS)
        if not won:
            log.info("ignored a second delivery of a %s click", verb)
        return won

    async def _typed_answer(self, activity: Activity) -> str | None:
        """A message in the personal chat while the helpdesk waits for this person's answer
        (`TeamsHelpdesk.tell` noted the case): the answer, sent to the case. None otherwise."""
        helpdesk = self.helpdesk
        load = getattr(self.runtime.store, "conversation_ref", None)
        personal = getattr(activity.conversation, "conversation_type", None) == "personal"
        if helpdesk is None or load is None or not personal or not (activity.text or "").strip():
            return None
        actor = self._actor(activity)
        waiting = await load(WAITING_KEY.format(actor.id))
        number = case_number((waiting or {}).get("case"))
        if number is None:
            return None
        words, card = await self._answer_case(
            helpdesk, actor, {"case": number, ANSWER_INPUT: activity.text}
        )
        return words if card is not None else None

    async def _answer_case(
        self, helpdesk: Helpdesk, actor: Actor, data: Mapping[str, Any]
    ) -> tuple[str, CardSpec | None]:
        """The person answers the helpdesk's question: (words, the card that replaces theirs)."""
        number = case_number(data.get("case"))
        text = data.get(ANSWER_INPUT)
        text = " ".join(text.split()) if isinstance(text, str) else ""
        if number is None:
            return "This card names no case.", None
        if not text:
            return "Type your answer first.", None
        if len(text) > MAX_ANSWER:
            return f"Keep the answer under {MAX_ANSWER} characters.", None
        case = await helpdesk.answer(number, actor.id, text)
        if case is None:
            return f"Case {number} is not waiting for an answer from you.", None
        save = getattr(self.runtime.store, "save_conversation_ref", None)
        if save is not None:  # answered: later messages are not answers any more
            await save(WAITING_KEY.format(actor.id), Platform.TEAMS, {"case": None})
        words = f"Sent to the helpdesk with case {number}."
        return words, CardSpec(template="notice", data={"text": f"{words} You said: {text}"})

    # --- background work -----------------------------------------------------------------------

    def _after(self, work: Coroutine[Any, Any, None], target: Recipient | None, name: str) -> None:
        """Run `work` once the HTTP response is written (at once outside a request)."""
        pending = _AFTER.get()
        if pending is not None:
            pending.append((work, target, name))
        else:
            self._spawn(work, target, name)

    def _spawn(self, work: Coroutine[Any, Any, None], target: Recipient | None, name: str) -> None:
        async def on_error(exc: BaseException) -> None:
            if target is not None:
                await self._report_crash(target)

        try:
            self.runtime.supervisor.spawn(work, name=name, on_error=on_error)
        except RuntimeError:  # shutting down: the supervisor closed the coroutine
            log.warning("Teams work %s dropped: the server is shutting down", name)

    async def _continue(self, target: Recipient, logic: Any) -> None:
        """Run `logic(ctx)` in a proactive turn on the stored conversation reference (§B5)."""
        key = self.adapter.BOT_CONNECTOR_CLIENT_KEY

        async def warmed(ctx: TurnContext) -> None:
            await token_off_the_loop(ctx, key)
            await logic(ctx)

        await self.adapter.continue_conversation(target.reference, warmed, self.app_id)

    async def _stream(
        self, target: Recipient, first: Reply | None, rest: AsyncIterator[Reply] | None
    ) -> None:
        async def logic(ctx: TurnContext) -> None:
            if first is not None:
                await self.send(ctx, target, first)
            if rest is not None:
                async for reply in rest:
                    await self.send(ctx, target, reply)

        try:
            await self._continue(target, logic)
        finally:
            # Close the flow now, not at garbage collection: its cleanup marks an interrupted
            # diagnosis as failed (on shutdown this runs inside the cancellation).
            if rest is not None:
                await _close(rest)

    async def _open_form(self, target: Recipient, turn: Turn, activity: Activity) -> None:
        user_id = activity.from_property.id
        personal = getattr(activity.conversation, "conversation_type", None) != "channel"

        async def logic(ctx: TurnContext) -> None:
            form_turn = turn
            if turn.person.email is None and not address_from_text(turn.text) and personal:
                email = await self._email_of(ctx, user_id)
                if email:
                    person = turn.person.model_copy(update={"email": email})
                    form_turn = turn.model_copy(update={"person": person})
            await self.send(ctx, target, self.runtime.conversation.start(form_turn))

        await self._continue(target, logic)

    async def _email_of(self, ctx: TurnContext, user_id: str) -> str | None:
        """The person's mail address from their Teams profile (prefills the form), or None."""
        if user_id in self._emails:
            return self._emails[user_id]
        email: str | None = None
        try:
            # GET /v3/conversations/{id}/members/{user}. Not `TeamsInfo.get_member`: it needs
            # the incoming activity's channelData, which a proactive turn does not have.
            client = ctx.turn_state.get(self.adapter.BOT_CONNECTOR_CLIENT_KEY)
            async with asyncio.timeout(EMAIL_LOOKUP_TIMEOUT):
                member = await client.conversations.get_conversation_member(
                    ctx.activity.conversation.id, user_id
                )
            found = {**member.serialize(), **(member.additional_properties or {})}
            email = found.get("email") or found.get("userPrincipalName") or None
        except Exception as exc:  # a prefill is a nicety: the person can type the address
            log.info("Teams member lookup failed: %s", type(exc).__name__)
        if len(self._emails) >= EMAIL_CACHE:
            self._emails.clear()
        self._emails[user_id] = email
        return email

    async def _report_crash(self, target: Recipient) -> None:
        """Turn a crashed background task into the error card, on the card it was changing."""
        activity_id = next(reversed(target.posted.values()), None) or target.card_id

        async def logic(ctx: TurnContext) -> None:
            card = crash_card()
            if activity_id:
                await self._update(ctx, activity_id, card)
            else:
                await self._post(ctx, card)

        await self._continue(target, logic)

    def _remember(self, activity: Activity) -> None:
        """Keep the conversation reference (JSON) for later proactive messages."""
        save = getattr(self.runtime.store, "save_conversation_ref", None)
        if save is None:
            return
        reference = TurnContext.get_conversation_reference(activity).serialize()
        keys = [f"teams:conversation:{activity.conversation.id}"]
        if getattr(activity.conversation, "conversation_type", None) == "personal":
            keys.append(f"teams:person:{person_of(activity).id}")

        team = _team_of(activity)
        fresh = (activity.service_url, person_of(activity).workspace) != self._service_url_saved
        sender = activity.from_property
        aad = str(getattr(sender, "aad_object_id", None) or "").lower()
        user = None
        if aad and sender.id and self._mris.get(aad) != sender.id:
            # Who this Entra user is in Teams (their MRI, "29:…"): what refresh.userIds names.
            user = (USER_KEY.format(aad), {"id": sender.id, "aadObjectId": aad})
            if len(self._mris) >= EMAIL_CACHE:
                self._mris.clear()
            self._mris[aad] = sender.id

        async def work() -> None:
            for key in keys:
                await save(key, Platform.TEAMS, reference)
            if user is not None:
                await save(user[0], Platform.TEAMS, user[1])
            if team is not None and fresh:  # a message from a team: the app is installed there
                await self._save_team(activity, team, installed=True)

        self._after(work(), None, "teams.remember")

    async def _first_time(self, activity: Activity) -> bool:
        if not activity.id:
            return True
        key = f"teams:{activity.conversation.id}:{activity.id}"
        if await self.runtime.events.first_time(key):
            return True
        log.info("ignored a repeated Teams activity %s (%s)", activity.id, activity.type)
        return False

    # --- Reply -> Bot Connector ----------------------------------------------------------------

    async def send(self, ctx: TurnContext, target: Recipient, reply: Reply) -> None:
        """One reply, one Bot Connector call: POST a new message or PUT an edit."""
        match reply:
            case ShowForm(card=card):
                if target.adopt and target.card_id:
                    target.adopt = False
                    await self._update(ctx, target.card_id, card)
                else:
                    await self._post(ctx, card)
            case FormErrors(errors=errors):
                await self._text(ctx, "Please check: " + "; ".join(errors.values()))
            case Post(card=card, key=key):
                if target.adopt and target.card_id:
                    target.adopt = False
                    await self._update(ctx, target.card_id, card)
                    target.posted[key] = target.card_id
                else:
                    target.posted[key] = await self._post(ctx, card)
            case Update(card=card, key=key):
                activity_id = target.posted.get(key) or target.card_id
                if activity_id:
                    await self._update(ctx, activity_id, card)
                    target.posted[key] = activity_id
                else:
                    target.posted[key] = await self._post(ctx, card)
            case Notice(text=text):
                await self._text(ctx, text)

    async def _post(self, ctx: TurnContext, card: CardSpec) -> str | None:
        sent = await ctx.send_activity(_card_activity(card))
        return getattr(sent, "id", None) or None

    async def _update(self, ctx: TurnContext, activity_id: str, card: CardSpec) -> None:
        activity = _card_activity(card)
        activity.id = activity_id
        await ctx.update_activity(activity)

    async def _text(self, ctx: TurnContext, text: str) -> None:
        message = MessageFactory.text(text)
        message.text_format = "plain"  # our sentences may quote what people typed
        await ctx.send_activity(message)


def create_teams_handler(runtime: Runtime) -> Handler:
    """The `POST /api/messages` handler (`bot.server.TeamsFactory`). The bot itself stays on
    the runtime (`extras["teams_bot"]`) for whoever wires the helpdesk loop
    (`teams_bot.helpdesk_channel()`, `teams_bot.helpdesk = …`)."""
    bot = TeamsBot(runtime)
    runtime.extras["teams_bot"] = bot
    return bot.handle


# --- the helpdesk channel in Teams (reference/chat-platforms.md §B5) -------------------------


class PostFailed(Exception):
    """The Bot Connector refused a proactive call; the message says why, in words."""


class TeamsHelpdesk:
    """`dialogs.helpdesk.HelpdeskChannel` for Teams: case cards in MAILFIX_HELPDESK_TEAMS_CHANNEL.

    A case card starts a new thread in the channel (POST /v3/conversations with the channel id,
    on the service URL stored from the app's installation in the team), so no replica needs a
    message from the channel first; its ref (conversation, activity id, service URL) is stored by
    the Helpdesk and any replica edits the card in place (PUT). The person is told in their
    personal chat with the bot (`teams:person:{aadObjectId}`, saved on each of their messages).
    """

    def __init__(self, bot: TeamsBot, channel: str | None) -> None:
        self.bot = bot
        self.channel = channel

    async def _ref(self, key: str) -> dict[str, Any] | None:
        load = getattr(self.bot.runtime.store, "conversation_ref", None)
        return await load(key) if load is not None else None

    async def _installation(self) -> dict[str, Any] | None:
        """Where to post from: the installed team that holds the helpdesk channel, else the
        latest installation seen (the service URL is the organisation's either way)."""
        helpdesk = await self._ref(HELPDESK_TEAM_KEY)
        if helpdesk is not None and helpdesk.get("installed") is not False:
            return helpdesk
        return helpdesk or await self._ref(SERVICE_URL_KEY)

    async def where(self) -> str:
        installed = await self._installation()
        team = installed.get("team_name") if installed else None
        channel = installed.get("channel_name") if installed else None
        if team and channel:
            return f"the {channel} channel of {team}"
        return f"the Teams helpdesk channel of {team}" if team else "the Teams helpdesk channel"

    async def post(self, platform: Platform, card: CardSpec) -> Posted:
        if not self.channel:
            return Posted(
                "no helpdesk channel",
                error="mailfix has no Teams helpdesk channel (MAILFIX_HELPDESK_TEAMS_CHANNEL).",
            )
        where = await self.where()
        try:
            ref = await self.start_thread(card)
        except PostFailed as exc:
            log.warning("posting to the Teams helpdesk channel failed: %s", exc)
            return Posted(where, error=str(exc))
        return Posted(where, ref=ref)

    async def start_thread(self, card: CardSpec) -> dict[str, Any]:
        """Post `card` as a new thread in the helpdesk channel; its ref. PostFailed says why not."""
        channel = self.channel or ""
        installed = await self._installation()
        if not installed or not isinstance(installed.get("service_url"), str):
            raise PostFailed(NOT_INSTALLED)
        if installed.get("installed") is False:
            team = installed.get("team_name") or installed.get("team_id")
            which = (
                "which holds the helpdesk channel"
                if installed.get("channel_name")
                else "the last one mailfix saw it installed in"
            )
            raise PostFailed(
                f"the mailfix app was removed from the team {team}, {which}. Add it again to "
                "the team that holds the helpdesk channel (in Teams: the team's More options > "
                "Manage team > Apps)."
            )
        service_url: str = installed["service_url"]
        tenant = installed.get("tenant_id")
        reference = _reference(service_url, channel, tenant, installed.get("bot_id"))
        created: Any = None

        async def logic(ctx: TurnContext) -> None:
            nonlocal created
            client = ctx.turn_state.get(self.bot.adapter.BOT_CONNECTOR_CLIENT_KEY)
            parameters = ConversationParameters(
                is_group=True,
                bot=reference.bot,
                tenant_id=tenant,
                channel_data={"channel": {"id": channel}, "tenant": {"id": tenant}},
                activity=await self._activity(ctx, card, installed.get("team_id")),
            )
            created = await client.conversations.create_conversation(parameters)

        await self._proactive(reference, logic, channel)
        conversation = getattr(created, "id", None)
        activity_id = getattr(created, "activity_id", None)
        if not conversation:
            raise PostFailed("Teams did not say where the card was posted.")
        return {
            "platform": Platform.TEAMS.value,
            "conversation": conversation,
            # Teams names a channel thread "<channel>;messageid=<first message id>".
            "activity_id": activity_id or conversation.partition(";messageid=")[2] or None,
            "service_url": service_url,
            "tenant_id": tenant,
            "bot_id": installed.get("bot_id"),
            "team_id": installed.get("team_id"),
        }

    async def update(self, ref: dict[str, Any], card: CardSpec) -> bool:
        conversation, activity_id = ref.get("conversation"), ref.get("activity_id")
        service_url = ref.get("service_url")
        if not (
            isinstance(conversation, str)
            and isinstance(activity_id, str)
            and isinstance(service_url, str)
        ):
            return False
        reference = _reference(service_url, conversation, ref.get("tenant_id"), ref.get("bot_id"))

        async def logic(ctx: TurnContext) -> None:
            activity = await self._activity(ctx, card, ref.get("team_id"))
            activity.id = activity_id
            await ctx.update_activity(activity)

        try:
            await self._proactive(reference, logic, conversation)
        except PostFailed as exc:
            log.warning("updating a Teams helpdesk card failed: %s", exc)
            return False
        return True

    async def _activity(self, ctx: TurnContext, card: CardSpec, team: Any) -> Activity:
        """The card as a message; a case card's refresh.userIds as Teams user ids (§B4)."""
        ids = card.data.get("approver_ids")
        if card.template == "case" and isinstance(ids, list) and ids:
            users = [await self._user_id(ctx, str(i), team) for i in ids]
            card = CardSpec(template=card.template, data={**card.data, "approver_ids": users})
        return _card_activity(card)

    async def _user_id(self, ctx: TurnContext, entry: str, team: Any) -> str:
        """The Teams user id (MRI, "29:…") of an approver named by Entra object id: remembered
        from their last activity, else asked of the team's roster (the Bot Connector takes the
        object id as member id). An entry neither knows (a group id) is kept as it is."""
        if entry.startswith("29:"):
            return entry
        known = await self._ref(USER_KEY.format(entry.lower()))
        if known and isinstance(known.get("id"), str):
            return str(known["id"])
        if not isinstance(team, str) or not team:
            return entry
        try:
            client = ctx.turn_state.get(self.bot.adapter.BOT_CONNECTOR_CLIENT_KEY)
            async with asyncio.timeout(MEMBER_LOOKUP_TIMEOUT):
                member = await client.conversations.get_conversation_member(team, entry)
        except Exception as exc:  # not in the team, or a group: the refresh simply misses it
            log.info("Teams roster lookup for an approver failed: %s", type(exc).__name__)
            return entry
        found = getattr(member, "id", None)
        if not isinstance(found, str) or not found:
            return entry
        save = getattr(self.bot.runtime.store, "save_conversation_ref", None)
        if save is not None:
            record = {"id": found, "aadObjectId": entry.lower()}
            await save(USER_KEY.format(entry.lower()), Platform.TEAMS, record)
        return found

    async def tell(self, case: Case, text: str) -> None:
        stored = await self._ref(PERSON_KEY.format(case.person_id))
        if stored is None:
            log.warning("case %s: no chat with its person in Teams to tell them", case.number)
            return
        reference = ConversationReference().deserialize(stored)
        question = case.question or ""
        asking = case.state is CaseState.WAITING and bool(question) and question in text

        save = getattr(self.bot.runtime.store, "save_conversation_ref", None)
        if asking and save is not None:  # their next message in that chat answers it
            await save(WAITING_KEY.format(case.person_id), Platform.TEAMS, {"case": case.number})

        async def logic(ctx: TurnContext) -> None:
            if asking:  # a question: with a box to answer it (verb ANSWER)
                activity = MessageFactory.attachment(
                    CardFactory.adaptive_card(answer_card(case.number, text))
                )
                await ctx.send_activity(activity)
            else:
                await self.bot._text(ctx, text)

        try:
            await self._proactive(reference, logic, "the person's chat")
        except PostFailed as exc:
            log.warning("telling case %s's person failed: %s", case.number, exc)

    async def _proactive(self, reference: ConversationReference, logic: Any, where: str) -> None:
        try:
            await self.bot._continue(Recipient(reference=reference), logic)
        except PostFailed:
            raise
        except ConnectionError as exc:  # token_off_the_loop: no token for the bot
            raise PostFailed(NO_SIGN_IN) from exc
        except Exception as exc:
            raise PostFailed(connector_problem(exc, where)) from exc


NOT_INSTALLED = (
    "mailfix has not seen its installation in a team yet, so it does not know where Teams "
    "is for this organisation. Add the mailfix app to the team that holds the helpdesk "
    "channel (in Teams: the team's More options > Manage team > Apps), or re-add it there."
)
NO_SIGN_IN = (
    "mailfix could not sign in to the Bot Framework as the bot. Check MAILFIX_TEAMS_APP_ID, "
    "MAILFIX_TEAMS_APP_PASSWORD (the client secret may have expired) and "
    "MAILFIX_TEAMS_APP_TYPE / MAILFIX_TEAMS_APP_TENANT_ID."
)


def connector_problem(exc: BaseException, where: str) -> str:
    """Why the Bot Connector refused a call, in words for an admin (§B5's field failures)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    error = getattr(getattr(exc, "error", None), "error", None)
    code = getattr(error, "code", None)
    said = f" (HTTP {status}{', ' + code if isinstance(code, str) and code else ''})"
    if status == 401:
        return "Teams does not accept the bot's credentials" + said + ". " + NO_SIGN_IN
    if status == 403:
        return (
            f"the bot is not allowed to post in {where}" + said + ": the mailfix app is not "
            "installed in the team that holds it. Add the app to that team (in Teams: the "
            "team's More options > Manage team > Apps), then try again."
        )
    if status == 404:
        return (
            f"Teams has no channel {where}" + said + ". Use the channel id from the channel's "
            "Get link to channel (it looks like 19:…@thread.tacv2), not its name."
        )
    if isinstance(status, int):
        return f"Teams refused the card{said}."
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        return f"Teams could not be reached ({type(exc).__name__})."
    return f"Teams refused the card ({type(exc).__name__})."


def _reference(
    service_url: str, conversation: str, tenant: Any, bot_id: Any
) -> ConversationReference:
    return ConversationReference(
        channel_id=TEAMS_CHANNEL,
        service_url=service_url,
        conversation=ConversationAccount(
            id=conversation,
            is_group=True,
            conversation_type="channel",
            tenant_id=tenant if isinstance(tenant, str) else None,
        ),
        bot=ChannelAccount(id=bot_id) if isinstance(bot_id, str) and bot_id else None,
    )


def _team_of(activity: Activity) -> dict[str, Any] | None:
    """The team an activity comes from (channelData.team), or None outside teams."""
    data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    team = data.get("team")
    if isinstance(team, dict) and isinstance(team.get("id"), str) and team["id"]:
        return team
    return None


def answer_card(number: int, text: str) -> dict[str, Any]:
    """The helpdesk's question in the person's chat, with a box to answer it (verb ANSWER)."""
    data = {"case": number}
    title = "Send my answer"
    return {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "fallbackText": text[:300],
        "body": [
            {"type": "TextBlock", "wrap": True, "text": text[:4000]},
            {
                "type": "TextBlock",
                "wrap": True,
                "isSubtle": True,
                "text": "Answer here, or simply reply in this chat.",
            },
            {
                "type": "Input.Text",
                "id": ANSWER_INPUT,
                "label": "Your answer",
                "isMultiline": True,
                "maxLength": MAX_ANSWER,
            },
        ],
        "actions": [
            {
                "type": "Action.Execute",
                "title": title,
                "verb": ANSWER,
                "data": data,
                "fallback": {
                    "type": "Action.Submit",
                    "title": title,
                    "data": {"verb": ANSWER, **data},
                },
            }
        ],
    }


# --- helpers ---------------------------------------------------------------------------------


def crash_card() -> CardSpec:
    return CardSpec(
        template="error",
        data=ErrorData(
            title="Something went wrong",
            message="mailfix hit an unexpected problem and stopped. Nothing was changed.",
            try_next=[f"Type {COMMAND} to try again in a minute."],
        ).model_dump(mode="json"),
    )


def _adaptive(card: CardSpec) -> dict[str, Any]:
    return render(card, Target.ADAPTIVE)


def _card_activity(card: CardSpec) -> Activity:
    return MessageFactory.attachment(CardFactory.adaptive_card(_adaptive(card)))


async def _finish(work: asyncio.Future[Any]) -> None:
    """Wait for a case button's work the invoke answer stopped waiting for."""
    try:
        await work
    except asyncio.CancelledError:
        work.cancel()  # shutting down: an applying fix's lease lapses and a replica resumes it
        raise
    except BadPress:
        pass


async def _close(replies: AsyncIterator[Reply]) -> None:
    aclose = getattr(replies, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(RuntimeError):  # "already running": its own task closes it
            await aclose()


def _activity_problem(body: Any) -> str | None:
    """Why this JSON is not an activity we can answer (the SDK would crash on it), or None."""
    if not isinstance(body, dict):
        return "The body is not an activity object."
    if not isinstance(body.get("type"), str) or not body["type"]:
        return "The activity has no type."
    if body["type"] not in (ActivityTypes.message, ActivityTypes.invoke):
        return None  # conversation updates and the like: the SDK's defaults ignore them
    service = body.get("serviceUrl")
    if not isinstance(service, str) or not service.startswith(("https://", "http://")):
        return "The activity has no serviceUrl."
    for key in ("conversation", "from", "recipient"):
        value = body.get(key)
        if not isinstance(value, dict) or not isinstance(value.get("id"), str):
            return f"The activity has no {key} id."
    if body["type"] == ActivityTypes.invoke and not isinstance(body.get("name"), str):
        return "The invoke has no name."
    return None


def _read_activity(body: dict[str, Any]) -> Activity | None:
    """The SDK's Activity, or None when the JSON does not have its shape. Read once per
    request: msrest's deserialisation is a large part of a turn's CPU (bench/ack.py)."""
    try:
        activity: Activity = Activity().deserialize(body)
    except Exception:  # msrest's DeserializationError and friends
        return None
    return activity


def _problem(
    status: int, error: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status, headers=headers)


def _unauthorized(message: str) -> web.Response:
    return _problem(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


# --- `mailfix doctor`: the Teams half (bot/doctor.py calls this) -------------------------------

DOCTOR_TEXT = "mailfix test: escalations will be posted in this channel."


async def doctor_post(settings: Settings) -> tuple[bool, str]:
    """Post a test card to MAILFIX_HELPDESK_TEAMS_CHANNEL as the server would (from the stored
    installation, with the bot's credentials): (posted, what happened in words)."""
    # Late: the doctor needs the database only when Teams is configured.
    from bot.limits import RateLimiter  # noqa: PLC0415
    from bot.runtime import EventLedger  # noqa: PLC0415
    from bot.storage import SqlStore, migrate  # noqa: PLC0415
    from bot.tasks import TaskSupervisor  # noqa: PLC0415

    await migrate(settings.database_url)
    store: Any = SqlStore.from_url(settings.database_url)
    try:
        runtime = Runtime(
            settings=settings,
            conversation=None,  # type: ignore[arg-type]  # no turns: only proactive calls
            store=store,
            supervisor=TaskSupervisor(),
            limiter=RateLimiter(settings.rate_limit_count, settings.rate_limit_window),
            events=EventLedger(store),
        )
        channel = TeamsBot(runtime).helpdesk_channel()
        card = CardSpec(
            template="notice",
            data={"text": f"**{DOCTOR_TEXT}** Sent by `mailfix doctor`. Nothing to do."},
        )
        try:
            await channel.start_thread(card)
        except PostFailed as exc:
            return False, str(exc)
        return True, f"posted a test card to {await channel.where()}."
    finally:
        await store.close()
