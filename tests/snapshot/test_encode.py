"""
The streamed index (`drd.snapshot.encode`, `drd.snapshot.reader`) against the whole
document: the same bytes, the same digest, the same snapshot back, at any size.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib

import pytest

from drd.errors import SnapshotCorrupt
from drd.oci.digest import Digest
from drd.snapshot.encode import body_digest, canonical_json, index_chunks
from drd.snapshot.model import (
    ManifestRecord,
    RepositoryRecord,
    Skipped,
    Snapshot,
    encode_document,
    snapshot_id,
)
from drd.snapshot.reader import IndexReader, parse_index
from tests.snapshot.test_model import sample

T0 = dt.datetime(2026, 12, 5, 1, 2, 3, 456789, tzinfo=dt.UTC)
OCI = "application/vnd.oci.image.manifest.v1+json"


def large(tags: int) -> Snapshot:
    """*tags* tags in repositories of 100, each its own manifest over shared blobs."""
    bases = [Digest.of(f"base/{i}".encode()) for i in range(4)]
    blobs = {b: 4096 for b in bases}
    repositories, manifests = {}, {}
    for r in range(max(tags // 100, 1)):
        config = Digest.of(f"config/{r}".encode())
        blobs[config] = 300 + r
        tag_map = {}
        for t in range(min(tags, 100)):
            digest = Digest.of(f"{r}/{t}".encode())
            manifests[digest] = ManifestRecord(OCI, 700 + t, blobs=(config, bases[t % 4]))
            tag_map[f"v{t}.{r}"] = digest
        repositories[f"team-{r}/app"] = RepositoryRecord(tag_map, frozenset(tag_map.values()))
    return Snapshot(
        id=snapshot_id(T0),
        source="primary",
        taken_at=T0,
        repositories=repositories,
        manifests=manifests,
        blobs=blobs,
        source_url="https://registry.example.com/ünïcode",
        duration_s=3.25,
        skipped=(Skipped("team-0/app", "gone", "manifest is gone — “moved”"),),
        metadata_blobs=frozenset(blobs) - set(bases),
    )


def whole(snapshot: Snapshot) -> bytes:
    """The stored form as the whole-document encoder made it before streaming."""
    return gzip.compress(canonical_json(snapshot.to_json()), mtime=0)


@pytest.mark.parametrize("tags", [1, 300, 20_000])
def test_the_streamed_index_is_the_whole_document_byte_for_byte(tags: int) -> None:
    """Chunked gzip of pieces gives the bytes, and the digest, of the whole document."""
    snap = large(tags)
    chunks = list(index_chunks(snap))
    assert b"".join(chunks) == whole(snap)
    assert snap.digest == Digest.of(canonical_json(snap.body()))
    assert body_digest(snap) == snap.digest
    if tags == 20_000:
        assert len(chunks) > 1  # really streamed, not one piece


def test_the_sample_index_is_the_whole_document_byte_for_byte() -> None:
    """The model tests' sample (an index, a signature tag, two repositories) too."""
    assert sample().to_bytes() == whole(sample())


def test_a_streamed_read_gives_back_the_same_snapshot() -> None:
    """Fed in small uneven chunks, the reader returns what was written."""
    snap = large(2_000)
    data = snap.to_bytes()
    reader = IndexReader(key=snap.key)
    for start in range(0, len(data), 777):
        reader.feed(data[start : start + 777])
    back = reader.close()
    assert back == snap
    assert back.digest == snap.digest
    assert hashlib.sha256(back.to_bytes()).digest() == hashlib.sha256(data).digest()


def test_a_read_shares_one_object_per_digest() -> None:
    """A digest named many times (a shared config) is one object in the snapshot read."""
    back = parse_index(large(300).to_bytes())
    configs = {id(rec.blobs[0]) for rec in back.manifests.values()}
    assert len(configs) == 3
    tagged = next(iter(back.repositories.values())).tags
    assert all(d is next(k for k in back.manifests if k == d) for d in tagged.values())


@pytest.mark.parametrize(
    ("doc_edit", "message"),
    [
        pytest.param(lambda doc: doc.pop("manifests"), "manifests must be dict", id="no-manifests"),
        pytest.param(lambda doc: doc.update(manifests=[]), "manifests must be dict", id="list"),
        pytest.param(lambda doc: doc.update(skipped={}), "skipped must be list", id="skipped"),
        pytest.param(lambda doc: doc.update(schema_version=2), "not supported", id="v2-first"),
    ],
)
def test_a_misshapen_member_is_named(doc_edit: object, message: str) -> None:
    """A large member of the wrong shape is reported by name; the schema before entries."""
    doc = sample().to_json()
    if message == "not supported":
        doc["blobs"] = {"not-a-digest": 1}  # a bad entry, reported after the schema version
    doc_edit(doc)  # type: ignore[operator]
    with pytest.raises(SnapshotCorrupt, match=message):
        parse_index(encode_document(doc))


def test_trailing_json_is_not_an_index() -> None:
    """A second document after the first is refused, not ignored."""
    data = gzip.compress(canonical_json(sample().to_json()) + b" {}", mtime=0)
    with pytest.raises(SnapshotCorrupt, match="not JSON"):
        parse_index(data)
