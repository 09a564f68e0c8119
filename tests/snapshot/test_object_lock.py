"""Prune over an S3 Object Lock bucket (moto's server): locked objects stay and are reported."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

from drd.oci.digest import Digest
from drd.selection.filters import RepoFilter
from drd.snapshot.catalog import list_snapshots, load_snapshot, prune, verify_snapshot
from drd.snapshot.collect import take_snapshot
from drd.snapshot.model import manifest_key
from tests.clients import open_client
from tests.images import make_image, push_image
from tests.servers import LocalRegistry, s3_client
from tests.snapshot.helpers import StoreConfig, opened


def locked_bucket(s3_endpoint: str) -> StoreConfig:
    """A fresh bucket with Object Lock enabled, and a store config locking for one day."""
    bucket = f"drd-lock-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return StoreConfig(
        f"s3://{bucket}/snaps",
        s3_endpoint_url=s3_endpoint,
        s3_region="us-east-1",
        s3_object_lock_days=1,
    )


async def test_prune_skips_locked_objects_reports_them_and_frees_them_once_expired(
    source_registry: LocalRegistry, repo: str, s3_endpoint: str
) -> None:
    """
    Two snapshots and one orphan object, all locked for a day. A prune that would delete
    the older snapshot completes, deletes nothing, and reports the locked index and the
    locked orphan with their dates; the snapshot still verifies. Once the locks have
    expired (a prune a day and a half later), the old index, the manifest only it used
    and the orphan go.
    """
    # Taken when the test starts, not at collection: the locks are set from the real clock.
    now = dt.datetime.now(dt.UTC)
    old_image, new_image = make_image(f"{repo}/old"), make_image(f"{repo}/new")
    config = locked_bucket(s3_endpoint)
    orphan = b"orphan manifest"
    orphan_key = manifest_key(Digest.parse("sha256:" + hashlib.sha256(orphan).hexdigest()))
    async with opened(config) as store, open_client(source_registry) as client:
        ids = []
        for day, image in ((2, old_image), (1, new_image)):
            await push_image(source_registry, repo, image, "v1")
            snap = await take_snapshot(
                client,
                store,
                source_name="primary",
                repositories=RepoFilter((repo,)),
                blobs=False,
                now=now - dt.timedelta(days=day),
            )
            ids.append(snap.id)
        await store.put_bytes(orphan_key, orphan, create_only=True)
        head = s3_client(s3_endpoint).head_object(
            Bucket=config.store.split("/")[2], Key=f"snaps/{manifest_key(old_image.digest)}"
        )
        assert head["ObjectLockMode"] == "COMPLIANCE"

        locked = await prune(store, "primary", keep_last=1, grace=dt.timedelta(0))
        assert locked.deleted == []
        assert list(locked.retained) == [ids[0]]
        assert now < locked.retained[ids[0]] <= now + dt.timedelta(days=1, minutes=5)
        assert list(locked.objects_retained) == [orphan_key]
        assert locked.objects_deleted == 0
        assert locked.to_json()["objects_retained"] == 1
        assert [e.id for e in await list_snapshots(store, "primary")] == ids
        assert await store.stat(orphan_key) is not None
        kept = await load_snapshot(store, "primary", ids[0])
        assert (await verify_snapshot(store, kept)).ok

        later = now + dt.timedelta(days=1, hours=12)
        expired = await prune(store, "primary", keep_last=1, now=later)
        assert expired.deleted == [ids[0]]
        assert expired.retained == {}
        assert expired.objects_retained == {}
        # The old image's manifest, its config (a metadata blob) and the orphan.
        assert expired.objects_deleted == 3
        assert [e.id for e in await list_snapshots(store, "primary")] == [ids[1]]
        assert await store.stat(orphan_key) is None
        assert await store.stat(manifest_key(old_image.digest)) is None
        assert await store.stat(manifest_key(new_image.digest)) is not None
