"""Next steps in plain words: for the person's own app, and for each cause the diagnosis names.

`client_steps` is what a person can try on their side (reference/playbooks.md §1 for Outlook for
Windows, §3 for phones, exchange-online-diagnostics.md §7 for the manual server settings).
`cause_steps` says what to do about one cause, first for the person ("You: …"), then for the
helpdesk or the admin who owns the fix. The step functions below are the advice each cause
record in `checks.diagnosis.CAUSES` points at (a cause is declared once, there). Every Microsoft
host comes from `CloudHosts`, so the words stay right in the government and 21Vianet clouds.

Vantage: the network checks run from where mailfix runs, not from the person's device. Advice
about a network finding says so, and never tells the person to fix their own network because
mailfix's network failed.

Nothing here asks for a password or suggests turning security off.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
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
        "your account and mailbox work, and the problem is this app or this PC.",
        "Remove the account in Settings → Accounts, close Outlook, open it and add the account "
        "again.",
        "If you also have classic Outlook, switch to it (the toggle at the top right) to use "
        "its diagnostic tools.",
    ]


def _outlook_mac(hosts: CloudHosts, client: Client) -> list[str]:
    return [
        f"Open Outlook on the web ({_web(hosts)}) with the same account. If mail works there, "
        "your account and mailbox work, and the problem is on this Mac.",
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
            "there, your account and mailbox work, and the problem is the app or the device.",
            "Remove the account from the app and add it again.",
            "Update the app and the device, then restart the device.",
            "Tell the helpdesk which app and device you use, and the exact error message.",
        ]
    return _CLIENT_STEPS[chosen](hosts, client)


# ---- per cause ---------------------------------------------------------------------------
# Each function is the advice of one cause record in `checks.diagnosis.CAUSES`.

CauseAdvice = Callable[[Client, CloudHosts], list[str]]

_FROM_MAILFIX = "mailfix tested from the network it runs on, not from your device"


def autodiscover_dns_missing(client: Client, h: CloudHosts) -> list[str]:
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


def autodiscover_dns_elsewhere(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to change on your device.",
        f"Helpdesk: autodiscover.<domain> points somewhere other than {h.autodiscover_cname}. "
        "If all mailboxes are in Exchange Online, change it to a CNAME to "
        f"{h.autodiscover_cname}; in a hybrid setup, check the on-premises Autodiscover "
        "service it points to.",
    ]


def autodiscover_root_hijack(client: Client, h: CloudHosts) -> list[str]:
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


def autodiscover_bad_certificate(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: do not accept a certificate warning you did not expect; tell the helpdesk "
        "which name it shows.",
        "Helpdesk: a server the organisation runs for Autodiscover presents a certificate "
        "that is expired, untrusted or for another name. Install a valid certificate for "
        "that exact name, or stop serving Autodiscover over HTTPS there.",
    ]


def autodiscover_unreachable(client: Client, h: CloudHosts) -> list[str]:
    return [
        f"You: {_FROM_MAILFIX}. If your app cannot find the server either, try once from "
        "another network (for example a phone hotspot) and tell the helpdesk what happened.",
        "Helpdesk: no Autodiscover address answered mailfix. Check the autodiscover.<domain> "
        f"record (CNAME {h.autodiscover_cname}) and that nothing on the way blocks ports 80 "
        "and 443 to Microsoft 365.",
    ]


def autodiscover_error(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: check that the address you entered is exactly your mailbox address.",
        "Helpdesk: Autodiscover found the server but answered with an error for this address "
        "(500 usually means it does not know the address). Check that the user exists, has an "
        "Exchange Online licence and that this address is one of the mailbox's addresses; in a "
        "hybrid setup, check the on-premises Autodiscover service.",
    ]


def domain_not_found(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: check the spelling of the part after the @.",
        "Helpdesk: the domain does not exist in DNS. Check that it is spelled right and that "
        "its registration has not lapsed.",
    ]


def domain_not_in_m365(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: check the address: a typo, or an old domain your organisation no longer uses?",
        "Helpdesk: Microsoft 365 does not know this domain. Add and verify it in the Microsoft "
        "365 admin center (Settings → Domains), or give the person their correct address.",
    ]


def mx_missing(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: connecting may still work, but mail sent to you cannot arrive.",
        f"Helpdesk: the domain has no MX record. Add the one Microsoft 365 shows for it "
        f"(normally <domain-with-dashes>{h.mx_suffixes[0]}, priority 0).",
    ]


def mx_not_exchange_online(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to change on your device.",
        "Helpdesk: the MX records point somewhere other than Exchange Online. That is right if "
        "a mail filtering service sits in front; otherwise mail goes to the old provider. "
        "This does not stop apps from connecting.",
    ]


def spf_problem(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: this does not stop your app from connecting; it can send your outgoing mail to "
        "other people's junk folders.",
        f"Helpdesk: publish exactly one TXT record starting v=spf1 that includes "
        f"include:{h.spf_include}. Fix it when convenient: it is not why the app fails today.",
    ]


def dns_failure(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to change on your device: the DNS lookups that failed were mailfix's own, "
        "from the network it runs on.",
        "Helpdesk: run mailfix again in a minute. If the domain's names keep failing, check "
        "them with another public resolver: if that fails too, the domain's name servers (or "
        "its DNSSEC signatures) need attention, and everyone is affected; if it answers, the "
        "DNS servers mailfix uses are at fault, not the person's network.",
    ]


def adfs_unreachable(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: if signing in to the Office web portal also fails, your organisation's sign-in "
        "service is down: wait for the helpdesk.",
        "Helpdesk: the organisation's sign-in server (AD FS) cannot be reached from the "
        "internet. Check the AD FS and Web Application Proxy servers, their port 443 and their "
        "certificate.",
    ]


def adfs_certificate_invalid(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to change on your device.",
        "Helpdesk: the AD FS sign-in server presents an invalid certificate (expired, "
        "untrusted or wrong name). Renew it on AD FS and the Web Application Proxy.",
    ]


def adfs_token_signing_expired(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to change on your device; sign-ins fail for everyone in your domain.",
        "Helpdesk: the AD FS token-signing certificate has expired, or was renewed without "
        "updating Microsoft 365. Renew it and update the federation trust in Microsoft 365 "
        "with the new certificate.",
    ]


def adfs_token_signing_expiring(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to do now: this is not why your app fails today.",
        "Helpdesk: the AD FS token-signing certificate expires within 30 days. Plan the "
        "renewal and update the Microsoft 365 federation trust at the same time.",
    ]


def hybrid_mailbox_on_premises(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to change on your device yet; your mailbox is on your organisation's "
        "own Exchange server, which mailfix's Exchange Online checks do not cover.",
        "Helpdesk: this mailbox lives on the on-premises Exchange server, not in Exchange "
        "Online. Check the on-premises Autodiscover and Exchange services and the mailbox's "
        "protocols there, or finish the mailbox move.",
    ]


def exo_unreachable(client: Client, h: CloudHosts) -> list[str]:
    return [
        f"You: from the network mailfix ran on, {h.exo} cannot be reached. If your app fails "
        "the same way, try another network (for example a phone hotspot): if it works there, "
        "the block is on your usual network.",
        f"Helpdesk: allow outbound HTTPS (443) to {h.exo} and the other Microsoft 365 "
        "endpoints on the firewalls and proxies of the network that fails.",
    ]


def tls_inspection(client: Client, h: CloudHosts) -> list[str]:
    return [
        f"You: {_FROM_MAILFIX}. If your app also shows certificate warnings, and you are on "
        "hotel or guest Wi-Fi, open a web page first and accept the portal's terms.",
        "Helpdesk: on the network mailfix runs on, something replaces Microsoft's certificates "
        f"(TLS inspection). If the person's network does the same, exclude {h.exo}, "
        f"{h.autodiscover_pox} and the other Microsoft 365 hosts from inspection; Microsoft "
        "does not support inspecting that traffic.",
    ]


def port_blocked(port: int, what: str, host: str) -> CauseAdvice:
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


def smtp_starttls_broken(client: Client, h: CloudHosts) -> list[str]:
    return [
        f"You: {_FROM_MAILFIX}. If sending fails for you too, try once from another network.",
        f"Helpdesk: the connection to {h.smtp}:587 does not offer or complete STARTTLS. A "
        "firewall's SMTP inspection feature often strips it: switch that inspection off for "
        "Microsoft 365 on the network that fails.",
    ]


def activesync_blocked(client: Client, h: CloudHosts) -> list[str]:
    return [
        f"You: {_FROM_MAILFIX}. If your phone fails too, try once on mobile data instead of "
        "Wi-Fi (or the other way round).",
        f"Helpdesk: https://{h.exo}/Microsoft-Server-ActiveSync does not answer as it should "
        "from the network mailfix ran on: check the firewalls and proxies on that path.",
    ]


def service_incident(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to change on your device; the problem is at Microsoft, and the app "
        "recovers when Microsoft fixes it.",
        "Helpdesk: follow the incident in the Microsoft 365 admin center (Health → Service "
        "health, the Exchange Online entry named in the report) and tell people when it is "
        "resolved.",
    ]


# ---- tenant causes (what an admin sees inside the tenant) --------------------------------


def account_not_found(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: check that the address is exactly your work address (spelling, the right domain).",
        "Helpdesk: no account in the organisation's Microsoft 365 owns this address, neither as "
        "its sign-in name nor as one of its email addresses. If the person should have one, "
        "create it or add this address to their account (Microsoft 365 admin center → Users), "
        "then give it a licence that includes Exchange Online.",
    ]


def account_deleted(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: your account was deleted; nothing on your device brings it back. Once the "
        "helpdesk restores it, sign in again in your app.",
        "Helpdesk: the account is in Deleted users, where it can be restored for 30 days after "
        "deletion (the account finding says how many are left). Restore it in the Microsoft "
        "365 admin center → Users → Deleted users; the mailbox comes back with it. mailfix can "
        "propose the restore for approval. An account synced from on-premises is restored "
        "there instead.",
    ]


def account_disabled(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: your account is blocked from signing in; nothing on your device changes that. "
        "Once the helpdesk unblocks it, sign in again in your app.",
        "Helpdesk: sign-in is blocked for this account. If that is not intended (for example "
        "after a leave), unblock it in the Microsoft 365 admin center → Users → Active users; "
        "mailfix can propose this for approval. An account synced from on-premises is enabled "
        "in the on-premises Active Directory, then the next sync carries it over.",
    ]


def account_sync_error(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to change on your device.",
        "Helpdesk: directory sync reports a provisioning error for this account (for example "
        "another object already uses one of its addresses). Fix the value in the on-premises "
        "directory and let the next sync run; until then the account may lack the address.",
    ]


def no_exchange_licence(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: your account has no mailbox yet, so no app can connect; nothing on your device "
        "changes that. After the helpdesk has assigned the licence, wait about an hour, then "
        "set the account up again in your app.",
        "Helpdesk: none of this person's licences includes Exchange Online (Microsoft 365 Apps "
        "and Microsoft 365 F1 include no mailbox). Assign one that does, such as Business "
        "Basic or Standard, E3, E5 or F3, in the Microsoft 365 admin center → Users → Active "
        "users → Licenses and apps; mailfix can propose it for approval. The mailbox is "
        "created within minutes to an hour.",
    ]


def exchange_plan_disabled(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing on your device changes this. After the helpdesk has switched it on, "
        "wait a few minutes and try again.",
        "Helpdesk: the person's licence includes Exchange Online, but that service is switched "
        "off for them. Switch it back on under the user's Licenses and apps (Microsoft 365 "
        "admin center); mailfix can propose it for approval.",
    ]


def exchange_plan_pending(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: your mailbox is still being set up; try again in an hour.",
        "Helpdesk: the Exchange Online licence is assigned but Microsoft is still setting up "
        "the mailbox. That usually takes minutes, sometimes a few hours; if it stays pending "
        "for more than a day, open a case with Microsoft support.",
    ]


def no_mailbox(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: your account has no mailbox in Exchange Online, so no app can connect; nothing "
        "on your device changes that.",
        "Helpdesk: fix the licence first if the report names one; otherwise look the person "
        "up in the Exchange admin center → Recipients → Mailboxes: the mailbox may have been "
        "deleted, be inactive, or the account may be a mail contact or mail user instead.",
    ]


_PROTOCOL_WORDS: dict[Client, str] = {
    Client.MOBILE: "Exchange ActiveSync (the phone's mail app) or Outlook mobile",
    Client.IMAP: "IMAP",
    Client.POP: "POP",
    Client.SMTP: "Authenticated SMTP",
    Client.OUTLOOK: "MAPI (Outlook for Windows) or EWS (Outlook for Mac)",
    Client.WEB: "Outlook on the web",
}


def protocol_disabled(client: Client, h: CloudHosts) -> list[str]:
    what = _PROTOCOL_WORDS.get(client, "the way your app connects")
    return [
        f"You: your mailbox has {what} switched off, so your app cannot connect; nothing on "
        "your device changes that. Once the helpdesk has switched it on, wait up to an hour, "
        "then remove the account from the app and add it again.",
        "Helpdesk: in the Exchange admin center → Recipients → Mailboxes → the person → "
        "Manage email apps, switch on the protocol the mailbox finding names; mailfix can "
        "propose the exact Set-CASMailbox change for approval. Changes take up to an hour.",
    ]


def smtp_auth_disabled(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: your app sends with a user name and password over SMTP, which is switched off "
        "for your mailbox or for the whole organisation; nothing on your device changes that.",
        "Helpdesk: Authenticated SMTP is off (for this mailbox, or for the organisation when "
        "the mailbox follows the default). If this app or device must send that way, switch "
        "Authenticated SMTP on for this mailbox only (Manage email apps); mailfix can propose "
        "it for approval. Microsoft is retiring password sending over SMTP, so prefer an app "
        "that signs in with OAuth.",
    ]


def device_quarantined(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: your phone is waiting for your organisation's approval. Once the helpdesk has "
        "allowed it, the first sync starts by itself within a few minutes.",
        "Helpdesk: Exchange quarantined this phone (mobile device access). Allow it in the "
        "Exchange admin center → Mobile → Mobile device access (quarantined devices); mailfix "
        "can propose allowing this device for approval. The devices finding names the rule or "
        "setting that quarantined it.",
    ]


def device_blocked(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: your organisation blocks this phone or its mail app; ask the helpdesk which app "
        "is allowed (often Outlook for iOS and Android).",
        "Helpdesk: a device access rule, or the person's own list of blocked devices, blocks "
        "this phone (the devices finding names it). If the phone should be allowed, change the "
        "rule or allow the device.",
    ]


def client_access_rule(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: a rule in your organisation's Exchange Online settings blocks this app; nothing "
        "on your device changes that.",
        "Helpdesk: the Client Access Rule named in the report denies this connection. Change "
        "its conditions or exceptions, or remove it (Set-ClientAccessRule, "
        "Remove-ClientAccessRule); changes take up to an hour. Client Access Rules are "
        "deprecated: move what it enforces to Conditional Access.",
    ]


def conditional_access_block(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: your organisation's sign-in policy does not allow this app (or where it connects "
        "from). Ask the helpdesk which app you should use; Outlook for iOS and Android or "
        "Outlook on the web are often allowed where others are not.",
        "Helpdesk: the Conditional Access policy named in the report blocks this sign-in "
        "(Entra admin center → Protection → Conditional Access). If the block is intended, "
        "move the person to an allowed app; if not, narrow the policy's conditions. Do not "
        "switch the policy off to test.",
    ]


def conditional_access_mfa(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: your organisation asks for a second sign-in step (multifactor authentication). "
        "An app that signs in with only a password (IMAP, POP, SMTP, the phone's built-in mail "
        "app) can never do it: use Outlook, or an app with “Sign in with Microsoft”. If you "
        "have never set up the second step, do it at aka.ms/mfasetup.",
        "Helpdesk: the Conditional Access policy named in the report requires multifactor "
        "authentication, which this app does not complete. Move the person to an app with "
        "modern authentication rather than excluding them from the policy.",
    ]


def conditional_access_device(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: your organisation allows mail only on a managed device or in an approved app. "
        "Install the Company Portal app, sign in and check that the device shows as compliant, "
        "or use Outlook for iOS and Android.",
        "Helpdesk: the Conditional Access policy named in the report requires a compliant or "
        "hybrid-joined device, or an approved app. Check the device in Intune (its compliance "
        "and why it fails), or give the person an approved app.",
    ]


def sign_in_wrong_password(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: your app keeps signing in with an old or mistyped password. Sign in once at "
        f"{_web(h)} to check your password, then update it in the app (remove the account and "
        "add it again) and on every other device that uses this account.",
        "Helpdesk: the sign-in logs show wrong-password failures (AADSTS50126). After a "
        "password change, apps and phones keep trying the old one: ask the person to update "
        "the password saved in this app and on their other devices. For a domain that signs "
        "in through AD FS, AD FS rejected the password. Repeated failures lock the account.",
    ]


def account_locked(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: your account is locked after too many wrong passwords. Wait a while (the lock "
        "lifts by itself), then update the password in every app and device that still uses "
        "an old one before signing in again.",
        "Helpdesk: Entra ID locked the account (AADSTS50053, Smart Lockout). The sign-in logs "
        "show which app and address keep failing; if they are not the person's, reset the "
        "password and review the sign-ins.",
    ]


def password_expired(client: Client, h: CloudHosts) -> list[str]:
    return [
        f"You: your password has expired. Sign in at {_web(h)} and choose a new one when "
        "asked, then enter the new password in your apps.",
        "Helpdesk: the sign-in logs show an expired password (AADSTS50055 in the cloud, "
        "AADSTS50144 on-premises). For an account synced from on-premises, the password is "
        "changed there (or through password writeback).",
    ]


def tenant_permission_missing(client: Client, h: CloudHosts) -> list[str]:
    return [
        "You: nothing to do; mailfix could not look at part of your organisation's settings.",
        "Helpdesk: mailfix's app lacks a permission to read part of the tenant; the finding "
        "names the permission and where to grant it. Grant it and run the diagnosis again: "
        "until then mailfix cannot say whether that part is in order.",
    ]


def device_or_app(client: Client, h: CloudHosts) -> list[str]:
    # reference/playbooks.md §4: when the server-side tests pass, ~95 % of problems are on
    # the device or in the app. Only what was checked is claimed.
    return [
        *(f"You: {step}" for step in client_steps(client, h)),
        "Helpdesk: none of the checks mailfix could run found a fault this app depends on "
        "(the network checks ran from mailfix's own network, not from the person's device; "
        "the report lists any check that could not run). Most such problems sit in the app or "
        "on the device: start there.",
    ]


def not_checked_step(titles: Sequence[str]) -> str:
    """The helpdesk line that names what mailfix did not check (empty titles: no line)."""
    return (
        "Helpdesk: not checked: "
        + "; ".join(titles)
        + ". Look at those in the admin centers before concluding it is the device."
    )


def cause_steps(
    cause_id: str, client: Client, hosts: CloudHosts, *, unchecked: Sequence[str] = ()
) -> list[str]:
    """What to do about `cause_id`: the person's steps ("You: …") then the helpdesk's.

    `unchecked`: titles of checks that did not run (see `checks.diagnosis.not_checked`); the
    device-or-app advice names them instead of claiming they are in order.
    """
    # The cause records (checks.diagnosis) point at the functions above, so they import this
    # module; reading them here, at call time, keeps the import one-way.
    from checks.diagnosis import cause_spec  # noqa: PLC0415

    spec = cause_spec(cause_id)
    if spec is None:
        return [
            "Helpdesk: look at the failed checks in this report; mailfix has no advice for "
            f"“{cause_id}” yet."
        ]
    steps = spec.advice(client, hosts)
    if unchecked and spec.id == "device-or-app":
        steps.append(not_checked_step(unchecked))
    return steps
