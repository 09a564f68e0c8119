"""
The snapshot index encoded as a stream of pieces. Pure.

The stored form is ``canonical_json(snapshot.to_json())`` gzipped with a zero mtime;
this module produces the same bytes piece by piece, so that neither the document, nor
its JSON text, nor the gzip bytes are ever whole in memory. Large members (manifests,
blobs, repositories) are written one entry at a time; each entry, and every small
member, goes through `canonical_json`, so key order and string escapes are the
standard library's. `tests/snapshot/test_encode.py` holds it to the dict form.

The body (the document without ``index_digest`` and ``signature``) is hashed in one
pass; the document, which carries that digest in the middle of its sorted keys, is
written in a second.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from drd.oci.digest import Digest

if TYPE_CHECKING:
    from drd.snapshot.model import ManifestRecord, RepositoryRecord, Snapshot

# JSON text is handed to the compressor this much at a time.
_FEED = 256 * 1024
# Compressed output is handed on at least this much at a time (the last piece less).
_OUT = 1024 * 1024


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: one byte string per value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


_canonical = canonical_json


def body_pieces(snapshot: Snapshot) -> Iterator[bytes]:
    """The canonical JSON of ``snapshot.body()``, in pieces."""
    return _members(_body_members(snapshot))


def document_pieces(snapshot: Snapshot, digest: Digest) -> Iterator[bytes]:
    """The canonical JSON of ``snapshot.to_json()`` (with *digest* as its body's), in pieces."""
    members = dict(_body_members(snapshot))
    members["index_digest"] = _canonical(str(digest))
    if (sig := snapshot.signature) is not None:
        signed = {"algorithm": sig.algorithm, "key_id": sig.key_id, "value": sig.value}
        members["signature"] = _canonical(signed)
    return _members(members.items())


def body_digest(snapshot: Snapshot) -> Digest:
    """The sha256 of the canonical body, hashed as it is encoded: the index digest."""
    hasher = hashlib.sha256()
    for piece in body_pieces(snapshot):
        hasher.update(piece)
    return Digest("sha256", hasher.hexdigest())


def index_chunks(snapshot: Snapshot, digest: Digest | None = None) -> Iterator[bytes]:
    """The stored (gzipped) index in chunks of about 1 MiB; *digest* saves hashing again."""
    return gzip_chunks(document_pieces(snapshot, digest or snapshot.digest))


def gzip_chunks(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """
    *pieces* gzipped as `gzip.compress(b"".join(pieces), mtime=0)` would, in chunks.

    That function is ``zlib.compress(data, 9, wbits=31)``; a compressor fed the same
    bytes in any split produces the same stream.
    """
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    pending: list[bytes] = []
    held = 0
    out = bytearray()
    for piece in pieces:
        pending.append(piece)
        held += len(piece)
        if held >= _FEED:
            out += deflate.compress(b"".join(pending))
            pending, held = [], 0
            if len(out) >= _OUT:
                yield bytes(out)
                out.clear()
    out += deflate.compress(b"".join(pending))
    out += deflate.flush()
    yield bytes(out)


# --------------------------------------------------------------------------- members

_Member = tuple[str, "bytes | Iterable[bytes]"]


def _members(members: Iterable[_Member]) -> Iterator[bytes]:
    """``{"key":value,…}`` with keys sorted; a value is bytes or an iterable of pieces."""
    yield b"{"
    for i, (key, value) in enumerate(sorted(members, key=lambda m: m[0])):
        yield (b"," if i else b"") + _canonical(key) + b":"
        if isinstance(value, bytes):
            yield value
        else:
            yield from value
    yield b"}"


def _same(value: Any) -> Any:
    return value


def _body_members(snapshot: Snapshot) -> list[_Member]:
    # Imported here: the model imports this module.
    from drd.snapshot.model import KIND, SCHEMA_VERSION, as_utc

    s = snapshot
    small: dict[str, Any] = {
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "id": s.id,
        "source": s.source,
        "source_url": s.source_url,
        "taken_at": as_utc(s.taken_at).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "duration_s": round(s.duration_s, 3),
        "blobs_stored": s.blobs_stored,
        "skipped": [
            {"repository": k.repository, "tag": k.tag, "reason": k.reason} for k in s.skipped
        ],
    }
    if s.metadata_blobs is not None:
        # Only when recorded: an older index keeps hashing to its own digest.
        small["metadata_blobs"] = sorted(str(d) for d in s.metadata_blobs)
    if s.settings:
        small["settings"] = [r.to_json() for r in s.settings]
    members: list[_Member] = [(k, _canonical(v)) for k, v in small.items()]
    members.append(("repositories", _map(s.repositories.items(), _repository)))
    members.append(("manifests", _map(((str(d), r) for d, r in s.manifests.items()), _manifest)))
    members.append(("blobs", _map(((str(d), n) for d, n in s.blobs.items()), _same)))
    return members


def _map(entries: Iterable[tuple[str, Any]], encode: Callable[[Any], Any]) -> Iterator[bytes]:
    """``{"key":encode(value),…}``, keys sorted as `json.dumps` sorts them, encoded one by one."""
    yield b"{"
    for i, (key, value) in enumerate(sorted(entries, key=itemgetter(0))):
        yield (b"," if i else b"") + _canonical(key) + b":" + _canonical(encode(value))
    yield b"}"


def _repository(repo: RepositoryRecord) -> dict[str, Any]:
    return {
        "tags": {tag: str(d) for tag, d in repo.tags.items()},
        "referrers": {str(s): [str(r) for r in refs] for s, refs in repo.referrers.items()},
        "manifests": sorted(str(d) for d in repo.manifests),
    }


def _manifest(rec: ManifestRecord) -> dict[str, Any]:
    return {
        "media_type": rec.media_type,
        "size": rec.size,
        "children": [str(c) for c in rec.children],
        "blobs": [str(b) for b in rec.blobs],
        "subject": str(rec.subject) if rec.subject else None,
    }
