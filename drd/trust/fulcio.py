"""
Keyless Sigstore certificates: Fulcio roots, chains at signing time, identities, SCTs. Pure.

A keyless signature carries a short-lived Fulcio leaf certificate. It is trusted when
the leaf chains to a configured Fulcio root at the moment the signature was made
(proven by a transparency-log entry or a timestamp authority, never "now"), carries
the code-signing EKU, and names an identity the policy lists: the subject (an email
or URI SAN) and the OIDC issuer from Fulcio's extension. Chain building and path
validation are `cryptography`'s X.509 verifier; what is written here is only what it
does not know about: Fulcio's extensions and the CT precertificate SCT check.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
)
from cryptography.x509.verification import VerificationError as X509VerificationError

from drd.errors import ConfigError
from drd.oci.digest import Digest
from drd.trust.decode import fail
from drd.trust.keys import MAX_PEM_BYTES, TrustKey, load_public_key
from drd.trust.policy import EXPIRED, UNTRUSTED_IDENTITY, UNTRUSTED_ROOT

_FULCIO = "1.3.6.1.4.1.57264.1"
# The OIDC issuer: 1.8 is a DER UTF8String; 1.1 (deprecated, alone in older leaves) raw bytes.
ISSUER_OID = x509.ObjectIdentifier(f"{_FULCIO}.8")
ISSUER_V1_OID = x509.ObjectIdentifier(f"{_FULCIO}.1")
# Optional claims an identity rule may require, by config name: (current OID, deprecated OID).
CLAIM_OIDS: Mapping[str, tuple[str, str | None]] = {
    "build_signer_uri": (f"{_FULCIO}.9", None),
    "source_repository": (f"{_FULCIO}.12", None),
    "source_ref": (f"{_FULCIO}.14", f"{_FULCIO}.6"),
    "workflow_trigger": (f"{_FULCIO}.20", f"{_FULCIO}.2"),
}
# A certificate chain annotation holds a leaf's intermediates and root; more is not a chain.
MAX_CHAIN = 10


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """
    Trusted roots with the intermediates that go with them, and when they may sign.

    From a PEM file: self-signed certificates are roots, the others intermediates (as
    cosign reads ``SIGSTORE_ROOT_FILE``). From a ``trusted_root.json``: one entry's chain.
    """

    source: str
    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    valid_from: datetime | None = None
    valid_until: datetime | None = None

    def valid_at(self, at: datetime) -> bool:
        """Whether this authority may have signed at *at* (its ``validFor`` window)."""
        after_start = self.valid_from is None or self.valid_from <= at
        return after_start and (self.valid_until is None or at <= self.valid_until)


@dataclass(frozen=True, slots=True)
class IdentityRule:
    """
    One ``[[trust.X.identities]]`` entry: who may sign, matched in full.

    Exact strings or regular expressions (``fullmatch``: an unanchored pattern cannot
    match a prefix) for the subject and the issuer; *claims* are exact values of
    Fulcio extensions by `CLAIM_OIDS` name (e.g. ``source_ref = "refs/heads/main"``).
    """

    issuer: str | None = None
    issuer_regex: re.Pattern[str] | None = None
    subject: str | None = None
    subject_regex: re.Pattern[str] | None = None
    claims: tuple[tuple[str, str], ...] = ()

    def matches(self, identity: CertIdentity) -> bool:
        """Whether *identity* satisfies every part of this rule."""
        return (
            _match(identity.issuer, self.issuer, self.issuer_regex)
            and _match(identity.subject, self.subject, self.subject_regex)
            and all(identity.claims.get(name) == value for name, value in self.claims)
        )

    def describe(self) -> str:
        """The rule as the config wrote it, for error messages."""
        parts = [
            f"{name}={value!r}"
            for name, value in (
                ("subject", self.subject),
                ("subject_regex", self.subject_regex.pattern if self.subject_regex else None),
                ("issuer", self.issuer),
                ("issuer_regex", self.issuer_regex.pattern if self.issuer_regex else None),
                *self.claims,
            )
            if value is not None
        ]
        return ", ".join(parts)


def _match(value: str, exact: str | None, pattern: re.Pattern[str] | None) -> bool:
    if exact is not None and value != exact:
        return False
    return pattern is None or pattern.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class KeylessTrust:
    """
    The keyless half of a trust policy.

    ``ctlog_keys`` check the leaf's SCT when given; ``timestamp_authorities`` make
    RFC 3161 timestamps a signing-time source (Rekor keys live on the `TrustPolicy`).
    """

    authorities: tuple[CertificateAuthority, ...]
    identities: tuple[IdentityRule, ...]
    ctlog_keys: tuple[TrustKey, ...] = ()
    timestamp_authorities: tuple[CertificateAuthority, ...] = ()

    def __post_init__(self) -> None:
        if not self.authorities:
            raise ConfigError("keyless trust lists no Fulcio root")
        if not self.identities:
            raise ConfigError("keyless trust lists no identity: any Fulcio user would pass")


@dataclass(frozen=True, slots=True)
class CertIdentity:
    """Who a Fulcio leaf was issued to: SAN, OIDC issuer, and any known claims."""

    subject: str
    issuer: str
    claims: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.subject} (issuer {self.issuer})"


# --- loading ---------------------------------------------------------------------------


def load_certificates(pem: bytes, source: str) -> list[x509.Certificate]:
    """Every certificate in a PEM file; `ConfigError` naming *source* when there is none."""
    if len(pem) > MAX_PEM_BYTES:
        raise ConfigError(f"{source}: {len(pem)} bytes is too large for a certificate file")
    if b"PRIVATE KEY" in pem:
        raise ConfigError(f"{source}: is a private key; give the CA certificate")
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ConfigError(f"{source}: not a PEM certificate ({exc})") from exc
    return certs


def authority_from_pem(pem: bytes, source: str) -> CertificateAuthority:
    """A `CertificateAuthority` from a PEM file holding at least one self-signed root."""
    certs = load_certificates(pem, source)
    roots = tuple(c for c in certs if c.subject == c.issuer)
    if not roots:
        raise ConfigError(f"{source}: holds no self-signed root certificate")
    return CertificateAuthority(source, roots, tuple(c for c in certs if c.subject != c.issuer))


def public_key_of(cert: x509.Certificate, source: str) -> TrustKey:
    """The certificate's key, loaded as a trusted key would be (same algorithm limits)."""
    pem = cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return load_public_key(pem, source)


# --- checks ----------------------------------------------------------------------------


def _code_signing(_policy: object, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage) -> None:
    if ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise ValueError("the certificate is not for code signing (no codeSigning EKU)")


def _is_ca(_policy: object, _cert: x509.Certificate, bc: x509.BasicConstraints | None) -> None:
    if bc is None or not bc.ca:
        raise ValueError("an issuer in the chain is not a CA")


# Not the WebPKI defaults: Fulcio issues neither server nor client certificates, and its
# CAs carry no EKU. The leaf must carry codeSigning; every issuer must be a CA.
_LEAF_POLICY = ExtensionPolicy.permit_all().require_present(
    x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _code_signing
)
_CA_POLICY = ExtensionPolicy.permit_all().require_present(
    x509.BasicConstraints, Criticality.AGNOSTIC, _is_ca
)


def verify_chain(
    leaf: x509.Certificate,
    untrusted: Sequence[x509.Certificate],
    authorities: Iterable[CertificateAuthority],
    at: datetime,
    subject: Digest,
) -> CertificateAuthority:
    """
    The authority *leaf* chains to at time *at*, or raise.

    *untrusted* certificates (from a chain annotation or a bundle) only serve as
    intermediates: a root among them anchors nothing. Raises `VerificationError` with
    ``expired`` when the leaf (or its chain) was not valid at *at*, ``untrusted-root``
    when no configured authority issued it.
    """
    if not leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc:
        raise fail(
            EXPIRED,
            f"certificate was valid {leaf.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} to"
            f" {leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}, not at the signing time"
            f" {at:%Y-%m-%dT%H:%M:%SZ}",
            subject,
        )
    errors: list[str] = []
    for authority in authorities:
        if not authority.valid_at(at):
            errors.append(f"{authority.source}: not valid at {at:%Y-%m-%dT%H:%M:%SZ}")
            continue
        verifier = (
            PolicyBuilder()
            .store(Store(list(authority.roots)))
            .time(at)
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_LEAF_POLICY)
            .build_client_verifier()
        )
        try:
            verifier.verify(leaf, [*authority.intermediates, *untrusted[:MAX_CHAIN]])
        except X509VerificationError as exc:
            errors.append(f"{authority.source}: {exc}")
            continue
        return authority
    # Expired only when every authority failed for time alone (outside its validity window).
    reason = EXPIRED if errors and all("not valid at" in e for e in errors) else UNTRUSTED_ROOT
    raise fail(
        reason,
        f"certificate issued by {leaf.issuer.rfc4514_string()[:120]} does not chain to a"
        f" trusted Fulcio root ({'; '.join(errors)[:400]})",
        subject,
    )


def identity_of(leaf: x509.Certificate, subject: Digest) -> CertIdentity:
    """The SAN and OIDC issuer Fulcio wrote into *leaf*; raise ``untrusted-identity`` if none."""
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise fail(UNTRUSTED_IDENTITY, "certificate names no subject (no SAN)", subject) from exc
    names = [
        *san.get_values_for_type(x509.RFC822Name),
        *san.get_values_for_type(x509.UniformResourceIdentifier),
    ]
    if len(names) != 1:
        raise fail(UNTRUSTED_IDENTITY, f"certificate names {len(names)} subjects, not one", subject)
    issuer = _extension_text(leaf, ISSUER_OID.dotted_string, der=True) or _extension_text(
        leaf, ISSUER_V1_OID.dotted_string, der=False
    )
    if issuer is None:
        raise fail(UNTRUSTED_IDENTITY, "certificate carries no OIDC issuer extension", subject)
    claims: dict[str, str] = {}
    for name, (oid, legacy) in CLAIM_OIDS.items():
        value = _extension_text(leaf, oid, der=True)
        if value is None and legacy is not None:
            value = _extension_text(leaf, legacy, der=False)
        if value is not None:
            claims[name] = value
    return CertIdentity(names[0], issuer, claims)


def check_identity(
    identity: CertIdentity, rules: Sequence[IdentityRule], policy: str, subject: Digest
) -> None:
    """Raise ``untrusted-identity`` unless one of *rules* matches *identity*."""
    if any(rule.matches(identity) for rule in rules):
        return
    wanted = " | ".join(rule.describe() for rule in rules)
    raise fail(
        UNTRUSTED_IDENTITY,
        f"signed by {identity}, which policy {policy} does not trust (wants {wanted})"[:600],
        subject,
    )


def _extension_text(cert: x509.Certificate, oid: str, *, der: bool) -> str | None:
    """A Fulcio extension's string value; *der*: wrapped in a DER UTF8String (v2 form)."""
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid))
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        return None
    raw = _der_utf8(value.value) if der else value.value
    try:
        return raw.decode() if raw is not None else None
    except UnicodeDecodeError:
        return None


def _der_utf8(data: bytes) -> bytes | None:
    """The content of one DER UTF8String (tag 12); hand-read: two length forms, no nesting."""
    if len(data) < 2 or data[0] != 0x0C:
        return None
    length, offset = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            return None
        length, offset = int.from_bytes(data[2 : 2 + count], "big"), 2 + count
    return data[offset:] if len(data) - offset == length else None


def verify_sct(
    leaf: x509.Certificate,
    issuer: x509.Certificate,
    ctlog_keys: Sequence[TrustKey],
    subject: Digest,
) -> None:
    """
    Check that one embedded SCT in *leaf* verifies under a configured CT log key.

    Hand-built RFC 6962 §3.2 signed structure over the precertificate TBS, because
    `cryptography` parses SCTs but does not verify them. Raises ``untrusted-root``.
    """
    try:
        scts = leaf.extensions.get_extension_for_class(
            x509.PrecertificateSignedCertificateTimestamps
        ).value
    except x509.ExtensionNotFound as exc:
        raise fail(
            UNTRUSTED_ROOT, "certificate carries no SCT; ct log keys are set", subject
        ) from exc
    issuer_key_hash = hashlib.sha256(
        issuer.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).digest()
    tbs = leaf.tbs_precertificate_bytes
    for sct in scts:
        key = next((k for k in ctlog_keys if k.fingerprint == sct.log_id.hex()), None)
        if key is None:
            continue
        millis = round(sct.timestamp.timestamp() * 1000)
        signed = (
            struct.pack(">BBQH", 0, 0, millis, 1)
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack(">H", len(sct.extension_bytes))
            + sct.extension_bytes
        )
        if key.verify(sct.signature, signed):
            return
        raise fail(
            UNTRUSTED_ROOT, f"the certificate's SCT does not verify under {key.source}", subject
        )
    raise fail(UNTRUSTED_ROOT, "no SCT in the certificate is from a configured CT log", subject)
