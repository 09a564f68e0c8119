"""Restore drills against real registries and real stores (a folder and moto's S3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drd.drill.judge import Targets
from drd.drill.report import DrillReport
from drd.drill.runner import run_drill
from drd.oci.digest import Digest
from drd.selection.filters import RepoFilter
from drd.snapshot.collect import take_snapshot
from drd.snapshot.model import Snapshot, blob_key
from tests.clients import RETRY, open_client
from tests.drill.helpers import (
    TRUST,
    cosign_fixture_policy,
    measure,
    push_signed,
    release_tags,
)
from tests.images import RegistryWriter, make_image, make_multiarch, push_image
from tests.layouts import CASES, push_layout
from tests.servers import LocalRegistry, s3_client
from tests.snapshot.helpers import opened, store_config

GENEROUS = Targets(rto_s=3600.0, rpo_s=3600.0)


async def snapshot_of(
    registry: LocalRegistry, store_cfg: object, prefix: str, *, blobs: bool = True
) -> Snapshot:
    """A snapshot of every repository under *prefix*/ on *registry*."""
    async with opened(store_cfg) as store, open_client(registry, "primary") as client:  # type: ignore[arg-type]
        return await take_snapshot(
            client,
            store,
            source_name="primary",
            repositories=RepoFilter((f"{prefix}/**",)),
            blobs=blobs,
            retry=RETRY,
        )


async def drill(
    store_cfg: object,
    target: LocalRegistry,
    *,
    sample: int = 0,
    trust: object = TRUST,
    snapshot: str = "latest",
    targets: Targets = GENEROUS,
) -> DrillReport:
    async with opened(store_cfg) as store, open_client(target, "drill") as client:  # type: ignore[arg-type]
        return await run_drill(
            store,
            client,
            source="primary",
            targets=targets,
            snapshot=snapshot,
            sample=sample,
            trust=trust,  # type: ignore[arg-type]
            retry=RETRY,
        )


async def assert_nothing_left(target: LocalRegistry, report: DrillReport) -> None:
    """No tag in any drill repository, and no manifest of the drill by digest."""
    assert report.cleanup["repositories_with_tags"] == []
    async with RegistryWriter(target) as w:
        for repo in report.repositories:
            assert repo.target.startswith(f"drill-{report.id}/")
            assert await w.list_tags(repo.target) == [], repo.target
        assert report.cleanup["manifests_deleted"] == report.scope.manifests
    assert (report.cleanup["blobs_deleted"], report.cleanup["blobs_left"]) == (
        report.scope.blobs,
        0,
    )


async def manifests_gone(target: LocalRegistry, repo: str, digests: set[Digest]) -> None:
    async with RegistryWriter(target) as w:
        for digest in digests:
            assert not await w.manifest_exists(repo, digest), digest


async def test_drill_of_the_real_world_fixtures_passes_and_counts_what_it_checked(
    source_registry: LocalRegistry, third_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    Every fixture layout comes back from the snapshot store byte for byte: the drill
    passes, and its tags, manifests, blobs and bytes equal what the test counts itself.
    """
    prefix = repo.split("/")[0]
    repos = [f"{prefix}/{case}" for case in CASES]
    for case, name in zip(CASES, repos, strict=True):
        await push_layout(source_registry, name, case)
    measured = await measure(source_registry, repos)
    cfg = store_config("dir", tmp_path)
    snap = await snapshot_of(source_registry, cfg, prefix)
    assert snap.tag_count == measured.tags

    report = await drill(cfg, third_registry, trust=cosign_fixture_policy())

    assert report.ok, report.to_json()
    assert report.verdict == "PASSED"
    rb = report.readback
    assert (rb.tags, rb.tags_ok) == (measured.tags, measured.tags)
    assert (rb.manifests, rb.blobs, rb.bytes) == (
        measured.manifests,
        measured.blobs,
        measured.bytes,
    )
    assert (report.scope.manifests, report.scope.blobs, report.scope.bytes) == (
        measured.manifests,
        measured.blobs,
        measured.bytes,
    )
    assert report.scope == report.whole
    assert report.judgement is not None
    assert report.judgement.rto is not None
    assert report.judgement.rto.scale == 1.0
    # The real cosign signature of the fixture verifies where it was restored.
    [cosign] = [r for r in report.repositories if r.repository.endswith("ocmirror-cosign-single")]
    assert (cosign.signed_ok, cosign.signature_failures) == (1, 0)
    assert rb.signature_failures == 0
    # Every release digest was either verified or found unsigned, once per repository.
    release_digests = {(r, measured.tag_map[r][t]) for r, t in release_tags(measured.tag_map)}
    assert rb.signed_ok + rb.unsigned == len(release_digests)
    assert {p.name for p in report.phases} >= {
        "load snapshot",
        "restore",
        "pull and re-hash",
        "compare tags",
        "verify signatures",
        "cleanup",
    }
    await assert_nothing_left(third_registry, report)
    for result in report.repositories:
        await manifests_gone(
            third_registry, result.target, measured.manifest_digests[result.repository]
        )


@pytest.mark.parametrize("kind", ["dir", "s3"])
async def test_a_corrupt_blob_in_the_store_fails_the_drill_naming_it(
    kind: str,
    source_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    s3_endpoint: str,
    bucket: str,
) -> None:
    """One flipped byte in one stored layer: the drill fails, names the blob, cleans up."""
    image = make_image(f"{repo}/corrupt", layers=2, layer_size=4096)
    await push_signed(source_registry, repo, image, "v1")
    await push_signed(source_registry, repo, make_image(f"{repo}/fine"), "v2")
    cfg = store_config(kind, tmp_path, s3_endpoint, bucket)
    await snapshot_of(source_registry, cfg, repo.split("/")[0])
    victim = image.layers[1].digest
    data = bytearray(image.layers[1].data)
    data[100] ^= 0xFF
    if kind == "dir":
        (tmp_path / "store" / blob_key(victim)).write_bytes(bytes(data))
    else:
        s3_client(s3_endpoint).put_object(
            Bucket=bucket, Key=f"snaps/{blob_key(victim)}", Body=bytes(data)
        )

    report = await drill(cfg, third_registry)

    assert not report.ok
    assert report.verdict == "FAILED"
    assert report.judgement is not None
    assert any("check" in r and "failed" in r for r in report.judgement.reasons)
    named = [f for f in report.failures if str(victim) in f.reason or f.digest == str(victim)]
    assert named, [f.to_json() for f in report.failures]
    assert any(f.tag == "v1" for f in report.failures)
    assert not any(f.tag == "v2" for f in report.failures)
    assert str(victim) in report.to_json().__repr__()
    await assert_nothing_left(third_registry, report)


async def test_a_sampled_drill_is_reproducible_and_restores_only_its_sample(
    source_registry: LocalRegistry, third_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """The same snapshot and sample size pick the same tags; only those (and their signatures)."""
    for i in range(6):
        await push_signed(source_registry, repo, make_image(f"{repo}/s{i}"), f"v{i}")
    await push_signed(source_registry, repo, make_multiarch(f"{repo}/multi"), "multi")
    cfg = store_config("dir", tmp_path)
    snap = await snapshot_of(source_registry, cfg, repo.split("/")[0])

    first = await drill(cfg, third_registry, sample=2, snapshot=snap.id)
    second = await drill(cfg, third_registry, sample=2, snapshot=snap.id)

    assert first.ok, first.to_json()
    assert second.ok, second.to_json()
    assert first.id != second.id
    assert (first.seed, first.chosen, first.release_tags) == (second.seed, 2, 7)
    assert first.readback.tags == second.readback.tags == 4  # two release tags, two .sig tags
    assert first.readback.signed_ok == 2
    assert first.scope == second.scope
    assert first.scope.tags < first.whole.tags
    rto = first.judgement.rto if first.judgement else None
    assert rto is not None
    assert rto.scale > 1.0
    assert "scaled by the larger" in rto.method
    await assert_nothing_left(third_registry, first)


async def test_an_unsigned_image_is_counted_and_a_bad_signature_fails(
    source_registry: LocalRegistry, third_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """Unsigned content is reported as unsigned; a signature by an untrusted key fails."""
    from tests.images import make_cosign_signature, signature_tag
    from tests.trust.signing import cached_key

    await push_image(source_registry, repo, make_image(f"{repo}/plain"), "plain")
    forged = make_image(f"{repo}/forged")
    await push_image(source_registry, repo, forged, "forged")
    other = cached_key("ecdsa-p256", 1)
    sig = make_cosign_signature(forged, other.private, docker_reference="x/y")
    await push_image(source_registry, repo, sig, signature_tag(forged.digest))
    cfg = store_config("dir", tmp_path)
    await snapshot_of(source_registry, cfg, repo.split("/")[0])

    report = await drill(cfg, third_registry)

    assert not report.ok
    assert (report.readback.unsigned, report.readback.signature_failures) == (1, 1)
    [failure] = report.failures
    assert (failure.phase, failure.tag, failure.digest) == (
        "verify signatures",
        "forged",
        str(forged.digest),
    )
    assert failure.reason.split(":")[0] in ("bad-signature", "unknown-key"), failure.reason
    await assert_nothing_left(third_registry, report)


async def test_missed_targets_fail_an_otherwise_clean_drill(
    source_registry: LocalRegistry, third_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """A drill with no failure still fails when the RTO estimate or the RPO misses its target."""
    await push_signed(source_registry, repo, make_image(f"{repo}/a"), "v1")
    cfg = store_config("dir", tmp_path)
    await snapshot_of(source_registry, cfg, repo.split("/")[0])

    report = await drill(cfg, third_registry, targets=Targets(rto_s=1e-6, rpo_s=1e-6))

    assert report.failures == []
    assert not report.ok
    assert report.judgement is not None
    reasons = " ".join(report.judgement.reasons)
    assert "RTO estimate" in reasons
    assert "RPO" in reasons
