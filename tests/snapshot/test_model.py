"""The snapshot index as a pure value: keys, encoding, hostile input, diff, retention."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from typing import Any

import pytest

from drd.errors import InvalidReference, SnapshotCorrupt
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.snapshot import model
from drd.snapshot.diff import diff
from drd.snapshot.model import (
    ManifestRecord,
    RepositoryRecord,
    Snapshot,
    blob_key,
    encode_document,
    index_key,
    manifest_key,
    object_digest,
    parse_index,
    parse_index_key,
    parse_snapshot_id,
    record_of,
    snapshot_id,
)
from drd.snapshot.retention import select_retention
from tests.images import make_image, make_index

T0 = dt.datetime(2024, 5, 1, 9, 30, 0, 123456, tzinfo=dt.UTC)


def d(seed: str) -> Digest:
    """A digest named by *seed*."""
    return Digest.of(seed.encode())


def sample(taken_at: dt.datetime = T0, tags: dict[str, Digest] | None = None) -> Snapshot:
    """A two-repository snapshot: an index over one image, plus a signature tag."""
    image, index, sig = d("image"), d("index"), d("sig")
    layer, config = d("layer"), d("config")
    manifests = {
        image: ManifestRecord(model_type(), 400, blobs=(config, layer)),
        index: ManifestRecord("application/vnd.oci.image.index.v1+json", 300, children=(image,)),
        sig: ManifestRecord(model_type(), 250, blobs=(config,)),
    }
    app_tags = tags if tags is not None else {"v1": index, f"{index.tag_form}.sig": sig}
    return Snapshot(
        id=snapshot_id(taken_at),
        source="primary",
        taken_at=taken_at,
        repositories={
            "team/app": RepositoryRecord(tags=app_tags, manifests=frozenset(manifests)),
            "base/os": RepositoryRecord(tags={"latest": image}, manifests=frozenset({image})),
        },
        manifests=manifests,
        blobs={layer: 1000, config: 100},
        blobs_stored=True,
        source_url="https://registry.example.com",
        duration_s=1.5,
    )


def model_type() -> str:
    return "application/vnd.oci.image.manifest.v1+json"


def document(snapshot: Snapshot | None = None) -> dict[str, Any]:
    """The JSON document of *snapshot* (default: `sample`), for editing into a hostile one."""
    return (snapshot or sample()).to_json()


# --------------------------------------------------------------------------- keys


def test_ids_are_utc_timestamps_that_round_trip() -> None:
    """A snapshot id is its UTC time to the microsecond, and parses back to that time."""
    local = T0.astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert snapshot_id(local) == "20240501T093000.123456Z"
    assert parse_snapshot_id("20240501T093000.123456Z") == T0


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("latest", id="word"),
        pytest.param("20240501T093000Z", id="no-micros"),
        pytest.param("20241301T093000.000000Z", id="month-13"),
        pytest.param("../20240501T093000.123456Z", id="traversal"),
    ],
)
def test_malformed_ids_are_rejected(text: str) -> None:
    """Anything but a real ``YYYYMMDDTHHMMSS.ffffffZ`` time is not an id."""
    with pytest.raises(InvalidReference):
        parse_snapshot_id(text)


def test_object_keys_follow_the_layout() -> None:
    """Manifests and blobs are content-addressed; indexes are dated per source."""
    digest = d("x")
    assert manifest_key(digest) == f"manifests/sha256/{digest.hex}"
    assert blob_key(digest) == f"blobs/sha256/{digest.hex}"
    assert object_digest(manifest_key(digest)) == ("manifests", digest)
    assert object_digest("manifests/sha256/abc") is None
    key = index_key("primary", "20240501T093000.123456Z")
    assert key == "snapshots/primary/2024/05/01/20240501T093000.123456Z.json.gz"
    assert parse_index_key(key) == ("primary", "20240501T093000.123456Z")


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(
            "snapshots/primary/2024/05/02/20240501T093000.123456Z.json.gz", id="wrong-day"
        ),
        pytest.param("snapshots/primary/2024/05/01/.20240501T093000.123456Z.json.gz", id="temp"),
        pytest.param("snapshots/primary/latest.json", id="pointer"),
        pytest.param("snapshots/../2024/05/01/20240501T093000.123456Z.json.gz", id="dots"),
    ],
)
def test_only_well_formed_index_keys_are_listed(key: str) -> None:
    """Temporary files, pointers and keys whose date disagrees with the id are not indexes."""
    assert parse_index_key(key) is None


def test_a_source_name_cannot_leave_its_key_segment() -> None:
    """Source names are single path segments."""
    with pytest.raises(InvalidReference):
        index_key("../etc", "20240501T093000.123456Z")


# --------------------------------------------------------------------------- encoding


def test_index_round_trips_byte_for_byte() -> None:
    """Encoding is canonical: parse(to_bytes(s)) == s, and the bytes are the same every time."""
    snap = sample()
    data = snap.to_bytes()
    assert data == sample().to_bytes()
    back = parse_index(data, key=snap.key)
    assert back == snap
    assert back.digest == snap.digest
    assert back.to_bytes() == data


def test_index_carries_its_own_digest() -> None:
    """``index_digest`` is the sha256 of the canonical body without digest and signature."""
    doc = json.loads(gzip.decompress(sample().to_bytes()))
    body = {k: v for k, v in doc.items() if k not in ("index_digest", "signature")}
    assert doc["index_digest"] == str(Digest.of(model.canonical_json(body)))
    assert doc["schema_version"] == 1
    assert doc["repositories"]["team/app"]["tags"]["v1"] == str(d("index"))


def test_record_of_a_manifest_lists_children_blobs_and_subject() -> None:
    """The index records an image's config and layers, an index's children, a subject."""
    image = make_image("rec", layers=2)
    index = make_index([image])
    rec = record_of(Manifest.parse(image.raw, image.media_type))
    assert rec.blobs == tuple(Digest.parse(str(b.digest)) for b in image.blobs)
    assert rec.size == len(image.raw)
    idx = record_of(Manifest.parse(index.raw, index.media_type))
    assert idx.children == (image.digest,)
    assert idx.blobs == ()


def _edit(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set a ``|``-separated path in *doc* (``~`` deletes)."""
    *parents, last = path.split("|")
    node: Any = doc
    for part in parents:
        node = node[part]
    if value == "~":
        del node[last]
    else:
        node[last] = value
    return doc


def _rename_repo(doc: dict[str, Any], name: str) -> dict[str, Any]:
    doc["repositories"][name] = doc["repositories"].pop("team/app")
    return doc


SHORT = "sha256:" + "a" * 63


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(lambda doc: _rename_repo(doc, "../etc"), "traversing", id="dotdot-repo"),
        pytest.param(
            lambda doc: _rename_repo(doc, "team/../../x"), "traversing", id="inner-dotdot"
        ),
        pytest.param(lambda doc: _rename_repo(doc, "/abs/app"), "absolute", id="absolute-repo"),
        pytest.param(lambda doc: _rename_repo(doc, "Team/App"), "grammar", id="uppercase-repo"),
        pytest.param(
            lambda doc: _edit(doc, "repositories|team/app|tags|v1", SHORT),
            "64 lower-case hex",
            id="short-digest",
        ),
        pytest.param(
            lambda doc: _edit(doc, "repositories|team/app|tags|v1", "md5:" + "a" * 32),
            "not supported",
            id="md5-digest",
        ),
        pytest.param(
            lambda doc: _edit(doc, "repositories|team/app|tags|bad tag", str(d("image"))),
            "tag grammar",
            id="bad-tag",
        ),
        pytest.param(
            lambda doc: _edit(doc, "repositories|team/app|tags|v2", str(d("nowhere"))),
            "lacks",
            id="tag-to-unlisted-manifest",
        ),
        pytest.param(
            lambda doc: _edit(doc, f"manifests|{d('index')}|children", [str(d("nowhere"))]),
            "does not hold",
            id="unlisted-child",
        ),
        pytest.param(
            lambda doc: _edit(doc, f"blobs|{d('layer')}", "~"),
            "does not list",
            id="unlisted-blob",
        ),
        pytest.param(
            lambda doc: _edit(doc, f"manifests|{d('image')}|size", -1),
            "integer",
            id="negative-size",
        ),
        pytest.param(
            lambda doc: _edit(doc, f"manifests|{d('image')}|media_type", "a b"),
            "media type",
            id="bad-media-type",
        ),
        pytest.param(lambda doc: _edit(doc, "schema_version", 2), "not supported", id="v2"),
        pytest.param(lambda doc: _edit(doc, "kind", "other"), "kind", id="kind"),
        pytest.param(
            lambda doc: _edit(doc, "taken_at", "2024-05-01T09:30:01.000000Z"),
            "disagrees",
            id="time-vs-id",
        ),
        pytest.param(lambda doc: _edit(doc, "extra", 1), "canonical", id="unknown-field"),
    ],
)
def test_hostile_indexes_are_rejected_with_the_reason(mutate: Any, message: str) -> None:
    """An index that names a bad repository, tag or digest, or lies about what it holds, fails."""
    doc = mutate(document())
    with pytest.raises(SnapshotCorrupt, match=message):
        parse_index(encode_document(doc))


def test_a_tampered_body_fails_its_own_digest() -> None:
    """Editing the body without recomputing ``index_digest`` is detected."""
    doc = document()
    doc["repositories"]["team/app"]["tags"]["v1"] = str(d("image"))
    data = gzip.compress(model.canonical_json(doc))
    with pytest.raises(SnapshotCorrupt, match="hashes to"):
        parse_index(data)


def test_an_index_must_be_what_its_key_says() -> None:
    """An index copied under another snapshot's key is refused."""
    snap = sample()
    other = index_key("primary", "20240502T000000.000000Z")
    with pytest.raises(SnapshotCorrupt, match="claims to be"):
        parse_index(snap.to_bytes(), key=other)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"not gzip", id="not-gzip"),
        pytest.param(gzip.compress(b"{")[:-4], id="truncated"),
        pytest.param(gzip.compress(b"[1, 2]"), id="not-an-object"),
        pytest.param(gzip.compress(b"\xff\xfe"), id="not-json"),
    ],
)
def test_garbage_is_rejected(data: bytes) -> None:
    """Bytes that are not a gzipped JSON object are a corrupt index."""
    with pytest.raises(SnapshotCorrupt):
        parse_index(data)


def test_a_gzip_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inflating past the size limit stops there instead of exhausting memory."""
    monkeypatch.setattr(model, "MAX_INDEX_BYTES", 10_000)
    with pytest.raises(SnapshotCorrupt, match="inflates past"):
        parse_index(gzip.compress(b" " * 20_000))


# --------------------------------------------------------------------------- diff


def test_diff_names_added_removed_and_moved_tags() -> None:
    """A diff lists each tag change once, with before and after digests."""
    old = sample()
    tags = dict(old.repositories["team/app"].tags)
    tags.pop("v1")  # removed
    tags["v2"] = d("image")  # added
    new_repo = RepositoryRecord(tags=tags, manifests=old.repositories["team/app"].manifests)
    base = RepositoryRecord(tags={"latest": d("sig")}, manifests=frozenset({d("sig")}))
    new = Snapshot(
        id=snapshot_id(T0 + dt.timedelta(hours=1)),
        source="primary",
        taken_at=T0 + dt.timedelta(hours=1),
        repositories={"team/app": new_repo, "base/os": base},
        manifests=old.manifests,
        blobs=old.blobs,
    )
    change = diff(old, new)
    assert [(c.repository, c.tag, c.kind) for c in change.tags] == [
        ("base/os", "latest", "moved"),
        ("team/app", "v1", "removed"),
        ("team/app", "v2", "added"),
    ]
    assert change.of_kind("moved")[0].before == d("image")
    assert change.of_kind("moved")[0].after == d("sig")
    assert change.manifests_added == ()
    assert change.to_json()["tags"]["removed"][0]["before"] == str(d("index"))


def test_diff_of_a_snapshot_with_itself_is_empty() -> None:
    """Nothing changed, nothing listed."""
    change = diff(sample(), sample())
    assert change.tags == ()
    assert change.repositories_added == ()
    assert change.manifests_added == ()


# --------------------------------------------------------------------------- retention


def _series(*offsets_h: float) -> list[tuple[str, dt.datetime]]:
    return [(f"s{i}", T0 + dt.timedelta(hours=h)) for i, h in enumerate(offsets_h)]


@pytest.mark.parametrize(
    ("series", "policy", "kept"),
    [
        pytest.param(_series(0, 1, 2, 3), {"keep_last": 2}, {"s2", "s3"}, id="last-2"),
        pytest.param(
            _series(0, 1, 24, 25, 48),
            {"keep_last": 1, "keep_daily": 3},
            {"s1", "s3", "s4"},
            id="daily-newest-per-day",
        ),
        pytest.param(
            _series(0, 24 * 7, 24 * 8, 24 * 14),
            {"keep_last": 1, "keep_weekly": 2},
            {"s2", "s3"},
            id="weekly",
        ),
        pytest.param(_series(0, 1, 2), {}, {"s0", "s1", "s2"}, id="no-policy-keeps-all"),
        pytest.param(
            _series(0, 1),
            {"keep_daily": 0, "keep_last": 0, "keep_weekly": 1},
            {"s1"},
            id="newest-always",
        ),
        pytest.param([], {"keep_last": 3}, set(), id="empty"),
    ],
)
def test_retention_is_a_function_of_the_list(
    series: list[tuple[str, dt.datetime]], policy: dict[str, int], kept: set[str]
) -> None:
    """keep_last / keep_daily / keep_weekly choose from the list alone; the rest is deleted."""
    retention = select_retention(series, **policy)
    assert set(retention.keep) == kept
    assert set(retention.delete) == {sid for sid, _ in series} - kept


def test_retention_says_why_each_snapshot_is_kept() -> None:
    """Each kept snapshot lists the rules that keep it."""
    retention = select_retention(_series(0, 1), keep_last=1, keep_daily=1)
    assert retention.keep["s1"] == ("last", "daily", "newest")
    assert retention.delete == ("s0",)
