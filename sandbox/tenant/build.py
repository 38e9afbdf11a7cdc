"""Builders for tenant data: a healthy tenant for one person, changed in one place per scenario.

    tenant_data("contoso.com", user={"account_enabled": False})

The person (`user`@`domain`) has an Office 365 E3 licence, an Exchange Online mailbox with every
protocol on, one iPhone that syncs, and no policies in the way. mailfix's app has every
permission its checks and fixes need (models.MAILFIX_GRAPH_PERMISSIONS), Exchange.ManageAsApp
and the Exchange Recipient Administrator role (reads and Set-CASMailbox).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sandbox.tenant.models import (
    MAILFIX_GRAPH_PERMISSIONS,
    SKU_E3,
    AppRegistration,
    AssignedLicense,
    ClientSecret,
    MobileDevice,
    TenantData,
    TenantUser,
    stable_id,
)

# Test data, not a credential: the sandbox's app secret (shown by `python -m sandbox`).
SANDBOX_SECRET = "mfx-sandbox~not-a-real-secret.0001"  # noqa: S105 (test data)
IPHONE_ID = "D6F1A2B3C4E5F60718293A4B5C6D7E8F"


@dataclass(frozen=True)
class AppCertificate:
    pem: bytes  # private key and certificate, as MAILFIX_CLIENT_CERTIFICATE wants them
    der: bytes  # the certificate, as the app registration holds it


def rsa_self_signed(common_name: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """An RSA key and a self-signed certificate for it, valid from 30 days ago for a year (JWT
    signatures are RS256/PS256, so the EC builder in sandbox.ca does not fit here)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return key, cert


@functools.cache
def app_certificate() -> AppCertificate:
    """The sandbox app's certificate (made once per process; every sandbox app trusts it unless
    its registration says `sandbox_certificate=False`)."""
    key, cert = rsa_self_signed("mailfix sandbox app")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + cert.public_bytes(serialization.Encoding.PEM)
    return AppCertificate(pem=pem, der=cert.public_bytes(serialization.Encoding.DER))


def person(
    domain: str = "contoso.com",
    user: str = "ana",
    *,
    display_name: str | None = None,
    **fields: Any,
) -> TenantUser:
    """A licensed, mailbox-enabled member user `user@domain` (fields override)."""
    address = f"{user}@{domain}".lower()
    data: dict[str, Any] = {
        "id": stable_id("user", address),
        "upn": address,
        "display_name": display_name or user.title() + " Lopez",
        "mail": address,
        "proxy_addresses": (
            f"SMTP:{address}",
            f"smtp:{user}@{domain.split('.', maxsplit=1)[0]}.onmicrosoft.com",
        ),
        "licenses": (AssignedLicense(sku_id=SKU_E3.sku_id),),
        "devices": (MobileDevice(device_id=IPHONE_ID, friendly_name=f"{user.title()}'s iPhone"),),
    }
    data.update(fields)
    return TenantUser(**data)


def app_registration(domain: str = "contoso.com", **fields: Any) -> AppRegistration:
    data: dict[str, Any] = {
        "client_id": stable_id("app", domain),
        "secrets": (ClientSecret(value=SANDBOX_SECRET, hint=SANDBOX_SECRET[:3]),),
        "graph_permissions": MAILFIX_GRAPH_PERMISSIONS,
        "directory_roles": ("Exchange Recipient Administrator",),
    }
    data.update(fields)
    return AppRegistration(**data)


def tenant_data(
    domain: str = "contoso.com",
    user: str = "ana",
    *,
    person_fields: Mapping[str, Any] | None = None,
    app: Mapping[str, Any] | None = None,
    others: Iterable[TenantUser] = (),
    **fields: Any,
) -> TenantData:
    """The healthy tenant of `domain` with `user` in it; `person_fields`/`app`/`fields` change
    the person, the app registration and the tenant."""
    label = domain.split(".", maxsplit=1)[0]
    data: dict[str, Any] = {
        "tenant_id": stable_id("tenant", domain),
        "display_name": label.title(),
        "initial_domain": f"{label}.onmicrosoft.com",
        "domains": (domain,),
        "app": app_registration(domain, **dict(app or {})),
        "users": (person(domain, user, **dict(person_fields or {})), *others),
    }
    data.update(fields)
    return TenantData(**data)
