"""
Offline checks of Rekor transparency-log entries. Pure.

A signed entry timestamp (SET) is the log key's ECDSA signature over the
canonical JSON (sorted keys, no whitespace) of ``{body, integratedTime,
logIndex, logID}``; the log ID is the sha256 of the log key's DER. Once the SET
verifies, the entry body must record this very signature, this payload's hash
and a key the policy trusts. cosign keeps such an entry in the
``dev.sigstore.cosign/bundle`` annotation of a ``.sig`` layer:
``{"SignedEntryTimestamp": …, "Payload": {body, integratedTime, logIndex, logID}}``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from drd.errors import ConfigError, VerificationError
from drd.oci.digest import Digest
from drd.trust.decode import MAX_ENTRIES, decode_b64, fail, load_json, lookup
from drd.trust.keys import TrustKey, TrustPolicy, load_public_key
from drd.trust.policy import MALFORMED, REKOR, UNKNOWN_KEY


@dataclass(frozen=True, slots=True)
class RekorEntry:
    """A log entry whose SET verified under a trusted Rekor key."""

    log_id: str
    log_index: int
    integrated_time: int
    body: dict[str, Any]


def canonical_json(obj: dict[str, Any]) -> bytes:
    """RFC 8785 form for the string/integer objects Rekor signs: sorted keys, no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def verify_set(
    body_b64: str,
    integrated_time: int,
    log_index: int,
    log_id: str,
    signed_entry_timestamp: bytes,
    policy: TrustPolicy,
    subject: Digest,
) -> RekorEntry:
    """Check a SET under the policy's Rekor keys; return the entry with its decoded body."""
    log_key = policy.rekor_key(log_id.lower())
    if log_key is None:
        raise fail(
            REKOR, f"rekor log {log_id[:16]}… is not trusted by policy {policy.name}", subject
        )
    signed = canonical_json(
        {
            "body": body_b64,
            "integratedTime": integrated_time,
            "logIndex": log_index,
            "logID": log_id,
        }
    )
    if not log_key.verify(signed_entry_timestamp, signed):
        raise fail(
            REKOR, f"rekor signed entry timestamp does not verify under {log_key.source}", subject
        )
    body = load_json(
        decode_b64(body_b64, "rekor entry body", subject, REKOR), "rekor entry body", subject, REKOR
    )
    return RekorEntry(log_id, log_index, integrated_time, body)


def verify_cosign_bundle(
    bundle: str,
    payload: bytes,
    signature: bytes,
    signer: TrustKey,
    policy: TrustPolicy,
    subject: Digest,
) -> RekorEntry:
    """
    Check the ``dev.sigstore.cosign/bundle`` annotation of a signature made by *signer*.

    Raises reason ``rekor`` for a bad SET or an entry recording another payload,
    signature or key, and ``unknown-key`` when the entry names a key outside the policy.
    """
    doc = load_json(bundle, "rekor bundle", subject, REKOR)
    set_bytes = decode_b64(doc.get("SignedEntryTimestamp"), "SignedEntryTimestamp", subject, REKOR)
    entry = verify_set(
        lookup(doc, "Payload.body", str, subject, REKOR),
        lookup(doc, "Payload.integratedTime", int, subject, REKOR),
        lookup(doc, "Payload.logIndex", int, subject, REKOR),
        lookup(doc, "Payload.logID", str, subject, REKOR),
        set_bytes,
        policy,
        subject,
    )
    check_hashedrekord(
        entry.body, hashlib.sha256(payload).hexdigest(), signature, signer, policy, subject
    )
    return entry


def foreign_signer(
    bundle: str, payload: bytes, signature: bytes, subject: Digest
) -> TrustKey | None:
    """
    The key a Rekor bundle's entry names, when that key does verify *signature*.

    Used only to explain a failure: a signature that verifies under the key its
    log entry names, but under no trusted key, was made by an unknown key.
    """
    try:
        doc = load_json(bundle, "rekor bundle", subject)
        body = load_json(
            decode_b64(lookup(doc, "Payload.body", str, subject, MALFORMED), "body", subject),
            "body",
            subject,
        )
        pem_b64 = lookup(body, "spec.signature.publicKey.content", str, subject, MALFORMED)
        pem = decode_b64(pem_b64, "key", subject)
        key = load_public_key(pem, "rekor entry")
    except (VerificationError, ConfigError):
        return None
    return key if key.verify(signature, payload) else None


def check_hashedrekord(
    body: dict[str, Any],
    payload_sha256: str,
    signature: bytes,
    signer: TrustKey,
    policy: TrustPolicy,
    subject: Digest,
) -> None:
    """Check that a ``hashedrekord`` (or ``rekord``) body records this payload, signature, key."""
    kind = body.get("kind")
    if kind not in ("hashedrekord", "rekord"):
        raise fail(REKOR, f"rekor entry kind {kind!r} does not record a signed payload", subject)
    if lookup(body, "spec.data.hash.algorithm", str, subject, REKOR) != "sha256":
        raise fail(REKOR, "rekor entry does not record a sha256 payload hash", subject)
    if lookup(body, "spec.data.hash.value", str, subject, REKOR) != payload_sha256:
        raise fail(REKOR, "rekor entry records another payload than the one signed", subject)
    recorded = decode_b64(
        lookup(body, "spec.signature.content", str, subject, REKOR),
        "rekor signature",
        subject,
        REKOR,
    )
    if recorded != signature:
        raise fail(REKOR, "rekor entry records another signature than the one verified", subject)
    _check_entry_key(
        lookup(body, "spec.signature.publicKey.content", str, subject, REKOR),
        signer,
        policy,
        subject,
    )


def check_dsse_entry(
    body: dict[str, Any],
    payload: bytes,
    signature: bytes,
    signer: TrustKey,
    policy: TrustPolicy,
    subject: Digest,
) -> None:
    """Check that a ``dsse`` body records this envelope payload, signature and key."""
    kind = body.get("kind")
    if kind != "dsse":
        raise fail(REKOR, f"rekor entry kind {kind!r} does not record a DSSE envelope", subject)
    if lookup(body, "spec.payloadHash.algorithm", str, subject, REKOR) != "sha256":
        raise fail(REKOR, "rekor entry does not record a sha256 payload hash", subject)
    if (
        lookup(body, "spec.payloadHash.value", str, subject, REKOR)
        != hashlib.sha256(payload).hexdigest()
    ):
        raise fail(
            REKOR, "rekor entry records another envelope payload than the one signed", subject
        )
    signatures = lookup(body, "spec.signatures", list, subject, REKOR)
    for item in signatures[:MAX_ENTRIES]:
        recorded = decode_b64(
            lookup(item, "signature", str, subject, REKOR), "rekor signature", subject, REKOR
        )
        if recorded == signature:
            _check_entry_key(lookup(item, "verifier", str, subject, REKOR), signer, policy, subject)
            return
    raise fail(REKOR, "rekor entry records another signature than the one verified", subject)


def _check_entry_key(pem_b64: str, signer: TrustKey, policy: TrustPolicy, subject: Digest) -> None:
    pem = decode_b64(pem_b64, "rekor entry public key", subject, REKOR)
    if b"CERTIFICATE" in pem:
        raise fail(UNKNOWN_KEY, "rekor entry names a certificate; policy trusts keys only", subject)
    try:
        named = load_public_key(pem, "rekor entry")
    except ConfigError as exc:
        raise fail(REKOR, f"rekor entry public key is unreadable: {exc}", subject) from exc
    if policy.key_by_fingerprint(named.fingerprint) is None:
        raise fail(
            UNKNOWN_KEY,
            f"rekor entry names key {named.fingerprint[:16]}…, not trusted by policy {policy.name}",
            subject,
        )
    if named.fingerprint != signer.fingerprint:
        raise fail(REKOR, f"rekor entry names another key than {signer.source}", subject)
