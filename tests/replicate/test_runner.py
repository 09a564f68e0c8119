"""Replication between two real registries: byte-exact, bottom-up, idempotent, and honest."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.replicate.runner import run_policy
from tests.clients import RETRY, open_client, policy_for
from tests.images import (
    RegistryWriter,
    make_image,
    make_multiarch,
    push_image,
    push_index,
)
from tests.layouts import CASES, push_layout
from tests.servers import LocalRegistry
from tests.skopeo import inspect_raw
from tests.trust.signing import signature_manifest, simple_signing_payload


async def replicate(source: LocalRegistry, target: LocalRegistry, *repos: str, **options):
    async with open_client(source, "source") as src, open_client(target, "target") as dst:
        report = await run_policy(policy_for(*repos, **options), src, {"target": dst}, RETRY)
    return report, src.requests, dst.requests


@pytest.mark.parametrize("case", CASES)
async def test_every_fixture_arrives_byte_exact(
    case: str, source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    Every tag of each real-world layout is at the target with the same bytes (checked by
    skopeo), every blob is present, and a second pass writes nothing.
    """
    layout = await push_layout(source_registry, repo, case)
    report, _, _ = await replicate(source_registry, target_registry, repo)
    assert report.ok, report.to_json()
    assert report.count("copied") == len(layout.tags)

    for tag, digest in layout.tags.items():
        raw = inspect_raw(target_registry.host, repo, tag)
        assert Digest.of(raw) == digest, tag
        assert raw == layout.manifests[digest]
    async with open_client(target_registry) as dst:
        reachable = _reachable(layout, set(layout.tags.values()))
        for digest in reachable:
            manifest = await dst.get_manifest(repo, digest)
            for blob in manifest.blobs:
                assert await dst.has_blob(repo, blob.digest) == blob.size, (digest, blob.digest)

    again, _, _ = await replicate(source_registry, target_registry, repo)
    assert again.ok
    assert again.count("copied") == 0
    assert again.count("skipped") == len(layout.tags)
    stats = again.stats["target"]
    assert (stats.blobs_copied, stats.manifests_written, stats.bytes_copied) == (0, 0, 0)


def _reachable(layout, roots: set[Digest]) -> set[Digest]:
    from drd.oci.manifest import Manifest

    seen: set[Digest] = set()
    todo = list(roots)
    while todo:
        digest = todo.pop()
        if digest in seen:
            continue
        seen.add(digest)
        manifest = Manifest.parse(layout.manifests[digest])
        todo.extend(d.digest for d in manifest.manifests if d.digest in layout.manifests)
    return seen


async def test_multiarch_index_and_signature_tag_are_copied(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    An index arrives with its children, and its cosign-format .sig tag rides along
    (unverified: the policy does not require signatures, but it must be a signature).
    """
    index = make_multiarch("multi")
    await push_index(source_registry, repo, index, "v1")
    sig_tag = f"{index.digest.tag_form}.sig"
    raw, blobs = signature_manifest([(simple_signing_payload(index.digest, repo), "c2ln")])
    async with RegistryWriter(source_registry) as w:
        for blob in blobs.values():
            await w.push_blob(repo, blob)
        await w.push_manifest(repo, sig_tag, raw, mediatype.OCI_MANIFEST)
    sig_digest = Digest.of(raw)
    unrelated = f"sha256-{'0' * 64}.sig"
    await push_image(source_registry, repo, make_image("dangling"), unrelated)

    report, _, _ = await replicate(source_registry, target_registry, repo)

    assert report.ok
    copied = {i.tag for i in report.items if i.outcome == "copied"}
    assert copied == {"v1", sig_tag}, "a signature of an unselected digest is not copied"
    assert Digest.of(inspect_raw(target_registry.host, repo, "v1")) == index.digest
    assert Digest.of(inspect_raw(target_registry.host, repo, sig_tag)) == sig_digest


async def test_moved_tag_is_copied_and_reported_as_moved(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """A tag that moved at the source moves at the target, and the report says from where."""
    first, second = make_image("first"), make_image("second")
    await push_image(source_registry, repo, first, "v1")
    await replicate(source_registry, target_registry, repo)
    await push_image(source_registry, repo, second, "v1")

    report, _, _ = await replicate(source_registry, target_registry, repo)

    (item,) = report.items
    assert (item.outcome, item.digest, item.moved_from) == (
        "copied",
        str(second.digest),
        str(first.digest),
    )
    assert Digest.of(inspect_raw(target_registry.host, repo, "v1")) == second.digest


async def test_immutable_target_never_moves_a_tag(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """With immutable tags the target keeps its digest and the move is reported as drift."""
    first, second = make_image("imm-1"), make_image("imm-2")
    await push_image(source_registry, repo, first, "v1")
    await replicate(source_registry, target_registry, repo, immutable_tags=True)
    await push_image(source_registry, repo, second, "v1")

    with structlog.testing.capture_logs() as logs:
        report, _, _ = await replicate(source_registry, target_registry, repo, immutable_tags=True)

    (item,) = report.items
    assert item.outcome == "drift"
    assert item.moved_from == str(first.digest)
    assert Digest.of(inspect_raw(target_registry.host, repo, "v1")) == first.digest
    assert any(e["event"] == "replicate.drift" for e in logs)


async def test_tag_filters_select_what_is_copied(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """Only tags matching the include regex (and not the exclude) reach the target."""
    for tag in ("v1.0.0", "v1.1.0-rc1", "latest"):
        await push_image(source_registry, repo, make_image(f"filter-{tag}"), tag)

    async with open_client(source_registry) as src, open_client(target_registry) as dst:
        from drd.selection.filters import RepoFilter, TagFilter
        from drd.selection.policy import Policy

        policy = Policy("p", RepoFilter((repo,)), TagFilter((r"^v\d",), ("-rc",)))
        report = await run_policy(policy, src, {"t": dst}, RETRY)
        assert await dst.list_tags(repo) == ["v1.0.0"]
    assert [i.tag for i in report.items] == ["v1.0.0"]


async def test_dry_run_plans_and_writes_nothing(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """--dry-run reports the plan; the target stays empty."""
    await push_image(source_registry, repo, make_image("dry"), "v1")
    async with open_client(source_registry) as src, open_client(target_registry) as dst:
        report = await run_policy(policy_for(repo), src, {"t": dst}, RETRY, dry_run=True)
        assert await dst.list_tags(repo) == []
    assert [(i.tag, i.outcome) for i in report.items] == [("v1", "planned")]


async def test_shared_blobs_move_once_and_are_mounted_across_repositories(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """A layer shared by images in two repositories is transferred once, then mounted."""
    other = repo.replace("/app", "/other")
    image_a = make_image("shared-base", layers=2, layer_size=4096)
    await push_image(source_registry, repo, image_a, "v1")
    await push_image(source_registry, other, image_a, "v1")

    report, _, _ = await replicate(source_registry, target_registry, repo, other)

    stats = report.stats["target"]
    assert report.ok
    assert stats.blobs_copied == len(image_a.blobs)
    assert stats.blobs_mounted + stats.blobs_present == len(image_a.blobs)


def _manifest_data_file(registry: LocalRegistry, digest: Digest) -> Path:
    return (
        registry.root
        / "docker/registry/v2/blobs"
        / digest.algorithm
        / digest.hex[:2]
        / digest.hex
        / "data"
    )


async def test_source_manifest_whose_bytes_do_not_match_fails_that_item_only(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """A corrupted source manifest fails with DigestMismatch; the other tag is copied."""
    good, bad = make_image("good"), make_image("bad")
    await push_image(source_registry, repo, good, "good")
    await push_image(source_registry, repo, bad, "bad")
    path = _manifest_data_file(source_registry, bad.digest)
    assert path.is_file(), path
    path.write_bytes(path.read_bytes().replace(b'"schemaVersion"', b'"schemaVersion" '))

    report, _, _ = await replicate(source_registry, target_registry, repo)

    outcomes = {i.tag: (i.outcome, i.error) for i in report.items}
    assert outcomes == {"good": ("copied", ""), "bad": ("failed", "DigestMismatch")}
    async with open_client(target_registry) as dst:
        assert await dst.list_tags(repo) == ["good"]
        assert await dst.head_manifest(repo, str(bad.digest)) is None


async def test_a_dangling_signature_costs_a_no_op_pass_nothing_extra(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    A signature of a digest no tag selects never reaches the target, and a no-op pass
    asks the source only for the tag list and one HEAD per tag: no manifest GETs.
    """
    await push_image(source_registry, repo, make_image("lonely"), "v1")
    dangling = f"sha256-{'1' * 64}.sig"
    await push_image(source_registry, repo, make_image("orphan-sig"), dangling)
    first, _, _ = await replicate(source_registry, target_registry, repo)
    assert [(i.tag, i.outcome) for i in first.items] == [("v1", "copied")]

    again, src_requests, _ = await replicate(source_registry, target_registry, repo)

    assert [(i.tag, i.outcome) for i in again.items] == [("v1", "skipped")]
    # The referrers API is asked about once per client (distribution 2.8 has none).
    assert src_requests == 4, "tags list, HEAD v1, HEAD of the dangling tag, referrers probe"


async def test_a_new_image_costs_one_request_per_step(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    A tag no target holds is read whole once (no HEAD then GET), and a new blob costs a
    claim and its upload (no HEAD first): the cold copy's request count, exactly.
    """
    image = make_image("counted", layers=2, layer_size=4096)
    await push_image(source_registry, repo, image, "v1")

    report, src_requests, dst_requests = await replicate(source_registry, target_registry, repo)

    assert [(i.tag, i.outcome) for i in report.items] == [("v1", "copied")]
    blobs = len(image.blobs)
    assert blobs == 3
    # tags list, manifest GET by tag, one GET per blob, the referrers probe (once per client)
    assert src_requests == 1 + 1 + blobs + 1
    # tags list; a claim and a PUT per blob; the manifest by digest, read back, then the tag
    assert dst_requests == 1 + 2 * blobs + 3
    async with open_client(target_registry) as dst:
        assert (await dst.get_manifest(repo, "v1")).raw == image.raw
