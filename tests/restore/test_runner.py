"""Restoring snapshots into real registries: lost tags, total loss, hostile input, dry runs."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from drd.errors import SnapshotCorrupt
from drd.restore.plan import Selection
from drd.restore.runner import restore_snapshot
from drd.selection.filters import RepoFilter
from drd.snapshot.catalog import load_snapshot
from drd.snapshot.collect import take_snapshot
from drd.snapshot.model import encode_document, index_key, manifest_key, snapshot_id
from tests import skopeo
from tests.clients import open_client
from tests.faults import fault_proxy
from tests.images import (
    RegistryWriter,
    delete_tag,
    get_manifest,
    list_tags,
    make_cosign_signature,
    make_image,
    make_multiarch,
    make_referrer,
    push_image,
    push_index,
    signature_tag,
)
from tests.layouts import CASES, Layout, push_layout
from tests.servers import LocalRegistry
from tests.snapshot.helpers import (
    drd_here,
    json_out,
    opened,
    run_drd,
    store_config,
    write_config,
)

SIGNER = ec.generate_private_key(ec.SECP256R1())


async def push_release(registry: LocalRegistry, repo: str) -> dict[str, Any]:
    """``v1`` (an image) and ``v2`` (an index), each with a cosign signature tag."""
    image = make_image(f"{repo}/v1", layers=2)
    index = make_multiarch(f"{repo}/v2")
    ref = f"{registry.host}/{repo}"
    image_sig = make_cosign_signature(image, SIGNER, docker_reference=ref)
    index_sig = make_cosign_signature(index, SIGNER, docker_reference=ref)
    await push_image(registry, repo, image, "v1")
    await push_index(registry, repo, index, "v2")
    await push_image(registry, repo, image_sig, signature_tag(image.digest))
    await push_image(registry, repo, index_sig, signature_tag(index.digest))
    return {"image": image, "index": index, "image_sig": image_sig, "index_sig": index_sig}


@pytest.mark.skopeo
async def test_restore_brings_back_a_deleted_and_an_overwritten_tag(
    source_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    s3_endpoint: str,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """
    After a snapshot to S3, v1 and its signature tag are deleted and v2 is overwritten at
    the source; ``drd restore --snapshot <id>`` puts v1 back, moves v2 back, restores the
    signature, and skopeo reads the original bytes under every tag.
    """
    pushed = await push_release(source_registry, repo)
    image, index = pushed["image"], pushed["index"]
    store = store_config("s3", tmp_path, s3_endpoint, bucket)
    config = write_config(
        tmp_path, {"primary": source_registry}, source="primary", store=store, repositories=[repo]
    )
    code, created = await drd_here("snapshot", "create", config=config, capsys=capsys)
    assert code == 0

    intruder = make_image(f"{repo}/bad-push")
    await delete_tag(source_registry, repo, "v1")
    await delete_tag(source_registry, repo, signature_tag(image.digest))
    await push_image(source_registry, repo, intruder, "v2")

    proc = await run_drd(
        "restore",
        "--snapshot",
        created["id"],
        "--to",
        "primary",
        "--yes",
        "--allow-unsigned-snapshot",
        "--json",
        config=config,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json_out(proc)
    outcomes = {i["tag"]: (i["outcome"], i["moved_from"]) for i in doc["items"]}
    assert outcomes["v1"] == ("restored", "")
    assert outcomes["v2"] == ("moved", str(intruder.digest))
    assert outcomes[signature_tag(image.digest)] == ("restored", "")
    assert outcomes[signature_tag(index.digest)] == ("unchanged", "")

    expected = {
        "v1": image.raw,
        "v2": index.raw,
        signature_tag(image.digest): pushed["image_sig"].raw,
        signature_tag(index.digest): pushed["index_sig"].raw,
    }
    for tag, raw in expected.items():
        assert skopeo.inspect_raw(source_registry, repo, tag) == raw, tag
    assert skopeo.list_tags(source_registry, repo) == sorted(expected)


async def test_total_loss_restore_reproduces_every_fixture_tag(
    source_registry: LocalRegistry,
    tmp_path: Path,
    registry_factory: Callable[..., LocalRegistry],
) -> None:
    """
    Every real-world fixture, snapshotted with blobs, restored into an empty registry with
    no other endpoint: every tag serves the fixture's exact manifest bytes again.
    """
    team = f"t{uuid.uuid4().hex[:12]}"
    layouts: dict[str, Layout] = {}
    for case in CASES:
        layouts[f"{team}/{case}"] = await push_layout(source_registry, f"{team}/{case}", case)
    wanted = RepoFilter(tuple(layouts))
    empty = registry_factory()
    async with (
        opened(store_config("dir", tmp_path)) as store,
        open_client(source_registry) as source,
        open_client(empty) as target,
    ):
        snap = await take_snapshot(
            source, store, source_name="primary", repositories=wanted, blobs=True
        )
        assert snap.tag_count == sum(len(layout.tags) for layout in layouts.values())
        report = await restore_snapshot(store, snap, target, sources={})
    assert report.ok, report.failures
    assert report.stats.blobs_from_endpoints == 0
    assert report.stats.blobs_from_store > 0
    async with RegistryWriter(empty) as reader:
        for repo, layout in layouts.items():
            assert await reader.list_tags(repo) == sorted(layout.tags), repo
            for tag, digest in layout.tags.items():
                raw, _ = await reader.get_manifest(repo, tag)
                assert raw == layout.manifests[digest], f"{repo}:{tag}"
    # An independent client agrees, one tag per fixture.
    for repo, layout in layouts.items():
        tag = sorted(layout.tags)[0]
        assert skopeo.inspect_raw(empty, repo, tag) == layout.manifests[layout.tags[tag]]


async def test_blobs_come_from_an_endpoint_when_the_store_has_none(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    A metadata-only snapshot restores into another registry by streaming each layer from
    the source endpoint, hash-checked; without any endpoint, only the signatures (whose
    blobs are all metadata, stored with the snapshot) get their tags.
    """
    pushed = await push_release(source_registry, repo)
    async with (
        opened(store_config("dir", tmp_path)) as store,
        open_client(source_registry, "primary") as source,
        open_client(target_registry, "dr") as target,
    ):
        snap = await take_snapshot(
            source, store, source_name="primary", repositories=RepoFilter((repo,)), blobs=False
        )
        orphan = await restore_snapshot(store, snap, target, sources={}, repository_prefix="x/")
        assert not orphan.ok
        sig_tags = sorted(signature_tag(pushed[k].digest) for k in ("image", "index"))
        assert await list_tags(target_registry, f"x/{repo}") == sig_tags
        assert any("neither the snapshot store nor any" in r for r in orphan.failures.values())
        assert sorted(i.tag for i in orphan.items if i.outcome != "failed") == sig_tags

        report = await restore_snapshot(store, snap, target, sources={"primary": source})
    assert report.ok, report.failures
    metadata = snap.metadata_blobs or frozenset()
    assert report.stats.blobs_from_endpoints == len(snap.blobs) - len(metadata)
    assert report.stats.blobs_from_store == len(metadata)
    raw, _ = await get_manifest(target_registry, repo, "v2")
    assert raw == pushed["index"].raw


async def test_an_endpoint_without_the_blob_costs_one_get_and_the_next_serves_it(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    Endpoints are tried in order with a GET, no HEAD first: one that lacks the blob
    answers 404 once per blob, and the next one streams it.
    """
    pushed = await push_release(source_registry, repo)
    with fault_proxy(target_registry.url) as empty_proxy:
        async with (
            opened(store_config("dir", tmp_path)) as store,
            open_client(source_registry, "primary") as source,
            open_client(empty_proxy.url, "empty") as empty,
            open_client(target_registry, "dr") as target,
        ):
            snap = await take_snapshot(
                source, store, source_name="primary", repositories=RepoFilter((repo,)), blobs=False
            )
            report = await restore_snapshot(
                store,
                snap,
                target,
                # The snapshot's own endpoint is tried first: here it lost the blobs.
                sources={"primary": empty, "mirror": source},
                repository_prefix="x/",
            )
    assert report.ok, report.failures
    layers = len(snap.blobs) - len(snap.metadata_blobs or ())
    assert report.stats.blobs_from_endpoints == layers
    asked = empty_proxy.requests()
    assert [s.kind for s in asked] == ["blob_get"] * layers
    assert {s.status for s in asked} == {404}
    raw, _ = await get_manifest(target_registry, f"x/{repo}", "v2")
    assert raw == pushed["index"].raw


async def test_a_tag_regex_restores_only_those_tags_and_their_signatures(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """``--tag ^v1$`` restores v1 and v1's signature tag, and nothing of v2."""
    pushed = await push_release(source_registry, repo)
    async with (
        opened(store_config("dir", tmp_path)) as store,
        open_client(source_registry, "primary") as source,
        open_client(target_registry, "dr") as target,
    ):
        snap = await take_snapshot(
            source, store, source_name="primary", repositories=RepoFilter((repo,)), blobs=True
        )
        report = await restore_snapshot(
            store, snap, target, selection=Selection(tag_pattern="^v1$")
        )
    assert report.ok
    assert await list_tags(target_registry, repo) == sorted(
        ["v1", signature_tag(pushed["image"].digest)]
    )


async def test_a_drill_namespace_restore_mounts_from_the_original(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """Restoring beside the original on the same registry mounts every blob, uploads none."""
    pushed = await push_release(source_registry, repo)
    prefix = f"drill-{uuid.uuid4().hex[:8]}/"
    async with (
        opened(store_config("dir", tmp_path)) as store,
        open_client(source_registry, "primary") as source,
    ):
        snap = await take_snapshot(
            source, store, source_name="primary", repositories=RepoFilter((repo,)), blobs=False
        )
        report = await restore_snapshot(
            store, snap, source, sources={"primary": source}, repository_prefix=prefix
        )
    assert report.ok, report.failures
    assert report.stats.blobs_from_store + report.stats.blobs_from_endpoints == 0
    assert report.stats.blobs_mounted > 0
    raw, _ = await get_manifest(source_registry, f"{prefix}{repo}", "v1")
    assert raw == pushed["image"].raw


async def test_a_dry_run_prints_the_plan_and_writes_nothing(
    source_registry: LocalRegistry, repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``restore --dry-run`` lists create and move actions; the registry stays as it was."""
    pushed = await push_release(source_registry, repo)
    store = store_config("dir", tmp_path)
    config = write_config(
        tmp_path, {"primary": source_registry}, source="primary", store=store, repositories=[repo]
    )
    await drd_here("snapshot", "create", config=config, capsys=capsys)
    intruder = make_image(f"{repo}/intruder")
    await push_image(source_registry, repo, intruder, "v1")
    await delete_tag(source_registry, repo, "v2")
    before = await list_tags(source_registry, repo)

    code, doc = await drd_here(
        "restore",
        "--snapshot",
        "latest",
        "--to",
        "primary",
        "--dry-run",
        "--allow-unsigned-snapshot",
        config=config,
        capsys=capsys,
    )
    assert code == 0
    planned = {i["tag"]: (i["action"], i["outcome"]) for i in doc["items"]}
    assert planned["v1"] == ("move", "planned")
    assert planned["v2"] == ("create", "planned")
    assert doc["plan"]["counts"]["move"] == 1
    assert await list_tags(source_registry, repo) == before
    raw, _ = await get_manifest(source_registry, repo, "v1")
    assert raw == intruder.raw
    assert pushed["image"].digest != intruder.digest


# --------------------------------------------------------------------------- hostile input


def _tamper_repo(doc: dict[str, Any], repo: str) -> None:
    doc["repositories"]["../../etc/" + repo.split("/")[0]] = doc["repositories"].pop(repo)


def _tamper_digest(doc: dict[str, Any], repo: str) -> None:
    doc["repositories"][repo]["tags"]["v1"] = "sha256:" + "ab" * 31  # 62 hex characters


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        pytest.param(_tamper_repo, "traversing path", id="dotdot-repository"),
        pytest.param(_tamper_digest, "must have 64 lower-case hex", id="short-digest"),
    ],
)
async def test_hostile_indexes_are_rejected_before_anything_is_written(
    source_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    tamper: Callable[[dict[str, Any], str], None],
    message: str,
) -> None:
    """An index naming ``../`` or a malformed digest is refused; the target is untouched."""
    await push_release(source_registry, repo)
    async with (
        opened(store_config("dir", tmp_path)) as store,
        open_client(source_registry, "primary") as source,
    ):
        snap = await take_snapshot(
            source, store, source_name="primary", repositories=RepoFilter((repo,)), blobs=False
        )
        doc = snap.to_json()
        tamper(doc, repo)
        hostile = snapshot_id(snap.taken_at.replace(year=2030))
        doc["id"], doc["taken_at"] = hostile, f"2030{doc['taken_at'][4:]}"
        await store.put_bytes(index_key("primary", hostile), encode_document(doc))
        with pytest.raises(SnapshotCorrupt, match=message):
            await load_snapshot(store, "primary", "latest")
    assert await list_tags(third_registry, repo) == []


@pytest.mark.parametrize("what", ["manifest", "blob"])
async def test_a_snapshot_missing_a_referenced_object_is_rejected_whole(
    source_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    what: str,
) -> None:
    """
    An index whose manifest (or stored blob) is gone from the store is refused before
    anything is written, even for the repositories that are complete.
    """
    pushed = await push_release(source_registry, repo)
    complete = f"{repo}-complete"
    await push_image(source_registry, complete, make_image(f"{repo}/complete"), "v1")
    async with (
        opened(store_config("dir", tmp_path)) as store,
        open_client(source_registry, "primary") as source,
        open_client(third_registry, "drill") as target,
    ):
        snap = await take_snapshot(
            source,
            store,
            source_name="primary",
            repositories=RepoFilter((repo, complete)),
            blobs=True,
        )
        image = pushed["image"]
        gone = (
            manifest_key(image.digest)
            if what == "manifest"
            else f"blobs/sha256/{image.layers[1].digest.hex}"
        )
        await store.delete(gone)
        with pytest.raises(SnapshotCorrupt, match="missing from the store") as err:
            await restore_snapshot(store, snap, target, sources={})
    assert (image.digest if what == "manifest" else image.layers[1].digest).hex in str(err.value)
    assert await list_tags(third_registry, repo) == []
    assert await list_tags(third_registry, complete) == []


async def test_a_corrupt_manifest_fails_the_restore_naming_the_digest(
    source_registry: LocalRegistry, third_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """``drd restore`` exits 1 naming the altered manifest's digest; nothing is written."""
    pushed = await push_release(source_registry, repo)
    store = store_config("dir", tmp_path)
    config = write_config(
        tmp_path,
        {"primary": source_registry, "drill": third_registry},
        source="primary",
        store=store,
        repositories=[repo],
    )
    async with opened(store) as opened_store, open_client(source_registry) as source:
        snap = await take_snapshot(
            source,
            opened_store,
            source_name="primary",
            repositories=RepoFilter((repo,)),
            blobs=False,
        )
    index = pushed["index"]
    child = index.images[0]
    (tmp_path / "store" / manifest_key(child.digest)).write_bytes(child.raw + b" ")
    proc = await run_drd(
        "restore",
        "--snapshot",
        snap.id,
        "--to",
        "drill",
        "--yes",
        "--allow-unsigned-snapshot",
        config=config,
    )
    assert proc.returncode == 1
    assert f"stored manifest {child.digest} is corrupt" in proc.stderr
    assert await list_tags(third_registry, repo) == []


async def test_referrers_found_through_the_api_are_recorded_and_restored(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    Behind a registry with the OCI 1.1 referrers API, untagged referrers (an SBOM and a
    signature of that SBOM) are recorded under their subjects and restored by digest.
    """
    image = make_image(f"{repo}/subject")
    sbom = make_referrer(image, f"{repo}/sbom")
    sbom_sig = make_referrer(sbom, f"{repo}/sig", artifact_type="application/vnd.example.sig")
    with fault_proxy(source_registry.url, emulate_referrers=True) as proxy:
        await push_image(proxy.url, repo, image, "v1")
        await push_image(proxy.url, repo, sbom)
        await push_image(proxy.url, repo, sbom_sig)
        async with (
            opened(store_config("dir", tmp_path)) as store,
            open_client(proxy.url, "primary") as source,
            open_client(target_registry, "dr") as target,
        ):
            snap = await take_snapshot(
                source, store, source_name="primary", repositories=RepoFilter((repo,)), blobs=False
            )
            record = snap.repositories[repo]
            assert dict(record.tags) == {"v1": image.digest}
            assert dict(record.referrers) == {
                image.digest: (sbom.digest,),
                sbom.digest: (sbom_sig.digest,),
            }
            report = await restore_snapshot(store, snap, target, sources={"primary": source})
    assert report.ok, report.failures
    for manifest in (image, sbom, sbom_sig):
        raw, _ = await get_manifest(target_registry, repo, manifest.digest)
        assert raw == manifest.raw
    assert await list_tags(target_registry, repo) == ["v1"]
