"""Microsoft host names per cloud (MAILFIX_CLOUD). Checks take every Microsoft host from here.

Sources: reference/exchange-online-diagnostics.md §7 (endpoints and sovereign clouds) and §2.9
(DNS records Microsoft 365 expects). GCC shares the worldwide hosts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from checks.settings import Cloud


@dataclass(frozen=True)
class CloudHosts:
    cloud: Cloud
    login: str  # Entra ID (getuserrealm.srf, tokens)
    graph: str
    exo: str  # Exchange Online client host: EAS, EWS, IMAP, POP, Autodiscover v2, admin API
    smtp: str  # SMTP AUTH submission, port 587
    autodiscover_cname: str  # what autodiscover.<domain> should be a CNAME to
    autodiscover_pox: str  # where the HTTP redirect method ends up (POX endpoint host)
    spf_include: str
    mx_suffixes: tuple[str, ...]  # MX targets that mean "mail is routed to Exchange Online"

    # App-only token scopes (reference §5, §6.3, §7). Graph's audience is its own host in every
    # cloud; the Exchange admin API's audience is the EXO host (worldwide and GCC
    # https://outlook.office365.com, GCC High https://outlook.office365.us, DoD
    # https://outlook-dod.office365.us, 21Vianet https://partner.outlook.cn). Tokens are not
    # interchangeable across clouds.
    @property
    def graph_scope(self) -> str:
        return f"https://{self.graph}/.default"

    @property
    def exo_scope(self) -> str:
        return f"https://{self.exo}/.default"

    @property
    def graph_base(self) -> str:
        return f"https://{self.graph}/v1.0"

    def exo_admin_url(self, tenant: str) -> str:
        """The InvokeCommand endpoint ExchangeOnlineManagement v3 uses (reference §6.3 (a))."""
        return f"https://{self.exo}/adminapi/beta/{tenant}/InvokeCommand"


_WORLDWIDE = CloudHosts(
    cloud=Cloud.GLOBAL,
    login="login.microsoftonline.com",
    graph="graph.microsoft.com",
    exo="outlook.office365.com",
    smtp="smtp.office365.com",
    autodiscover_cname="autodiscover.outlook.com",
    autodiscover_pox="autodiscover-s.outlook.com",
    spf_include="spf.protection.outlook.com",
    mx_suffixes=(".mail.protection.outlook.com", ".mx.microsoft"),
)

CLOUDS: dict[Cloud, CloudHosts] = {
    Cloud.GLOBAL: _WORLDWIDE,
    # GCC (US government community) shares the worldwide hosts (§7).
    Cloud.GCC: replace(_WORLDWIDE, cloud=Cloud.GCC),
    # GCC High and DoD: the US government clouds (§7). Their customer DNS targets are the
    # .office365.us names from Microsoft's government DNS guidance; the POX host behind the
    # HTTP redirect is not in our sources [uncertain] and only shapes the trace's wording.
    Cloud.GCCHIGH: CloudHosts(
        cloud=Cloud.GCCHIGH,
        login="login.microsoftonline.us",
        graph="graph.microsoft.us",
        exo="outlook.office365.us",
        smtp="smtp.office365.us",
        autodiscover_cname="autodiscover.office365.us",
        autodiscover_pox="autodiscover-s.office365.us",
        spf_include="spf.protection.office365.us",
        mx_suffixes=(".mail.protection.office365.us",),
    ),
    Cloud.DOD: CloudHosts(
        cloud=Cloud.DOD,
        login="login.microsoftonline.us",
        graph="dod-graph.microsoft.us",
        exo="outlook-dod.office365.us",
        smtp="smtp.office365.us",
        autodiscover_cname="autodiscover-dod.office365.us",
        autodiscover_pox="autodiscover-s-dod.office365.us",
        spf_include="spf.protection.office365.us",
        mx_suffixes=(".mail.protection.office365.us",),
    ),
    # Operated by 21Vianet (§2.9, §7).
    Cloud.CHINA: CloudHosts(
        cloud=Cloud.CHINA,
        login="login.chinacloudapi.cn",
        graph="microsoftgraph.chinacloudapi.cn",
        exo="partner.outlook.cn",
        smtp="smtp.partner.outlook.cn",
        autodiscover_cname="autodiscover.partner.outlook.cn",
        autodiscover_pox="autodiscover.partner.outlook.cn",
        spf_include="spf.protection.partner.outlook.cn",
        mx_suffixes=(".mail.protection.partner.outlook.cn",),
    ),
}


def hosts_for(cloud: Cloud) -> CloudHosts:
    return CLOUDS[cloud]
