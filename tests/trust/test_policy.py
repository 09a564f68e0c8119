"""Trust policy values: cosign tag names, index children, verdicts, reason ranking."""

from __future__ import annotations

import json

from drd.errors import VerificationError
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.trust.policy import (
    REASONS,
    Rejected,
    attestation_tag,
    children_to_verify,
    is_attached_tag,
    is_signature_tag,
    most_specific,
    sbom_tag,
    signature_tag,
)
from tests.trust.signing import cached_key, policy_for

IMAGE = Digest.of(b"image")
HEX = IMAGE.hex


def test_cosign_tag_names() -> None:
    """Signature, attestation and SBOM tags are sha256-<hex> with cosign's suffixes."""
    assert signature_tag(IMAGE) == f"sha256-{HEX}.sig"
    assert attestation_tag(IMAGE) == f"sha256-{HEX}.att"
    assert sbom_tag(IMAGE) == f"sha256-{HEX}.sbom"


def test_tag_names_are_the_ones_of_drd_oci_referrers() -> None:
    """The names kept importable here are the one module's, not a second definition."""
    from drd.oci import referrers

    assert is_attached_tag is referrers.is_attached_tag
    assert is_signature_tag is referrers.is_signature_tag
    assert is_attached_tag(f"sha256-{HEX}")
    assert not is_signature_tag(f"sha256-{HEX}.att")


def _index(children: list[dict[str, object]]) -> Manifest:
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": children,
    }
    return Manifest.parse(json.dumps(doc).encode())


def _child(data: bytes, **annotations: str) -> dict[str, object]:
    return {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": str(Digest.of(data)),
        "size": len(data),
        "annotations": annotations,
    }


def test_children_need_signatures_only_when_the_policy_says() -> None:
    """An index's image children need their own signature only under require_children."""
    index = _index([_child(b"amd64"), _child(b"arm64")])
    key = cached_key("ed25519")

    assert children_to_verify(index, policy_for(key)) == ()
    assert children_to_verify(index, policy_for(key, require_children=True)) == (
        Digest.of(b"amd64"),
        Digest.of(b"arm64"),
    )


def test_buildkit_attestation_children_need_no_signature() -> None:
    """BuildKit attestation manifests inside an index are not asked for a signature."""
    index = _index(
        [
            _child(b"amd64"),
            _child(
                b"provenance",
                **{"vnd.docker.reference.type": "attestation-manifest"},
            ),
        ]
    )

    assert children_to_verify(index, policy_for(cached_key("ed25519"), require_children=True)) == (
        Digest.of(b"amd64"),
    )


def test_image_manifest_has_no_children_to_verify() -> None:
    """An image manifest has no children, whatever the policy."""
    image = Manifest.parse(
        json.dumps({"schemaVersion": 2, "config": _child(b"cfg"), "layers": []}).encode()
    )

    assert children_to_verify(image, policy_for(cached_key("ed25519"), require_children=True)) == ()


def _err(reason: str) -> VerificationError:
    return VerificationError(f"{reason} happened", reason=reason)


def test_most_specific_reason_wins() -> None:
    """Among failures, the most specific reason is reported, with every message kept."""
    error = most_specific(IMAGE, [_err("malformed"), _err("wrong-digest"), _err("bad-signature")])

    assert error.reason == "wrong-digest"
    assert "malformed happened" in error.message
    assert "bad-signature happened" in error.message
    assert len(vars(error)["failures"]) == 3


def test_single_failure_is_reported_as_is() -> None:
    """One failure is returned unchanged."""
    only = _err("rekor")

    assert most_specific(IMAGE, [only]) is only


def test_no_failures_means_no_signature() -> None:
    """With nothing tried, the reason is no-signature and the digest is named."""
    error = most_specific(IMAGE, [])

    assert error.reason == "no-signature"
    assert str(IMAGE) in error.message


def test_reasons_are_ranked_as_documented() -> None:
    """Failures after a trusted key verified rank above failures where nothing verified."""
    assert REASONS.index("wrong-digest") < REASONS.index("bad-signature")
    assert REASONS.index("wrong-type") < REASONS.index("bad-signature")
    assert REASONS.index("bad-signature") < REASONS.index("malformed")
    assert REASONS[-1] == "no-signature"


def test_rejected_carries_reason_and_message() -> None:
    """A failed verification becomes a report value with its reason and message."""
    rejected = Rejected.from_error(IMAGE, _err("unknown-key"))

    assert rejected == Rejected(IMAGE, "unknown-key", "unknown-key happened")
