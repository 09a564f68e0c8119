"""
In-toto attestations: which DSSE statements are signatures, which are attestations. Pure.

cosign signs an image in the bundle format as a DSSE envelope whose predicate
type is `SIGN_PREDICATE`: that is a signature. Any other predicate type
(SLSA provenance, an SBOM, a vulnerability scan) is an attestation: it never
makes an artifact verified by itself, and a plain signature never satisfies a
policy's ``require_attestations``.
"""

from __future__ import annotations

from collections.abc import Iterable

from drd.errors import InvalidReference, VerificationError
from drd.oci.digest import Digest
from drd.oci.ref import Ref
from drd.trust.bundle import verify_dsse_envelope
from drd.trust.decode import MAX_PAYLOAD_BYTES, fail, load_json
from drd.trust.keys import TrustPolicy
from drd.trust.policy import (
    MISSING_ATTESTATION,
    NO_SIGNATURE,
    PAYLOAD_TOO_LARGE,
    REKOR,
    WRONG_TYPE,
)

SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
# A cosign `.att` layer: the blob is the DSSE envelope itself.
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"


def is_signature_predicate(predicate_type: str) -> bool:
    """Whether a verified statement of *predicate_type* is a signature ("" is a plain one)."""
    return predicate_type in ("", SIGN_PREDICATE)


def refuse_attestation(predicate_type: str, subject: Digest) -> VerificationError:
    """
    The error for an attestation offered where a signature is needed: ``no-signature``.

    Not ``wrong-type``: an artifact that carries only attestations is unsigned, and
    that is what its verdict says.
    """
    return fail(
        NO_SIGNATURE,
        f"the verified DSSE statement is an attestation ({predicate_type[:120]}), not a signature",
        subject,
    )


def verify_attestation_layer(envelope: bytes, subject: Digest, policy: TrustPolicy) -> str:
    """
    Verify one cosign ``.att`` layer (a DSSE envelope); its predicate type.

    The envelope must be signed by a policy key over an in-toto statement naming
    *subject*. cosign records ``.att`` entries in Rekor as ``intoto`` entries,
    which drd does not check offline: a policy with ``require_rekor`` refuses them.
    Raises `VerificationError`.
    """
    if len(envelope) > MAX_PAYLOAD_BYTES:
        raise fail(PAYLOAD_TOO_LARGE, f"attestation is {len(envelope)} bytes", subject)
    if policy.require_rekor:
        raise fail(
            REKOR,
            f"policy {policy.name} requires rekor; cosign .att entries are not checked offline",
            subject,
        )
    doc = load_json(envelope, "DSSE envelope", subject)
    _, predicate_type = verify_dsse_envelope(doc, subject, policy)
    if is_signature_predicate(predicate_type):
        raise fail(WRONG_TYPE, "the .att layer is a signature, not an attestation", subject)
    return predicate_type


def missing_attestations(
    subject: Digest,
    required: Iterable[str],
    found: Iterable[str],
    failures: Iterable[VerificationError] = (),
) -> VerificationError | None:
    """The ``missing-attestation`` error when a required predicate type was not verified."""
    have = set(found)
    missing = [p for p in required if p not in have]
    if not missing:
        return None
    detail = "; ".join(f"{e.reason}: {e.message}" for e in failures)
    return VerificationError(
        f"{subject} has no verified attestation of {', '.join(missing)}"
        + (f" ({detail})" if detail else ""),
        reason=MISSING_ATTESTATION,
        digest=str(subject),
        missing=missing,
    )


def names_repository(docker_reference: str, repository: str) -> bool:
    """
    Whether a simple-signing ``docker-reference`` names *repository* (any registry host).

    The host is not compared: the same repository is verified at the source, at
    each target and in a drill registry, each under its own host.
    """
    try:
        ref = Ref.parse(docker_reference)
    except InvalidReference:
        return False
    return ref.repository == repository
