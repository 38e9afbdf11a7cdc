"""From the person's client and what they said to the sign-in the policies judge.

Pure: `contexts(client, symptom)` lists the app(s) to evaluate, each with its Conditional
Access client app type and platform and the Client Access Rule protocols it uses.

- IMAP, POP or SMTP with a password is legacy authentication (client app type `other`),
  unless the person said the app signs in with a Microsoft account page (then
  `mobileAppsAndDesktopClients`); Outlook for Windows cannot use OAuth for POP/IMAP profiles
  (reference §6.2), so Outlook over IMAP stays legacy.
- The phone's built-in mail app over ActiveSync is `exchangeActiveSync`; Outlook for iOS and
  Android is `mobileAppsAndDesktopClients` and reaches Exchange through Microsoft's middle tier.
- Outlook for Windows/Mac is `mobileAppsAndDesktopClients`; Outlook on the web is `browser`.
- Client Access Rule protocols (§6.1): IMAP4, POP3, ExchangeActiveSync, OutlookAnywhere
  (MAPI over HTTP) and ExchangeWebServices for Outlook, OutlookWebApp for the web. SMTP is not
  a protocol Client Access Rules cover.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from checks.advice import App, classify_app
from checks.models import Client
from checks.tenant.policy.ca import AppKind
from checks.tenant.policy.models import CarAuthType, CarProtocol, Platform

# What people say when their app opens Microsoft's own sign-in page (modern authentication).
_MODERN = re.compile(
    r"microsoft (sign[- ]?in|log ?in|account|login)( page| window| screen)?"
    r"|modern auth|\boauth|office 365 sign[- ]?in page|sign[- ]?in page|xoauth"
)
_PLATFORMS: tuple[tuple[Platform, re.Pattern[str]], ...] = (
    (Platform.IOS, re.compile(r"iphone|ipad|\bios\b")),
    (Platform.ANDROID, re.compile(r"android|samsung|pixel|galaxy")),
    (Platform.MACOS, re.compile(r"\bmac\b|macbook|macos|os x")),
    (Platform.WINDOWS, re.compile(r"windows|\bpc\b|laptop")),
    (Platform.LINUX, re.compile(r"linux|ubuntu")),
)


@dataclass(frozen=True)
class AppContext:
    """One app as the policies see it."""

    label: str  # words, e.g. "an IMAP app signing in with a password"
    app: AppKind
    platform: Platform | None
    protocols: tuple[CarProtocol, ...]  # () = not covered by Client Access Rules (SMTP)
    authentication: CarAuthType | None
    middle_tier: bool = False


def _text(symptom: str | None) -> str:
    return " ".join((symptom or "")[:2000].lower().split())


def says_modern(symptom: str | None) -> bool:
    return bool(_MODERN.search(_text(symptom)))


def platform_of(symptom: str | None, app: App | None = None) -> Platform | None:
    if app in (App.OUTLOOK_WINDOWS, App.NEW_OUTLOOK):
        return Platform.WINDOWS
    if app is App.OUTLOOK_MAC:
        return Platform.MACOS
    text = _text(symptom)
    for platform, pattern in _PLATFORMS:
        if pattern.search(text):
            return platform
    return None


def _mail_protocol(client: Client, symptom: str | None, app: App | None) -> AppContext:
    modern = says_modern(symptom) and app not in (App.OUTLOOK_WINDOWS, App.NEW_OUTLOOK)
    protocol = {Client.IMAP: (CarProtocol.IMAP4,), Client.POP: (CarProtocol.POP3,)}.get(client, ())
    name = {Client.IMAP: "IMAP", Client.POP: "POP", Client.SMTP: "SMTP"}[client]
    if modern:
        return AppContext(
            f"an {name} app that signs in with a Microsoft account page",
            AppKind.MODERN_APP,
            platform_of(symptom),
            protocol,
            CarAuthType.OAUTH,
        )
    return AppContext(
        f"an {name} app signing in with a password (legacy authentication)",
        AppKind.LEGACY,
        platform_of(symptom),
        protocol,
        CarAuthType.BASIC,
    )


def _for_app(app: App, symptom: str | None) -> AppContext:
    platform = platform_of(symptom, app)
    if app is App.OUTLOOK_MOBILE:
        return AppContext(
            "Outlook for iOS and Android",
            AppKind.OUTLOOK_MOBILE,
            platform,
            (CarProtocol.REST,),
            CarAuthType.OAUTH,
            middle_tier=True,
        )
    if app is App.PHONE_MAIL:
        modern = says_modern(symptom)
        return AppContext(
            "the phone's built-in mail app (Exchange ActiveSync)",
            AppKind.MODERN_APP if modern else AppKind.EAS,
            platform,
            (CarProtocol.EAS,),
            # Basic authentication for ActiveSync is retired in Exchange Online (§6.2): a
            # phone that still connects signs in with OAuth unless it says otherwise.
            CarAuthType.OAUTH if modern else None,
        )
    if app is App.OUTLOOK_WEB:
        return AppContext("Outlook on the web", AppKind.BROWSER, platform, (CarProtocol.OWA,), None)
    if app is App.NEW_OUTLOOK:
        # The new Outlook for Windows follows the OWA switch (§6.2); its wire protocol for
        # Client Access Rules is not in our sources [uncertain]: both are evaluated.
        return AppContext(
            "the new Outlook for Windows",
            AppKind.OUTLOOK_DESKTOP,
            platform,
            (CarProtocol.OWA, CarProtocol.REST),
            CarAuthType.OAUTH,
        )
    if app is App.OUTLOOK_MAC:
        return AppContext(
            "Outlook for Mac",
            AppKind.OUTLOOK_DESKTOP,
            platform,
            (CarProtocol.EWS,),
            CarAuthType.OAUTH,
        )
    if app is App.IMAP_APP:
        return _mail_protocol(Client.IMAP, symptom, app)
    return AppContext(
        "Outlook for Windows",
        AppKind.OUTLOOK_DESKTOP,
        platform,
        (CarProtocol.OUTLOOK_ANYWHERE, CarProtocol.EWS),
        CarAuthType.OAUTH,
    )


_DEFAULT_APP = {
    Client.OUTLOOK: App.OUTLOOK_WINDOWS,
    Client.MOBILE: App.PHONE_MAIL,
    Client.WEB: App.OUTLOOK_WEB,
}
# Client "all" with no app named: the app families people use most, each judged.
_ALL = (App.OUTLOOK_WINDOWS, App.PHONE_MAIL, App.IMAP_APP, App.OUTLOOK_WEB)


def contexts(client: Client, symptom: str | None) -> list[AppContext]:
    """The app(s) to judge for this diagnosis: one, or several for client `all`."""
    app = classify_app(symptom)
    if client in (Client.IMAP, Client.POP, Client.SMTP):
        return [_mail_protocol(client, symptom, app)]
    fits = {
        Client.MOBILE: (App.OUTLOOK_MOBILE, App.PHONE_MAIL),
        Client.OUTLOOK: (App.OUTLOOK_WINDOWS, App.NEW_OUTLOOK, App.OUTLOOK_MAC, App.OUTLOOK_MOBILE),
        Client.WEB: (App.OUTLOOK_WEB,),
    }
    if client in fits and app not in fits[client]:
        app = None  # the client the person chose wins over a word in their text
    if client is Client.ALL:
        return [_for_app(app, symptom)] if app is not None else [_for_app(a, symptom) for a in _ALL]
    return [_for_app(app or _DEFAULT_APP[client], symptom)]
