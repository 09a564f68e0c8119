"""
Attached-artifact tag names, the one place they are defined, and what each may hold. Pure.

Exactly four forms are attached tags: cosign's ``sha256-<hex>.sig`` (signatures),
``.att`` (attestations) and ``.sbom`` (SBOMs), and the bare ``sha256-<hex>`` the
referrers API falls back to (an index of the subject's referrers). Any other tag,
``sha256-<hex>.latest`` included, is an ordinary tag: it goes through the tag filters
and, on a trusted policy, through verification like any release tag.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from drd.oci import mediatype
from drd.oci.descriptor import Descriptor
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest

SIGNATURE = "sig"
ATTESTATION = "att"
SBOM = "sbom"
REFERRERS = "referrers"  # the bare fallback tag: no suffix

# The verification reason for an attached tag that holds something other than its name says.
NOT_ATTACHED = "not-attached"

DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
# What `cosign attach sbom --type …` writes; other SBOM formats name one of these words.
_SBOM_FORMATS = ("spdx", "cyclonedx", "syft")
# A referrers index listing more than this is not a real one: cosign adds one entry per artifact.
MAX_REFERRERS = 1000

_ATTACHED = re.compile(r"(sha256-[a-f0-9]{64}|sha512-[a-f0-9]{128})(?:\.(sig|att|sbom))?")


@dataclass(frozen=True, slots=True)
class AttachedTag:
    """An attached tag, parsed: the digest it hangs off and what it claims to hold."""

    subject: Digest
    kind: str  # SIGNATURE, ATTESTATION, SBOM or REFERRERS

    def __str__(self) -> str:
        base = self.subject.tag_form
        return base if self.kind == REFERRERS else f"{base}.{self.kind}"


def parse_attached(tag: str) -> AttachedTag | None:
    """The attached tag *tag* names, or None for an ordinary tag (near misses included)."""
    match = _ATTACHED.fullmatch(tag)
    if match is None:
        return None
    algorithm, _, hexpart = match.group(1).partition("-")
    return AttachedTag(Digest(algorithm, hexpart), match.group(2) or REFERRERS)


def subject_of_tag(tag: str) -> Digest | None:
    """The digest an attached tag hangs off, or None for an ordinary tag."""
    attached = parse_attached(tag)
    return attached.subject if attached is not None else None


def is_attached_tag(tag: str) -> bool:
    """Whether *tag* is a cosign signature/attestation/SBOM tag or the referrers fallback tag."""
    return parse_attached(tag) is not None


def is_signature_tag(tag: str) -> bool:
    """Whether *tag* is a cosign signature tag (``sha256-<hex>.sig``)."""
    attached = parse_attached(tag)
    return attached is not None and attached.kind == SIGNATURE


def fallback_tag(digest: Digest) -> str:
    """The referrers-API fallback tag for *digest*: ``sha256-<hex>``."""
    return str(AttachedTag(digest, REFERRERS))


def signature_tag(digest: Digest) -> str:
    """cosign's signature tag for *digest*: ``sha256-<hex>.sig``."""
    return str(AttachedTag(digest, SIGNATURE))


def attestation_tag(digest: Digest) -> str:
    """cosign's attestation tag for *digest*: ``sha256-<hex>.att``."""
    return str(AttachedTag(digest, ATTESTATION))


def sbom_tag(digest: Digest) -> str:
    """cosign's SBOM tag for *digest*: ``sha256-<hex>.sbom``."""
    return str(AttachedTag(digest, SBOM))


def claim_mismatch(tag: AttachedTag, manifest: Manifest) -> str | None:
    """
    Why *manifest* is not what *tag*'s name says it holds; None when it is.

    A signature manifest has only simple-signing layers, an attestation only DSSE
    envelopes, an SBOM only SBOM documents; none is an index. A referrers index is
    an index of image manifests (the referrers themselves, whose ``subject`` the
    caller checks once it has read them). A ``subject``, where one is set, is the
    tag's digest.
    """
    if manifest.subject is not None and manifest.subject.digest != tag.subject:
        return f"{tag} refers to {manifest.subject.digest}, not {tag.subject}"
    if tag.kind == REFERRERS:
        if not manifest.is_index:
            return f"{tag} holds a {manifest.media_type[:80]!r}, not an index of referrers"
        if len(manifest.manifests) > MAX_REFERRERS:
            return f"{tag} lists {len(manifest.manifests)} referrers, over {MAX_REFERRERS}"
        listed = {d.media_type for d in manifest.manifests}
        if not listed <= mediatype.MANIFEST_TYPES:
            return f"{tag} lists something other than referrer manifests: {sorted(listed)[:3]}"
        if any(d.platform is not None for d in manifest.manifests):
            return f"{tag} lists platform images, not referrers"
        return None
    if manifest.is_index:
        return f"{tag} holds an index, not a {_NOUN[tag.kind]}"
    if not manifest.layers:
        return f"{tag} holds no layer, so no {_NOUN[tag.kind]}"
    wrong = sorted(
        {d.media_type for d in manifest.layers if not _LAYER_CHECK[tag.kind](d.media_type)}
    )
    if wrong:
        return f"{tag} holds {wrong[0][:80]!r} layers, not a {_NOUN[tag.kind]}"
    return None


def _is_sbom(media_type: str) -> bool:
    return any(word in media_type.lower() for word in _SBOM_FORMATS)


_NOUN = {SIGNATURE: "signature", ATTESTATION: "attestation", SBOM: "SBOM"}


def kind_noun(kind: str) -> str:
    """What an attached tag of *kind* holds, for people: ``signature``, ``referrers index``."""
    return _NOUN.get(kind, "referrers index")


_LAYER_CHECK = {
    SIGNATURE: lambda t: t == mediatype.COSIGN_SIMPLESIGNING,
    ATTESTATION: lambda t: t == DSSE_ENVELOPE,
    SBOM: _is_sbom,
}


def referrer_entry(desc: Descriptor) -> dict[str, Any]:
    """The referrers-index entry for *desc*: media type, digest, size, artifactType, annotations."""
    entry: dict[str, Any] = {
        "mediaType": desc.media_type,
        "digest": str(desc.digest),
        "size": desc.size,
    }
    if desc.artifact_type:
        entry["artifactType"] = desc.artifact_type
    if desc.annotations:
        entry["annotations"] = dict(desc.annotations)
    return entry


def merge_fallback(existing: Manifest | None, new: Sequence[Descriptor]) -> bytes | None:
    """
    The bytes of a fallback referrers index listing what *existing* lists (its entries
    kept as they are, in their order) plus the *new* descriptors it lacks; None when it
    already lists every one. Pure.
    """
    listed: list[dict[str, Any]] = []
    known: set[Digest] = set()
    if existing is not None:
        body = json.loads(existing.raw)
        listed = [e for e in body.get("manifests", []) if isinstance(e, dict)]
        known = {d.digest for d in existing.manifests}
    added: list[dict[str, Any]] = []
    for desc in new:
        if desc.digest not in known:
            known.add(desc.digest)
            added.append(referrer_entry(desc))
    if not added:
        return None
    doc = {"schemaVersion": 2, "mediaType": mediatype.OCI_INDEX, "manifests": listed + added}
    return json.dumps(doc, separators=(",", ":")).encode()
