"""Which blobs are metadata, stored by a snapshot even with ``blobs = false``."""

from __future__ import annotations

import pytest

from drd.oci.mediatype import is_metadata_blob


@pytest.mark.parametrize(
    ("media_type", "config", "referrer", "expected"),
    [
        ("application/vnd.oci.image.config.v1+json", True, False, True),
        ("application/vnd.docker.container.image.v1+json", True, False, True),
        ("application/vnd.oci.empty.v1+json", True, True, True),
        ("application/vnd.dev.cosign.simplesigning.v1+json", False, False, True),
        ("application/vnd.dsse.envelope.v1+json", False, False, True),
        ("application/vnd.in-toto+json", False, False, True),
        ("application/spdx+json", False, False, True),
        ("text/spdx", False, False, True),
        ("application/vnd.cyclonedx+xml", False, False, True),
        ("application/jose+json", False, False, True),
        ("application/cose", False, False, True),
        ("application/vnd.dev.sigstore.bundle.v0.3+json", False, False, True),
        ("application/vnd.dev.sigstore.bundle+json;version=0.2", False, False, True),
        ("application/vnd.example.report+json", False, True, True),  # a referrer's layer
        ("application/vnd.oci.image.layer.v1.tar+gzip", False, False, False),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", False, False, False),
        ("application/octet-stream", False, False, False),
    ],
)
def test_metadata_blobs_by_media_type(
    media_type: str, config: bool, referrer: bool, expected: bool
) -> None:
    assert is_metadata_blob(media_type, config=config, referrer=referrer) is expected
