"""What people say (symptoms) and what we tell them (advice)."""

from __future__ import annotations

import pytest

from checks.advice import App, cause_steps, classify_app, client_steps
from checks.cloud import hosts_for
from checks.diagnosis import ALIASES, CAUSES, cause_spec
from checks.models import Client
from checks.settings import Cloud
from checks.symptoms import SYMPTOM_TITLES, Symptom, classify_symptom

GLOBAL = hosts_for(Cloud.GLOBAL)
GCCHIGH = hosts_for(Cloud.GCCHIGH)

# ---- symptoms --------------------------------------------------------------------------------


@pytest.mark.parametrize("symptom", list(Symptom))
def test_enum_values_classify_to_themselves(symptom: Symptom) -> None:
    assert classify_symptom(symptom.value) is symptom
    assert classify_symptom(symptom.value.upper()) is symptom
    assert classify_symptom(" " + symptom.value.replace("_", " ") + " ") is symptom


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "An encrypted connection to your mail services is not available",
            Symptom.ENCRYPTED_CONNECTION_UNAVAILABLE,
        ),
        (
            "AN ENCRYPTED CONNECTION to your mail services...",
            Symptom.ENCRYPTED_CONNECTION_UNAVAILABLE,
        ),
        ("Outlook keeps asking for my password", Symptom.PASSWORD_PROMPTS),
        ("credentials prompt pops up every 5 minutes", Symptom.PASSWORD_PROMPTS),
        ("my iPhone stopped syncing mail", Symptom.PHONE_STOPPED_SYNCING),
        ("Android mail app no longer updates", Symptom.PHONE_STOPPED_SYNCING),
        ("I can't send email, it stays in the Outbox", Symptom.CANNOT_SEND),
        ("cannot send from my phone", Symptom.CANNOT_SEND),
        ("Outlook says Disconnected", Symptom.CANNOT_CONNECT),
        ("Outlook is stuck on 'Trying to connect'", Symptom.CANNOT_CONNECT),
        ("my calendar colours changed", Symptom.OTHER),
        ("I'm locked out of my mail", Symptom.PASSWORD_PROMPTS),
        ("it says my account has been disabled", Symptom.PASSWORD_PROMPTS),
        ("Error AADSTS53003 when I open Thunderbird", Symptom.PASSWORD_PROMPTS),
        ("it wants a verification code every time", Symptom.PASSWORD_PROMPTS),
        ("the device shows as quarantined", Symptom.PHONE_STOPPED_SYNCING),
    ],
)
def test_free_text_keywords(text: str, expected: Symptom) -> None:
    assert classify_symptom(text) is expected


@pytest.mark.parametrize("text", [None, "", "   \n\t "])
def test_no_text_no_symptom(text: str | None) -> None:
    assert classify_symptom(text) is None


def test_long_text_is_bounded_and_still_classified() -> None:
    assert classify_symptom("password " + "x" * 100_000) is Symptom.PASSWORD_PROMPTS


def test_every_symptom_has_a_title() -> None:
    assert set(SYMPTOM_TITLES) == set(Symptom)
    assert "encrypted connection" in SYMPTOM_TITLES[Symptom.ENCRYPTED_CONNECTION_UNAVAILABLE]


# ---- apps ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "app"),
    [
        ("Outlook for Windows", App.OUTLOOK_WINDOWS),
        ("Outlook desktop app", App.OUTLOOK_WINDOWS),
        ("the new Outlook", App.NEW_OUTLOOK),
        ("Outlook for Mac", App.OUTLOOK_MAC),
        ("Outlook on the web in Chrome", App.OUTLOOK_WEB),
        ("Outlook app on my iPhone", App.OUTLOOK_MOBILE),
        ("iPhone Mail", App.PHONE_MAIL),
        ("Samsung Email", App.PHONE_MAIL),
        ("Thunderbird", App.IMAP_APP),
        ("the office scanner (SMTP)", App.IMAP_APP),
        ("outlook-mobile", App.OUTLOOK_MOBILE),
        ("phone_mail", App.PHONE_MAIL),
        ("banana", None),
        (None, None),
    ],
)
def test_classify_app(text: str | None, app: App | None) -> None:
    assert classify_app(text) is app


# ---- client steps ----------------------------------------------------------------------------


def test_outlook_for_windows_steps() -> None:
    text = "\n".join(client_steps(Client.OUTLOOK, GLOBAL))
    assert "Ctrl" in text and "Connection Status" in text
    assert "Test E-mail AutoConfiguration" in text
    assert "onmicrosoft.com" in text  # the custom-domain comparison (playbooks §1)
    assert "File → Options → Advanced" in text and "troubleshooting logging" in text
    assert "outlook.office365.com" in text


def test_new_outlook_has_no_sara() -> None:
    text = "\n".join(client_steps(Client.OUTLOOK, GLOBAL, app="new Outlook"))
    assert "Support and Recovery Assistant does not support it" in text
    assert "Connection Status" in text  # said to be missing, so nobody hunts for it


def test_phone_mail_steps_give_the_manual_server() -> None:
    steps = client_steps(Client.MOBILE, GLOBAL)
    text = "\n".join(steps)
    assert "remove the account" in text.lower() and "add it again" in text
    assert "server outlook.office365.com" in text


@pytest.mark.parametrize(
    ("client", "present", "absent"),
    [
        (Client.IMAP, ["outlook.office365.com, port 993", "smtp.office365.com, port 587"], ["995"]),
        (Client.POP, ["outlook.office365.com, port 995", "STARTTLS"], ["993"]),
        (Client.SMTP, ["smtp.office365.com, port 587, encryption STARTTLS"], ["993", "995"]),
    ],
)
def test_internet_mail_manual_settings(
    client: Client, present: list[str], absent: list[str]
) -> None:
    text = "\n".join(client_steps(client, GLOBAL))
    for piece in present:
        assert piece in text
    for piece in absent:
        assert piece not in text
    assert "OAuth" in text
    assert ("SSL/TLS" in text) is (client is not Client.SMTP)


def test_hosts_follow_the_cloud() -> None:
    text = "\n".join(client_steps(Client.IMAP, GCCHIGH) + client_steps(Client.MOBILE, GCCHIGH))
    assert "outlook.office365.us" in text and "smtp.office365.us" in text
    assert "office365.com" not in text


@pytest.mark.parametrize("app", list(App))
def test_every_app_has_steps(app: App) -> None:
    steps = client_steps(Client.ALL, GLOBAL, app=app.value)
    assert len(steps) >= 2 and all(s.strip() == s and s for s in steps)


def test_client_all_without_app_is_generic() -> None:
    steps = client_steps(Client.ALL, GLOBAL)
    assert any("outlook.office365.com/owa" in s for s in steps)


# ---- cause steps -----------------------------------------------------------------------------


def test_every_cause_record_carries_its_advice() -> None:
    # Declared once: the record points at its advice; there is no second table to agree.
    for cause_id, spec in CAUSES.items():
        assert spec.id == cause_id and callable(spec.advice)
        assert cause_steps(cause_id, Client.OUTLOOK, GLOBAL) == spec.advice(Client.OUTLOOK, GLOBAL)


def test_an_old_cause_id_still_gets_its_advice() -> None:
    assert ALIASES["service-degraded"] == "service-incident"
    spec = cause_spec("service-degraded")
    assert spec is not None and spec.id == "service-incident"
    old = cause_steps("service-degraded", Client.MOBILE, GLOBAL)
    assert old == cause_steps("service-incident", Client.MOBILE, GLOBAL)
    assert "Microsoft" in old[0]


@pytest.mark.parametrize("cause", sorted(CAUSES))
@pytest.mark.parametrize("client", [Client.OUTLOOK, Client.MOBILE, Client.IMAP])
def test_cause_steps_speak_to_the_person_and_the_helpdesk(cause: str, client: Client) -> None:
    steps = cause_steps(cause, client, GLOBAL)
    assert steps
    assert all(s.startswith(("You:", "Helpdesk")) for s in steps), steps
    assert any(s.startswith("Helpdesk") for s in steps)
    text = " ".join(steps).lower()
    for unsafe in ("disable mfa", "turn off mfa", "send your password", "basic auth"):
        assert unsafe not in text


def test_autodiscover_dns_missing_names_the_record() -> None:
    text = " ".join(cause_steps("autodiscover-dns-missing", Client.OUTLOOK, GLOBAL))
    assert "CNAME autodiscover.outlook.com" in text
    phone = " ".join(cause_steps("autodiscover-dns-missing", Client.MOBILE, GLOBAL))
    assert "server outlook.office365.com" in phone


def test_root_hijack_gives_outlook_the_registry_stopgap() -> None:
    outlook = " ".join(cause_steps("autodiscover-root-hijack", Client.OUTLOOK, GLOBAL))
    assert "KB 3049615" in outlook and "ExcludeHttpsRootDomain" in outlook
    mobile = " ".join(cause_steps("autodiscover-root-hijack", Client.MOBILE, GLOBAL))
    assert "ExcludeHttpsRootDomain" not in mobile


def test_device_or_app_carries_the_client_steps() -> None:
    steps = cause_steps("device-or-app", Client.MOBILE, GLOBAL)
    assert any("server outlook.office365.com" in s for s in steps)
    assert steps[-1].startswith("Helpdesk") and "checks mailfix could run" in steps[-1]


def test_device_or_app_names_what_was_not_checked() -> None:
    unchecked = ["Exchange Online licence", "Mailbox and protocols"]
    steps = cause_steps("device-or-app", Client.OUTLOOK, GLOBAL, unchecked=unchecked)
    assert steps[-1].startswith("Helpdesk: not checked: Exchange Online licence; Mailbox")
    # Only the device advice gets the line: another cause's steps stay as they are.
    other = cause_steps("protocol-disabled", Client.OUTLOOK, GLOBAL, unchecked=unchecked)
    assert not any("not checked" in s for s in other)


_CLAIMS = ("is fine", "are fine", "mailbox is ok", "everything is ok", "no problem with")


@pytest.mark.parametrize("cause", sorted(CAUSES))
@pytest.mark.parametrize("client", [Client.OUTLOOK, Client.MOBILE, Client.SMTP, Client.ALL])
def test_no_advice_claims_what_was_not_checked(cause: str, client: Client) -> None:
    """DESIGN.md "Report": never "the mailbox is fine" — mailfix may not have looked."""
    text = " ".join(cause_steps(cause, client, GLOBAL)).lower()
    assert not any(claim in text for claim in _CLAIMS), text


@pytest.mark.parametrize("client", list(Client))
@pytest.mark.parametrize("app", [None, *App])
def test_no_client_steps_claim_the_mailbox_is_fine(client: Client, app: App | None) -> None:
    text = " ".join(client_steps(client, GLOBAL, app)).lower()
    assert not any(claim in text for claim in _CLAIMS), text


_FROM_MAILFIX = [
    "dns-failure",
    "exo-unreachable",
    "tls-inspection",
    "imap-blocked",
    "pop-blocked",
    "smtp-blocked",
    "smtp-starttls-broken",
    "activesync-blocked",
    "autodiscover-unreachable",
]


@pytest.mark.parametrize("cause", _FROM_MAILFIX)
def test_network_advice_says_where_mailfix_tested_from(cause: str) -> None:
    """Vantage: the network checks ran from mailfix's network, not from the person's device."""
    steps = cause_steps(cause, Client.ALL, GLOBAL)
    you = " ".join(s for s in steps if s.startswith("You:")).lower()
    assert "mailfix" in you and ("network" in you or "mailfix's own" in you), you
    assert "restart your router" not in " ".join(steps).lower()


def test_dns_failure_does_not_blame_the_persons_network() -> None:
    you = cause_steps("dns-failure", Client.OUTLOOK, GLOBAL)[0]
    assert you.startswith("You: nothing to change on your device")
    assert "mailfix's own" in you


# Each admin-side cause: what the admin must do, and what the person does after.
_ADMIN_FIX_WORDS = {
    "account-not-found": ("admin center", "address"),
    "account-deleted": ("Deleted users", "restore"),
    "account-disabled": ("unblock", "sign in again"),
    "account-sync-error": ("sync", "directory"),
    "no-exchange-licence": ("Exchange Online", "set the account up again"),
    "exchange-plan-disabled": ("switched", "try again"),
    "exchange-plan-pending": ("setting up", "try again in an hour"),
    "no-mailbox": ("Mailboxes", "no mailbox"),
    "protocol-disabled": ("Manage email apps", "add it again"),
    "smtp-auth-disabled": ("Authenticated SMTP", "OAuth"),
    "device-quarantined": ("quarantined", "first sync starts"),
    "device-blocked": ("device access rule", "which app"),
    "client-access-rule": ("Client Access Rule", "nothing on your device"),
    "conditional-access-block": ("Conditional Access", "which app"),
    "conditional-access-mfa": ("multifactor", "aka.ms/mfasetup"),
    "conditional-access-device": ("compliant", "Company Portal"),
    "sign-in-wrong-password": ("AADSTS50126", "update it in the app"),
    "account-locked": ("AADSTS50053", "Wait"),
    "password-expired": ("AADSTS50055", "new one"),
    "tenant-permission-missing": ("permission", "nothing to do"),
    "service-incident": ("Service health", "nothing to change"),
}


@pytest.mark.parametrize(("cause", "words"), sorted(_ADMIN_FIX_WORDS.items()))
def test_tenant_cause_advice_says_what_the_admin_does_and_what_the_person_does_after(
    cause: str, words: tuple[str, str]
) -> None:
    steps = cause_steps(cause, Client.MOBILE, GLOBAL)
    assert steps[0].startswith("You:") and steps[-1].startswith("Helpdesk:")
    text = " ".join(steps)
    for word in words:
        assert word.lower() in text.lower(), (cause, word)


@pytest.mark.parametrize(
    ("client", "protocol"),
    [
        (Client.MOBILE, "ActiveSync"),
        (Client.IMAP, "IMAP"),
        (Client.POP, "POP"),
        (Client.SMTP, "Authenticated SMTP"),
        (Client.OUTLOOK, "MAPI"),
    ],
)
def test_protocol_disabled_names_the_clients_protocol(client: Client, protocol: str) -> None:
    assert protocol in cause_steps("protocol-disabled", client, GLOBAL)[0]


def test_blocked_ports_name_port_and_host() -> None:
    assert "993 to outlook.office365.com" in cause_steps("imap-blocked", Client.IMAP, GLOBAL)[0]
    assert "587 to smtp.office365.us" in cause_steps("smtp-blocked", Client.SMTP, GCCHIGH)[0]


def test_unknown_cause_gets_a_fallback() -> None:
    steps = cause_steps("no-such-cause", Client.OUTLOOK, GLOBAL)
    assert len(steps) == 1 and "no-such-cause" in steps[0]


def test_imap_app_steps_do_not_say_smtp_passwords_are_already_refused() -> None:
    """MC786329: SMTP AUTH Basic keeps working where enabled until the end of Dec 2026."""
    text = " ".join(client_steps(Client.SMTP, GLOBAL, App.IMAP_APP))
    assert "over IMAP or POP" in text
    assert "IMAP, POP or SMTP" not in text
    assert "December 2026" in text


@pytest.mark.parametrize(
    "cause", ["imap-blocked", "pop-blocked", "smtp-blocked", "activesync-blocked"]
)
def test_network_causes_do_not_send_admins_after_mailbox_settings(cause: str) -> None:
    """A refused or silent port is never a mailbox setting: no ImapEnabled/quarantine chase."""
    text = " ".join(cause_steps(cause, Client.ALL, GLOBAL)).lower()
    assert "enabled for the mailbox" not in text and "quarantine" not in text
    assert "network" in text
