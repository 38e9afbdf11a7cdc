"""The tenant side of the sandbox: Entra ID tokens, Microsoft Graph and the Exchange Online admin
API, backed by a scenario's `TenantData` (reference/exchange-online-diagnostics.md §5–§7).

models  — the tenant as scenario data (frozen pydantic)
state   — the live tenant one world serves (fixes change it)
token   — login host: token endpoint, OpenID metadata, instance discovery, keys
graph   — graph.microsoft.com (v1.0 and the beta What-If)
exo_admin — outlook.office365.com/adminapi/beta/{tenant}/InvokeCommand
"""
