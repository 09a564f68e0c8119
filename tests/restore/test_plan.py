"""Restore planning as a pure function: selection, tag actions, order, prefixes."""

from __future__ import annotations

import datetime as dt

import pytest

from drd.errors import InvalidReference, SnapshotCorrupt
from drd.oci.digest import Digest
from drd.restore.plan import Selection, plan_restore, select
from drd.snapshot.model import ManifestRecord, RepositoryRecord, Snapshot, snapshot_id

T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
IMAGE = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def d(seed: str) -> Digest:
    """A digest named by *seed*."""
    return Digest.of(seed.encode())


def build(
    repos: dict[str, dict[str, Digest]], extra: dict[str, set[Digest]] | None = None
) -> Snapshot:
    """
    A snapshot over a fixed graph: ``index`` lists ``amd64`` and ``arm64``; ``sbom`` refers
    to ``index``; ``sig`` and ``other`` are plain images; ``loose`` is untagged.
    """
    layer = d("layer")
    manifests = {
        d("amd64"): ManifestRecord(IMAGE, 10, blobs=(layer,)),
        d("arm64"): ManifestRecord(IMAGE, 10, blobs=(layer, d("arm-layer"))),
        d("index"): ManifestRecord(INDEX, 10, children=(d("amd64"), d("arm64"))),
        d("sbom"): ManifestRecord(IMAGE, 10, blobs=(d("sbom-layer"),), subject=d("index")),
        d("refs"): ManifestRecord(INDEX, 10, children=(d("sbom"),)),
        d("sig"): ManifestRecord(IMAGE, 10, blobs=(d("sig-layer"),)),
        d("other"): ManifestRecord(IMAGE, 10, blobs=(layer,)),
        d("loose"): ManifestRecord(IMAGE, 10, blobs=(layer,)),
    }
    blobs = {b: 1 for rec in manifests.values() for b in rec.blobs}
    records = {}
    for name, tags in repos.items():
        members = set((extra or {}).get(name, set()))
        stack = list(tags.values())
        while stack:
            digest = stack.pop()
            if digest not in members:
                members.add(digest)
                stack.extend(manifests[digest].children)
        records[name] = RepositoryRecord(tags=tags, manifests=frozenset(members))
    return Snapshot(
        id=snapshot_id(T0),
        source="primary",
        taken_at=T0,
        repositories=records,
        manifests=manifests,
        blobs=blobs,
    )


APP = {
    "v1": d("index"),
    "v2": d("other"),
    f"{d('index').tag_form}": d("refs"),
    f"{d('index').tag_form}.sig": d("sig"),
    f"{d('other').tag_form}.sig": d("sig"),
}


def test_tag_actions_follow_the_target() -> None:
    """Missing at the target: create; same digest: keep; another digest: move back."""
    snap = build({"team/app": APP})
    current = {"team/app": {"v1": d("index"), "v2": d("loose")}}
    plan = plan_restore(snap, Selection(), current)
    [repo] = plan.repositories
    actions = {t.tag: (t.action, t.current) for t in repo.tags}
    assert actions["v1"] == ("keep", d("index"))
    assert actions["v2"] == ("move", d("loose"))
    assert actions[f"{d('index').tag_form}.sig"] == ("create", None)
    assert plan.counts()["move"] == 1


def test_children_and_subjects_come_before_parents_and_referrers() -> None:
    """Levels put each manifest after its children, and a referrer after its subject."""
    plan = plan_restore(build({"team/app": APP}), Selection(), {})
    order = {digest: n for n, level in enumerate(plan.repositories[0].levels) for digest in level}
    assert order[d("amd64")] < order[d("index")]
    assert order[d("arm64")] < order[d("index")]
    assert order[d("index")] < order[d("sbom")] < order[d("refs")]
    assert set(plan.repositories[0].blobs) == {
        d("layer"),
        d("arm-layer"),
        d("sbom-layer"),
        d("sig-layer"),
    }


def test_a_tag_regex_brings_its_signatures_and_referrers_along() -> None:
    """``--tag ^v1$`` restores v1, the index's .sig and referrers tag, not v2's signature."""
    snap = build({"team/app": APP})
    chosen = select(snap, Selection(tag_pattern=r"^v1$"))
    assert set(chosen["team/app"]) == {"v1", d("index").tag_form, f"{d('index').tag_form}.sig"}
    plan = plan_restore(snap, Selection(tag_pattern=r"^v1$"), {})
    assert d("other") not in plan.repositories[0].manifests
    assert d("sbom") in plan.repositories[0].manifests


def test_repository_globs_and_exact_pairs_select() -> None:
    """Globs pick repositories; exact (repository, tag) pairs pick tags, as a drill does."""
    snap = build({"team/app": APP, "team/web": {"v1": d("other")}, "base/os": {"v1": d("sig")}})
    by_glob = plan_restore(snap, Selection(repositories=("team/*",)), {})
    assert [r.repository for r in by_glob.repositories] == ["team/app", "team/web"]
    exact = plan_restore(snap, Selection(only=frozenset({("team/app", "v2")})), {})
    [repo] = exact.repositories
    assert {t.tag for t in repo.tags} == {"v2", f"{d('other').tag_form}.sig"}


def test_a_whole_repository_includes_untagged_content() -> None:
    """Without a tag filter, manifests the repository held untagged come back too."""
    snap = build({"team/app": {"v1": d("other")}}, extra={"team/app": {d("loose")}})
    assert d("loose") in plan_restore(snap, Selection(), {}).repositories[0].manifests
    narrowed = plan_restore(snap, Selection(tag_pattern="v1"), {})
    assert d("loose") not in narrowed.repositories[0].manifests


def test_a_prefix_renames_every_target_repository() -> None:
    """``drill-7/`` + ``team/app``; current tags are looked up under the new name."""
    snap = build({"team/app": APP})
    plan = plan_restore(
        snap, Selection(), {"drill-7/team/app": {"v2": d("other")}}, repository_prefix="drill-7/"
    )
    [repo] = plan.repositories
    assert (repo.repository, repo.target) == ("team/app", "drill-7/team/app")
    assert {t.tag: t.action for t in repo.tags}["v2"] == "keep"
    with pytest.raises(InvalidReference):
        plan_restore(snap, Selection(), {}, repository_prefix="../")


def test_a_cycle_is_refused() -> None:
    """A graph where a manifest depends on itself is corrupt, not looped over."""
    a, b = d("a"), d("b")
    snap = Snapshot(
        id=snapshot_id(T0),
        source="primary",
        taken_at=T0,
        repositories={"x/y": RepositoryRecord(tags={"t": a}, manifests=frozenset({a, b}))},
        manifests={a: ManifestRecord(INDEX, 1, children=(b,)), b: ManifestRecord(INDEX, 1, (a,))},
        blobs={},
    )
    with pytest.raises(SnapshotCorrupt, match="depends on itself"):
        plan_restore(snap, Selection(), {})


def test_a_bad_tag_regex_is_a_clear_error() -> None:
    """An unparsable ``--tag`` is refused before anything runs."""
    with pytest.raises(InvalidReference, match="tag pattern"):
        Selection(tag_pattern="(")
