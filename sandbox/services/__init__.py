"""HTTP roles of the sandbox world: Microsoft 365 hosts and the customer's own hosts.

`configs` describes each role as data; `build_app(config)` gives the aiohttp application.
"""

from sandbox.services.configs import (
    AdfsConfig,
    AutodiscoverRedirectConfig,
    AutodiscoverSConfig,
    ExoConfig,
    Faults,
    GraphConfig,
    LoginConfig,
    Mailbox,
    OnPremConfig,
    RealmInfo,
    ServiceConfig,
    WebsiteConfig,
    build_app,
)

__all__ = [
    "AdfsConfig",
    "AutodiscoverRedirectConfig",
    "AutodiscoverSConfig",
    "ExoConfig",
    "Faults",
    "GraphConfig",
    "LoginConfig",
    "Mailbox",
    "OnPremConfig",
    "RealmInfo",
    "ServiceConfig",
    "WebsiteConfig",
    "build_app",
]
