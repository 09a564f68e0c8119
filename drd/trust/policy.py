"""What a verification decides, in values reports can carry, and cosign tag names. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from drd.errors import VerificationError
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.trust.keys import TrustPolicy

# Reasons a VerificationError carries, most specific first. A failure after a trusted
# key verified (wrong digest, wrong type) says more than one where nothing verified.
WRONG_DIGEST = "wrong-digest"
WRONG_TYPE = "wrong-type"
MISSING_ATTESTATION = "missing-attestation"
WRONG_REFERENCE = "wrong-reference"
EXPIRED = "expired"
UNTRUSTED_IDENTITY = "untrusted-identity"
UNTRUSTED_ROOT = "untrusted-root"
REKOR = "rekor"
UNKNOWN_KEY = "unknown-key"
BAD_SIGNATURE = "bad-signature"
PAYLOAD_TOO_LARGE = "payload-too-large"
MISSING_BLOB = "missing-blob"
MALFORMED = "malformed"
NO_SIGNATURE = "no-signature"
REASONS = (
    WRONG_DIGEST,
    WRONG_TYPE,
    MISSING_ATTESTATION,
    WRONG_REFERENCE,
    EXPIRED,
    UNTRUSTED_IDENTITY,
    UNTRUSTED_ROOT,
    REKOR,
    UNKNOWN_KEY,
    BAD_SIGNATURE,
    PAYLOAD_TOO_LARGE,
    MISSING_BLOB,
    MALFORMED,
    NO_SIGNATURE,
)

# cosign's attached-artifact tag suffixes.
SIGNATURE_SUFFIX = "sig"
ATTESTATION_SUFFIX = "att"
SBOM_SUFFIX = "sbom"
_ATTACHED_TAG = re.compile(r"(sha256-[a-f0-9]{64}|sha512-[a-f0-9]{128})\.(sig|att|sbom)")

# BuildKit puts provenance manifests into an index as children; they are not images.
_REFERENCE_TYPE = "vnd.docker.reference.type"
_ATTESTATION_MANIFEST = "attestation-manifest"


@dataclass(frozen=True, slots=True)
class Verified:
    """
    An artifact whose signature verified with a trusted key and names exactly its digest.

    ``form`` is ``"cosign"`` (a ``.sig`` tag with a simple-signing payload),
    ``"sigstore-bundle"`` (an OCI 1.1 referrer), or ``"notation-jws"`` /
    ``"notation-cose"`` (a Notation envelope; ``identity`` is its signer's subject).
    ``attestations`` lists the predicate types a policy required and found verified;
    ``timestamp`` is the time an RFC 3161 countersignature proved, when one verified.
    ``rekor`` says whether a Rekor entry was verified offline too; ``log_index``
    and ``integrated_time`` come from it.
    """

    digest: Digest
    policy: str
    key_fingerprint: str
    key_source: str
    form: str = "cosign"
    rekor: bool = False
    log_index: int | None = None
    integrated_time: int | None = None
    docker_reference: str = ""
    predicate_type: str = ""
    signature_digest: Digest | None = None
    identity: str = ""
    attestations: tuple[str, ...] = ()
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """An artifact that did not verify: *reason* is one of `REASONS`."""

    digest: Digest
    reason: str
    message: str

    @classmethod
    def from_error(cls, digest: Digest, error: VerificationError) -> Rejected:
        """The report value for a failed verification of *digest*."""
        return cls(digest=digest, reason=error.reason, message=error.message)


Verdict = Verified | Rejected


def signature_tag(digest: Digest) -> str:
    """cosign's signature tag for *digest*: ``sha256-<hex>.sig``."""
    return f"{digest.tag_form}.{SIGNATURE_SUFFIX}"


def attestation_tag(digest: Digest) -> str:
    """cosign's attestation tag for *digest*: ``sha256-<hex>.att``."""
    return f"{digest.tag_form}.{ATTESTATION_SUFFIX}"


def sbom_tag(digest: Digest) -> str:
    """cosign's SBOM tag for *digest*: ``sha256-<hex>.sbom``."""
    return f"{digest.tag_form}.{SBOM_SUFFIX}"


def attached_to(tag: str) -> tuple[Digest, str] | None:
    """``(subject digest, "sig" | "att" | "sbom")`` for a cosign tag; None for any other tag."""
    match = _ATTACHED_TAG.fullmatch(tag)
    if match is None:
        return None
    algorithm, _, hexpart = match.group(1).partition("-")
    return Digest(algorithm, hexpart), match.group(2)


def is_signature_tag(tag: str) -> bool:
    """Whether *tag* is a cosign signature tag (``sha256-<hex>.sig``)."""
    found = attached_to(tag)
    return found is not None and found[1] == SIGNATURE_SUFFIX


def is_attached_tag(tag: str) -> bool:
    """Whether *tag* is a cosign signature, attestation or SBOM tag, not a release tag."""
    return attached_to(tag) is not None


def children_to_verify(manifest: Manifest, policy: TrustPolicy) -> tuple[Digest, ...]:
    """
    The children of an index that need their own signature under a policy.

    Empty unless the policy sets ``require_children`` and *manifest* is an index. BuildKit
    attestation manifests (``vnd.docker.reference.type=attestation-manifest``)
    are skipped: they are provenance for a child, not runnable images.
    """
    if not (policy.require_children and manifest.is_index):
        return ()
    return tuple(
        child.digest
        for child in manifest.manifests
        if child.annotations.get(_REFERENCE_TYPE) != _ATTESTATION_MANIFEST
    )


def rank(reason: str) -> int:
    """Lower is more specific; unknown reasons rank last."""
    return REASONS.index(reason) if reason in REASONS else len(REASONS)


def most_specific(
    subject: Digest, failures: Iterable[VerificationError], what: str = "signature"
) -> VerificationError:
    """
    One error for several failed signatures: the most specific reason, every message.

    With no failures at all the reason is ``no-signature``. The error's
    ``failures`` attribute keeps the individual errors.
    """
    errors = list(failures)
    if not errors:
        return VerificationError(
            f"no {what} found for {subject}", reason=NO_SIGNATURE, digest=str(subject), failures=[]
        )
    best = min(errors, key=lambda e: rank(e.reason))
    if len(errors) == 1:
        return best
    detail = "; ".join(f"{e.reason}: {e.message}" for e in errors)
    return VerificationError(
        f"no {what} of {subject} verifies ({detail})",
        reason=best.reason,
        digest=str(subject),
        failures=errors,
    )
