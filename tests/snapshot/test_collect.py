"""Taking snapshots of a real registry into a folder and into moto's S3."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from drd.errors import DigestMismatch, VerificationError
from drd.oci.digest import Digest
from drd.selection.filters import RepoFilter
from drd.snapshot.catalog import list_snapshots, load_snapshot, verify_snapshot
from drd.snapshot.collect import run_snapshot, take_snapshot
from drd.snapshot.model import blob_key, manifest_key
from drd.snapshot.sign import IndexKey
from drd.store.s3 import S3Store
from tests.clients import open_client
from tests.images import (
    make_cosign_signature,
    make_image,
    make_multiarch,
    push_image,
    push_index,
    signature_tag,
)
from tests.servers import LocalRegistry
from tests.snapshot.helpers import CountingStore, opened, store_config
from tests.snapshot.test_sign import private_pem

SIGNER = ec.generate_private_key(ec.SECP256R1())


async def push_release(registry: LocalRegistry, repo: str) -> dict[str, Any]:
    """An image ``v1`` with a cosign signature and a two-platform index ``v2``."""
    image = make_image(f"{repo}/v1", layers=2)
    index = make_multiarch(f"{repo}/v2")
    sig = make_cosign_signature(image, SIGNER, docker_reference=f"{registry.host}/{repo}")
    await push_image(registry, repo, image, "v1")
    await push_index(registry, repo, index, "v2")
    await push_image(registry, repo, sig, signature_tag(image.digest))
    return {"image": image, "index": index, "sig": sig}


async def test_snapshot_records_every_tag_manifest_and_signature(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """Tags, index children and the .sig tag are recorded; manifests are stored byte for byte."""
    pushed = await push_release(source_registry, repo)
    image, index, sig = pushed["image"], pushed["index"], pushed["sig"]
    async with opened(store_config("dir", tmp_path)) as store, open_client(source_registry) as c:
        snap = await take_snapshot(
            c, store, source_name="primary", repositories=RepoFilter((repo,)), blobs=False
        )
        assert [e.id for e in await list_snapshots(store, "primary")] == [snap.id]
        record = snap.repositories[repo]
        assert dict(record.tags) == {
            "v1": image.digest,
            "v2": index.digest,
            signature_tag(image.digest): sig.digest,
        }
        everything = [image, index, sig, *index.images]
        assert record.manifests == {m.digest for m in everything}
        for manifest in everything:
            stored = await store.get_bytes(manifest_key(manifest.digest), max_size=10**6)
            assert stored == manifest.raw
            assert snap.manifests[manifest.digest].media_type == manifest.media_type
        assert snap.manifests[index.digest].children == tuple(i.digest for i in index.images)
        assert {b.digest: b.size for b in image.blobs}.items() <= snap.blobs.items()
        # blobs = false stores no layer, only the metadata: configs and the signature payload.
        metadata = {i.config.digest for i in (image, sig, *index.images)} | {
            b.digest for b in sig.layers
        }
        assert snap.metadata_blobs == metadata
        assert {o.key async for o in store.list("blobs/")} == {blob_key(d) for d in metadata}
        assert not {b.digest for b in image.layers} & metadata
        assert snap.source_url == source_registry.url
        back = await load_snapshot(store, "primary", "latest")
        assert back == snap


@pytest.mark.parametrize("kind", ["dir", "s3"])
async def test_an_unchanged_registry_uploads_no_manifest(
    source_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    s3_endpoint: str,
    bucket: str,
    kind: str,
) -> None:
    """
    A second snapshot of an unchanged registry puts no manifest (counted at the store and,
    for S3, on the wire) and costs one tag listing plus one HEAD per tag; a new tag then
    uploads only its own manifest.
    """
    pushed = await push_release(source_registry, repo)
    wire: list[str] = []
    async with opened(store_config(kind, tmp_path, s3_endpoint, bucket)) as inner:
        if isinstance(inner, S3Store):

            def record(request: Any, **_: Any) -> None:
                wire.append(request.url.split("?")[0])

            inner.client.meta.events.register("before-send.s3.PutObject", record)
        store = CountingStore(inner)
        wanted = RepoFilter((repo,))
        async with open_client(source_registry) as client:
            first = await run_snapshot(
                client, store, source_name="primary", repositories=wanted, blobs=False
            )
            assert first.ok
            assert first.snapshot is not None
            assert len(store.puts_under("manifests/")) == len(first.snapshot.manifests) == 5
            store.puts.clear()
            wire.clear()

            second = await run_snapshot(
                client, store, source_name="primary", repositories=wanted, blobs=False
            )
            assert second.ok
            assert second.snapshot is not None
            assert store.puts_under("manifests/") == []
            assert [u for u in wire if "/manifests/" in u] == []
            assert second.manifests_uploaded == 0
            assert second.manifests_fetched == 0
            assert second.registry_requests == 1 + 3  # tags/list, then HEAD per tag
            assert second.snapshot.repositories == first.snapshot.repositories
            assert second.snapshot.id != first.snapshot.id

            extra = make_image(f"{repo}/v3")
            await push_image(source_registry, repo, extra, "v3")
            store.puts.clear()
            third = await run_snapshot(
                client, store, source_name="primary", repositories=wanted, blobs=False
            )
    assert store.puts_under("manifests/") == [manifest_key(extra.digest)]
    assert third.snapshot is not None
    assert third.snapshot.repositories[repo].tags["v3"] == extra.digest
    assert third.snapshot.repositories[repo].tags["v1"] == pushed["image"].digest


async def test_blobs_are_stored_once_and_verify(
    source_registry: LocalRegistry, repo: str, tmp_path: Path, s3_endpoint: str, bucket: str
) -> None:
    """With blobs, every config and layer is streamed into the store, hashed, and not again."""
    pushed = await push_release(source_registry, repo)
    image = pushed["image"]
    async with (
        opened(store_config("s3", tmp_path, s3_endpoint, bucket)) as store,
        open_client(source_registry) as client,
    ):
        report = await run_snapshot(
            client, store, source_name="primary", repositories=RepoFilter((repo,)), blobs=True
        )
        assert report.ok
        assert report.snapshot is not None
        snap = report.snapshot
        assert snap.blobs_stored
        assert report.blobs_uploaded == len(snap.blobs)
        for blob in image.blobs:
            assert await store.get_bytes(blob_key(blob.digest), max_size=10**6) == blob.data
        check = await verify_snapshot(store, snap)
        assert check.ok
        assert check.blobs_checked == len(snap.blobs)
        again = await run_snapshot(
            client, store, source_name="primary", repositories=RepoFilter((repo,)), blobs=True
        )
    assert again.blobs_uploaded == 0
    assert again.blobs_present == len(snap.blobs)


async def test_a_blob_that_does_not_match_its_digest_aborts_the_snapshot(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """A registry serving altered layer bytes fails the run: no blob object, no index."""
    image = make_image(f"{repo}/rot", layers=1, layer_size=300_000)
    await push_image(source_registry, repo, image, "v1")
    layer = image.layers[0].digest
    data = source_registry.root / (
        f"docker/registry/v2/blobs/sha256/{layer.hex[:2]}/{layer.hex}/data"
    )
    rotten = bytearray(data.read_bytes())
    rotten[-1] ^= 0xFF
    data.write_bytes(bytes(rotten))
    async with opened(store_config("dir", tmp_path)) as store, open_client(source_registry) as c:
        report = await run_snapshot(
            c, store, source_name="primary", repositories=RepoFilter((repo,)), blobs=True
        )
        assert isinstance(report.exception, DigestMismatch)
        assert str(layer) in report.error
        assert report.snapshot is None
        assert await list_snapshots(store, "primary") == []
        assert await store.stat(blob_key(layer)) is None


async def test_a_signed_snapshot_verifies_only_with_its_key(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """The index is signed over its digest; reading it with another key is refused."""
    await push_release(source_registry, repo)
    key = IndexKey.from_pem(private_pem(ed25519.Ed25519PrivateKey.generate()))
    async with opened(store_config("dir", tmp_path)) as store, open_client(source_registry) as c:
        snap = await take_snapshot(
            c,
            store,
            source_name="primary",
            repositories=RepoFilter((repo,)),
            blobs=False,
            signing_key=key,
        )
        assert snap.signature is not None
        assert snap.signature.key_id == key.key_id
        assert (await load_snapshot(store, "primary", snap.id, verify_key=key)) == snap
        other = IndexKey.from_pem(private_pem(ed25519.Ed25519PrivateKey.generate()))
        with pytest.raises(VerificationError, match="signed by key"):
            await load_snapshot(store, "primary", snap.id, verify_key=other)


async def test_repository_globs_choose_what_is_recorded(
    source_registry: LocalRegistry, tmp_path: Path
) -> None:
    """Only catalog repositories matching the globs are walked."""
    team = f"t{uuid.uuid4().hex[:12]}"
    for name in ("api", "web", "tools"):
        await push_image(source_registry, f"{team}/{name}", make_image(f"{team}/{name}"), "v1")
    wanted = RepoFilter((f"{team}/*",), exclude=(f"{team}/tools",))
    async with opened(store_config("dir", tmp_path)) as store, open_client(source_registry) as c:
        snap = await take_snapshot(c, store, source_name="p", repositories=wanted, blobs=False)
    assert sorted(snap.repositories) == [f"{team}/api", f"{team}/web"]
    assert snap.repositories[f"{team}/api"].tags["v1"] == make_image(f"{team}/api").digest


async def test_snapshot_ids_sort_and_latest_is_the_newest(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """Listing is oldest first; ``latest`` resolves to the last one committed."""
    await push_image(source_registry, repo, make_image(f"{repo}/x"), "v1")
    async with opened(store_config("dir", tmp_path)) as store, open_client(source_registry) as c:
        ids = []
        for _ in range(3):
            snap = await take_snapshot(
                c, store, source_name="p", repositories=RepoFilter((repo,)), blobs=False
            )
            ids.append(snap.id)
        assert [e.id for e in await list_snapshots(store, "p")] == ids
        assert (await load_snapshot(store, "p", "latest")).id == ids[-1]
        pointer = await store.get_bytes("snapshots/p/latest.json", max_size=1000)
    assert ids[-1] in pointer.decode()
    assert Digest.parse(str(snap.digest)) == snap.digest


async def test_manifests_over_the_same_blobs_share_one_digest_object(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """Two manifests over the same config and layers name them by one object each."""
    first = make_image(f"{repo}/shared", layers=2, annotations={"n": "1"})
    second = make_image(f"{repo}/shared", layers=2, annotations={"n": "2"})
    assert first.digest != second.digest
    assert [b.digest for b in first.blobs] == [b.digest for b in second.blobs]
    await push_image(source_registry, repo, first, "a")
    await push_image(source_registry, repo, second, "b")
    async with opened(store_config("dir", tmp_path)) as store, open_client(source_registry) as c:
        snap = await take_snapshot(
            c, store, source_name="primary", repositories=RepoFilter((repo,)), blobs=False
        )
    a, b = snap.manifests[first.digest], snap.manifests[second.digest]
    assert a.blobs == tuple(blob.digest for blob in first.blobs)
    assert all(x is y for x, y in zip(a.blobs, b.blobs, strict=True))
    assert a.media_type is b.media_type
