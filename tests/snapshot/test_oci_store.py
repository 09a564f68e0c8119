"""The OCI registry as a snapshot store: objects as drd artifacts in a real registry."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from drd.errors import SnapshotNotFound, StorageUnavailable
from drd.oci.digest import Digest
from drd.selection.filters import RepoFilter
from drd.snapshot.catalog import list_snapshots, load_snapshot, prune, verify_snapshot
from drd.snapshot.collect import take_snapshot
from drd.snapshot.model import blob_key, manifest_key
from drd.store.oci import (
    BLOB_ARTIFACT,
    SNAPSHOT_ARTIFACT,
    ForeignTag,
    OciStore,
    artifact_type,
    key_tag,
    tag_key,
)
from tests.clients import open_client
from tests.faults import Fault, fault_proxy
from tests.images import RegistryWriter, get_manifest, list_tags, make_image, push_image
from tests.servers import LocalRegistry, free_port, make_tls, write_htpasswd
from tests.snapshot.helpers import (
    StoreConfig,
    drd_here,
    json_out,
    oci_store_config,
    opened,
    run_drd,
    write_config,
)

NOW = dt.datetime.now(dt.UTC)


async def _chunks(*parts: bytes):  # type: ignore[no-untyped-def]
    for part in parts:
        yield part


async def test_objects_round_trip_as_tagged_drd_artifacts(
    target_registry: LocalRegistry, repo: str
) -> None:
    """put, get, stream, stat, list and delete; each key is a tagged artifact of drd's type."""
    config = oci_store_config(target_registry, repo)
    blob = b"layer bytes " * 1000
    digest = hashlib.sha256(blob).hexdigest()
    async with opened(config) as store:
        assert [o async for o in store.list("")] == []
        assert await store.put_stream(f"blobs/sha256/{digest}", _chunks(blob[:5], blob[5:]))
        assert not await store.put_bytes(f"blobs/sha256/{digest}", b"other", create_only=True)
        assert await store.put_bytes("snapshots/primary/2024/05/01/x.json.gz", b"index")
        assert await store.get_bytes(f"blobs/sha256/{digest}", max_size=1 << 20) == blob
        async with store.open_stream(f"blobs/sha256/{digest}") as stream:
            assert b"".join([c async for c in stream]) == blob
        stat = await store.stat(f"blobs/sha256/{digest}")
        assert stat is not None
        assert stat.size == len(blob)
        assert [o.key async for o in store.list("blobs/")] == [f"blobs/sha256/{digest}"]
        raw, _ = await get_manifest(target_registry, repo, key_tag(f"blobs/sha256/{digest}"))
        doc = json.loads(raw)
        assert doc["artifactType"] == BLOB_ARTIFACT
        assert doc["layers"][0]["digest"] == f"sha256:{digest}"
        await store.delete(f"blobs/sha256/{digest}")
        await store.delete(f"blobs/sha256/{digest}")  # a missing key is fine
        assert await store.stat(f"blobs/sha256/{digest}") is None
        with pytest.raises(SnapshotNotFound):
            await store.get_bytes(f"blobs/sha256/{digest}", max_size=10)
    assert await list_tags(target_registry, repo) == [
        key_tag("snapshots/primary/2024/05/01/x.json.gz")
    ]


def test_keys_and_tags_map_both_ways() -> None:
    """Every key drd writes is a valid tag and decodes back to itself."""
    for key in (
        "manifests/sha256/" + "a" * 64,
        "snapshots/my_src/2024/05/01/20240501T093000.123456Z.json.gz",
        "leases/prune/my-src/20240501T093000Z-0123456789ab",
    ):
        tag = key_tag(key)
        assert len(tag) <= 128
        assert tag_key(tag) == key
    assert artifact_type("snapshots/a/2024/05/01/x.json.gz") == SNAPSHOT_ARTIFACT
    assert tag_key("latest") == "latest"
    assert tag_key("bad_x") is None


# --------------------------------------------------------------------------- snapshots


def _blob_file(registry: LocalRegistry, digest: Digest) -> Path:
    """Where distribution keeps one blob's bytes on disk."""
    hexa = digest.hex
    return registry.root / "docker/registry/v2/blobs/sha256" / hexa[:2] / hexa / "data"


async def test_create_list_show_diff_verify_from_an_oci_store(
    source_registry: LocalRegistry,
    registry_factory: Callable[..., LocalRegistry],
    repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """
    The snapshot commands work on an oci:// store as on the others: the index is an
    artifact of drd's snapshot type; list, show, diff and verify read what create wrote.
    """
    vault = registry_factory()
    first_image, second_image = make_image(f"{repo}/a"), make_image(f"{repo}/b", layers=2)
    await push_image(source_registry, repo, first_image, "v1")
    config = write_config(
        tmp_path,
        {"primary": source_registry, "vault": vault},
        source="primary",
        store=StoreConfig("oci://vault/backups/drd"),
        repositories=[repo],
        blobs=True,
    )
    code, created = await drd_here("snapshot", "create", config=config, capsys=capsys)
    assert code == 0
    first = created["id"]
    await push_image(source_registry, repo, second_image, "v1")  # v1 moves
    second = (await drd_here("snapshot", "create", config=config, capsys=capsys))[1]["id"]

    raw, _ = await get_manifest(vault, "backups/drd", key_tag(created["key"]))
    assert json.loads(raw)["artifactType"] == SNAPSHOT_ARTIFACT
    tags = await list_tags(vault, "backups/drd")
    assert key_tag(manifest_key(second_image.digest)) in tags
    for layer in second_image.layers:
        assert key_tag(blob_key(layer.digest)) in tags

    code, listed = await drd_here("snapshot", "list", config=config, capsys=capsys)
    assert [s["id"] for s in listed["snapshots"]] == [first, second]
    code, shown = await drd_here("snapshot", "show", first, config=config, capsys=capsys)
    assert shown["repositories"] == {repo: {"v1": str(first_image.digest)}}
    code, changed = await drd_here("snapshot", "diff", first, second, config=config, capsys=capsys)
    [moved] = changed["tags"]["moved"]
    assert (moved["before"], moved["after"]) == (str(first_image.digest), str(second_image.digest))
    code, verified = await drd_here("snapshot", "verify", second, config=config, capsys=capsys)
    assert (code, verified["ok"], verified["manifests_checked"]) == (0, True, 1)
    assert verified["blobs_checked"] == 3


async def test_verify_detects_an_object_corrupted_in_the_registry(
    source_registry: LocalRegistry,
    registry_factory: Callable[..., LocalRegistry],
    repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Bytes altered in the store registry's own storage: verify names the object, exit 1."""
    vault = registry_factory()
    image = make_image(f"{repo}/c", layers=1)
    await push_image(source_registry, repo, image, "v1")
    config = write_config(
        tmp_path,
        {"primary": source_registry, "vault": vault},
        source="primary",
        store=StoreConfig("oci://vault/backups"),
        repositories=[repo],
        blobs=True,
    )
    code, created = await drd_here("snapshot", "create", config=config, capsys=capsys)
    assert code == 0
    layer = image.layers[0]
    stored = _blob_file(vault, layer.digest)
    stored.write_bytes(b"X" * len(stored.read_bytes()))  # same size, other bytes: bit rot
    manifest = _blob_file(vault, image.digest)
    manifest.write_bytes(image.raw.replace(b'"schemaVersion":2', b'"schemaVersion":3'))

    code, report = await drd_here("snapshot", "verify", created["id"], config=config, capsys=capsys)
    assert (code, report["ok"]) == (1, False)
    problems = {(p["kind"], p["digest"]): p["reason"] for p in report["problems"]}
    assert set(problems) == {("blob", str(layer.digest)), ("manifest", str(image.digest))}
    assert f"stored manifest {image.digest} is corrupt" in problems[("manifest", str(image.digest))]


async def test_prune_deletes_unreferenced_objects_from_an_oci_store(
    source_registry: LocalRegistry,
    registry_factory: Callable[..., LocalRegistry],
    repo: str,
) -> None:
    """
    keep_last=1 of three: the two older indexes and the manifest and layer only they
    referenced are deleted (their tags are gone); what the kept snapshot needs stays.
    """
    vault = registry_factory()
    config = oci_store_config(vault, "backups")
    old_image, new_image = make_image(f"{repo}/old"), make_image(f"{repo}/new")
    async with opened(config) as store, open_client(source_registry) as client:
        ids = []
        for day, image in ((3, old_image), (2, old_image), (1, new_image)):
            await push_image(source_registry, repo, image, "v1")
            snap = await take_snapshot(
                client,
                store,
                source_name="primary",
                repositories=RepoFilter((repo,)),
                blobs=True,
                now=NOW - dt.timedelta(days=day),
            )
            ids.append(snap.id)
        later = NOW + dt.timedelta(days=1)
        done = await prune(store, "primary", keep_last=1, now=later)
        assert done.deleted == ids[:2]
        gone = [manifest_key(old_image.digest), *(blob_key(b.digest) for b in old_image.layers)]
        gone.append(blob_key(old_image.config.digest))
        assert done.objects_deleted == len(gone)
        for key in gone:
            assert await store.stat(key) is None
        assert [e.id for e in await list_snapshots(store, "primary")] == [ids[2]]
        kept = await load_snapshot(store, "primary", "latest")
        report = await verify_snapshot(store, kept)
        assert report.ok
        assert not [k async for k in store.list("leases/")]
    tags = await list_tags(vault, "backups")
    assert not {key_tag(k) for k in gone} & set(tags)
    assert key_tag(manifest_key(new_image.digest)) in tags


async def test_restore_from_an_oci_store_into_an_empty_registry(
    source_registry: LocalRegistry,
    registry_factory: Callable[..., LocalRegistry],
    repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """
    A snapshot with blobs in an oci:// store, restored into an empty registry with the
    source gone from the config: every tag, manifest byte and blob comes back by digest.
    """
    vault, empty = registry_factory(), registry_factory()
    image = make_image(f"{repo}/r", layers=2)
    await push_image(source_registry, repo, image, "v1")
    await push_image(source_registry, repo, image, "stable")
    store = StoreConfig("oci://vault/backups")
    config = write_config(
        tmp_path,
        {"primary": source_registry, "vault": vault},
        source="primary",
        store=store,
        repositories=[repo],
        blobs=True,
    )
    code, created = await drd_here("snapshot", "create", config=config, capsys=capsys)
    assert code == 0
    # The source is gone: the restore can only read the store.
    config = write_config(
        tmp_path,
        {"primary": "http://127.0.0.1:9", "vault": vault, "drill": empty},
        source="primary",
        store=store,
        repositories=[repo],
        blobs=True,
    )
    code, doc = await drd_here(
        "restore",
        "--snapshot",
        created["id"],
        "--to",
        "drill",
        "--yes",
        "--allow-unsigned-snapshot",
        config=config,
        capsys=capsys,
    )
    assert code == 0, doc
    assert await list_tags(empty, repo) == ["stable", "v1"]
    raw, _ = await get_manifest(empty, repo, "v1")
    assert Digest.of(raw) == image.digest
    async with RegistryWriter(empty) as registry:
        for blob in (image.config, *image.layers):
            data = await registry.get_blob(repo, blob.digest)
            assert Digest.of(data) == blob.digest


async def test_snapshot_commands_run_as_a_process_on_an_oci_store(
    source_registry: LocalRegistry,
    registry_factory: Callable[..., LocalRegistry],
    repo: str,
    tmp_path: Path,
) -> None:
    """``python -m drd snapshot create / list / verify`` with an oci:// store, exit 0 each."""
    vault = registry_factory()
    image = make_image(f"{repo}/p")
    await push_image(source_registry, repo, image, "v1")
    config = write_config(
        tmp_path,
        {"primary": source_registry, "vault": vault},
        source="primary",
        store=StoreConfig("oci://vault/drd"),
        repositories=[repo],
    )
    created = await run_drd("snapshot", "create", "--json", config=config)
    assert created.returncode == 0, created.stderr
    snap_id = json_out(created)["id"]
    listed = await run_drd("snapshot", "list", "--json", config=config)
    assert [s["id"] for s in json_out(listed)["snapshots"]] == [snap_id]
    verified = await run_drd("snapshot", "verify", snap_id, "--json", config=config)
    assert verified.returncode == 0, verified.stderr
    assert json_out(verified)["ok"] is True
    assert key_tag(manifest_key(image.digest)) in await list_tags(vault, "drd")


# --------------------------------------------------------------------------- access


async def test_an_oci_store_uses_its_endpoints_tls_and_credentials(
    source_registry: LocalRegistry,
    registry_factory: Callable[..., LocalRegistry],
    repo: str,
    tmp_path: Path,
) -> None:
    """
    A store on an https registry with a private CA, client certificate and htpasswd: the
    endpoint's ca_file, cert_file and password_file are used; a wrong password fails
    with a clear error, exit 1, and commits nothing.
    """
    tls = make_tls(tmp_path / "tls")
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"drd": "s3cret"})
    vault = registry_factory(htpasswd=htpasswd, tls=tls, require_client_cert=True)
    await push_image(source_registry, repo, make_image(f"{repo}/t"), "v1")
    (tmp_path / "vault.password").write_text("s3cret\n")
    config = write_config(
        tmp_path,
        {"primary": source_registry, "vault": vault},
        source="primary",
        store=StoreConfig("oci://vault/drd"),
        repositories=[repo],
    )
    access = (
        f'username = "drd"\npassword_file = "vault.password"\nca_file = "{tls.ca}"\n'
        f'cert_file = "{tls.client_cert}"\nkey_file = "{tls.client_key}"\n'
    )
    text = config.read_text().replace(f'url = "{vault.url}"\n', f'url = "{vault.url}"\n{access}')
    config.write_text(text)

    created = await run_drd("snapshot", "create", "--json", config=config)
    assert created.returncode == 0, created.stderr
    verified = await run_drd("snapshot", "verify", "latest", "--json", config=config)
    assert (verified.returncode, json_out(verified)["ok"]) == (0, True)

    (tmp_path / "vault.password").write_text("wrong\n")
    refused = await run_drd("snapshot", "create", "--json", config=config)
    assert refused.returncode == 1
    assert "HTTP 401" in refused.stderr
    assert "check the endpoint's credentials" in refused.stderr
    assert "wrong" not in refused.stderr
    (tmp_path / "vault.password").write_text("s3cret\n")
    listed = await run_drd("snapshot", "list", "--json", config=config)
    assert len(json_out(listed)["snapshots"]) == 1


async def test_an_unreachable_oci_store_exits_69(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """Nothing listens at the store's endpoint: exit 69, naming the store."""
    await push_image(source_registry, repo, make_image(f"{repo}/u"), "v1")
    config = write_config(
        tmp_path,
        {"primary": source_registry, "vault": f"http://127.0.0.1:{free_port()}"},
        source="primary",
        store=StoreConfig("oci://vault/drd"),
        repositories=[repo],
    )
    proc = await run_drd("snapshot", "list", "--json", config=config)
    assert proc.returncode == 69, proc.stderr
    assert "cannot reach OCI store oci://vault/drd" in proc.stderr


async def test_config_check_refuses_an_oci_store_on_an_unknown_endpoint(
    source_registry: LocalRegistry, tmp_path: Path
) -> None:
    """``drd config check`` exits 78 naming snapshots.store and the missing endpoint."""
    config = write_config(
        tmp_path,
        {"primary": source_registry},
        source="primary",
        store=StoreConfig("oci://vault/drd"),
    )
    proc = await run_drd("config", "check", config=config)
    assert proc.returncode == 78
    assert "snapshots.store" in proc.stderr
    assert "unknown endpoint 'vault'" in proc.stderr


async def test_large_objects_go_up_in_chunks_and_read_back_exactly(
    target_registry: LocalRegistry, repo: str
) -> None:
    """An object over the upload chunk is pushed with chunked PATCHes; its bytes come back."""
    data = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(100_000))  # 3.2 MB
    key = f"blobs/sha256/{hashlib.sha256(data).hexdigest()}"
    with fault_proxy(target_registry.url) as proxy:
        config = oci_store_config(proxy.url, repo)
        async with opened(config) as store:
            assert isinstance(store, OciStore)
            store.upload_chunk = 1024 * 1024
            parts = [data[i : i + 65536] for i in range(0, len(data), 65536)]
            assert await store.put_stream(key, _chunks(*parts), size=len(data))
            async with store.open_stream(key) as stream:
                back = b"".join([c async for c in stream])
        assert proxy.calls("upload_patch") == 4
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()


async def test_registry_errors_are_retried_then_mapped(
    target_registry: LocalRegistry, repo: str
) -> None:
    """A 503 on a manifest put is retried; a registry that keeps failing is StorageUnavailable."""
    with fault_proxy(target_registry.url) as proxy:
        config = oci_store_config(proxy.url, repo)
        async with opened(config) as store:
            proxy.add(Fault.http(503), kinds="manifest_put", times=1)
            assert await store.put_bytes("leases/prune/x/one", b"{}")
            assert proxy.calls("manifest_put") == 2
            proxy.add(Fault.http(503), kinds="tags_list")
            with pytest.raises(StorageUnavailable, match="HTTP 503"):
                _ = [o async for o in store.list("leases/")]
            assert proxy.calls("tags_list") == 2  # the test policy's two attempts


async def test_tags_that_hold_no_drd_object_are_not_listed(
    target_registry: LocalRegistry, repo: str
) -> None:
    """An ordinary image tagged like a store key is skipped by list and refused by get."""
    key = "manifests/sha256/" + "a" * 64
    await push_image(target_registry, repo, make_image(f"{repo}/foreign"), key_tag(key))
    async with opened(oci_store_config(target_registry, repo)) as store:
        assert [o async for o in store.list("manifests/")] == []
        with pytest.raises(ForeignTag, match="does not hold a drd object"):
            await store.get_bytes(key, max_size=1 << 20)
