"""Verifying stored snapshots object by object, and pruning them by retention."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from drd.selection.filters import RepoFilter
from drd.snapshot.catalog import list_snapshots, load_snapshot, prune, verify_snapshot
from drd.snapshot.collect import take_snapshot
from drd.snapshot.model import blob_key, manifest_key
from tests.clients import open_client
from tests.images import make_image, push_image
from tests.servers import LocalRegistry, s3_client
from tests.snapshot.helpers import drd_here, opened, store_config, write_config

NOW = dt.datetime.now(dt.UTC)


async def test_verify_names_a_corrupt_manifest(
    source_registry: LocalRegistry, repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One altered manifest object: verify fails, naming exactly that digest; others pass."""
    image, other = make_image(f"{repo}/a"), make_image(f"{repo}/b")
    await push_image(source_registry, repo, image, "v1")
    await push_image(source_registry, repo, other, "v2")
    store = store_config("dir", tmp_path)
    config = write_config(
        tmp_path, {"primary": source_registry}, source="primary", store=store, repositories=[repo]
    )
    code, created = await drd_here("snapshot", "create", config=config, capsys=capsys)
    assert code == 0
    path = tmp_path / "store" / manifest_key(image.digest)
    path.write_bytes(image.raw.replace(b'"schemaVersion":2', b'"schemaVersion":3'))

    code, report = await drd_here("snapshot", "verify", created["id"], config=config, capsys=capsys)
    assert code == 1
    assert report["ok"] is False
    [problem] = report["problems"]
    assert problem["digest"] == str(image.digest)
    assert f"stored manifest {image.digest} is corrupt" in problem["reason"]
    assert report["manifests_checked"] == 2


async def test_verify_on_s3_names_missing_and_altered_objects(
    source_registry: LocalRegistry, repo: str, tmp_path: Path, s3_endpoint: str, bucket: str
) -> None:
    """With blobs stored in S3: a deleted layer and an altered manifest are both named."""
    image = make_image(f"{repo}/s3", layers=2)
    await push_image(source_registry, repo, image, "v1")
    config = store_config("s3", tmp_path, s3_endpoint, bucket)
    async with opened(config) as store, open_client(source_registry) as client:
        snap = await take_snapshot(
            client, store, source_name="primary", repositories=RepoFilter((repo,)), blobs=True
        )
        s3 = s3_client(s3_endpoint)
        layer = image.layers[1].digest
        s3.delete_object(Bucket=bucket, Key=f"snaps/{blob_key(layer)}")
        s3.put_object(Bucket=bucket, Key=f"snaps/{manifest_key(image.digest)}", Body=b"{}")
        report = await verify_snapshot(store, snap)
    assert not report.ok
    problems = {(p.kind, p.digest): p.reason for p in report.problems}
    assert set(problems) == {("blob", str(layer)), ("manifest", str(image.digest))}
    assert "missing from the store" in problems[("blob", str(layer))]
    assert "is corrupt" in problems[("manifest", str(image.digest))]


async def test_a_corrupt_index_fails_verify_with_the_reason(
    source_registry: LocalRegistry, repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An index that is not gzip any more is reported as the failing object; exit 1."""
    await push_image(source_registry, repo, make_image(f"{repo}/i"), "v1")
    store = store_config("dir", tmp_path)
    config = write_config(
        tmp_path, {"primary": source_registry}, source="primary", store=store, repositories=[repo]
    )
    code, created = await drd_here("snapshot", "create", config=config, capsys=capsys)
    (tmp_path / "store" / created["key"]).chmod(0o644)
    (tmp_path / "store" / created["key"]).write_bytes(b"garbage")
    code, report = await drd_here("snapshot", "verify", "latest", config=config, capsys=capsys)
    assert code == 1
    assert report["problems"][0]["kind"] == "index"
    assert "is not gzip" in report["problems"][0]["reason"]


async def test_prune_keeps_by_policy_and_deletes_only_unreferenced_objects(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    Three snapshots a day apart, keep_last=1: the two older indexes go, with the manifests
    only they referenced; what the kept snapshot (or another source) needs stays.
    A dry run reports the same and deletes nothing.
    """
    old_image, new_image = make_image(f"{repo}/old"), make_image(f"{repo}/new")
    shared = make_image(f"{repo}/shared")
    elsewhere = f"{repo}-other"
    await push_image(source_registry, elsewhere, make_image(f"{repo}/elsewhere"), "v1")
    async with opened(store_config("dir", tmp_path)) as store, open_client(source_registry) as c:
        ids = []
        for day, image in ((3, old_image), (2, old_image), (1, new_image)):
            await push_image(source_registry, repo, image, "v1")
            await push_image(source_registry, repo, shared, "shared")
            snap = await take_snapshot(
                c,
                store,
                source_name="primary",
                repositories=RepoFilter((repo,)),
                blobs=False,
                now=NOW - dt.timedelta(days=day),
            )
            ids.append(snap.id)
        other = await take_snapshot(
            c, store, source_name="other", repositories=RepoFilter((elsewhere,)), blobs=False
        )
        later = NOW + dt.timedelta(days=1)
        planned = await prune(store, "primary", keep_last=1, dry_run=True, now=later)
        assert planned.deleted == ids[:2]
        # old_image's manifest and its config (a metadata blob), referenced by no survivor
        assert planned.objects_deleted == 2
        assert len(await list_snapshots(store, "primary")) == 3

        done = await prune(store, "primary", keep_last=1, now=later)
        assert done.deleted == ids[:2]
        assert list(done.kept) == [ids[2]]
        assert [e.id for e in await list_snapshots(store, "primary")] == [ids[2]]
        assert await store.stat(manifest_key(old_image.digest)) is None
        assert await store.stat(blob_key(old_image.config.digest)) is None
        assert await store.stat(blob_key(new_image.config.digest)) is not None
        for digest in (new_image.digest, shared.digest, *other.manifests):
            assert await store.stat(manifest_key(digest)) is not None
        kept = await load_snapshot(store, "primary", "latest")
        assert (await verify_snapshot(store, kept)).ok
        assert (await verify_snapshot(store, other)).ok


async def test_prune_spares_young_unreferenced_objects(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """An object no index references yet, younger than the grace period, is left alone."""
    await push_image(source_registry, repo, make_image(f"{repo}/g"), "v1")
    async with opened(store_config("dir", tmp_path)) as store, open_client(source_registry) as c:
        await take_snapshot(
            c, store, source_name="p", repositories=RepoFilter((repo,)), blobs=False
        )
        # A snapshot in progress elsewhere has uploaded this and not yet written its index.
        await store.put_bytes(manifest_key(make_image("in-flight").digest), b"{}")
        report = await prune(store, "p", keep_last=1)
    assert report.objects_deleted == 0
    assert report.objects_kept_young == 1
