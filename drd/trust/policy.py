"""What a verification decides, in values reports can carry. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from drd.errors import VerificationError
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest

# Tag names live in drd.oci.referrers, the one module of attached tags; these names are
# kept importable from here, where verification code has always found them.
from drd.oci.referrers import NOT_ATTACHED as NOT_ATTACHED
from drd.oci.referrers import attestation_tag as attestation_tag
from drd.oci.referrers import is_attached_tag as is_attached_tag
from drd.oci.referrers import is_signature_tag as is_signature_tag
from drd.oci.referrers import sbom_tag as sbom_tag
from drd.oci.referrers import signature_tag as signature_tag
from drd.trust.keys import TrustPolicy

# Reasons a VerificationError carries, most specific first. A failure after a trusted
# key verified (wrong digest, wrong type, a missing attestation or docker-reference)
# says more than one where nothing verified; a certificate that chained but names the
# wrong identity says more than one whose chain reached no trusted root.
WRONG_DIGEST = "wrong-digest"
WRONG_TYPE = "wrong-type"
MISSING_ATTESTATION = "missing-attestation"
WRONG_REFERENCE = "wrong-reference"
UNTRUSTED_IDENTITY = "untrusted-identity"
EXPIRED = "expired"
TLOG_INVALID = "tlog-invalid"
REKOR = "rekor"
UNTRUSTED_ROOT = "untrusted-root"
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
    UNTRUSTED_IDENTITY,
    EXPIRED,
    TLOG_INVALID,
    REKOR,
    UNTRUSTED_ROOT,
    UNKNOWN_KEY,
    BAD_SIGNATURE,
    PAYLOAD_TOO_LARGE,
    MISSING_BLOB,
    MALFORMED,
    NOT_ATTACHED,
    NO_SIGNATURE,
)

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
    A keyless signature sets ``identity`` to its certificate's subject (email or URI)
    and ``issuer`` to the OIDC issuer that vouched for it.
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
    issuer: str = ""
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
