"""
Notation (Notary Project) signatures: JWS and COSE envelopes over a target descriptor. Pure.

A Notation signature is an OCI manifest whose ``subject`` is the signed
artifact and whose one layer is the envelope: ``application/jose+json`` (a
flattened JWS, checked with joserfc) or ``application/cose`` (a COSE_Sign1,
checked with pycose). The envelope carries the signer's certificate chain
(``x5c``, leaf first); its payload names the artifact as a descriptor.

Checks, at Notation's ``strict`` level: the envelope's signature verifies under
the leaf's key; the payload names exactly the artifact's digest, size and media
type; the chain ends in a configured trust store certificate; every
certificate is valid at the time an RFC 3161 countersignature from a configured
TSA proves (`drd.trust.timestamp`), or the signing authority's authentic
signing time, else at the verification time; the signature has not passed its
expiry; the leaf's subject matches a trusted identity when any are configured.
Revocation (OCSP, CRL) is not checked: verification here is offline.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cbor2 import CBORDecodeError
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey
from joserfc.registry import HeaderParameter
from pycose.exceptions import CoseException
from pycose.headers import Algorithm, X5chain
from pycose.keys.cosekey import CoseKey
from pycose.messages.sign1message import Sign1Message

from drd.oci.descriptor import Descriptor
from drd.oci.digest import Digest
from drd.trust.decode import MAX_PAYLOAD_BYTES, fail, load_json, lookup
from drd.trust.notation_trust import NotationTrust, TrustedCertificate, identity_trusted
from drd.trust.policy import (
    BAD_SIGNATURE,
    EXPIRED,
    MALFORMED,
    PAYLOAD_TOO_LARGE,
    UNTRUSTED_IDENTITY,
    UNTRUSTED_ROOT,
    WRONG_DIGEST,
    WRONG_TYPE,
    Verified,
)
from drd.trust.timestamp import verify_timestamp

SIGNATURE_ARTIFACT_TYPE = "application/vnd.cncf.notary.signature"
JWS_MEDIA_TYPE = "application/jose+json"
COSE_MEDIA_TYPE = "application/cose"
ENVELOPE_MEDIA_TYPES = (JWS_MEDIA_TYPE, COSE_MEDIA_TYPE)
PAYLOAD_CONTENT_TYPE = "application/vnd.cncf.notary.payload.v1+json"

SIGNING_SCHEME = "io.cncf.notary.signingScheme"
SIGNING_TIME = "io.cncf.notary.signingTime"
AUTHENTIC_SIGNING_TIME = "io.cncf.notary.authenticSigningTime"
EXPIRY = "io.cncf.notary.expiry"
TIMESTAMP_SIGNATURE = "io.cncf.notary.timestampSignature"
SCHEME_X509 = "notary.x509"
SCHEME_SIGNING_AUTHORITY = "notary.x509.signingAuthority"
# The algorithms the Notary Project signature specification allows; nothing else is tried.
_JWS_ALGORITHMS = ("PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
_COSE_ALGORITHMS = frozenset({"Ps256", "Ps384", "Ps512", "Es256", "Es384", "Es512"})
# Header names Notation writes: registered so joserfc's `crit` check knows them, not ignored.
_JWS_HEADERS = (
    SIGNING_SCHEME,
    SIGNING_TIME,
    AUTHENTIC_SIGNING_TIME,
    EXPIRY,
    "io.cncf.notary.signingAgent",
    "io.cncf.notary.SigningAgent",  # Notation before 1.0 capitalised it
    "io.cncf.notary.timestampSignature",
    "io.cncf.notary.verificationPlugin",
    "io.cncf.notary.verificationPluginMinVersion",
)
JWS_REGISTRY = jws.JWSRegistry(
    header_registry={name: HeaderParameter(name, "str") for name in _JWS_HEADERS},
    algorithms=_JWS_ALGORITHMS,
)
# A Notation chain is leaf, intermediates, root: a handful of certificates at most.
MAX_CHAIN = 10


@dataclass(frozen=True, slots=True)
class _Envelope:
    """An envelope whose signature verified under its own leaf: what it says, not yet trusted."""

    form: str
    payload: bytes
    protected: Mapping[Any, Any]
    chain: tuple[x509.Certificate, ...]
    signature: bytes
    timestamp: bytes | None


def verify_notation(
    envelope: bytes,
    media_type: str,
    subject: Descriptor,
    trust: NotationTrust,
    policy: str,
    now: dt.datetime,
) -> Verified:
    """
    Verify one Notation envelope (*media_type* JWS or COSE) that signs *subject*.

    Raises `VerificationError` with reason ``bad-signature`` (integrity),
    ``wrong-digest`` (the payload names another artifact), ``untrusted-root``
    (the chain ends in no trust store certificate), ``expired`` (a certificate
    outside its validity, or the signature past its expiry),
    ``untrusted-identity``, ``wrong-type`` or ``malformed``.
    """
    digest = subject.digest
    if len(envelope) > MAX_PAYLOAD_BYTES:
        raise fail(PAYLOAD_TOO_LARGE, f"notation envelope is {len(envelope)} bytes", digest)
    if media_type == JWS_MEDIA_TYPE:
        opened = _open_jws(envelope, digest)
    elif media_type == COSE_MEDIA_TYPE:
        opened = _open_cose(envelope, digest)
    else:
        raise fail(WRONG_TYPE, f"{media_type[:80]!r} is not a notation envelope type", digest)
    content_type = opened.protected.get("cty", opened.protected.get(3))
    if content_type != PAYLOAD_CONTENT_TYPE:
        raise fail(WRONG_TYPE, f"notation payload type is {content_type!r}", digest)
    _check_target(opened.payload, subject)
    scheme = opened.protected.get(SIGNING_SCHEME)
    if scheme not in (SCHEME_X509, SCHEME_SIGNING_AUTHORITY):
        raise fail(MALFORMED, f"notation signing scheme {scheme!r} is not supported", digest)
    root = _trusted_root(opened.chain, trust, digest)
    stamped = None
    if trust.tsa_roots and opened.timestamp is not None:
        tsa_roots = tuple(r.certificate for r in trust.tsa_roots)
        stamped = verify_timestamp(opened.timestamp, opened.signature, tsa_roots, digest)
    _check_times(opened, scheme, stamped or now, now, digest)
    leaf = opened.chain[0]
    identity = leaf.subject.rfc4514_string()
    if not identity_trusted(leaf, trust.identities):
        raise fail(
            UNTRUSTED_IDENTITY,
            f"notation signer {identity} is none of policy {policy}'s trusted identities",
            digest,
        )
    return Verified(
        digest=digest,
        policy=policy,
        key_fingerprint=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
        key_source=root.source,
        form=opened.form,
        identity=identity,
        timestamp=int(stamped.timestamp()) if stamped is not None else None,
    )


def _open_jws(envelope: bytes, digest: Digest) -> _Envelope:
    doc = load_json(envelope, "notation JWS envelope", digest)
    header = doc.get("header")
    chain = _chain(lookup(header, "x5c", list, digest, MALFORMED), digest, der_b64=True)
    try:
        key = _jws_key(chain[0])
        signed = jws.deserialize_json(doc, key, registry=JWS_REGISTRY)  # type: ignore[call-overload]
    except JoseError as exc:
        raise fail(BAD_SIGNATURE, f"notation JWS does not verify: {exc}", digest) from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise fail(MALFORMED, f"notation JWS is unusable: {exc}", digest) from exc
    member = signed.members[0]
    protected = dict(member.protected or {})
    stamp = header.get(TIMESTAMP_SIGNATURE) if isinstance(header, dict) else None
    signature = _b64url(doc.get("signature"))
    # Signed facts only from the protected header: the unprotected one may say anything.
    return _Envelope(
        "notation-jws",
        bytes(signed.payload),
        protected,
        chain,
        signature,
        _b64(stamp) if stamp is not None else None,
    )


def _jws_key(leaf: x509.Certificate) -> RSAKey | ECKey:
    public = leaf.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return RSAKey.import_key(pem) if isinstance(public, rsa.RSAPublicKey) else ECKey.import_key(pem)


def _open_cose(envelope: bytes, digest: Digest) -> _Envelope:
    try:
        message = Sign1Message.decode(envelope)
    except (CoseException, CBORDecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise fail(MALFORMED, f"notation COSE envelope is unusable: {exc}", digest) from exc
    raw_chain = message.uhdr.get(X5chain)
    certs = raw_chain if isinstance(raw_chain, list) else [raw_chain]
    chain = _chain(certs, digest, der_b64=False)
    algorithm = message.phdr.get(Algorithm)
    if getattr(algorithm, "__name__", "") not in _COSE_ALGORITHMS:
        raise fail(BAD_SIGNATURE, f"notation COSE algorithm {algorithm!r} is not allowed", digest)
    pem = (
        chain[0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    try:
        message.key = CoseKey.from_pem_public_key(pem.decode())
        ok = message.verify_signature()
    except (CoseException, ValueError, TypeError, InvalidSignature) as exc:
        raise fail(
            BAD_SIGNATURE, f"notation COSE signature does not verify: {exc}", digest
        ) from exc
    if not ok:
        raise fail(BAD_SIGNATURE, "notation COSE signature does not verify", digest)
    protected: dict[Any, Any] = {}
    for name, value in message.phdr.items():
        label = getattr(name, "identifier", name)
        protected[label] = value
    # pycose does not enforce `crit` (label 2); a header a verifier must understand and
    # drd does not is a refusal, as joserfc does for the JWS form.
    critical = protected.get(2, [])
    unknown = [c for c in critical if c not in _JWS_HEADERS] if isinstance(critical, list) else [0]
    if unknown:
        raise fail(
            MALFORMED, f"notation COSE envelope has unknown critical headers {unknown}", digest
        )
    if not isinstance(message.payload, bytes):
        raise fail(MALFORMED, "notation COSE envelope has a detached payload", digest)
    stamp = message.uhdr.get(TIMESTAMP_SIGNATURE)
    return _Envelope(
        "notation-cose",
        message.payload,
        protected,
        chain,
        bytes(message.signature),
        stamp if isinstance(stamp, bytes) else None,
    )


def _chain(items: list[Any], digest: Digest, *, der_b64: bool) -> tuple[x509.Certificate, ...]:
    if not items or len(items) > MAX_CHAIN:
        raise fail(MALFORMED, f"notation certificate chain has {len(items)} certificates", digest)
    certs: list[x509.Certificate] = []
    for item in items:
        der = _b64(item) if der_b64 else item
        try:
            certs.append(x509.load_der_x509_certificate(der if isinstance(der, bytes) else b""))
        except ValueError as exc:
            raise fail(
                MALFORMED, "notation certificate chain holds a bad certificate", digest
            ) from exc
    return tuple(certs)


def _b64url(text: object) -> bytes:
    """Unpadded base64url (the JWS signature); b"" for anything else."""
    if not isinstance(text, str):
        return b""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return b""


def _b64(text: object) -> bytes:
    """Standard base64 (x5c is not base64url); b"" for anything else, which then fails to load."""
    if not isinstance(text, str):
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return b""


def _check_target(payload: bytes, subject: Descriptor) -> None:
    digest = subject.digest
    doc = load_json(payload, "notation payload", digest)
    named = lookup(doc, "targetArtifact.digest", str, digest, MALFORMED)
    size = lookup(doc, "targetArtifact.size", int, digest, MALFORMED)
    media_type = lookup(doc, "targetArtifact.mediaType", str, digest, MALFORMED)
    if named != str(digest):
        raise fail(WRONG_DIGEST, f"notation signature names {named[:80]}, not {digest}", digest)
    if size != subject.size:
        raise fail(
            WRONG_DIGEST, f"notation signature names size {size}, not {subject.size}", digest
        )
    if subject.media_type and media_type != subject.media_type:
        raise fail(
            WRONG_DIGEST,
            f"notation signature names media type {media_type[:80]!r}, not {subject.media_type!r}",
            digest,
        )


def _trusted_root(
    chain: tuple[x509.Certificate, ...], trust: NotationTrust, digest: Digest
) -> TrustedCertificate:
    """
    The trust store certificate the chain ends in; raise ``untrusted-root`` otherwise.

    Each certificate must be issued by the next one (name and signature,
    through `cryptography`'s `verify_directly_issued_by`); issuers must be CAs.
    Hand-written, not `cryptography.x509.verification`: its verifiers implement the
    TLS server and client profiles, and a Notation chain is a code-signing one.
    """
    for child, issuer in itertools.pairwise(chain):
        if not _is_ca(issuer) or not _issued_by(child, issuer):
            raise fail(
                UNTRUSTED_ROOT,
                f"notation chain is broken: {child.subject.rfc4514_string()} is not issued by"
                f" {issuer.subject.rfc4514_string()}",
                digest,
            )
    leaf, last = chain[0], chain[-1]
    _check_leaf_usage(leaf, digest)
    for root in trust.roots:
        anchor = root.certificate
        if last == anchor or (_is_ca(anchor) and _issued_by(last, anchor)):
            return root
    raise fail(
        UNTRUSTED_ROOT,
        f"notation chain of {leaf.subject.rfc4514_string()} ends in"
        f" {last.issuer.rfc4514_string()}, which is in no trust store of the policy",
        digest,
    )


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def _check_leaf_usage(leaf: x509.Certificate, digest: Digest) -> None:
    """A Notation leaf may sign code: no EKU, or one that includes code signing."""
    try:
        usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.CODE_SIGNING not in usage:
        raise fail(
            UNTRUSTED_ROOT,
            f"notation signer {leaf.subject.rfc4514_string()} is not a code-signing certificate",
            digest,
        )


def _check_times(
    opened: _Envelope, scheme: str, when: dt.datetime, now: dt.datetime, digest: Digest
) -> None:
    """
    Strict level: the chain valid *when* signed, and the signature not past its expiry *now*.

    *when* is the time a verified timestamp proves, else the verification time; the
    signing authority scheme's authentic signing time replaces it.
    """
    if scheme == SCHEME_SIGNING_AUTHORITY:
        when = _time(opened.protected.get(AUTHENTIC_SIGNING_TIME), "authentic signing time", digest)
    for cert in opened.chain:
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            raise fail(
                EXPIRED,
                f"certificate {cert.subject.rfc4514_string()} is valid"
                f" {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} to"
                f" {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}, not at {when:%Y-%m-%dT%H:%M:%SZ}",
                digest,
            )
    expiry = opened.protected.get(EXPIRY)
    if expiry is not None and _time(expiry, "expiry", digest) < now:
        raise fail(EXPIRED, f"notation signature expired on {expiry}", digest)


def _time(value: object, what: str, digest: Digest) -> dt.datetime:
    """An RFC 3339 string (JWS) or a CBOR datetime (COSE), timezone-aware."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise fail(MALFORMED, f"notation {what} {value[:40]!r} is not a time", digest) from exc
    else:
        raise fail(MALFORMED, f"notation {what} is missing", digest)
    if parsed.tzinfo is None:
        raise fail(MALFORMED, f"notation {what} has no time zone", digest)
    return parsed


def envelope_layer(manifest_layers: tuple[Descriptor, ...]) -> Descriptor | None:
    """The envelope layer of a Notation signature manifest, if it has one."""
    return next((d for d in manifest_layers if d.media_type in ENVELOPE_MEDIA_TYPES), None)
