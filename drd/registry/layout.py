"""
An OCI image layout directory read as a signature source: what `drd verify oci:PATH` checks.

Only ``index.json``, manifests and the signature blobs a verification asks for are
read; an image's layer blobs may be absent (an exported signature bundle, an
air-gapped transfer of metadata). Tags are the ``org.opencontainers.image.ref.name``
annotations of ``index.json``; referrers are the manifests it lists whose
``subject`` is the digest, plus the ``sha256-<hex>`` fallback index when tagged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from drd.errors import DigestMismatch, InvalidManifest, InvalidReference, NotFound, SizeMismatch
from drd.oci import mediatype
from drd.oci.descriptor import Descriptor
from drd.oci.digest import Digest
from drd.oci.manifest import MAX_DESCRIPTORS, MAX_MANIFEST_BYTES, Manifest
from drd.oci.referrers import fallback_tag

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_PREFIX = "oci:"


@dataclass(frozen=True, slots=True)
class LayoutRef:
    """``oci:PATH:TAG`` or ``oci:PATH@sha256:…``: a layout directory and what in it to verify."""

    path: Path
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> LayoutRef:
        """Parse an ``oci:`` reference; raises `InvalidReference`."""
        if not text.startswith(LAYOUT_PREFIX):
            raise InvalidReference(f"{text[:80]!r} is not an oci:PATH reference")
        rest = text[len(LAYOUT_PREFIX) :]
        path, at, digest_text = rest.rpartition("@")
        if at:
            if not path:
                raise InvalidReference(f"{text[:80]!r} names no layout directory")
            return cls(Path(path), digest=Digest.parse(digest_text))
        path, colon, tag = rest.rpartition(":")
        # A colon inside the directory part is part of the path, not a tag separator.
        if not colon or "/" in tag or not tag:
            raise InvalidReference(f"{text[:80]!r}: give oci:PATH:TAG or oci:PATH@sha256:…")
        if not path:
            raise InvalidReference(f"{text[:80]!r} names no layout directory")
        return cls(Path(path), tag=tag)

    @property
    def reference(self) -> str:
        """What to look up in the layout: the digest when pinned, else the tag."""
        return str(self.digest) if self.digest is not None else str(self.tag)

    def __str__(self) -> str:
        suffix = f"@{self.digest}" if self.digest is not None else f":{self.tag}"
        return f"{LAYOUT_PREFIX}{self.path}{suffix}"


@dataclass
class LayoutSource:
    """
    The reads `drd.trust.verify.SignatureSource` names, served from a layout directory.

    The repository argument is ignored: a layout holds one repository's worth
    of content. Missing files are `NotFound`; bytes that do not hash to their
    name are `DigestMismatch`, as from a registry.
    """

    root: Path
    _index: list[Descriptor] | None = field(default=None, repr=False)

    def _descriptors(self) -> list[Descriptor]:
        if self._index is None:
            path = self.root / "index.json"
            if not path.is_file():
                raise NotFound(f"{self.root} is not an OCI image layout (no index.json)")
            raw = _read(path, MAX_MANIFEST_BYTES)
            try:
                doc = json.loads(raw)
            except ValueError as exc:
                raise InvalidManifest(f"{path} is not valid JSON") from exc
            self._index = list(Manifest.parse(_as_index(doc, raw), mediatype.OCI_INDEX).manifests)
        return self._index

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        """A manifest by digest, or by a tag of ``index.json``."""
        if ":" in reference:
            digest = Digest.parse(reference)
            listed = next((d for d in self._descriptors() if d.digest == digest), None)
        else:
            listed = next(
                (d for d in self._descriptors() if d.annotations.get(REF_NAME) == reference), None
            )
            if listed is None:
                raise NotFound(f"no tag {reference} in {self.root}")
            digest = listed.digest
        raw = self._blob(digest, MAX_MANIFEST_BYTES)
        return Manifest.parse(raw, listed.media_type if listed else "", expected=digest)

    async def get_blob_bytes(self, repository: str, digest: Digest, max_size: int) -> bytes:
        """One blob, at most *max_size* bytes, checked against its digest."""
        return self._blob(digest, max_size)

    async def referrers(self, repository: str, digest: Digest) -> list[Descriptor]:
        """Manifests in ``index.json`` whose subject is *digest*, and the fallback index's."""
        found: dict[Digest, Descriptor] = {}
        for desc in self._descriptors()[:MAX_DESCRIPTORS]:
            if desc.media_type == mediatype.OCI_INDEX or desc.digest == digest:
                continue
            try:
                manifest = Manifest.parse(self._blob(desc.digest, MAX_MANIFEST_BYTES))
            except (NotFound, InvalidManifest, DigestMismatch, SizeMismatch):
                continue
            if manifest.subject is not None and manifest.subject.digest == digest:
                kind = manifest.artifact_type or (
                    manifest.config.media_type if manifest.config else ""
                )
                found[desc.digest] = Descriptor(
                    manifest.media_type, desc.digest, len(manifest.raw), artifact_type=kind
                )
        try:
            index = await self.get_manifest(repository, fallback_tag(digest))
        except NotFound:
            index = None
        if index is not None and index.is_index:
            found.update((d.digest, d) for d in index.manifests if d.digest not in found)
        return list(found.values())

    def _blob(self, digest: Digest, max_size: int) -> bytes:
        path = self.root / "blobs" / digest.algorithm / digest.hex
        if not path.is_file():
            raise NotFound(f"blob {digest} is not in {self.root}")
        data = _read(path, max_size)
        if len(data) > max_size:
            raise SizeMismatch(
                f"blob {digest} is over {max_size} bytes", expected=max_size, actual=len(data)
            )
        if not digest.matches(data):
            raise DigestMismatch(
                f"blob {digest} in {self.root} does not hash to its name",
                expected=str(digest),
                actual=str(Digest.of(data)),
            )
        return data


def _read(path: Path, limit: int) -> bytes:
    """At most *limit* + 1 bytes: enough to tell an oversized file without reading it all."""
    with path.open("rb") as f:
        return f.read(limit + 1)


def _as_index(doc: object, raw: bytes) -> bytes:
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        raise InvalidManifest("index.json has no manifests list")
    return raw
