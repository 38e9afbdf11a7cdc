"""Which sign-in the policies judge, from the person's client and what they said."""

from __future__ import annotations

import pytest

from checks.models import Client
from checks.tenant.policy.ca import CLIENT_APP_TYPE, AppKind
from checks.tenant.policy.context import contexts
from checks.tenant.policy.models import CarAuthType, CarProtocol, Platform

P = CarProtocol


MODERN = "mobileAppsAndDesktopClients"
ONE_APP = [
    (Client.IMAP, None, (AppKind.LEGACY, "other", (P.IMAP4,), CarAuthType.BASIC)),
    (Client.POP, "Thunderbird", (AppKind.LEGACY, "other", (P.POP3,), CarAuthType.BASIC)),
    (Client.SMTP, "the scanner cannot send", (AppKind.LEGACY, "other", (), CarAuthType.BASIC)),
    (
        Client.IMAP,
        "Thunderbird opens a Microsoft sign-in page",
        (AppKind.MODERN_APP, MODERN, (P.IMAP4,), CarAuthType.OAUTH),
    ),
    (
        Client.MOBILE,
        "my iPhone stopped syncing",
        (AppKind.EAS, "exchangeActiveSync", (P.EAS,), None),
    ),
    (
        Client.MOBILE,
        "Outlook on my Android phone",
        (AppKind.OUTLOOK_MOBILE, MODERN, (P.REST,), CarAuthType.OAUTH),
    ),
    (
        Client.OUTLOOK,
        None,
        (AppKind.OUTLOOK_DESKTOP, MODERN, (P.OUTLOOK_ANYWHERE, P.EWS), CarAuthType.OAUTH),
    ),
    (Client.WEB, None, (AppKind.BROWSER, "browser", (P.OWA,), None)),
    (
        Client.OUTLOOK,
        "my iphone mail app",  # the client chosen wins over a word in the text
        (AppKind.OUTLOOK_DESKTOP, MODERN, (P.OUTLOOK_ANYWHERE, P.EWS), CarAuthType.OAUTH),
    ),
]


@pytest.mark.parametrize(("client", "symptom", "expected"), ONE_APP)
def test_one_app_per_client(
    client: Client, symptom: str | None, expected: tuple[object, ...]
) -> None:
    [ctx] = contexts(client, symptom)
    got = (ctx.app, CLIENT_APP_TYPE[ctx.app].value, ctx.protocols, ctx.authentication)
    assert got == expected


def test_outlook_over_imap_stays_legacy_even_when_modern_is_said() -> None:
    # Outlook desktop cannot use OAuth for POP/IMAP profiles (reference §6.2).
    [ctx] = contexts(Client.IMAP, "classic Outlook on Windows, it shows a Microsoft sign-in page")
    assert ctx.app is AppKind.LEGACY


def test_platform_from_words() -> None:
    [phone] = contexts(Client.MOBILE, "Samsung Galaxy mail app")
    [mac] = contexts(Client.OUTLOOK, "Outlook for Mac")
    assert (phone.platform, mac.platform, mac.protocols) == (
        Platform.ANDROID,
        Platform.MACOS,
        (P.EWS,),
    )


def test_client_all_without_an_app_judges_the_usual_four() -> None:
    apps = [c.app for c in contexts(Client.ALL, None)]
    assert apps == [AppKind.OUTLOOK_DESKTOP, AppKind.EAS, AppKind.LEGACY, AppKind.BROWSER]


def test_middle_tier_only_for_outlook_mobile() -> None:
    assert [c.middle_tier for c in contexts(Client.ALL, None)] == [False] * 4
    [ctx] = contexts(Client.MOBILE, "Outlook app on iPhone")
    assert ctx.middle_tier and ctx.platform is Platform.IOS
