"""The pure parts of a drill: choosing what to restore, and judging the result."""

from __future__ import annotations

import datetime as dt

import pytest

from drd.drill.estimate import DrillTimes
from drd.drill.judge import Targets, estimate_rto, judge, size, snapshot_rpo
from drd.drill.plan import (
    NAMESPACE_PREFIX,
    Volume,
    namespace_for,
    plan_drill,
    release_tags,
    sample_tags,
    seed_for,
)
from drd.errors import InvalidReference
from drd.oci.digest import Digest
from drd.snapshot.model import ManifestRecord, RepositoryRecord, Snapshot
from drd.timeline import duration

TAKEN = dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.UTC)


def d(n: int) -> Digest:
    return Digest("sha256", f"{n:064x}")


def snapshot(repos: int = 3, tags: int = 4, snap_id: str = "20240501T093000.000000Z") -> Snapshot:
    """*repos* repositories of *tags* one-blob images, each signed (a .sig tag per image)."""
    manifests: dict[Digest, ManifestRecord] = {}
    blobs: dict[Digest, int] = {}
    repositories = {}
    n = 1
    for r in range(repos):
        tag_map: dict[str, Digest] = {}
        for t in range(tags):
            image, blob, sig, sig_blob = d(n), d(n + 1), d(n + 2), d(n + 3)
            n += 4
            blobs[blob] = 1000 * (t + 1)
            blobs[sig_blob] = 10
            manifests[image] = ManifestRecord(
                "application/vnd.oci.image.manifest.v1+json", 100, (), (blob,)
            )
            manifests[sig] = ManifestRecord(
                "application/vnd.oci.image.manifest.v1+json", 50, (), (sig_blob,)
            )
            tag_map[f"v{t}"] = image
            tag_map[f"{image.tag_form}.sig"] = sig
        repositories[f"team/app{r}"] = RepositoryRecord(
            tags=tag_map, manifests=frozenset(tag_map.values())
        )
    return Snapshot(
        id=snap_id,
        source="primary",
        taken_at=TAKEN,
        repositories=repositories,
        manifests=manifests,
        blobs=blobs,
        blobs_stored=True,
    )


def test_the_whole_snapshot_is_restored_under_the_drill_namespace() -> None:
    """Sample 0 restores every tag, every repository prefixed with drill-<id>/."""
    snap = snapshot()

    plan = plan_drill(snap, sample=0, run_id="abc123")

    assert plan.namespace == "drill-abc123/"
    assert not plan.sampled
    assert plan.scope == plan.whole
    assert plan.scope == Volume(
        repositories=3, tags=24, manifests=24, blobs=24, bytes=3 * (4 * 150 + 10000 + 40)
    )
    assert all(
        r.target.startswith(f"{NAMESPACE_PREFIX}abc123/team/") for r in plan.restore.repositories
    )
    assert set(plan.expected) == {f"drill-abc123/team/app{i}" for i in range(3)}
    assert plan.source_repository("drill-abc123/team/app1") == "team/app1"


def test_a_sample_is_seeded_by_the_snapshot_id_and_brings_its_signatures() -> None:
    """The same snapshot id picks the same tags; another id another sample; .sig tags ride along."""
    snap = snapshot()
    again = snapshot()
    other = snapshot(snap_id="20240501T093001.000000Z")

    first = plan_drill(snap, sample=3, run_id="a")
    second = plan_drill(again, sample=3, run_id="b")
    third = plan_drill(other, sample=3, run_id="c")

    assert first.chosen == second.chosen
    assert first.seed == second.seed == seed_for(snap.id)
    assert third.seed != first.seed
    assert len(first.chosen) == 3
    assert set(first.chosen) <= set(release_tags(snap))
    restored = {(r.removeprefix("drill-a/"), t) for r, tags in first.expected.items() for t in tags}
    release = {pair for pair in restored if not pair[1].endswith(".sig")}
    assert release == set(first.chosen)
    assert len(restored) == 6  # each chosen image with its signature
    assert first.scope.tags == 6
    assert first.scope.bytes < first.whole.bytes
    assert first.whole == plan_drill(snap, sample=0, run_id="z").scope


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        pytest.param(0, 12, id="zero-is-all"),
        pytest.param(12, 12, id="all"),
        pytest.param(50, 12, id="more-than-all"),
        pytest.param(5, 5, id="sample"),
    ],
)
def test_sample_sizes(sample: int, expected: int) -> None:
    """0 or a sample at least the population restores every release tag."""
    assert len(sample_tags(snapshot(), sample)) == expected


@pytest.mark.parametrize("run_id", ["", "UPPER", "a/b", "..", "x" * 33, "a-b"])
def test_run_ids_outside_the_grammar_are_refused(run_id: str) -> None:
    """A drill namespace is drill-<lower-case alphanumerics>: nothing else reaches a name."""
    with pytest.raises(InvalidReference):
        namespace_for(run_id)


def test_rpo_is_the_age_of_the_newest_snapshot() -> None:
    """The newest snapshot's age at the drill's start, with the method stated."""
    age, method = snapshot_rpo(TAKEN, TAKEN + dt.timedelta(minutes=42))
    assert age == 42 * 60
    assert "2024-05-01T09:30:00Z" in method
    none, why = snapshot_rpo(None, TAKEN)
    assert none is None
    assert "everything would be lost" in why


@pytest.mark.parametrize(
    ("rto", "rpo", "failures", "error", "passed", "reason"),
    [
        pytest.param(10.0, 60.0, 0, "", True, "", id="within"),
        pytest.param(
            100.0, 60.0, 0, "", False, "RTO estimate 100.0s exceeds the target 60.0s", id="rto"
        ),
        pytest.param(10.0, 7200.0, 0, "", False, "RPO 2h00m exceeds the target 1h00m", id="rpo"),
        pytest.param(10.0, 60.0, 2, "", False, "2 checks failed", id="failures"),
        pytest.param(
            10.0, 60.0, 0, "StorageUnavailable: x", False, "could not run to its end", id="error"
        ),
        pytest.param(10.0, None, 0, "", False, "RPO unknown", id="rpo-unknown"),
    ],
)
def test_the_verdict_needs_no_failure_and_both_targets_met(
    rto: float, rpo: float | None, failures: int, error: str, passed: bool, reason: str
) -> None:
    """Each unmet condition is one reason; passing needs none."""
    estimate = estimate_rto(
        DrillTimes(None, 0.0, rto, 0.0), Volume(1, 1, 1, 1, 1), Volume(1, 1, 1, 1, 1)
    )
    verdict = judge(
        rto=estimate,
        rpo_s=rpo,
        rpo_method="method",
        targets=Targets(rto_s=60.0, rpo_s=3600.0),
        failures=failures,
        error=error,
    )
    assert verdict.passed is passed
    if reason:
        assert any(reason in r for r in verdict.reasons), verdict.reasons
    else:
        assert verdict.reasons == ()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250ms"), (42, "42.0s"), (125, "2m05s"), (3600, "1h00m"), (3 * 86400 + 7200, "3d02h")],
)
def test_durations_read_like_a_person_writes_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_sizes_use_binary_units() -> None:
    assert [size(512), size(1536), size(3 * 1024**3)] == ["512 B", "1.5 KiB", "3.0 GiB"]
