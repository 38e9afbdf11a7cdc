"""TLS contexts, certificate parsing and the mapping of verification failures to reasons."""

from __future__ import annotations

import functools
import hashlib
import ssl
from pathlib import Path

from cryptography import x509

from checks.net.types import CertInfo

# OpenSSL X509_V_ERR_* codes (include/openssl/x509_vfy.h) grouped into the seam's reasons.
_EXPIRED = {10}  # CERT_HAS_EXPIRED
_NOT_YET_VALID = {9}  # CERT_NOT_YET_VALID
_HOSTNAME = {62, 63, 64}  # HOSTNAME_MISMATCH, EMAIL_MISMATCH, IP_ADDRESS_MISMATCH
_UNTRUSTED = {
    2,  # UNABLE_TO_GET_ISSUER_CERT
    18,  # DEPTH_ZERO_SELF_SIGNED_CERT
    19,  # SELF_SIGNED_CERT_IN_CHAIN
    20,  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21,  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
    27,  # CERT_UNTRUSTED
}


def client_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """The verifying client context: the CA bundle when configured, else the system store.

    Shared by every Network of the process: loading the system store costs milliseconds and a
    context is safe to use from many connections. A changed bundle file (new mtime) is reloaded.
    """
    if ca_bundle is None:
        return _client_context(None, 0)
    return _client_context(str(ca_bundle), ca_bundle.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _client_context(ca_bundle: str | None, mtime_ns: int) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_bundle)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@functools.cache
def unverified_context() -> ssl.SSLContext:
    """Only for reading what a peer presents after verification already failed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def verify_reason(exc: ssl.SSLCertVerificationError) -> str:
    code = exc.verify_code
    if code in _EXPIRED:
        return "expired"
    if code in _NOT_YET_VALID:
        return "not-yet-valid"
    if code in _HOSTNAME:
        return "hostname"
    if code in _UNTRUSTED:
        return "untrusted"
    return "other"


def find_verify_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error somewhere in an exception's cause chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def find_ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@functools.lru_cache(maxsize=64)
def cert_info(der: bytes) -> CertInfo:
    """The parsed certificate. Raises ValueError for one cryptography cannot parse.

    Whatever cryptography raises while reading a hostile certificate (it parses lazily and
    raises e.g. `x509.DuplicateExtension`, which is not a ValueError, for two SAN extensions)
    comes out as that ValueError.

    Memoised by the DER bytes: the result is a pure function of what the peer just sent (a
    changed certificate is a new key), and a diagnosis sees the same few certificates on most of
    its connections; parsing one costs more than the rest of an HTTP exchange's bookkeeping.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
        san: list[str] = []
        try:
            ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            pass
        else:
            san.extend(ext.value.get_values_for_type(x509.DNSName))
            san.extend(str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress))
        return CertInfo(
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            san=san,
            sha256=hashlib.sha256(der).hexdigest(),
        )
    except ValueError:
        raise
    except Exception as exc:  # DuplicateExtension & co: a certificate we cannot read
        raise ValueError(f"unreadable certificate: {type(exc).__name__}: {exc}") from exc


def peer_cert_info(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> CertInfo | None:
    """What the peer presented, or None. Never raises: the peer's certificate is hostile input."""
    if ssl_object is None:
        return None
    try:
        der = ssl_object.getpeercert(binary_form=True)
        return cert_info(der) if der else None
    except Exception:  # a certificate cryptography cannot parse: report none rather than crash
        return None
