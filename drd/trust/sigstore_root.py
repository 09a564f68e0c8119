"""
Sigstore's ``trusted_root.json``: Fulcio CAs, Rekor, CT and timestamp-authority keys. Pure.

Read by hand from its JSON (the protobuf-specs ``TrustedRoot``), not with
sigstore-python's loader: that one comes with its TUF updater and network client,
and drd verifies offline. The public-good instance's root ships with drd
(`PUBLIC_GOOD`, a copy of the root sigstore-python embeds, Apache-2.0).
"""

from __future__ import annotations

import base64
import binascii
import json
import textwrap
from dataclasses import dataclass, replace
from datetime import datetime
from importlib import resources
from typing import Any

from cryptography import x509

from drd.errors import ConfigError
from drd.trust.fulcio import CertificateAuthority
from drd.trust.keys import TrustKey, load_public_key

PUBLIC_GOOD = "public-good"
_PUBLIC_GOOD_FILE = "public-good.trusted_root.json"
_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
_MAX_ENTRIES = 64


@dataclass(frozen=True, slots=True)
class SigstoreRoot:
    """What a trusted root trusts; log keys carry the root's log ID as their fingerprint."""

    authorities: tuple[CertificateAuthority, ...]
    rekor_keys: tuple[TrustKey, ...]
    ctlog_keys: tuple[TrustKey, ...]
    timestamp_authorities: tuple[CertificateAuthority, ...]


def public_good_json() -> bytes:
    """The public-good instance's ``trusted_root.json`` as shipped with drd."""
    return resources.files("drd.trust").joinpath("data", _PUBLIC_GOOD_FILE).read_bytes()


def load_sigstore_root(raw: bytes, source: str) -> SigstoreRoot:
    """Parse a ``trusted_root.json``; `ConfigError` naming *source* for anything unreadable."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("mediaType") != _MEDIA_TYPE:
        raise ConfigError(f"{source}: not a sigstore trusted root (mediaType {_MEDIA_TYPE})")
    try:
        root = SigstoreRoot(
            authorities=tuple(_authority(e, source) for e in _list(doc, "certificateAuthorities")),
            rekor_keys=tuple(k for e in _list(doc, "tlogs") if (k := _log_key(e, source))),
            ctlog_keys=tuple(k for e in _list(doc, "ctlogs") if (k := _log_key(e, source))),
            timestamp_authorities=tuple(
                _authority(e, source) for e in _list(doc, "timestampAuthorities")
            ),
        )
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ConfigError(
            f"{source}: malformed trusted root ({type(exc).__name__}: {exc})"
        ) from exc
    if not root.authorities:
        raise ConfigError(f"{source}: lists no certificate authority")
    return root


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    items = doc.get(key) or []
    if not isinstance(items, list) or len(items) > _MAX_ENTRIES:
        raise ValueError(f"{key} is not a list of at most {_MAX_ENTRIES}")
    return items


def _when(valid_for: Any, key: str) -> datetime | None:
    text = valid_for.get(key) if isinstance(valid_for, dict) else None
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def _authority(entry: dict[str, Any], source: str) -> CertificateAuthority:
    """One CA or TSA: the last certificate of its chain is the root, the rest intermediates."""
    certs = [
        x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"], validate=True))
        for c in entry["certChain"]["certificates"]
    ]
    if not certs:
        raise ValueError("a certificate chain is empty")
    name = entry.get("uri") or entry.get("subject", {}).get("commonName", "")
    return CertificateAuthority(
        source=f"{source} ({name})",
        roots=(certs[-1],),
        intermediates=tuple(certs[:-1]),
        valid_from=_when(entry.get("validFor"), "start"),
        valid_until=_when(entry.get("validFor"), "end"),
    )


def _log_key(entry: dict[str, Any], source: str) -> TrustKey | None:
    """A log's key named by its log ID; None for a key type drd cannot verify with."""
    der = base64.b64decode(entry["publicKey"]["rawBytes"], validate=True)
    log_id = base64.b64decode(entry["logId"]["keyId"], validate=True).hex()
    # PKCS#1 RSA keys (old staging CT logs) are wrapped as such; everything else is SPKI.
    label = (
        "RSA PUBLIC KEY"
        if entry["publicKey"].get("keyDetails") == "PKCS1_RSA_PKCS1V5"
        else "PUBLIC KEY"
    )
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    pem = f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode()
    try:
        key = load_public_key(pem, f"{source} ({entry.get('baseUrl', log_id[:16])})")
    except ConfigError:
        return None
    return replace(key, fingerprint=log_id)
