"""Attached tag names and what each may hold: one table each. Pure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.oci.referrers import (
    ATTESTATION,
    DSSE_ENVELOPE,
    REFERRERS,
    SBOM,
    SIGNATURE,
    AttachedTag,
    attestation_tag,
    claim_mismatch,
    fallback_tag,
    is_attached_tag,
    is_signature_tag,
    parse_attached,
    sbom_tag,
    signature_tag,
    subject_of_tag,
)

IMAGE = Digest.of(b"image")
HEX = IMAGE.hex
OTHER = Digest.of(b"other")


def test_tag_names_round_trip() -> None:
    """Each kind's name parses back to the same subject and kind."""
    assert signature_tag(IMAGE) == f"sha256-{HEX}.sig"
    assert attestation_tag(IMAGE) == f"sha256-{HEX}.att"
    assert sbom_tag(IMAGE) == f"sha256-{HEX}.sbom"
    assert fallback_tag(IMAGE) == f"sha256-{HEX}"
    for kind in (SIGNATURE, ATTESTATION, SBOM, REFERRERS):
        assert parse_attached(str(AttachedTag(IMAGE, kind))) == AttachedTag(IMAGE, kind)


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        pytest.param(f"sha256-{HEX}.sig", AttachedTag(IMAGE, SIGNATURE), id="sig"),
        pytest.param(f"sha256-{HEX}.att", AttachedTag(IMAGE, ATTESTATION), id="att"),
        pytest.param(f"sha256-{HEX}.sbom", AttachedTag(IMAGE, SBOM), id="sbom"),
        pytest.param(f"sha256-{HEX}", AttachedTag(IMAGE, REFERRERS), id="referrers-fallback"),
        pytest.param(
            f"sha512-{'a' * 128}.sig", AttachedTag(Digest("sha512", "a" * 128), SIGNATURE), id="512"
        ),
        pytest.param(f"sha256-{HEX}.latest", None, id="other-suffix"),
        pytest.param(f"sha256-{HEX}.meta", None, id="meta-suffix"),
        pytest.param(f"sha256-{HEX}.sig.sig", None, id="double-suffix"),
        pytest.param(f"sha256-{HEX}.SIG", None, id="upper-suffix"),
        pytest.param(f"sha256-{HEX.upper()}.sig", None, id="upper-hex"),
        pytest.param(f"sha256-{HEX[:-1]}.sig", None, id="short-hex"),
        pytest.param(f"sha512-{HEX}.sig", None, id="sha512-with-256-hex"),
        pytest.param(f"sha256-{HEX}.sig\n", None, id="trailing-newline"),
        pytest.param("v1.2.3", None, id="release-tag"),
        pytest.param("latest.sig", None, id="sig-suffix-only"),
    ],
)
def test_only_the_four_attached_forms_are_attached(tag: str, expected: AttachedTag | None) -> None:
    """cosign's three suffixes and the bare referrers tag; every near miss is an ordinary tag."""
    assert parse_attached(tag) == expected
    assert is_attached_tag(tag) is (expected is not None)
    assert subject_of_tag(tag) == (expected.subject if expected else None)
    assert is_signature_tag(tag) is (expected is not None and expected.kind == SIGNATURE)


def _manifest(
    layers: list[str], *, index: bool = False, subject: Digest | None = None, **extra: Any
) -> Manifest:
    doc: dict[str, Any] = {"schemaVersion": 2}
    if index:
        doc["mediaType"] = mediatype.OCI_INDEX
        doc["manifests"] = [
            {"mediaType": t, "digest": str(Digest.of(t.encode())), "size": 1, **extra}
            for t in layers
        ]
    else:
        doc["mediaType"] = mediatype.OCI_MANIFEST
        doc["config"] = {"mediaType": mediatype.OCI_CONFIG, "digest": str(IMAGE), "size": 2}
        doc["layers"] = [
            {"mediaType": t, "digest": str(Digest.of(t.encode())), "size": 1} for t in layers
        ]
    if subject is not None:
        doc["subject"] = {"mediaType": mediatype.OCI_MANIFEST, "digest": str(subject), "size": 1}
    return Manifest.parse(json.dumps(doc).encode())


SIMPLE = mediatype.COSIGN_SIMPLESIGNING
TAR = mediatype.OCI_LAYER_GZIP


@pytest.mark.parametrize(
    ("kind", "manifest", "problem"),
    [
        pytest.param(SIGNATURE, _manifest([SIMPLE, SIMPLE]), None, id="sig"),
        pytest.param(SIGNATURE, _manifest([SIMPLE, TAR]), "layers", id="sig-with-image-layer"),
        pytest.param(SIGNATURE, _manifest([]), "no layer", id="sig-without-layers"),
        pytest.param(SIGNATURE, _manifest([SIMPLE], index=True), "index", id="sig-as-index"),
        pytest.param(ATTESTATION, _manifest([DSSE_ENVELOPE]), None, id="att"),
        pytest.param(ATTESTATION, _manifest([TAR]), "layers", id="att-holding-an-image"),
        pytest.param(SBOM, _manifest(["text/spdx+json"]), None, id="sbom-spdx"),
        pytest.param(SBOM, _manifest(["application/vnd.cyclonedx+json"]), None, id="cyclonedx"),
        pytest.param(SBOM, _manifest([TAR]), "layers", id="sbom-holding-an-image"),
        pytest.param(REFERRERS, _manifest([mediatype.OCI_MANIFEST], index=True), None, id="ref"),
        pytest.param(REFERRERS, _manifest([TAR]), "not an index", id="referrers-image"),
        pytest.param(
            REFERRERS,
            _manifest([mediatype.OCI_INDEX], index=True),
            "other than referrer",
            id="referrers-of-indexes",
        ),
        pytest.param(
            REFERRERS,
            _manifest(
                [mediatype.OCI_MANIFEST],
                index=True,
                platform={"os": "linux", "architecture": "amd64"},
            ),
            "platform images",
            id="referrers-listing-platform-images",
        ),
        pytest.param(SIGNATURE, _manifest([SIMPLE], subject=IMAGE), None, id="own-subject"),
        pytest.param(SIGNATURE, _manifest([SIMPLE], subject=OTHER), "refers to", id="foreign"),
    ],
)
def test_an_attached_tag_must_hold_what_its_name_claims(
    kind: str, manifest: Manifest, problem: str | None
) -> None:
    """Signatures, attestations, SBOMs and referrer indexes each have their shape."""
    found = claim_mismatch(AttachedTag(IMAGE, kind), manifest)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found
