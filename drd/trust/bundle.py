"""
Key-based sigstore bundles, the OCI 1.1 referrer form of a signature. Pure.

A bundle (``application/vnd.dev.sigstore.bundle.v0.3+json``) names its key
only by a hint in ``verificationMaterial.publicKey`` (one with a certificate is
keyless: `drd.trust.keyless`); the signature is either a
``messageSignature`` over the artifact or a DSSE envelope around an in-toto
statement whose subject names the artifact's digest. Its ``tlogEntries`` are
checked offline with `drd.trust.rekor` when the policy has Rekor keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drd.errors import VerificationError
from drd.oci.digest import Digest
from drd.trust.decode import (
    MAX_ENTRIES,
    MAX_PAYLOAD_BYTES,
    decode_b64,
    fail,
    load_json,
    lookup,
)
from drd.trust.entries import check_dsse_cert, check_hashedrekord_cert
from drd.trust.keyless import Signed, keyless_trust, verify_keyless_bundle
from drd.trust.keys import TrustKey, TrustPolicy
from drd.trust.policy import (
    BAD_SIGNATURE,
    MALFORMED,
    PAYLOAD_TOO_LARGE,
    REKOR,
    WRONG_DIGEST,
    WRONG_TYPE,
    Verified,
    most_specific,
)
from drd.trust.rekor import RekorEntry, check_dsse_entry, check_hashedrekord, verify_set

BUNDLE_MEDIA_PREFIX = "application/vnd.dev.sigstore.bundle"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
INTOTO_STATEMENT_TYPES = frozenset(
    {"https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1"}
)


@dataclass(frozen=True, slots=True)
class _Signed:
    """What a bundle's signature covered, once it verified."""

    signer: TrustKey
    signature: bytes
    check_entry: Callable[[dict[str, Any]], None]
    predicate_type: str = ""


def verify_sigstore_bundle(
    bundle_json: bytes,
    subject: Digest,
    policy: TrustPolicy,
    artifact: bytes | None = None,
) -> Verified:
    """
    Verify a key-based sigstore bundle that signs *subject*.

    A DSSE envelope must carry an in-toto statement naming *subject*; a
    ``messageSignature`` must sign *subject*'s digest (checked over *artifact*,
    the manifest bytes, when given; otherwise over the digest, which Ed25519
    cannot do). Certificate (keyless) bundles go to `drd.trust.keyless`.
    Raises `VerificationError` with the reasons of `drd.trust.cosign.verify_simple_signing`.
    """
    if len(bundle_json) > MAX_PAYLOAD_BYTES:
        raise fail(
            PAYLOAD_TOO_LARGE, f"sigstore bundle is {len(bundle_json)} bytes, over 1 MiB", subject
        )
    doc = load_json(bundle_json, "sigstore bundle", subject)
    media_type = doc.get("mediaType")
    if not isinstance(media_type, str) or not media_type.startswith(BUNDLE_MEDIA_PREFIX):
        raise fail(MALFORMED, f"not a sigstore bundle (mediaType {media_type!r})", subject)
    material = doc.get("verificationMaterial")
    if not isinstance(material, dict):
        raise fail(MALFORMED, "sigstore bundle has no verificationMaterial", subject)
    if "publicKey" not in material:
        if "certificate" in material or "x509CertificateChain" in material:
            return _verify_keyless(doc, subject, policy, artifact)
        raise fail(MALFORMED, "sigstore bundle has no public key hint", subject)
    if "dsseEnvelope" in doc:
        signed = _verify_dsse(doc["dsseEnvelope"], subject, policy)
    elif "messageSignature" in doc:
        signed = _verify_message(doc["messageSignature"], subject, policy, artifact)
    else:
        raise fail(
            MALFORMED, "sigstore bundle has neither dsseEnvelope nor messageSignature", subject
        )
    entry = _bundle_entry(material, signed, policy, subject)
    return Verified(
        digest=subject,
        policy=policy.name,
        key_fingerprint=signed.signer.fingerprint,
        key_source=signed.signer.source,
        form="sigstore-bundle",
        rekor=entry is not None,
        log_index=entry.log_index if entry else None,
        integrated_time=entry.integrated_time if entry else None,
        predicate_type=signed.predicate_type,
    )


def _pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what a DSSE signature actually covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def _verify_dsse(envelope: object, subject: Digest, policy: TrustPolicy) -> _Signed:
    payload_type = lookup(envelope, "payloadType", str, subject, MALFORMED)
    payload = decode_b64(
        lookup(envelope, "payload", str, subject, MALFORMED), "DSSE payload", subject
    )
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise fail(PAYLOAD_TOO_LARGE, f"DSSE payload is {len(payload)} bytes, over 1 MiB", subject)
    items = lookup(envelope, "signatures", list, subject, MALFORMED)
    signatures = [
        decode_b64(lookup(item, "sig", str, subject, MALFORMED), "DSSE signature", subject)
        for item in items[:MAX_ENTRIES]
    ]
    # Signature first, over the exact envelope bytes; the statement is read only after.
    pae = _pae(payload_type, payload)
    found = next(
        ((key, sig) for sig in signatures for key in policy.keys if key.verify(sig, pae)), None
    )
    if found is None:
        raise fail(BAD_SIGNATURE, f"no DSSE signature verifies under policy {policy.name}", subject)
    signer, signature = found
    predicate_type = read_statement(payload_type, payload, subject)

    def check(body: dict[str, Any]) -> None:
        check_dsse_entry(body, payload, signature, signer, policy, subject)

    return _Signed(signer, signature, check, predicate_type)


def read_statement(payload_type: str, payload: bytes, subject: Digest) -> str:
    """
    Read a verified DSSE payload: an in-toto statement that names *subject*.

    Returns its predicate type. Raises ``wrong-type``, ``malformed`` or ``wrong-digest``.
    """
    if payload_type != INTOTO_PAYLOAD_TYPE:
        raise fail(WRONG_TYPE, f"DSSE payload type is {payload_type!r}, not in-toto", subject)
    statement = load_json(payload, "in-toto statement", subject)
    if statement.get("_type") not in INTOTO_STATEMENT_TYPES:
        raise fail(WRONG_TYPE, f"in-toto statement type is {statement.get('_type')!r}", subject)
    named = lookup(statement, "subject", list, subject, MALFORMED)
    if not any(
        isinstance(s, dict)
        and isinstance(s.get("digest"), dict)
        and s["digest"].get(subject.algorithm) == subject.hex
        for s in named
    ):
        raise fail(WRONG_DIGEST, f"signed in-toto statement does not name {subject}", subject)
    predicate_type = statement.get("predicateType")
    return predicate_type if isinstance(predicate_type, str) else ""


def _verify_keyless(
    doc: dict[str, Any], subject: Digest, policy: TrustPolicy, artifact: bytes | None
) -> Verified:
    """A certificate bundle: what its signature covers here, the checks in `drd.trust.keyless`."""
    keyless_trust(policy, subject)  # a key-only policy: untrusted-root before any parsing
    if "dsseEnvelope" in doc:
        signed = _keyless_dsse(doc["dsseEnvelope"], subject)
    elif "messageSignature" in doc:
        signed = _keyless_message(doc["messageSignature"], subject, artifact)
    else:
        raise fail(
            MALFORMED, "sigstore bundle has neither dsseEnvelope nor messageSignature", subject
        )
    return verify_keyless_bundle(doc, signed, subject, policy)


def _keyless_dsse(envelope: object, subject: Digest) -> Signed:
    payload_type = lookup(envelope, "payloadType", str, subject, MALFORMED)
    payload = decode_b64(
        lookup(envelope, "payload", str, subject, MALFORMED), "DSSE payload", subject
    )
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise fail(PAYLOAD_TOO_LARGE, f"DSSE payload is {len(payload)} bytes, over 1 MiB", subject)
    items = lookup(envelope, "signatures", list, subject, MALFORMED)
    if len(items) != 1:
        raise fail(MALFORMED, f"keyless DSSE envelope has {len(items)} signatures, not 1", subject)
    signature = decode_b64(lookup(items[0], "sig", str, subject, MALFORMED), "DSSE sig", subject)
    pae = _pae(payload_type, payload)
    return Signed(
        signature,
        lambda key: key.verify(signature, pae),
        lambda body, leaf: check_dsse_cert(body, payload, signature, leaf, subject),
        lambda: read_statement(payload_type, payload, subject),
    )


def _keyless_message(message: object, subject: Digest, artifact: bytes | None) -> Signed:
    algorithm = lookup(message, "messageDigest.algorithm", str, subject, MALFORMED)
    if algorithm != "SHA2_256":
        raise fail(MALFORMED, f"message digest algorithm {algorithm} is not supported", subject)
    digest = decode_b64(
        lookup(message, "messageDigest.digest", str, subject, MALFORMED), "message digest", subject
    )
    signature = decode_b64(
        lookup(message, "signature", str, subject, MALFORMED), "message signature", subject
    )
    if artifact is not None and not subject.matches(artifact):
        raise fail(WRONG_DIGEST, f"the artifact bytes given do not hash to {subject}", subject)
    # Before the signature, not after: the digest is what the bundle claims to be about.
    if subject.algorithm != "sha256" or digest.hex() != subject.hex:
        raise fail(
            WRONG_DIGEST, f"bundle message digest sha256:{digest.hex()} is not {subject}", subject
        )

    def verifies(key: TrustKey) -> bool:
        if artifact is not None:
            return key.verify(signature, artifact)
        return key.verify_digest(signature, digest)

    return Signed(
        signature,
        verifies,
        lambda body, leaf: check_hashedrekord_cert(body, digest.hex(), signature, leaf, subject),
    )


def _verify_message(
    message: object, subject: Digest, policy: TrustPolicy, artifact: bytes | None
) -> _Signed:
    algorithm = lookup(message, "messageDigest.algorithm", str, subject, MALFORMED)
    if algorithm != "SHA2_256":
        raise fail(MALFORMED, f"message digest algorithm {algorithm} is not supported", subject)
    digest = decode_b64(
        lookup(message, "messageDigest.digest", str, subject, MALFORMED), "message digest", subject
    )
    signature = decode_b64(
        lookup(message, "signature", str, subject, MALFORMED), "message signature", subject
    )
    if artifact is not None:
        if not subject.matches(artifact):
            raise fail(WRONG_DIGEST, f"the artifact bytes given do not hash to {subject}", subject)
        signer = next((k for k in policy.keys if k.verify(signature, artifact)), None)
    else:
        signer = next((k for k in policy.keys if k.verify_digest(signature, digest)), None)
    if signer is None:
        digest_only = artifact is None and not all(k.can_verify_digest for k in policy.keys)
        hint = " (ed25519 keys need the artifact bytes, not only its digest)" if digest_only else ""
        raise fail(
            BAD_SIGNATURE,
            f"message signature does not verify under policy {policy.name}{hint}",
            subject,
        )
    if subject.algorithm != "sha256" or digest.hex() != subject.hex:
        raise fail(
            WRONG_DIGEST, f"signed message digest sha256:{digest.hex()} is not {subject}", subject
        )

    def check(body: dict[str, Any]) -> None:
        check_hashedrekord(body, digest.hex(), signature, signer, policy, subject)

    return _Signed(signer, signature, check)


def _bundle_entry(
    material: dict[str, Any], signed: _Signed, policy: TrustPolicy, subject: Digest
) -> RekorEntry | None:
    """The first log entry that verifies; None when the policy has no Rekor keys."""
    if not policy.rekor_keys:
        return None
    entries = material.get("tlogEntries") or []
    if not isinstance(entries, list):
        raise fail(REKOR, "tlogEntries is not a list", subject)
    if not entries:
        if policy.require_rekor:
            raise fail(
                REKOR, f"policy {policy.name} requires a rekor entry; the bundle has none", subject
            )
        return None
    failures: list[VerificationError] = []
    for item in entries[:MAX_ENTRIES]:
        try:
            return _verify_tlog_entry(item, signed, policy, subject)
        except VerificationError as exc:
            failures.append(exc)
    raise most_specific(subject, failures, what="rekor entry")


def _verify_tlog_entry(
    item: object, signed: _Signed, policy: TrustPolicy, subject: Digest
) -> RekorEntry:
    """One ``tlogEntries`` item: its inclusion promise (SET), then what its body records."""
    log_id = decode_b64(lookup(item, "logId.keyId", str, subject, REKOR), "logId", subject, REKOR)
    promise = lookup(item, "inclusionPromise.signedEntryTimestamp", str, subject, REKOR)
    entry = verify_set(
        lookup(item, "canonicalizedBody", str, subject, REKOR),
        _int(lookup(item, "integratedTime", str, subject, REKOR), subject),
        _int(lookup(item, "logIndex", str, subject, REKOR), subject),
        log_id.hex(),
        decode_b64(promise, "signedEntryTimestamp", subject, REKOR),
        policy,
        subject,
    )
    signed.check_entry(entry.body)
    return entry


def _int(text: str, subject: Digest) -> int:
    """Protobuf JSON writes int64 as a decimal string."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise fail(REKOR, f"{text[:20]!r} is not a log integer", subject)
    return int(text)


def verify_dsse_envelope(
    envelope: object, subject: Digest, policy: TrustPolicy
) -> tuple[TrustKey, str]:
    """
    A bare DSSE envelope (a cosign ``.att`` layer) over an in-toto statement naming *subject*.

    Returns the policy key that signed it and the statement's predicate type.
    Raises `VerificationError` as a bundle's DSSE envelope would.
    """
    signed = _verify_dsse(envelope, subject, policy)
    return signed.signer, signed.predicate_type
