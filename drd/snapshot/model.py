"""
The snapshot index: schema, canonical form, object keys. Pure. (`drd.snapshot.encode`
writes an index as a stream, `drd.snapshot.reader` reads one, checked by
`drd.snapshot.validate`; `drd.snapshot.diff` compares two indexes;
`drd.snapshot.retention` chooses which to keep.)

A snapshot index is a schema-versioned JSON document, gzip-compressed, that names
every repository, every tag → digest, every referrer, and the digest, media type
and size of every manifest and blob it references, and (optional field ``settings``,
absent from indexes without it, so older indexes read and hash as before) the
registry settings files recorded with it. It carries the sha256 of its
own canonical body (``index_digest``) and, optionally, a signature over that
digest. Indexes read back from a store are untrusted input: `parse_index` (the
streaming reader) validates every name, tag, digest and cross-reference before
anything uses it.

Object keys, relative to the store's root::

    manifests/sha256/<hex>                                    content-addressed
    blobs/sha256/<hex>                                        content-addressed
    settings/sha256/<hex>                                     content-addressed
    snapshots/<source>/<YYYY>/<MM>/<DD>/<id>.json.gz          one per snapshot
    snapshots/<source>/latest.json                            a convenience pointer
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from drd.errors import InvalidReference
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.snapshot.encode import body_digest, canonical_json, index_chunks
from drd.snapshot.settings import SettingsRecord

KIND = "drd-snapshot"
SCHEMA_VERSION = 1

# A decompressed index larger than this is hostile (a gzip bomb), not a registry.
MAX_INDEX_BYTES = 1024 * 1024 * 1024
# A compressed index larger than this is refused unread.
MAX_INDEX_OBJECT_BYTES = 256 * 1024 * 1024
# A descriptor's size is a non-negative int64.
MAX_OBJECT_SIZE = 2**63 - 1

_SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ID = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})\.(\d{6})Z$")
_INDEX_KEY = re.compile(
    r"^snapshots/(?P<source>[^/]+)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P<id>[^/]+)\.json\.gz$"
)
_OBJECT_KEY = re.compile(r"^(manifests|blobs|settings)/(sha256|sha512)/([a-f0-9]+)$")
_MEDIA_TYPE = re.compile(r"^[\x21-\x7e]{1,255}$")


# --------------------------------------------------------------------------- keys


def valid_media_type(text: str) -> bool:
    """Whether *text* can be recorded as a manifest's media type (printable, no spaces)."""
    return isinstance(text, str) and _MEDIA_TYPE.match(text) is not None


def validate_source(name: str) -> str:
    """Return *name* if it can name a snapshot source (one key segment); else raise."""
    if not isinstance(name, str) or not _SOURCE.match(name):
        raise InvalidReference(f"snapshot source {str(name)[:80]!r} must match {_SOURCE.pattern}")
    return name


def manifest_key(digest: Digest) -> str:
    """``manifests/<algorithm>/<hex>``."""
    return f"manifests/{digest.algorithm}/{digest.hex}"


def blob_key(digest: Digest) -> str:
    """``blobs/<algorithm>/<hex>``."""
    return f"blobs/{digest.algorithm}/{digest.hex}"


def object_digest(key: str) -> tuple[str, Digest] | None:
    """``("manifests" | "blobs" | "settings", digest)`` for a content-addressed key, else None."""
    match = _OBJECT_KEY.match(key)
    if match is None:
        return None
    try:
        return match.group(1), Digest.parse(f"{match.group(2)}:{match.group(3)}")
    except InvalidReference:
        return None


def snapshot_id(taken_at: dt.datetime) -> str:
    """The id of a snapshot taken at *taken_at*: its UTC timestamp, ``20240501T093000.123456Z``."""
    return as_utc(taken_at).strftime("%Y%m%dT%H%M%S.%fZ")


def parse_snapshot_id(text: str) -> dt.datetime:
    """The UTC time an id names; raise `InvalidReference` when *text* is not an id."""
    match = _ID.match(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidReference(
            f"snapshot id {str(text)[:80]!r} is not of the form 20240501T093000.123456Z"
        )
    y, mo, d, h, mi, s, us = (int(g) for g in match.groups())
    try:
        return dt.datetime(y, mo, d, h, mi, s, us, tzinfo=dt.UTC)
    except ValueError as exc:
        raise InvalidReference(f"snapshot id {text!r} is not a real time: {exc}") from exc


def index_key(source: str, snap_id: str) -> str:
    """``snapshots/<source>/<YYYY>/<MM>/<DD>/<id>.json.gz``."""
    validate_source(source)
    when = parse_snapshot_id(snap_id)
    return f"snapshots/{source}/{when:%Y/%m/%d}/{snap_id}.json.gz"


def index_prefix(source: str) -> str:
    """The key prefix under which *source*'s snapshot indexes live."""
    return f"snapshots/{validate_source(source)}/"


def latest_key(source: str) -> str:
    """``snapshots/<source>/latest.json``: the newest snapshot, for outside readers."""
    return f"{index_prefix(source)}latest.json"


def parse_index_key(key: str) -> tuple[str, str] | None:
    """``(source, id)`` when *key* is a well-formed index key, else None."""
    match = _INDEX_KEY.match(key)
    if match is None:
        return None
    snap_id = match.group("id")
    try:
        when = parse_snapshot_id(snap_id)
        validate_source(match.group("source"))
    except InvalidReference:
        return None
    if (when.year, when.month, when.day) != tuple(int(match.group(g)) for g in "ymd"):
        return None
    return match.group("source"), snap_id


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    """One manifest or index: how it was served and what it points at."""

    media_type: str
    size: int
    children: tuple[Digest, ...] = ()  # manifests an index lists
    blobs: tuple[Digest, ...] = ()  # config and layers of an image manifest
    subject: Digest | None = None  # what a referrer refers to


@dataclass(frozen=True, slots=True)
class RepositoryRecord:
    """One repository: tags, referrers found through the API, and every manifest it holds."""

    tags: Mapping[str, Digest]
    manifests: frozenset[Digest]
    referrers: Mapping[Digest, tuple[Digest, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Skipped:
    """Something the collector saw but could not record, and why."""

    repository: str
    tag: str
    reason: str


@dataclass(frozen=True, slots=True)
class Signature:
    """A signature over the index digest: algorithm, signer key id (sha256 of DER SPKI), value."""

    algorithm: str
    key_id: str
    value: str  # base64


@dataclass(frozen=True)
class Snapshot:
    """
    A point-in-time record of one registry. Immutable; ``digest`` covers the whole body.

    ``blobs`` maps every blob digest the manifests reference to its size; the blobs
    themselves are in the store when ``blobs_stored`` is true. ``metadata_blobs`` are
    the small blobs that carry metadata (image configs, signature payloads,
    attestations, SBOMs, Notation envelopes, sigstore bundles), stored whatever
    ``blobs`` says; None for an index written before they were recorded.
    """

    id: str
    source: str
    taken_at: dt.datetime
    repositories: Mapping[str, RepositoryRecord]
    manifests: Mapping[Digest, ManifestRecord]
    blobs: Mapping[Digest, int]
    blobs_stored: bool = False
    source_url: str = ""
    duration_s: float = 0.0
    skipped: tuple[Skipped, ...] = ()
    signature: Signature | None = None
    metadata_blobs: frozenset[Digest] | None = None
    settings: tuple[SettingsRecord, ...] = ()  # sorted by path

    def __post_init__(self) -> None:
        # Milliseconds are what the index stores; keep the value equal to its round trip.
        object.__setattr__(self, "duration_s", round(float(self.duration_s), 3))

    @property
    def key(self) -> str:
        """Where this snapshot's index lives in a store."""
        return index_key(self.source, self.id)

    @functools.cached_property
    def digest(self) -> Digest:
        """The sha256 of the canonical body: what a signature covers (hashed once, streamed)."""
        return body_digest(self)

    def signed(self, signature: Signature) -> Snapshot:
        """This snapshot with *signature*; the digest (which the signature does not change) kept."""
        out = replace(self, signature=signature)
        if "digest" in self.__dict__:
            out.__dict__["digest"] = self.__dict__["digest"]
        return out

    @property
    def tag_count(self) -> int:
        """How many tags, over all repositories."""
        return sum(len(r.tags) for r in self.repositories.values())

    def objects(self) -> dict[Digest, int]:
        """Every manifest and blob the snapshot names, with its size in bytes."""
        return {**{d: m.size for d, m in self.manifests.items()}, **self.blobs}

    @property
    def logical_bytes(self) -> int:
        """The size of what the snapshot holds: every manifest and blob, each once."""
        return sum(self.objects().values())

    def new_bytes(self, previous: Snapshot | None) -> int:
        """The bytes of objects *previous* (the snapshot before it) did not name."""
        if previous is None:
            return self.logical_bytes
        before = previous.objects()
        return sum(size for d, size in self.objects().items() if d not in before)

    def stores_blob(self, digest: Digest) -> bool:
        """Whether the store holds blob *digest* for this snapshot."""
        if self.blobs_stored:
            return digest in self.blobs
        return self.metadata_blobs is not None and digest in self.metadata_blobs

    @property
    def stored_blobs(self) -> dict[Digest, int]:
        """Every blob the store holds for this snapshot, with its size."""
        return {d: size for d, size in self.blobs.items() if self.stores_blob(d)}

    def object_keys(self) -> set[str]:
        """Every store key this snapshot needs: manifests, stored settings, stored blobs."""
        keys = {manifest_key(d) for d in self.manifests}
        keys |= {s.key for s in self.settings if s.stored}
        return keys | {blob_key(d) for d in self.stored_blobs}

    def body(self) -> dict[str, Any]:
        """The JSON body without ``index_digest`` and ``signature``: what is hashed."""
        body = self._body()
        if self.metadata_blobs is not None:
            # Only when recorded: an older index keeps hashing to its own digest.
            body["metadata_blobs"] = sorted(str(d) for d in self.metadata_blobs)
        if self.settings:
            body["settings"] = [s.to_json() for s in self.settings]
        return body

    def _body(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "schema_version": SCHEMA_VERSION,
            "id": self.id,
            "source": self.source,
            "source_url": self.source_url,
            "taken_at": as_utc(self.taken_at).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "duration_s": round(self.duration_s, 3),
            "blobs_stored": self.blobs_stored,
            "repositories": {
                name: {
                    "tags": {tag: str(d) for tag, d in sorted(repo.tags.items())},
                    "referrers": {
                        str(s): [str(r) for r in refs] for s, refs in sorted(repo.referrers.items())
                    },
                    "manifests": sorted(str(d) for d in repo.manifests),
                }
                for name, repo in sorted(self.repositories.items())
            },
            "manifests": {
                str(d): {
                    "media_type": rec.media_type,
                    "size": rec.size,
                    "children": [str(c) for c in rec.children],
                    "blobs": [str(b) for b in rec.blobs],
                    "subject": str(rec.subject) if rec.subject else None,
                }
                for d, rec in sorted(self.manifests.items())
            },
            "blobs": {str(d): size for d, size in sorted(self.blobs.items())},
            "skipped": [
                {"repository": s.repository, "tag": s.tag, "reason": s.reason} for s in self.skipped
            ],
        }

    def to_json(self) -> dict[str, Any]:
        """The whole document: body, its digest, and the signature when there is one."""
        doc = self.body()
        doc["index_digest"] = str(self.digest)
        if self.signature is not None:
            doc["signature"] = {
                "algorithm": self.signature.algorithm,
                "key_id": self.signature.key_id,
                "value": self.signature.value,
            }
        return doc

    def to_bytes(self) -> bytes:
        """
        The stored form: canonical JSON, gzip with a zero mtime (same snapshot, same bytes).

        Whole, for small indexes and tests; `drd.snapshot.encode.index_chunks` streams it.
        """
        return b"".join(index_chunks(self))

    def summary(self) -> dict[str, Any]:
        """Counts for listings and logs."""
        return {
            "id": self.id,
            "source": self.source,
            "taken_at": as_utc(self.taken_at).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "repositories": len(self.repositories),
            "tags": self.tag_count,
            "manifests": len(self.manifests),
            "blobs": len(self.blobs),
            "blob_bytes": sum(self.blobs.values()),
            "blobs_stored": self.blobs_stored,
            "metadata_blobs": len(self.metadata_blobs or ()),
            "signed": self.signature is not None,
            "skipped": len(self.skipped),
            "settings_files": len(self.settings),
            "digest": str(self.digest),
        }


def encode_document(doc: Mapping[str, Any]) -> bytes:
    """
    Gzip an index document as given, with ``index_digest`` recomputed over its body.

    For tools and tests that build a document by hand; `Snapshot.to_bytes` is the
    normal path.
    """
    body = {k: v for k, v in doc.items() if k not in ("index_digest", "signature")}
    out = dict(doc)
    out["index_digest"] = str(Digest.of(canonical_json(body)))
    return gzip.compress(canonical_json(out), mtime=0)


def as_utc(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ValueError("snapshot times must be timezone-aware")
    return when.astimezone(dt.UTC)


# --------------------------------------------------------------------------- parsing


def parse_index(data: bytes, *, key: str = "") -> Snapshot:
    """
    Parse a stored (gzipped) index as untrusted input: `drd.snapshot.reader.parse_index`.

    Raises `SnapshotCorrupt` naming the offending path.
    """
    # Imported here: the reader builds on this module.
    from drd.snapshot.reader import parse_index as parse

    return parse(data, key=key)


def referenced_objects(snapshots: Sequence[Snapshot]) -> set[str]:
    """Every store key some snapshot in *snapshots* needs."""
    keys: set[str] = set()
    for snap in snapshots:
        keys |= snap.object_keys()
    return keys


def record_of(manifest: Manifest) -> ManifestRecord:
    """The index record for *manifest*: its type, size, children, blobs and subject."""
    return ManifestRecord(
        media_type=manifest.media_type,
        size=len(manifest.raw),
        children=tuple(dict.fromkeys(d.digest for d in manifest.manifests)),
        blobs=tuple(dict.fromkeys(d.digest for d in manifest.blobs)),
        subject=manifest.subject.digest if manifest.subject else None,
    )
