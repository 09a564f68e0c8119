"""
The snapshot index: schema, canonical encoding, object keys. Pure. (`drd.snapshot.diff`
compares two indexes; `drd.snapshot.retention` chooses which to keep.)

A snapshot index is a schema-versioned JSON document, gzip-compressed, that names
every repository, every tag → digest, every referrer, and the digest, media type
and size of every manifest and blob it references, and (optional field ``settings``,
absent from indexes without it, so older indexes read and hash as before) the
registry settings files recorded with it. It carries the sha256 of its
own canonical body (``index_digest``) and, optionally, a signature over that
digest. Indexes read back from a store are untrusted input: `parse_index`
validates every name, tag, digest and cross-reference before anything uses it.

Object keys, relative to the store's root::

    manifests/sha256/<hex>                                    content-addressed
    blobs/sha256/<hex>                                        content-addressed
    settings/sha256/<hex>                                     content-addressed
    snapshots/<source>/<YYYY>/<MM>/<DD>/<id>.json.gz          one per snapshot
    snapshots/<source>/latest.json                            a convenience pointer

Over 500 lines because the parser checks every field of an index read from a store
that may be hostile, path by path, with the message a user sees.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drd.errors import InvalidReference, SnapshotCorrupt
from drd.oci.digest import Digest
from drd.oci.manifest import MAX_MANIFEST_BYTES, Manifest
from drd.oci.ref import validate_repository, validate_tag
from drd.snapshot.settings import KINDS, SettingsRecord, check_settings_path

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

    @property
    def digest(self) -> Digest:
        """The sha256 of the canonical body: what a signature covers."""
        return Digest.of(canonical_json(self.body()))

    @property
    def tag_count(self) -> int:
        """How many tags, over all repositories."""
        return sum(len(r.tags) for r in self.repositories.values())

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
        """The stored form: canonical JSON, gzip with a zero mtime (same snapshot, same bytes)."""
        return gzip.compress(canonical_json(self.to_json()), mtime=0)

    def summary(self) -> dict[str, Any]:
        """Counts for listings and logs."""
        return {
            "id": self.id,
            "source": self.source,
            "taken_at": self.body()["taken_at"],
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


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: one byte string per value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


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


def decompress_index(data: bytes, *, where: str = "") -> bytes:
    """Gunzip *data*, refusing more than `MAX_INDEX_BYTES` of output."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_INDEX_BYTES + 1)
    except zlib.error as exc:
        raise SnapshotCorrupt(f"snapshot index {where} is not gzip: {exc}", key=where) from exc
    if len(out) > MAX_INDEX_BYTES or inflater.unconsumed_tail:
        raise SnapshotCorrupt(
            f"snapshot index {where} inflates past {MAX_INDEX_BYTES} bytes", key=where
        )
    if not inflater.eof:
        raise SnapshotCorrupt(f"snapshot index {where} is truncated", key=where)
    return out


def parse_index(data: bytes, *, key: str = "") -> Snapshot:
    """
    Parse a stored (gzipped) index as untrusted input.

    Every repository name, tag and digest is validated, every cross-reference is
    checked (tags and referrers point at listed manifests, children and blobs are
    listed), and the body must hash to ``index_digest``. When *key* is given, the
    index must name the source and id its key says. Raises `SnapshotCorrupt`
    naming the offending path. The signature, if any, is parsed, not verified.
    """
    where = key or "(unnamed)"
    raw = decompress_index(data, where=where)
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SnapshotCorrupt(f"snapshot index {where} is not JSON: {exc}", key=key) from exc
    try:
        snapshot = _parse_document(doc)
    except _Bad as exc:
        raise SnapshotCorrupt(f"snapshot index {where}: {exc}", key=key) from None
    if key:
        named = parse_index_key(key)
        if named != (snapshot.source, snapshot.id):
            raise SnapshotCorrupt(
                f"snapshot index {where} claims to be {snapshot.source}/{snapshot.id}", key=key
            )
    return snapshot


class _Bad(Exception):
    """A validation failure inside the document; the message names the path."""


def _get(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], path: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise _Bad(f"{path}{name} must be {expected}")
    return value


def _digest(text: Any, path: str) -> Digest:
    try:
        return Digest.parse(text)
    except InvalidReference as exc:
        raise _Bad(f"{path}: {exc}") from None


def _digests(items: Any, path: str) -> tuple[Digest, ...]:
    if not isinstance(items, list):
        raise _Bad(f"{path} must be a list of digests")
    return tuple(_digest(v, f"{path}[{i}]") for i, v in enumerate(items))


def _size(value: Any, path: str, limit: int = MAX_OBJECT_SIZE) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise _Bad(f"{path} must be an integer from 0 to {limit}")
    return value


def _parse_document(doc: Any) -> Snapshot:
    if not isinstance(doc, dict):
        raise _Bad("the document is not a JSON object")
    if doc.get("kind") != KIND:
        raise _Bad(f"kind must be {KIND!r}")
    version = _get(doc, "schema_version", int, "")
    if version != SCHEMA_VERSION:
        raise _Bad(f"schema_version {version} is not supported (this drd reads {SCHEMA_VERSION})")
    snap_id = _get(doc, "id", str, "")
    try:
        taken_id = parse_snapshot_id(snap_id)
        source = validate_source(_get(doc, "source", str, ""))
    except InvalidReference as exc:
        raise _Bad(str(exc)) from None
    taken_at = _parse_time(_get(doc, "taken_at", str, ""))
    if taken_at != taken_id:
        raise _Bad(f"taken_at {doc['taken_at']!r} disagrees with id {snap_id!r}")
    duration = _get(doc, "duration_s", (int, float), "")
    if isinstance(duration, bool) or not 0 <= duration < 10**9:
        raise _Bad("duration_s must be a non-negative number")
    blobs_stored = _get(doc, "blobs_stored", bool, "")
    source_url = _get(doc, "source_url", str, "")

    manifests = _parse_manifests(_get(doc, "manifests", dict, ""))
    blobs = {
        _digest(d, f"blobs[{d[:80]!r}]"): _size(size, f"blobs[{d[:80]!r}]")
        for d, size in _get(doc, "blobs", dict, "").items()
    }
    for digest, rec in manifests.items():
        for child in rec.children:
            if child not in manifests:
                raise _Bad(f"manifest {digest} lists child {child}, which the index does not hold")
        for blob in rec.blobs:
            if blob not in blobs:
                raise _Bad(f"manifest {digest} needs blob {blob}, which the index does not list")
    metadata_blobs = None
    if "metadata_blobs" in doc:
        metadata_blobs = frozenset(_digests(doc["metadata_blobs"], "metadata_blobs"))
        for blob in metadata_blobs:
            if blob not in blobs:
                raise _Bad(f"metadata_blobs lists {blob}, which the index does not list")
    repositories = {
        name: _parse_repository(name, value, manifests)
        for name, value in _get(doc, "repositories", dict, "").items()
    }
    skipped = tuple(_parse_skipped(i, s) for i, s in enumerate(_get(doc, "skipped", list, "")))
    signature = _parse_signature(doc.get("signature"))
    settings = _parse_settings(doc.get("settings", []))
    snapshot = Snapshot(
        id=snap_id,
        source=source,
        taken_at=taken_at,
        repositories=repositories,
        manifests=manifests,
        blobs=blobs,
        blobs_stored=blobs_stored,
        source_url=source_url,
        duration_s=float(duration),
        skipped=skipped,
        signature=signature,
        metadata_blobs=metadata_blobs,
        settings=settings,
    )
    claimed = _digest(_get(doc, "index_digest", str, ""), "index_digest")
    body = {k: v for k, v in doc.items() if k not in ("index_digest", "signature")}
    actual = Digest.of(canonical_json(body))
    if actual != claimed:
        raise _Bad(f"the body hashes to {actual}, not its index_digest {claimed}")
    if snapshot.digest != claimed:
        raise _Bad("the body is not in canonical form (unknown or duplicated fields)")
    return snapshot


def _parse_time(text: str) -> dt.datetime:
    try:
        when = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        raise _Bad(f"taken_at {text[:40]!r} is not a UTC timestamp") from None
    if not text.endswith("Z"):
        raise _Bad(f"taken_at {text[:40]!r} is not in UTC")
    return when.astimezone(dt.UTC)


def _parse_manifests(raw: dict[str, Any]) -> dict[Digest, ManifestRecord]:
    out: dict[Digest, ManifestRecord] = {}
    for text, rec in raw.items():
        path = f"manifests[{text[:80]!r}]"
        digest = _digest(text, path)
        if not isinstance(rec, dict):
            raise _Bad(f"{path} must be an object")
        media_type = _get(rec, "media_type", str, f"{path}.")
        if not valid_media_type(media_type):
            raise _Bad(f"{path}.media_type {media_type[:80]!r} is not a media type")
        subject = rec.get("subject")
        out[digest] = ManifestRecord(
            media_type=media_type,
            size=_size(rec.get("size"), f"{path}.size", MAX_MANIFEST_BYTES),
            children=_digests(rec.get("children"), f"{path}.children"),
            blobs=_digests(rec.get("blobs"), f"{path}.blobs"),
            subject=_digest(subject, f"{path}.subject") if subject is not None else None,
        )
    return out


def _parse_repository(
    name: str, value: Any, manifests: Mapping[Digest, ManifestRecord]
) -> RepositoryRecord:
    path = f"repositories[{name[:80]!r}]"
    try:
        validate_repository(name)
    except InvalidReference as exc:
        raise _Bad(f"{path}: {exc}") from None
    if not isinstance(value, dict):
        raise _Bad(f"{path} must be an object")
    members = frozenset(_digests(value.get("manifests"), f"{path}.manifests"))
    for digest in members:
        if digest not in manifests:
            raise _Bad(f"{path}.manifests lists {digest}, which the index does not hold")
    tags: dict[str, Digest] = {}
    for tag, text in _get(value, "tags", dict, f"{path}.").items():
        try:
            validate_tag(tag)
        except InvalidReference as exc:
            raise _Bad(f"{path}.tags: {exc}") from None
        digest = _digest(text, f"{path}.tags[{tag!r}]")
        if digest not in members:
            raise _Bad(f"{path}.tags[{tag!r}] points at {digest}, which the repository lacks")
        tags[tag] = digest
    referrers: dict[Digest, tuple[Digest, ...]] = {}
    for text, refs in _get(value, "referrers", dict, f"{path}.").items():
        subject = _digest(text, f"{path}.referrers")
        listed = _digests(refs, f"{path}.referrers[{text[:80]!r}]")
        for ref in listed:
            if ref not in members:
                raise _Bad(f"{path}.referrers lists {ref}, which the repository lacks")
        referrers[subject] = listed
    return RepositoryRecord(tags=tags, manifests=members, referrers=referrers)


def _parse_skipped(i: int, value: Any) -> Skipped:
    path = f"skipped[{i}]"
    if not isinstance(value, dict):
        raise _Bad(f"{path} must be an object")
    return Skipped(
        repository=_get(value, "repository", str, f"{path}.")[:255],
        tag=_get(value, "tag", str, f"{path}.")[:255],
        reason=_get(value, "reason", str, f"{path}.")[:1000],
    )


def _parse_settings(value: Any) -> tuple[SettingsRecord, ...]:
    if not isinstance(value, list):
        raise _Bad("settings must be a list")
    out: list[SettingsRecord] = []
    for i, item in enumerate(value):
        path = f"settings[{i}]"
        if not isinstance(item, dict):
            raise _Bad(f"{path} must be an object")
        name = _get(item, "path", str, f"{path}.")
        try:
            check_settings_path(name)
        except ValueError as exc:
            raise _Bad(f"{path}: {exc}") from None
        kind = _get(item, "kind", str, f"{path}.")
        if kind not in KINDS:
            raise _Bad(f"{path}.kind must be one of {', '.join(KINDS)}")
        mode = _size(item.get("mode"), f"{path}.mode", 0o7777)
        stored = _get(item, "stored", bool, f"{path}.")
        out.append(
            SettingsRecord(
                path=name,
                kind=kind,
                mode=mode,
                size=_size(item.get("size"), f"{path}.size"),
                digest=_digest(item.get("digest"), f"{path}.digest"),
                stored=stored,
            )
        )
    paths = [r.path for r in out]
    if paths != sorted(set(paths)):
        raise _Bad("settings must be sorted by path, each path once")
    return tuple(out)


def _parse_signature(value: Any) -> Signature | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Bad("signature must be an object")
    return Signature(
        algorithm=_get(value, "algorithm", str, "signature.")[:40],
        key_id=_get(value, "key_id", str, "signature.")[:128],
        value=_get(value, "value", str, "signature.")[:4096],
    )


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
