"""Next steps in plain words: for the person's own app, and for each cause the diagnosis names.

`client_steps` is what a person can try on their side (reference/playbooks.md §1 for Outlook for
Windows, §3 for phones, exchange-online-diagnostics.md §7 for the manual server settings).
`cause_steps` says what to do about one cause, first for the person ("You: …"), then for the
helpdesk or the admin who owns the fix. Every Microsoft host comes from `CloudHosts`, so the
words stay right in the government and 21Vianet clouds.

Nothing here asks for a password or suggests turning security off.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum

from checks.cloud import CloudHosts
from checks.models import Client


class App(StrEnum):
    """The app family a person uses; finer than `Client` (which is the protocol family)."""

    OUTLOOK_WINDOWS = "outlook-windows"  # classic Outlook for Windows
    NEW_OUTLOOK = "new-outlook"  # the new Outlook for Windows
    OUTLOOK_MAC = "outlook-mac"
    OUTLOOK_WEB = "outlook-web"
    OUTLOOK_MOBILE = "outlook-mobile"  # Outlook for iOS / Android
    PHONE_MAIL = "phone-mail"  # the phone's built-in mail app over ActiveSync
    IMAP_APP = "imap-app"  # Thunderbird, Apple Mail over IMAP, printers/scanners over SMTP …


# First match wins; most specific first. Lower-cased text, whitespace collapsed.
_APP_PATTERNS: tuple[tuple[App, tuple[str, ...]], ...] = (
    (App.NEW_OUTLOOK, (r"new outlook", r"outlook \(new\)", r"olk\.exe")),
    (
        App.OUTLOOK_WEB,
        (
            r"\bowa\b",
            r"outlook (on the )?web",
            r"web ?mail",
            r"browser",
            r"outlook\.office",
            r"chrome",
            r"\bedge\b",
            r"firefox",
            r"safari",
        ),
    ),
    (
        App.OUTLOOK_MOBILE,
        (
            r"outlook.*(ios|iphone|ipad|android|mobile|phone)",
            r"(ios|iphone|ipad|android|mobile|phone).*outlook",
        ),
    ),
    (App.OUTLOOK_MAC, (r"outlook.*mac", r"mac.*outlook")),
    (
        App.IMAP_APP,
        (
            r"imap",
            r"\bpop3?\b",
            r"smtp",
            r"thunderbird",
            r"printer",
            r"scanner",
            r"\bmfp\b",
            r"em ?client",
            r"mailbird",
            r"\bspark\b",
            r"k-?9",
            r"fairemail",
        ),
    ),
    (
        App.PHONE_MAIL,
        (
            r"iphone",
            r"ipad",
            r"\bios\b",
            r"android",
            r"samsung",
            r"gmail",
            r"phone",
            r"mobile",
            r"activesync",
            r"mail app",
            r"apple mail",
            r"pixel",
        ),
    ),
    (App.OUTLOOK_WINDOWS, (r"outlook", r"windows", r"desktop", r"\bpc\b", r"office")),
)
_APP_RE = tuple((app, re.compile("|".join(patterns))) for app, patterns in _APP_PATTERNS)


def classify_app(text: str | None) -> App | None:
    """An `App` value (exactly) or the app family free text names; None when it names none."""
    if not text:
        return None
    cleaned = " ".join(text[:500].lower().split())
    for app in App:
        if cleaned in (app.value, app.value.replace("-", "_"), app.value.replace("-", " ")):
            return app
    for app, pattern in _APP_RE:
        if pattern.search(cleaned):
            return app
    return None


def _default_app(client: Client) -> App | None:
    return {
        Client.OUTLOOK: App.OUTLOOK_WINDOWS,
        Client.MOBILE: App.PHONE_MAIL,
        Client.IMAP: App.IMAP_APP,
        Client.POP: App.IMAP_APP,
        Client.SMTP: App.IMAP_APP,
        Client.WEB: App.OUTLOOK_WEB,
    }.get(client)


def _web(hosts: CloudHosts) -> str:
    return f"https://{hosts.exo}/owa/"


def _outlook_windows(hosts: CloudHosts, client: Client) -> list[str]:
    # reference/playbooks.md §1; the SaRA note: exchange-online-diagnostics.md §1.4.
    return [
        "Check Connection Status: hold Ctrl, right-click the Outlook icon in the notification "
        "area (by the clock) and choose Connection Status. “Disconnected” in the Status column "
        f"means Outlook cannot reach {hosts.exo}; note the server name and the protocol shown.",
        "Run Test E-mail AutoConfiguration: Ctrl + right-click the same icon, choose Test E-mail "
        "AutoConfiguration, enter your address and password, click Test, then read the Results, "
        "Log and XML tabs.",
        "If that test fails, run it again with your organisation's …onmicrosoft.com address. "
        "If that one works, your own domain's DNS (its Autodiscover record) is at fault: "
        "tell the helpdesk.",
        "If it still fails, turn on troubleshooting logging: File → Options → Advanced → "
        "“Enable troubleshooting logging”, restart Outlook and repeat what fails. The logs are "
        "in %LOCALAPPDATA%\\Temp; send them to the helpdesk, then switch logging off again.",
        "Microsoft's Support and Recovery Assistant can repair an Outlook profile "
        "(aka.ms/SaRA-OutlookSetupProfile); it works only for classic Outlook.",
    ]


def _new_outlook(hosts: CloudHosts, client: Client) -> list[str]:
    return [
        "The new Outlook for Windows has no Connection Status or Test E-mail "
        "AutoConfiguration, and Microsoft's Support and Recovery Assistant does not support it.",
        f"Open Outlook on the web ({_web(hosts)}) with the same account. If mail works there, "
        "your mailbox is fine and the problem is this app or this PC.",
        "Remove the account in Settings → Accounts, close Outlook, open it and add the account "
        "again.",
        "If you also have classic Outlook, switch to it (the toggle at the top right) to use "
        "its diagnostic tools.",
    ]


def _outlook_mac(hosts: CloudHosts, client: Client) -> list[str]:
    return [
        f"Open Outlook on the web ({_web(hosts)}) with the same account. If mail works there, "
        "your mailbox is fine and the problem is on this Mac.",
        "In Outlook, open Settings → Accounts and look for an error next to the account; "
        "remove the account and add it again with your full address.",
        "Install the latest macOS and Outlook updates, then restart the Mac.",
    ]


def _outlook_web(hosts: CloudHosts, client: Client) -> list[str]:
    return [
        f"Open {_web(hosts)} in a private (incognito) window: that rules out stored sign-ins "
        "and browser extensions.",
        "If that works, clear this site's cookies in your normal window, or try another browser.",
        "If the sign-in page itself fails, tell the helpdesk which message it shows.",
    ]


def _outlook_mobile(hosts: CloudHosts, client: Client) -> list[str]:
    return [
        "Update the Outlook app from the App Store or Google Play.",
        "In the Outlook app: Settings → tap your account → Reset account. If that does not "
        "help, delete the account there and add it again.",
        "If your organisation manages phones (Intune), make sure the Company Portal app is "
        "installed and signed in, and that the phone shows as compliant.",
        "In the app's settings, Help & Feedback can send the app's logs to Microsoft support.",
    ]


def _phone_mail(hosts: CloudHosts, client: Client) -> list[str]:
    # KB 2427193 steps (reference/playbooks.md §3): re-add; manual server outlook.office365.com.
    return [
        "Remove the account from the phone's mail app (iPhone: Settings → Mail → Accounts; "
        "Android: the mail app's settings) and add it again as a Microsoft Exchange account.",
        f"If the phone does not find the server by itself, choose manual setup: server "
        f"{hosts.exo}, your full email address as user name, and leave the domain field empty.",
        "If your organisation approves new phones, the first sync waits until an admin "
        "allows this phone: ask the helpdesk.",
        "Using the Outlook app instead of the built-in mail app avoids most of these problems.",
    ]


def _imap_app(hosts: CloudHosts, client: Client) -> list[str]:
    # Manual settings: reference §7 (IMAP/POP implicit TLS, SMTP submission with STARTTLS).
    incoming = {
        Client.POP: [f"Incoming (POP): {hosts.exo}, port 995, encryption SSL/TLS."],
        Client.SMTP: [],
    }.get(client, [f"Incoming (IMAP): {hosts.exo}, port 993, encryption SSL/TLS."])
    return [
        "Enter the server settings by hand rather than letting the app guess:",
        *incoming,
        f"Outgoing (SMTP): {hosts.smtp}, port 587, encryption STARTTLS.",
        "User name: your full email address.",
        "Authentication: OAuth2 / “Sign in with Microsoft” (modern authentication). "
        "Exchange Online no longer accepts a plain password over IMAP or POP; an app that "
        "cannot do OAuth cannot read mail.",
        # MC786329: SMTP AUTH with a password keeps working where it is enabled until it is
        # switched off by default for existing tenants at the end of December 2026.
        "For SMTP sending, an admin must have SMTP AUTH allowed for your mailbox; a plain "
        "password still works there for now, but Microsoft switches that off by default from "
        "the end of December 2026, so prefer OAuth2.",
    ]


_CLIENT_STEPS: dict[App, Callable[[CloudHosts, Client], list[str]]] = {
    App.OUTLOOK_WINDOWS: _outlook_windows,
    App.NEW_OUTLOOK: _new_outlook,
    App.OUTLOOK_MAC: _outlook_mac,
    App.OUTLOOK_WEB: _outlook_web,
    App.OUTLOOK_MOBILE: _outlook_mobile,
    App.PHONE_MAIL: _phone_mail,
    App.IMAP_APP: _imap_app,
}


def client_steps(client: Client, hosts: CloudHosts, app: str | None = None) -> list[str]:
    """What the person can try in their own app. `app` is free text or an `App` value."""
    chosen = classify_app(app) or _default_app(client)
    if chosen is None:  # Client.ALL and no app named
        return [
            f"Open Outlook on the web ({_web(hosts)}) with the same account. If mail works "
            "there, your mailbox is fine and the problem is the app or the device.",
            "Remove the account from the app and add it again.",
            "Update the app and the device, then restart the device.",
            "Tell the helpdesk which app and device you use, and the exact error message.",
        ]
    return _CLIENT_STEPS[chosen](hosts, client)


# ---- per cause ---------------------------------------------------------------------------

_CauseSteps = Callable[[Client, CloudHosts], list[str]]


def _autodiscover_dns_missing(client: Client, h: CloudHosts) -> list[str]:
    you = (
        f"You: until it is fixed, set the account up by hand with server {h.exo}."
        if client in (Client.MOBILE, Client.IMAP, Client.POP, Client.SMTP)
        else "You: nothing to change on your computer; the fix is in your domain's DNS."
    )
    return [
        you,
        f"Helpdesk: ask whoever runs the domain's DNS to create the record autodiscover.<domain> "
        f"CNAME {h.autodiscover_cname} (hybrid setups point it at the on-premises Exchange "
        "server instead). New records can take up to an hour to be seen.",
        "Helpdesk: run mailfix again once the record exists.",
    ]


def _autodiscover_dns_elsewhere(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to change on your device.",
        f"Helpdesk: autodiscover.<domain> points somewhere other than {h.autodiscover_cname}. "
        "If all mailboxes are in Exchange Online, change it to a CNAME to "
        f"{h.autodiscover_cname}; in a hybrid setup, check the on-premises Autodiscover "
        "service it points to.",
    ]


def _autodiscover_root_hijack(client: Client, h: CloudHosts) -> list[str]:
    steps = [
        "Helpdesk: the web server of the domain itself answers "
        "https://<domain>/autodiscover/autodiscover.xml with settings that are not Exchange "
        "(Microsoft KB 3049615). Ask the web host to stop answering that path (a plain 404) "
        "or to switch off its hosting panel's mail autoconfiguration.",
    ]
    if client in (Client.OUTLOOK, Client.ALL):
        steps.insert(
            0,
            "You: if Outlook shows IMAP settings or a certificate warning for your website, "
            "cancel it and tell the helpdesk.",
        )
        steps.append(
            "Helpdesk (stopgap for Outlook for Windows): the policy value ExcludeHttpsRootDomain "
            "= 1 (DWORD) under HKCU\\Software\\Microsoft\\Office\\16.0\\Outlook\\AutoDiscover "
            "makes Outlook skip the root domain."
        )
    return steps


def _autodiscover_bad_certificate(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: do not accept a certificate warning you did not expect; tell the helpdesk "
        "which name it shows.",
        "Helpdesk: a server the organisation runs for Autodiscover presents a certificate "
        "that is expired, untrusted or for another name. Install a valid certificate for "
        "that exact name, or stop serving Autodiscover over HTTPS there.",
    ]


def _autodiscover_unreachable(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: try once from another network (for example a phone hotspot).",
        "Helpdesk: no Autodiscover address answers. Check the autodiscover.<domain> record "
        f"(CNAME {h.autodiscover_cname}) and that nothing blocks ports 80 and 443 on the way.",
    ]


def _autodiscover_error(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: check that the address you entered is exactly your mailbox address.",
        "Helpdesk: Autodiscover found the server but answered with an error for this address "
        "(500 usually means it does not know the address). Check that the user exists, has an "
        "Exchange Online licence and that this address is one of the mailbox's addresses; in a "
        "hybrid setup, check the on-premises Autodiscover service.",
    ]


def _domain_not_found(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: check the spelling of the part after the @.",
        "Helpdesk: the domain does not exist in DNS. Check that it is spelled right and that "
        "its registration has not lapsed.",
    ]


def _domain_not_in_m365(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: check the address: a typo, or an old domain your organisation no longer uses?",
        "Helpdesk: Microsoft 365 does not know this domain. Add and verify it in the Microsoft "
        "365 admin centre (Settings → Domains), or give the person their correct address.",
    ]


def _mx_missing(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: connecting may still work, but mail sent to you cannot arrive.",
        f"Helpdesk: the domain has no MX record. Add the one Microsoft 365 shows for it "
        f"(normally <domain-with-dashes>{h.mx_suffixes[0]}, priority 0).",
    ]


def _mx_not_exchange_online(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to change on your device.",
        "Helpdesk: the MX records point somewhere other than Exchange Online. That is right if "
        "a mail filtering service sits in front; otherwise mail goes to the old provider. "
        "This does not stop apps from connecting.",
    ]


def _spf_problem(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: this does not stop your app from connecting; it can send your outgoing mail to "
        "other people's junk folders.",
        f"Helpdesk: publish exactly one TXT record starting v=spf1 that includes "
        f"include:{h.spf_include}.",
    ]


def _dns_failure(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: the network you are on did not answer DNS lookups. Try another network, or "
        "restart your router.",
        "Helpdesk: run mailfix again in a minute; if DNS keeps failing, the DNS servers of "
        "that network need attention.",
    ]


def _adfs_unreachable(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: if signing in to the Office web portal also fails, your organisation's sign-in "
        "service is down: wait for the helpdesk.",
        "Helpdesk: the organisation's sign-in server (AD FS) cannot be reached from the "
        "internet. Check the AD FS and Web Application Proxy servers, their port 443 and their "
        "certificate.",
    ]


def _adfs_certificate_invalid(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to change on your device.",
        "Helpdesk: the AD FS sign-in server presents an invalid certificate (expired, "
        "untrusted or wrong name). Renew it on AD FS and the Web Application Proxy.",
    ]


def _adfs_token_signing_expired(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to change on your device; sign-ins fail for everyone in your domain.",
        "Helpdesk: the AD FS token-signing certificate has expired, or was renewed without "
        "updating Microsoft 365. Renew it and update the federation trust in Microsoft 365 "
        "with the new certificate.",
    ]


def _adfs_token_signing_expiring(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to do now.",
        "Helpdesk: the AD FS token-signing certificate expires within 30 days. Plan the "
        "renewal and update the Microsoft 365 federation trust at the same time.",
    ]


def _hybrid_mailbox_on_premises(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to change on your device.",
        "Helpdesk: this mailbox lives on the on-premises Exchange server, not in Exchange "
        "Online. Check the on-premises Autodiscover and Exchange services, or finish the "
        "mailbox move.",
    ]


def _exo_unreachable(client: Client, h: CloudHosts) -> list[str]:
    return [
        f"You: from the network mailfix ran on, {h.exo} cannot be reached. If your app fails "
        "the same way, try another network (for example a phone hotspot): if it works there, "
        "the block is on your usual network.",
        f"Helpdesk: allow outbound HTTPS (443) to {h.exo} and the other Microsoft 365 "
        "endpoints on firewalls and proxies.",
    ]


def _tls_inspection(client: Client, h: CloudHosts) -> list[str]:
    device = "phone" if client is Client.MOBILE else "computer"
    return [
        "You: on hotel or guest Wi-Fi, open a web page first and accept the portal's terms; "
        f"check that your {device}'s date and time are right.",
        "Helpdesk: something on the network replaces Microsoft's certificates (TLS "
        f"inspection). Exclude {h.exo}, {h.autodiscover_pox} and the other Microsoft 365 "
        "hosts from inspection; Microsoft does not support inspecting that traffic.",
    ]


def _port_blocked(port: int, what: str, host: str) -> _CauseSteps:
    # Only the path matters here: a mailbox setting (ImapEnabled, SMTP AUTH) never makes a
    # port refuse or stay silent, so the steps do not send anyone after one.
    def steps(client: Client, h: CloudHosts) -> list[str]:
        target = h.smtp if host == "smtp" else h.exo
        return [
            f"You: from the network mailfix ran on, {what} (port {port} to {target}) is blocked. "
            "If your app fails the same way, try another network: if it works there, the block "
            "is on your usual network.",
            f"Helpdesk: allow outbound TCP {port} to {target} on that network's firewalls.",
        ]

    return steps


def _smtp_starttls_broken(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: sending from this network is not safe to fix on your side; try another network.",
        f"Helpdesk: the connection to {h.smtp}:587 does not offer or complete STARTTLS. A "
        "firewall's SMTP inspection feature often strips it: switch that inspection off for "
        "Microsoft 365.",
    ]


def _activesync_blocked(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: try once on mobile data instead of Wi-Fi (or the other way round).",
        f"Helpdesk: https://{h.exo}/Microsoft-Server-ActiveSync does not answer as it should "
        "from the network mailfix ran on: check the firewalls and proxies on that path.",
    ]


def _service_degraded(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to change on your device; Microsoft is working on it.",
        "Helpdesk: check Service health in the Microsoft 365 admin centre (Health → Service "
        "health) for an open Exchange Online incident, and tell people when it is resolved.",
    ]


def _device_or_app(client: Client, h: CloudHosts) -> list[str]:
    # reference/playbooks.md §4: when the server-side tests pass, ~95 % of problems are on
    # the device or in the app.
    return [
        *(f"You: {step}" for step in client_steps(client, h)),
        "Helpdesk: the server-side tests passed, so the mailbox, the domain and the service "
        "are fine from the internet. Most such problems sit in the app or on the device: "
        "start there.",
    ]


CAUSE_STEPS: dict[str, _CauseSteps] = {
    "autodiscover-dns-missing": _autodiscover_dns_missing,
    "autodiscover-dns-elsewhere": _autodiscover_dns_elsewhere,
    "autodiscover-root-hijack": _autodiscover_root_hijack,
    "autodiscover-bad-certificate": _autodiscover_bad_certificate,
    "autodiscover-unreachable": _autodiscover_unreachable,
    "autodiscover-error": _autodiscover_error,
    "domain-not-found": _domain_not_found,
    "domain-not-in-m365": _domain_not_in_m365,
    "mx-missing": _mx_missing,
    "mx-not-exchange-online": _mx_not_exchange_online,
    "spf-problem": _spf_problem,
    "dns-failure": _dns_failure,
    "adfs-unreachable": _adfs_unreachable,
    "adfs-certificate-invalid": _adfs_certificate_invalid,
    "adfs-token-signing-expired": _adfs_token_signing_expired,
    "adfs-token-signing-expiring": _adfs_token_signing_expiring,
    "hybrid-mailbox-on-premises": _hybrid_mailbox_on_premises,
    "exo-unreachable": _exo_unreachable,
    "tls-inspection": _tls_inspection,
    "imap-blocked": _port_blocked(993, "IMAP", "exo"),
    "pop-blocked": _port_blocked(995, "POP", "exo"),
    "smtp-blocked": _port_blocked(587, "sending mail (SMTP)", "smtp"),
    "smtp-starttls-broken": _smtp_starttls_broken,
    "activesync-blocked": _activesync_blocked,
    "service-degraded": _service_degraded,
    "device-or-app": _device_or_app,
}


def cause_steps(cause_id: str, client: Client, hosts: CloudHosts) -> list[str]:
    """What to do about `cause_id`: the person's steps ("You: …") then the helpdesk's."""
    steps = CAUSE_STEPS.get(cause_id)
    if steps is None:
        return [
            "Helpdesk: look at the failed checks in this report; mailfix has no advice for "
            f"“{cause_id}” yet."
        ]
    return steps(client, hosts)
