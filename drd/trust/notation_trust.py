"""
Notation trust: trust store certificates, trusted identities, and Notation's own files. Pure.

What `drd.trust.notation` checks an envelope against. ``notation_roots`` and
``notation_identities`` in a ``[trust.NAME]`` table make one `NotationTrust`;
``notation_policy`` reads Notation's ``trustpolicy.json`` and trust store into one
per policy, chosen by repository scope.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID

from drd.errors import ConfigError

WILDCARD_IDENTITY = "*"
IDENTITY_PREFIX = "x509.subject:"

_DN_NAMES = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
}


@dataclass(frozen=True, slots=True)
class TrustedCertificate:
    """One trust store certificate and the file it came from."""

    source: str
    certificate: x509.Certificate = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NotationTrust:
    """
    What makes a Notation signature trusted: trust store certificates and identities.

    ``identities`` are ``x509.subject: C=US, O=Example, CN=release`` strings (a
    subset match of the leaf's subject, as Notation does) or ``*``; empty means
    any leaf that chains to a trust store certificate.
    """

    roots: tuple[TrustedCertificate, ...]
    identities: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ("*",)
    tsa_roots: tuple[TrustedCertificate, ...] = ()

    def __post_init__(self) -> None:
        for identity in self.identities:
            parse_identity(identity)

    def applies_to(self, repository: str) -> bool:
        """Whether a Notation policy scope covers *repository* (``*`` covers all)."""
        return any(
            scope == WILDCARD_IDENTITY or _scope_matches(scope, repository) for scope in self.scopes
        )


def _scope_matches(scope: str, repository: str) -> bool:
    # A Notation scope is "registry/repository"; drd verifies a repository on whichever
    # registry holds it (source, target, drill), so the repository part is what must match.
    return scope.partition("/")[2] == repository


def load_certificates(data: bytes, source: str) -> tuple[TrustedCertificate, ...]:
    """
    Every certificate in a PEM or DER file; raises `ConfigError` naming *source*.

    A private key, an empty file or garbage is refused here, not at verification time.
    """
    if b"PRIVATE KEY" in data:
        raise ConfigError(f"certificate {source}: holds a private key; give the certificate")
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise ConfigError(f"certificate {source}: not a PEM or DER X.509 certificate") from exc
    return tuple(TrustedCertificate(source, cert) for cert in certs)


def parse_identity(identity: str) -> dict[str, str]:
    """``x509.subject: K=V, K=V`` as a dict of short attribute names; ``*`` is an empty dict."""
    text = identity.strip()
    if text == WILDCARD_IDENTITY:
        return {}
    if not text.startswith(IDENTITY_PREFIX):
        raise ConfigError(f"notation identity {identity!r}: must start with {IDENTITY_PREFIX!r}")
    parts: dict[str, str] = {}
    # Commas inside values would need escaping; Notation's own parser refuses them too.
    for item in text[len(IDENTITY_PREFIX) :].split(","):
        name, sep, value = item.partition("=")
        name = name.strip().upper()
        if not sep or name not in _DN_NAMES or not value.strip() or name in parts:
            raise ConfigError(
                f"notation identity {identity!r}: {item.strip()!r} is not one of"
                f" {', '.join(_DN_NAMES)}=value (each once)"
            )
        parts[name] = value.strip()
    if not parts:
        raise ConfigError(f"notation identity {identity!r}: names no subject attribute")
    return parts


def identity_trusted(leaf: x509.Certificate, identities: tuple[str, ...]) -> bool:
    """Whether *leaf*'s subject matches one of *identities* (none, or ``*``: any)."""
    if not identities or WILDCARD_IDENTITY in (i.strip() for i in identities):
        return True
    subject: dict[str, list[str]] = {}
    for short, oid in _DN_NAMES.items():
        subject[short] = [str(a.value) for a in leaf.subject.get_attributes_for_oid(oid)]
    return any(
        all(value in subject[name] for name, value in parse_identity(identity).items())
        for identity in identities
    )


def notation_for(trusts: tuple[NotationTrust, ...], repository: str) -> NotationTrust | None:
    """The trust that applies to *repository*: a scope naming it wins over ``*``, as in Notation."""
    named = [t for t in trusts if any(_scope_matches(s, repository) for s in t.scopes)]
    if named:
        return named[0]
    return next((t for t in trusts if WILDCARD_IDENTITY in t.scopes), None)


def read_trust_policy(
    document: bytes, store: Mapping[str, bytes], source: str
) -> tuple[NotationTrust, ...]:
    """
    Notation's own ``trustpolicy.json`` and its trust store, as drd trusts.

    *store* maps paths under ``truststore/x509`` (``ca/NAME/root.crt``) to file
    bytes. Only the ``strict`` level is accepted (drd never verifies more
    loosely than asked, and ``permissive``/``audit``/``skip`` would); ``ca`` and
    ``signingAuthority`` stores become trust roots, ``tsa`` stores timestamp roots.
    Raises `ConfigError` naming *source* and the policy.
    """
    try:
        doc = json.loads(document)
    except ValueError as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc})") from exc
    policies = doc.get("trustPolicies") if isinstance(doc, dict) else None
    if not isinstance(policies, list) or not policies:
        raise ConfigError(f"{source}: has no trustPolicies")
    return tuple(_read_policy(item, store, source) for item in policies)


def _read_policy(item: object, store: Mapping[str, bytes], source: str) -> NotationTrust:
    if not isinstance(item, dict):
        raise ConfigError(f"{source}: a trust policy is not an object")
    where = f"{source}: trust policy {str(item.get('name'))[:60]!r}"
    verification = item.get("signatureVerification")
    level = verification.get("level") if isinstance(verification, dict) else None
    if level != "strict" or (isinstance(verification, dict) and "override" in verification):
        raise ConfigError(
            f"{where}: signatureVerification must be level strict without override"
            f" (drd verifies at strict level; got {verification!r})"
        )
    scopes = _strings(item.get("registryScopes"), f"{where}: registryScopes")
    identities = _strings(item.get("trustedIdentities"), f"{where}: trustedIdentities")
    roots: list[TrustedCertificate] = []
    tsa_roots: list[TrustedCertificate] = []
    for named in _strings(item.get("trustStores"), f"{where}: trustStores"):
        kind, _, name = named.partition(":")
        if kind not in ("ca", "signingAuthority", "tsa") or not name or "/" in name or ".." in name:
            raise ConfigError(
                f"{where}: trust store {named!r} is not ca:NAME, signingAuthority:NAME or tsa:NAME"
            )
        prefix = f"{kind}/{name}/"
        files = sorted(path for path in store if path.startswith(prefix))
        if not files:
            raise ConfigError(f"{where}: trust store {named} holds no certificate")
        found = tsa_roots if kind == "tsa" else roots
        for path in files:
            found.extend(load_certificates(store[path], f"truststore/x509/{path}"))
    if not roots:
        raise ConfigError(f"{where}: names no ca or signingAuthority trust store")
    return NotationTrust(
        roots=tuple(roots),
        identities=tuple(identities),
        scopes=tuple(scopes),
        tsa_roots=tuple(tsa_roots),
    )


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a non-empty list of strings")
    return list(value)
