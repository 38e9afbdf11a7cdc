"""A local certificate authority for the sandbox world: good and deliberately bad certificates.

EC P-256 keys keep issuing fast. The CA's PEM is what tests hand to MAILFIX_CA_BUNDLE; an
UNTRUSTED certificate is signed by a second CA that nobody is told about.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

WRONG_NAME = "wrong-name.invalid"


class CertKind(StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    WRONG_NAME = "wrong-name"
    UNTRUSTED = "untrusted"  # signed by a CA nobody trusts


@dataclass(frozen=True)
class IssuedCert:
    """A leaf certificate and its key. `names` are the names the certificate carries."""

    names: tuple[str, ...]
    kind: CertKind
    cert_pem: bytes
    key_pem: bytes
    not_before: datetime
    not_after: datetime

    def server_context(self) -> ssl.SSLContext:
        """A server-side TLS context presenting this certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # ssl only loads key material from files: write both to a private temporary file.
        fd, name = tempfile.mkstemp(prefix="mailfix-sandbox-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.cert_pem + self.key_pem)
            ctx.load_cert_chain(name)
        finally:
            os.unlink(name)
        return ctx


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class _Authority:
    def __init__(self, common_name: str) -> None:
        self.key = _key()
        now = datetime.now(UTC)
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=30))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        names: Sequence[str],
        org: str | None,
        not_before: datetime,
        not_after: datetime,
    ) -> tuple[bytes, bytes]:
        key = _key()
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, names[0])]
        if org:
            subject.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


class SandboxCA:
    def __init__(self, common_name: str = "mailfix sandbox root CA") -> None:
        self._root = _Authority(common_name)
        self._rogue: _Authority | None = None
        self.ca_pem: bytes = self._root.cert.public_bytes(serialization.Encoding.PEM)
        self._issued: dict[tuple[tuple[str, ...], CertKind, str | None], IssuedCert] = {}

    def issue(
        self, names: Sequence[str], *, kind: CertKind = CertKind.VALID, org: str | None = None
    ) -> IssuedCert:
        """A certificate for `names` (wildcards and IP strings allowed), cached per arguments.

        WRONG_NAME certifies only "wrong-name.invalid"; UNTRUSTED is signed by another CA.
        """
        if not names:
            raise ValueError("a certificate needs at least one name")
        key = (tuple(names), kind, org)
        cached = self._issued.get(key)
        if cached is not None:
            return cached
        now = datetime.now(UTC)
        not_before, not_after = now - timedelta(days=1), now + timedelta(days=365)
        if kind is CertKind.EXPIRED:
            not_before, not_after = now - timedelta(days=375), now - timedelta(days=10)
        elif kind is CertKind.NOT_YET_VALID:
            not_before, not_after = now + timedelta(days=10), now + timedelta(days=375)
        certified = (WRONG_NAME,) if kind is CertKind.WRONG_NAME else tuple(names)
        authority = self._root
        if kind is CertKind.UNTRUSTED:
            if self._rogue is None:
                self._rogue = _Authority("mailfix untrusted CA")
            authority = self._rogue
        cert_pem, key_pem = authority.issue(certified, org, not_before, not_after)
        issued = IssuedCert(
            names=certified,
            kind=kind,
            cert_pem=cert_pem,
            key_pem=key_pem,
            not_before=not_before.replace(microsecond=0),
            not_after=not_after.replace(microsecond=0),
        )
        self._issued[key] = issued
        return issued

    def write_bundle(self, path: Path) -> Path:
        """Write the CA certificate (PEM) for MAILFIX_CA_BUNDLE; returns `path`."""
        path.write_bytes(self.ca_pem)
        return path

    def signing_certificate(
        self, common_name: str, *, not_before: datetime, not_after: datetime
    ) -> bytes:
        """DER of a self-signed certificate, as AD FS publishes for token signing."""
        return self_signed_der(common_name, not_before=not_before, not_after=not_after)


def self_signed_der(common_name: str, *, not_before: datetime, not_after: datetime) -> bytes:
    """DER of a self-signed certificate with any dates (AD FS token signing: no CA involved)."""
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)
