"""The sandbox's own table of tenant-side Microsoft hosts per cloud (reference §5, §6.3, §7).

Kept here rather than imported from the product, so a wrong host in the product shows up as a
failure against the sandbox instead of agreeing with itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from checks.settings import Cloud


@dataclass(frozen=True)
class TenantHosts:
    login: str  # Entra ID: tokens, OpenID metadata, instance discovery
    graph: str  # Microsoft Graph; a Graph token's audience is https://<graph>
    exo: str  # Exchange Online; the admin API's token audience is https://<exo>
    cloud_instance_name: str  # openid-configuration `cloud_instance_name` [uncertain per cloud]
    sts_issuer: str  # v1.0 access token `iss` host [uncertain outside worldwide]

    @property
    def graph_audience(self) -> str:
        return f"https://{self.graph}"

    @property
    def exo_audience(self) -> str:
        return f"https://{self.exo}"


_WORLDWIDE = TenantHosts(
    login="login.microsoftonline.com",
    graph="graph.microsoft.com",
    exo="outlook.office365.com",
    cloud_instance_name="microsoftonline.com",
    sts_issuer="sts.windows.net",
)

TENANT_HOSTS: dict[Cloud, TenantHosts] = {
    Cloud.GLOBAL: _WORLDWIDE,
    Cloud.GCC: _WORLDWIDE,  # GCC uses the worldwide hosts (§5, §7)
    Cloud.GCCHIGH: TenantHosts(
        login="login.microsoftonline.us",
        graph="graph.microsoft.us",
        exo="outlook.office365.us",
        cloud_instance_name="microsoftonline.us",
        sts_issuer="login.microsoftonline.us",
    ),
    Cloud.DOD: TenantHosts(
        login="login.microsoftonline.us",
        graph="dod-graph.microsoft.us",
        exo="outlook-dod.office365.us",
        cloud_instance_name="microsoftonline.us",
        sts_issuer="login.microsoftonline.us",
    ),
    Cloud.CHINA: TenantHosts(  # 21Vianet (§7: login.chinacloudapi.cn, partner.outlook.cn)
        login="login.chinacloudapi.cn",
        graph="microsoftgraph.chinacloudapi.cn",
        exo="partner.outlook.cn",
        cloud_instance_name="partner.microsoftonline.cn",
        sts_issuer="sts.chinacloudapi.cn",
    ),
}


def tenant_hosts(cloud: Cloud) -> TenantHosts:
    return TENANT_HOSTS[cloud]
