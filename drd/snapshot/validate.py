"""
Validate the parts of a snapshot index read from a store, which may be hostile. Pure.

`drd.snapshot.reader` hands each entry here as it is parsed; every function raises
`Bad` with the path of what is wrong, which the reader reports as `SnapshotCorrupt`.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Mapping
from typing import Any

from drd.errors import InvalidReference
from drd.oci.digest import Digest
from drd.oci.manifest import MAX_MANIFEST_BYTES
from drd.oci.ref import validate_repository, validate_tag
from drd.snapshot.model import (
    KIND,
    MAX_OBJECT_SIZE,
    SCHEMA_VERSION,
    ManifestRecord,
    RepositoryRecord,
    Signature,
    Skipped,
    parse_snapshot_id,
    valid_media_type,
    validate_source,
)
from drd.snapshot.settings import KINDS, SettingsRecord, check_settings_path

ParseDigest = Callable[[Any, str], Digest]


class Bad(Exception):
    """A validation failure inside the document; the message names the path."""


class Digests:
    """Parses digests, one object per distinct digest: an index names most of them often."""

    def __init__(self) -> None:
        self._seen: dict[str, Digest] = {}

    def parse(self, text: Any, path: str) -> Digest:
        """The digest *text* names; `Bad` naming *path* when it is not one."""
        if isinstance(text, str) and (known := self._seen.get(text)) is not None:
            return known
        found = digest(text, path)
        self._seen[text] = found
        return found


def get(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], path: str) -> Any:
    """``obj[name]`` when it is a *kind*; else `Bad`."""
    value = obj.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise Bad(f"{path}{name} must be {expected}")
    return value


def digest(text: Any, path: str) -> Digest:
    """Parse one digest."""
    try:
        return Digest.parse(text)
    except InvalidReference as exc:
        raise Bad(f"{path}: {exc}") from None


def digests(items: Any, path: str, parse: ParseDigest = digest) -> tuple[Digest, ...]:
    """Parse a list of digests."""
    if not isinstance(items, list):
        raise Bad(f"{path} must be a list of digests")
    return tuple(parse(item, f"{path}[{i}]") for i, item in enumerate(items))


def size(value: Any, path: str, limit: int = MAX_OBJECT_SIZE) -> int:
    """A byte count from 0 to *limit*."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise Bad(f"{path} must be an integer from 0 to {limit}")
    return value


def head_fields(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar fields of the document, checked, as `Snapshot` keyword arguments."""
    if doc.get("kind") != KIND:
        raise Bad(f"kind must be {KIND!r}")
    version = get(doc, "schema_version", int, "")
    if version != SCHEMA_VERSION:
        raise Bad(f"schema_version {version} is not supported (this drd reads {SCHEMA_VERSION})")
    snap_id = get(doc, "id", str, "")
    try:
        taken_id = parse_snapshot_id(snap_id)
        source = validate_source(get(doc, "source", str, ""))
    except InvalidReference as exc:
        raise Bad(str(exc)) from None
    taken_at = _time(get(doc, "taken_at", str, ""))
    if taken_at != taken_id:
        raise Bad(f"taken_at {doc['taken_at']!r} disagrees with id {snap_id!r}")
    duration = get(doc, "duration_s", (int, float), "")
    if isinstance(duration, bool) or not 0 <= duration < 10**9:
        raise Bad("duration_s must be a non-negative number")
    return {
        "id": snap_id,
        "source": source,
        "taken_at": taken_at,
        "duration_s": float(duration),
        "blobs_stored": get(doc, "blobs_stored", bool, ""),
        "source_url": get(doc, "source_url", str, ""),
    }


def _time(text: str) -> dt.datetime:
    try:
        when = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        raise Bad(f"taken_at {text[:40]!r} is not a UTC timestamp") from None
    if not text.endswith("Z"):
        raise Bad(f"taken_at {text[:40]!r} is not in UTC")
    return when.astimezone(dt.UTC)


def manifest_entry(
    text: str, rec: Any, parse: ParseDigest = digest
) -> tuple[Digest, ManifestRecord]:
    """One ``manifests`` entry."""
    path = f"manifests[{text[:80]!r}]"
    found = parse(text, path)
    if not isinstance(rec, dict):
        raise Bad(f"{path} must be an object")
    media_type = get(rec, "media_type", str, f"{path}.")
    if not valid_media_type(media_type):
        raise Bad(f"{path}.media_type {media_type[:80]!r} is not a media type")
    subject = rec.get("subject")
    return found, ManifestRecord(
        media_type=sys.intern(media_type),  # a handful of types, named by every manifest
        size=size(rec.get("size"), f"{path}.size", MAX_MANIFEST_BYTES),
        children=digests(rec.get("children"), f"{path}.children", parse),
        blobs=digests(rec.get("blobs"), f"{path}.blobs", parse),
        subject=parse(subject, f"{path}.subject") if subject is not None else None,
    )


def repository_entry(name: str, value: Any, parse: ParseDigest = digest) -> RepositoryRecord:
    """One ``repositories`` entry; what it points at is checked by `check_repository`."""
    path = f"repositories[{name[:80]!r}]"
    try:
        validate_repository(name)
    except InvalidReference as exc:
        raise Bad(f"{path}: {exc}") from None
    if not isinstance(value, dict):
        raise Bad(f"{path} must be an object")
    members = frozenset(digests(value.get("manifests"), f"{path}.manifests", parse))
    tags: dict[str, Digest] = {}
    for tag, text in get(value, "tags", dict, f"{path}.").items():
        try:
            validate_tag(tag)
        except InvalidReference as exc:
            raise Bad(f"{path}.tags: {exc}") from None
        found = parse(text, f"{path}.tags[{tag!r}]")
        if found not in members:
            raise Bad(f"{path}.tags[{tag!r}] points at {found}, which the repository lacks")
        tags[tag] = found
    referrers: dict[Digest, tuple[Digest, ...]] = {}
    for text, refs in get(value, "referrers", dict, f"{path}.").items():
        subject = parse(text, f"{path}.referrers")
        listed = digests(refs, f"{path}.referrers[{text[:80]!r}]", parse)
        for ref in listed:
            if ref not in members:
                raise Bad(f"{path}.referrers lists {ref}, which the repository lacks")
        referrers[subject] = listed
    return RepositoryRecord(tags=tags, manifests=members, referrers=referrers)


def check_repository(
    name: str, repo: RepositoryRecord, manifests: Mapping[Digest, ManifestRecord]
) -> None:
    """Every manifest *repo* holds is one the index holds."""
    for member in repo.manifests:
        if member not in manifests:
            path = f"repositories[{name[:80]!r}]"
            raise Bad(f"{path}.manifests lists {member}, which the index does not hold")


def check_graph(
    manifests: Mapping[Digest, ManifestRecord],
    blobs: Mapping[Digest, int],
    metadata_blobs: frozenset[Digest] | None,
) -> None:
    """Children are held, blobs and metadata blobs are listed."""
    for found, rec in manifests.items():
        for child in rec.children:
            if child not in manifests:
                raise Bad(f"manifest {found} lists child {child}, which the index does not hold")
        for blob in rec.blobs:
            if blob not in blobs:
                raise Bad(f"manifest {found} needs blob {blob}, which the index does not list")
    for blob in metadata_blobs or ():
        if blob not in blobs:
            raise Bad(f"metadata_blobs lists {blob}, which the index does not list")


def skipped_entry(i: int, value: Any) -> Skipped:
    """One ``skipped`` entry."""
    path = f"skipped[{i}]"
    if not isinstance(value, dict):
        raise Bad(f"{path} must be an object")
    return Skipped(
        repository=get(value, "repository", str, f"{path}.")[:255],
        tag=get(value, "tag", str, f"{path}.")[:255],
        reason=get(value, "reason", str, f"{path}.")[:1000],
    )


def settings(value: Any, parse: ParseDigest = digest) -> tuple[SettingsRecord, ...]:
    """The ``settings`` list."""
    if not isinstance(value, list):
        raise Bad("settings must be a list")
    out: list[SettingsRecord] = []
    for i, item in enumerate(value):
        path = f"settings[{i}]"
        if not isinstance(item, dict):
            raise Bad(f"{path} must be an object")
        name = get(item, "path", str, f"{path}.")
        try:
            check_settings_path(name)
        except ValueError as exc:
            raise Bad(f"{path}: {exc}") from None
        kind = get(item, "kind", str, f"{path}.")
        if kind not in KINDS:
            raise Bad(f"{path}.kind must be one of {', '.join(KINDS)}")
        mode = size(item.get("mode"), f"{path}.mode", 0o7777)
        stored = get(item, "stored", bool, f"{path}.")
        out.append(
            SettingsRecord(
                path=name,
                kind=kind,
                mode=mode,
                size=size(item.get("size"), f"{path}.size"),
                digest=parse(item.get("digest"), f"{path}.digest"),
                stored=stored,
            )
        )
    paths = [r.path for r in out]
    if paths != sorted(set(paths)):
        raise Bad("settings must be sorted by path, each path once")
    return tuple(out)


def signature(value: Any) -> Signature | None:
    """The ``signature`` object, parsed (not verified)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Bad("signature must be an object")
    return Signature(
        algorithm=get(value, "algorithm", str, "signature.")[:40],
        key_id=get(value, "key_id", str, "signature.")[:128],
        value=get(value, "value", str, "signature.")[:4096],
    )
