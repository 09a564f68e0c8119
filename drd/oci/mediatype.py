"""Media types drd understands, and predicates over them. Pure."""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_ARTIFACT = "application/vnd.oci.artifact.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGSTORE_BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle"  # + ".v0.3+json" or "+json;version=…"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
NOTATION_JWS = "application/jose+json"
NOTATION_COSE = "application/cose"

# Layers that carry metadata, not filesystem content: signatures, attestations, SBOMs.
METADATA_LAYER_TYPES = frozenset(
    {
        COSIGN_SIMPLESIGNING,
        DSSE_ENVELOPE,
        IN_TOTO,
        NOTATION_JWS,
        NOTATION_COSE,
        "application/spdx+json",
        "text/spdx",
        "text/spdx+json",
        "text/spdx+xml",
        "application/vnd.cyclonedx",
        "application/vnd.cyclonedx+json",
        "application/vnd.cyclonedx+xml",
        "application/vnd.syft+json",
    }
)

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST, OCI_ARTIFACT})
ALL_MANIFEST_TYPES = INDEX_TYPES | MANIFEST_TYPES

# The Accept header for manifest requests: every type drd can copy byte for byte.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST, OCI_ARTIFACT])


def is_index(media_type: str) -> bool:
    """An OCI index or a Docker manifest list."""
    return media_type in INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    """Any manifest or index type drd copies as a manifest (not a blob)."""
    return media_type in ALL_MANIFEST_TYPES


def is_metadata_blob(media_type: str, *, config: bool, referrer: bool = False) -> bool:
    """
    A blob that carries metadata rather than content: any manifest's config (an image
    config, a signature's or artifact's config), any layer of a referrer (a manifest
    with a ``subject``: signatures, attestations, SBOMs attached to an image), a
    signature payload, an attestation, an SBOM, a Notation envelope or a sigstore bundle.
    """
    if config or referrer:
        return True
    base = media_type.split(";")[0].strip()
    return base in METADATA_LAYER_TYPES or base.startswith(SIGSTORE_BUNDLE)
