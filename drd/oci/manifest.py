"""Manifest: the raw bytes, their digest, and a parsed read-only view. Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from drd.errors import DigestMismatch, InvalidManifest
from drd.oci import mediatype
from drd.oci.descriptor import Descriptor
from drd.oci.digest import Digest

# distribution's own limit on manifest bodies; anything larger is refused unread.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# An index or image with more entries than this is hostile, not real.
MAX_DESCRIPTORS = 10_000


@dataclass(frozen=True, slots=True)
class Manifest:
    """
    A manifest or index exactly as stored.

    ``raw`` is what is pushed; ``digest`` is the sha256 of ``raw``. The parsed
    fields are for reading only and are never serialised back.
    """

    raw: bytes
    digest: Digest
    media_type: str
    manifests: tuple[Descriptor, ...]  # children of an index
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str
    annotations: dict[str, str]

    @classmethod
    def parse(cls, raw: bytes, media_type: str = "", expected: Digest | None = None) -> Manifest:
        """
        Parse *raw*; check it against *expected* when given.

        *media_type* is the Content-Type it was served with; the body's own
        ``mediaType`` wins when present. Raises `InvalidManifest` or
        `DigestMismatch`.
        """
        if len(raw) > MAX_MANIFEST_BYTES:
            raise InvalidManifest(
                f"manifest is {len(raw)} bytes, over the {MAX_MANIFEST_BYTES} byte limit"
            )
        digest = Digest.of(raw, expected.algorithm if expected else "sha256")
        if expected is not None and digest != expected:
            raise DigestMismatch(
                f"manifest bytes hash to {digest}, not {expected}",
                expected=str(expected),
                actual=str(digest),
            )
        body = _load(raw)
        declared = body.get("mediaType")
        if declared is not None and not isinstance(declared, str):
            raise InvalidManifest("manifest mediaType is not a string")
        media = declared or _sniff(body, media_type)
        manifests = _descriptors(body, "manifests")
        layers = _descriptors(body, "layers") or _descriptors(body, "blobs")
        if len(manifests) + len(layers) > MAX_DESCRIPTORS:
            raise InvalidManifest(f"manifest lists more than {MAX_DESCRIPTORS} descriptors")
        config = body.get("config")
        subject = body.get("subject")
        annotations = body.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise InvalidManifest("manifest annotations is not an object")
        artifact_type = body.get("artifactType", "")
        return cls(
            raw=raw,
            digest=digest,
            media_type=media,
            manifests=manifests,
            config=Descriptor.from_json(config, "config") if config is not None else None,
            layers=layers,
            subject=Descriptor.from_json(subject, "subject") if subject is not None else None,
            artifact_type=artifact_type if isinstance(artifact_type, str) else "",
            annotations={str(k): str(v) for k, v in annotations.items()},
        )

    @property
    def is_index(self) -> bool:
        """An OCI index or Docker manifest list."""
        return mediatype.is_index(self.media_type)

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Config then layers: every blob this manifest needs (none for an index)."""
        return ((self.config,) if self.config else ()) + self.layers

    def descriptor(self) -> Descriptor:
        """A descriptor pointing at this manifest."""
        return Descriptor(self.media_type, self.digest, len(self.raw))


def _load(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidManifest(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidManifest("manifest is not a JSON object")
    return body


def _sniff(body: dict[str, Any], served_as: str) -> str:
    if served_as in mediatype.ALL_MANIFEST_TYPES:
        return served_as
    if "manifests" in body:
        return mediatype.OCI_INDEX
    if body.get("schemaVersion") == 2 and "config" in body:
        return mediatype.OCI_MANIFEST
    raise InvalidManifest("manifest has no mediaType and is neither an index nor an image")


def _descriptors(body: dict[str, Any], key: str) -> tuple[Descriptor, ...]:
    items = body.get(key)
    if items is None:
        return ()
    if not isinstance(items, list):
        raise InvalidManifest(f"manifest {key} is not a list")
    if len(items) > MAX_DESCRIPTORS:
        raise InvalidManifest(f"manifest {key} lists more than {MAX_DESCRIPTORS} descriptors")
    return tuple(Descriptor.from_json(d, f"{key}[{i}]") for i, d in enumerate(items))
