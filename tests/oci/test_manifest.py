"""Manifest parsing: bytes kept exact, children and blobs read, hostile bodies refused."""

from __future__ import annotations

import json

import pytest

from drd.errors import DigestMismatch, InvalidManifest
from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.oci.manifest import MAX_MANIFEST_BYTES, Manifest

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def image(**extra: object) -> bytes:
    body = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "config": {"mediaType": mediatype.OCI_CONFIG, "digest": D1, "size": 2},
        "layers": [{"mediaType": mediatype.OCI_LAYER_GZIP, "digest": D2, "size": 10}],
        **extra,
    }
    return json.dumps(body, indent=3).encode()


def test_bytes_and_digest_are_kept_exactly() -> None:
    """The raw bytes are held as received, with odd whitespace, and hashed as such."""
    raw = image()
    m = Manifest.parse(raw)
    assert m.raw is raw
    assert m.digest == Digest.of(raw)
    assert [str(b.digest) for b in m.blobs] == [D1, D2]
    assert not m.is_index


def test_index_children_and_subject() -> None:
    """An index lists its children; a referrer names its subject."""
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mediatype.OCI_MANIFEST,
                    "digest": D1,
                    "size": 5,
                    "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
                }
            ],
            "subject": {"mediaType": mediatype.OCI_MANIFEST, "digest": D2, "size": 3},
        }
    ).encode()
    m = Manifest.parse(raw)
    assert m.is_index
    assert str(m.manifests[0].platform) == "linux/arm64/v8"
    assert m.subject is not None
    assert str(m.subject.digest) == D2


def test_expected_digest_mismatch_is_an_integrity_error() -> None:
    """Bytes that do not hash to the expected digest raise DigestMismatch with both digests."""
    with pytest.raises(DigestMismatch) as info:
        Manifest.parse(image(), expected=Digest.parse(D1))
    assert info.value.expected == D1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"{not json", "not valid JSON", id="invalid-json"),
        pytest.param(b"[]", "not a JSON object", id="array"),
        pytest.param(b'{"schemaVersion": 2}', "neither an index nor an image", id="empty"),
        pytest.param(image(layers="x"), "layers is not a list", id="layers-not-list"),
        pytest.param(
            image(layers=[{"mediaType": "x", "digest": D1, "size": -1}]),
            "size must be a non-negative",
            id="negative-size",
        ),
        pytest.param(
            image(layers=[{"mediaType": "x", "digest": D1, "size": 2**64}]),
            "size must be a non-negative",
            id="size-lies",
        ),
        pytest.param(
            image(layers=[{"mediaType": "x", "digest": "sha256:abc", "size": 1}]),
            "digest",
            id="short-digest",
        ),
        pytest.param(
            json.dumps({"manifests": [{"mediaType": "x", "digest": D1, "size": 1}] * 20_000})
            .replace(" ", "")
            .encode(),
            "more than",
            id="20k-descriptors",
        ),
        pytest.param(
            image(layers=[{"mediaType": "x", "digest": D1, "size": 1}] * 100_000),
            "byte limit",
            id="100k-descriptors",
        ),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "JSON", id="deep-nesting"),
    ],
)
def test_hostile_manifests_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    """Malformed, lying or oversized bodies raise InvalidManifest saying what is wrong."""
    with pytest.raises(InvalidManifest, match=reason):
        Manifest.parse(raw)


def test_oversized_manifest_is_refused_unread() -> None:
    """A body over 4 MiB is refused before parsing."""
    with pytest.raises(InvalidManifest, match="byte limit"):
        Manifest.parse(b" " * (MAX_MANIFEST_BYTES + 1))
