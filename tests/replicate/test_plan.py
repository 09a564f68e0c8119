"""The replication planner and filters: pure tables."""

from __future__ import annotations

import pytest

from drd.oci.digest import Digest
from drd.replicate.plan import Copy, Drift, Skip, plan_attached, plan_tags
from drd.selection.filters import RepoFilter, TagFilter, glob_match

A, B = Digest("sha256", "a" * 64), Digest("sha256", "b" * 64)
SIG_A = f"sha256-{'a' * 64}.sig"
SIG_B = f"sha256-{'b' * 64}.sig"


@pytest.mark.parametrize(
    ("target", "immutable", "expected"),
    [
        pytest.param({}, False, [Copy("v1", A)], id="missing-on-target"),
        pytest.param({"v1": A}, False, [Skip("v1", A, "up to date")], id="same-digest"),
        pytest.param({"v1": B}, False, [Copy("v1", A, moved_from=B)], id="tag-moved"),
        pytest.param({"v1": B}, True, [Drift("v1", A, B)], id="immutable-drift"),
    ],
)
def test_plan_for_one_tag(target: dict[str, Digest], immutable: bool, expected: list) -> None:
    """Each target state yields exactly one action for the tag."""
    assert plan_tags({"v1": A}, target, immutable=immutable) == expected


def test_attached_tags_ride_only_on_wanted_digests() -> None:
    """A .sig tag is planned only when its subject made it to the target."""
    plan = plan_attached({SIG_A: B, SIG_B: A}, {}, {A})
    assert plan == [Copy(SIG_A, B, attached=True)]
    assert plan_attached({SIG_A: B}, {SIG_A: B}, {A}) == [
        Skip(SIG_A, B, "up to date", attached=True)
    ]


def test_attached_tags_follow_a_re_signing() -> None:
    """A re-signed image's signature tag moves: attached tags are never held immutable."""
    plan = plan_attached({SIG_A: B}, {SIG_A: A}, {A})
    assert plan == [Copy(SIG_A, B, moved_from=A, attached=True)]


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        pytest.param("team-a/**", "team-a/x/y", True, id="double-star-crosses"),
        pytest.param("base/*", "base/x", True, id="star"),
        pytest.param("base/*", "base/x/y", False, id="star-stays-in-component"),
        pytest.param("app", "app", True, id="literal"),
        pytest.param("a?c", "abc", True, id="question"),
        pytest.param("a.c", "abc", False, id="dot-is-literal"),
    ],
)
def test_glob(pattern: str, name: str, matches: bool) -> None:
    """Repository globs: ** crosses slashes, * does not."""
    assert glob_match(pattern, name) is matches


def test_repo_filter_include_exclude_and_literals() -> None:
    """Excludes win over includes; all-literal includes need no catalog."""
    f = RepoFilter(("team/**", "base"), ("team/secret",))
    assert f("team/app")
    assert f("base")
    assert not f("team/secret")
    assert not f("other")
    assert RepoFilter(("a", "b")).literal_names() == ["a", "b"]
    assert RepoFilter(("a/*",)).literal_names() is None


def test_tag_filter_regexes_and_attached_tags() -> None:
    """Include/exclude regexes select release tags; signature tags are never selected."""
    f = TagFilter((r"^v\d+\.\d+\.\d+$",), ("-rc",))
    assert f.select(["v1.2.3", "v1.2.3-rc", "latest", SIG_A, "v2.0.0"]) == ["v1.2.3", "v2.0.0"]
    assert TagFilter(None).select(["b", "a", SIG_A]) == ["a", "b"]
