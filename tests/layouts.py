"""
Read the real-world OCI image layouts under shared/fixtures/oci and push them.

The push is independent of drd: plain aiohttp (through `tests.images.RegistryWriter`),
children before parents, exact bytes. See the fixtures' PROVENANCE.md for what
each case exercises.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drd.oci import mediatype
from drd.oci.digest import Digest
from tests.images import Credentials, RegistryWriter, Target
from tests.servers import missing


def _fixtures_root() -> Path:
    override = os.environ.get("DRD_FIXTURES")
    if override:
        return Path(override)
    # The repository and shared/ sit side by side: <parent>/main/tests/ and <parent>/shared/.
    return Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "oci"


FIXTURES = _fixtures_root()

CASES = (
    "regclient-testrepo",
    "oras-e2e-images",
    "oras-e2e-artifacts",
    "ocmirror-docker-manifest-lists",
    "ocmirror-cosign-single",
)

REF_NAME = "org.opencontainers.image.ref.name"


def fixture_path(case: str) -> Path:
    """The layout directory of *case*; fails under CI and skips elsewhere when missing."""
    path = FIXTURES / case
    if not (path / "index.json").is_file():
        missing(
            f"OCI fixture {case!r} at {path}", "place shared/ beside the repo or set DRD_FIXTURES"
        )
    return path


@dataclass(frozen=True)
class Layout:
    """What a layout holds, and the order to push it in."""

    path: Path
    tags: dict[str, Digest]  # from index.json's org.opencontainers.image.ref.name
    manifests: dict[Digest, bytes]  # every manifest and index, tagged or not
    media_types: dict[Digest, str]  # the Content-Type each manifest is pushed with
    blobs: set[Digest]  # every blob that is not (only) a manifest
    order: tuple[Digest, ...] = field(default=())  # manifests, children before parents

    def manifest_json(self, digest: Digest) -> dict[str, Any]:
        """One manifest, parsed, for reading."""
        doc: dict[str, Any] = json.loads(self.manifests[digest])
        return doc

    def referrers(self, subject: Digest) -> list[Digest]:
        """Manifests in the layout whose ``subject`` is *subject*, in push order."""
        found = []
        for digest in self.order:
            sub = self.manifest_json(digest).get("subject")
            if isinstance(sub, dict) and sub.get("digest") == str(subject):
                found.append(digest)
        return found


def _as_manifest(data: bytes) -> dict[str, Any] | None:
    """The parsed document when *data* is a manifest or index, else None."""
    if not data.lstrip().startswith(b"{"):
        return None
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    if doc.get("mediaType") in mediatype.ALL_MANIFEST_TYPES:
        return doc
    if doc.get("schemaVersion") == 2 and ("config" in doc or "manifests" in doc):
        return doc
    return None


def _descriptors(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = doc.get(key)
    return [d for d in items if isinstance(d, dict)] if isinstance(items, list) else []


def read_layout(path: Path) -> Layout:
    """
    Read an OCI image layout: every manifest (found by parsing each blob), the
    blobs, the tags, and a push order where each manifest follows every manifest
    it lists in ``manifests[]`` and its ``subject``.

    Raises AssertionError when a blob does not hash to its file name.
    """
    index = json.loads((path / "index.json").read_bytes())
    data: dict[Digest, bytes] = {}
    for file in sorted((path / "blobs" / "sha256").iterdir()):
        digest = Digest("sha256", file.name)
        content = file.read_bytes()
        if not digest.matches(content):
            raise AssertionError(f"{file} does not hash to its name")
        data[digest] = content

    docs = {d: doc for d, content in data.items() if (doc := _as_manifest(content)) is not None}

    # Content-Type: the body's own mediaType; otherwise what a descriptor pointing at it says.
    hinted: dict[Digest, str] = {}
    referenced_as_blob: set[Digest] = set()
    for desc in _descriptors(index, "manifests"):
        hinted.setdefault(Digest.parse(desc["digest"]), desc.get("mediaType", ""))
    for doc in docs.values():
        for desc in _descriptors(doc, "manifests"):
            hinted.setdefault(Digest.parse(desc["digest"]), desc.get("mediaType", ""))
        if isinstance(doc.get("subject"), dict):
            sub = doc["subject"]
            hinted.setdefault(Digest.parse(sub["digest"]), sub.get("mediaType", ""))
        blob_descs = _descriptors(doc, "layers") + _descriptors(doc, "blobs")
        if isinstance(doc.get("config"), dict):
            blob_descs.append(doc["config"])
        referenced_as_blob.update(Digest.parse(d["digest"]) for d in blob_descs)

    media_types: dict[Digest, str] = {}
    for digest, doc in docs.items():
        declared = doc.get("mediaType")
        hint = hinted.get(digest, "")
        if isinstance(declared, str) and declared:
            media_types[digest] = declared
        elif hint in mediatype.ALL_MANIFEST_TYPES:
            media_types[digest] = hint
        else:
            media_types[digest] = (
                mediatype.OCI_INDEX if "manifests" in doc else mediatype.OCI_MANIFEST
            )

    order: list[Digest] = []
    placed: set[Digest] = set()

    def deps(digest: Digest) -> list[Digest]:
        doc = docs[digest]
        found = [Digest.parse(d["digest"]) for d in _descriptors(doc, "manifests")]
        if isinstance(doc.get("subject"), dict):
            found.append(Digest.parse(doc["subject"]["digest"]))
        return sorted(d for d in found if d in docs)

    def place(digest: Digest, trail: tuple[Digest, ...]) -> None:
        if digest in placed:
            return
        if digest in trail:
            raise AssertionError(f"manifest cycle through {digest}")
        for dep in deps(digest):
            place(dep, (*trail, digest))
        placed.add(digest)
        order.append(digest)

    for digest in sorted(docs):
        place(digest, ())

    tags: dict[str, Digest] = {}
    for desc in _descriptors(index, "manifests"):
        name = (desc.get("annotations") or {}).get(REF_NAME)
        if name:
            tags[name] = Digest.parse(desc["digest"])

    blobs = {d for d in data if d not in docs or d in referenced_as_blob}
    return Layout(
        path=path,
        tags=tags,
        manifests={d: data[d] for d in docs},
        media_types=media_types,
        blobs=blobs,
        order=tuple(order),
    )


async def push_layout(
    registry: Target,
    repository: str,
    layout: Layout | Path | str,
    *,
    auth: Credentials | None = None,
) -> Layout:
    """
    Push *layout* (a `Layout`, a directory, or a case name) into *repository*.

    Blobs first (HEAD-skipped), then every manifest by digest in dependency
    order with its own media type as Content-Type, then the tags. Returns
    the `Layout` that was pushed.
    """
    if isinstance(layout, str):
        layout = read_layout(fixture_path(layout))
    elif isinstance(layout, Path):
        layout = read_layout(layout)
    async with RegistryWriter(registry, auth=auth) as w:
        for digest in sorted(layout.blobs):
            blob = (layout.path / "blobs" / digest.algorithm / digest.hex).read_bytes()
            await w.push_blob(repository, blob)
        for digest in layout.order:
            await w.push_manifest(
                repository, digest, layout.manifests[digest], layout.media_types[digest]
            )
        for tag, digest in sorted(layout.tags.items()):
            await w.push_manifest(
                repository, tag, layout.manifests[digest], layout.media_types[digest]
            )
    return layout
