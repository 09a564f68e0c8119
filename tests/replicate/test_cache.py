"""The known-target-tags cache: it only ever saves a HEAD, and never hides a change drd can see."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from drd.cli import main
from drd.oci.digest import Digest
from drd.replicate.cache import (
    CACHE_FILE,
    Entry,
    TagCache,
    lifetime,
    open_tag_cache,
    trusted,
)
from drd.replicate.report import PolicyReport
from drd.replicate.runner import run_policy
from tests.clients import RETRY, open_client, policy_for
from tests.images import make_image, push_image
from tests.servers import LocalRegistry
from tests.skopeo import inspect_raw

A = Digest("sha256", "a" * 64)
B = Digest("sha256", "b" * 64)
DAY = 86400.0
T = "http://127.0.0.1:5000"


class Clock:
    """A settable clock for cache expiry."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------- the pure core


def test_trusted_needs_the_listed_tag_the_same_digest_and_a_fresh_entry() -> None:
    """Only a listed tag whose fresh entry names the source's digest is spared its HEAD."""
    known = {
        "same": Entry(A, 0.0),
        "moved": Entry(B, 0.0),
        "unlisted": Entry(A, 0.0),
        "old": Entry(A, -DAY),
    }
    wanted = {"same": A, "moved": A, "unlisted": A, "old": A, "unknown": A}
    listed = {"same", "moved", "old", "unknown"}

    found = trusted(T, "r", wanted, listed, known, now=1.0, max_age=DAY)

    assert found == {"same": A}


@pytest.mark.parametrize("tag", [f"v{i}" for i in range(20)])
def test_lifetime_is_spread_between_half_and_all_of_max_age(tag: str) -> None:
    """Entries expire spread over [max_age/2, max_age), the same way for the same key."""
    life = lifetime(T, "r", tag, DAY)
    assert DAY / 2 <= life < DAY
    assert life == lifetime(T, "r", tag, DAY)


def test_an_entry_from_the_future_is_not_trusted() -> None:
    """A clock that went backwards does not extend an entry's life."""
    known = {"v1": Entry(A, 100.0)}
    assert trusted(T, "r", {"v1": A}, {"v1"}, known, now=50.0, max_age=DAY) == {}


# ---------------------------------------------------------------------- storage


async def test_entries_survive_a_reopen_and_forgetting_sticks(tmp_path: Path) -> None:
    """What was observed is there after a reopen; a forgotten or unlisted tag is not."""
    clock = Clock()
    cache = await TagCache.open(tmp_path, clock=clock)
    cache.observed(T, "r", "v1", A)
    cache.observed(T, "r", "v2", A)
    cache.observed(T, "r", "v3", A)
    cache.observed(T, "r", "v3", None)
    await cache.aclose()

    cache = await TagCache.open(tmp_path, clock=clock)
    wanted = {"v1": A, "v2": A, "v3": A}
    assert await cache.lookup(T, "r", wanted, {"v1", "v2", "v3"}) == {"v1": A, "v2": A}
    assert await cache.lookup("http://other:5000", "r", wanted, {"v1"}) == {}
    # The target stopped listing v2: forgotten, and still forgotten after a reopen.
    assert await cache.lookup(T, "r", wanted, {"v1", "v3"}) == {"v1": A}
    await cache.aclose()
    cache = await TagCache.open(tmp_path, clock=clock)
    assert await cache.lookup(T, "r", wanted, {"v1", "v2", "v3"}) == {"v1": A}
    await cache.aclose()


async def test_an_unreadable_cache_file_is_moved_aside(tmp_path: Path) -> None:
    """A file that is not a cache is kept for inspection and replaced by an empty cache."""
    (tmp_path / CACHE_FILE).write_bytes(b"this is not a database" * 100)

    cache = await TagCache.open(tmp_path)
    assert await cache.lookup(T, "r", {"v1": A}, {"v1"}) == {}
    await cache.aclose()

    assert (tmp_path / f"{CACHE_FILE}.unreadable").read_bytes().startswith(b"this is not")


async def test_a_state_dir_that_cannot_hold_the_cache_means_no_cache(tmp_path: Path) -> None:
    """A pass without a usable state directory runs without the cache instead of failing."""
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    async with open_tag_cache(blocked) as cache:
        assert cache is None
    async with open_tag_cache(None) as cache:
        assert cache is None


# ---------------------------------------------------------------------- in a pass


async def _pass(
    source: LocalRegistry,
    target: LocalRegistry,
    repo: str,
    cache: TagCache | None,
    *,
    immutable_tags: bool = False,
) -> tuple[PolicyReport, int]:
    async with open_client(source, "source") as src, open_client(target, "target") as dst:
        report = await run_policy(
            policy_for(repo, immutable_tags=immutable_tags),
            src,
            {"target": dst},
            RETRY,
            cache=cache,
        )
    return report, dst.requests


async def test_a_noop_pass_asks_the_target_only_for_its_tags_list(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """After a pass that copied them, the next pass skips every tag with one target request."""
    for i in range(5):
        await push_image(source_registry, repo, make_image(f"{repo}/{i}"), f"v{i}")
    cache = await TagCache.open(tmp_path)
    first, _ = await _pass(source_registry, target_registry, repo, cache)
    assert first.count("copied") == 5

    again, target_requests = await _pass(source_registry, target_registry, repo, cache)

    assert again.count("skipped") == 5
    assert target_requests == 1, "only the tags list; no HEAD per tag"
    uncached, uncached_requests = await _pass(source_registry, target_registry, repo, None)
    assert uncached.count("skipped") == 5
    assert uncached_requests == 6
    await cache.aclose()


async def test_a_tag_removed_at_the_target_is_copied_again(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """The cache says the tag is there, the target's tags list says it is not: it is copied."""
    image = make_image(f"{repo}/gone")
    await push_image(source_registry, repo, image, "v1")
    cache = await TagCache.open(tmp_path)
    await _pass(source_registry, target_registry, repo, cache)
    target_registry.remove_tag(repo, "v1")

    report, _ = await _pass(source_registry, target_registry, repo, cache)

    assert [(i.tag, i.outcome) for i in report.items] == [("v1", "copied")]
    assert Digest.of(inspect_raw(target_registry.host, repo, "v1")) == image.digest
    await cache.aclose()


async def test_a_tag_moved_at_the_source_is_checked_at_the_target(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """A source digest the cache does not know is asked for: the move and its origin are real."""
    first, second, third = (make_image(f"{repo}/{n}") for n in ("first", "second", "third"))
    await push_image(source_registry, repo, first, "v1")
    cache = await TagCache.open(tmp_path)
    await _pass(source_registry, target_registry, repo, cache)
    # Behind drd's back the target moves on; then the source moves too.
    await push_image(target_registry, repo, second, "v1")
    await push_image(source_registry, repo, third, "v1")

    report, _ = await _pass(source_registry, target_registry, repo, cache)

    (item,) = report.items
    assert (item.outcome, item.digest, item.moved_from) == (
        "copied",
        str(third.digest),
        str(second.digest),
    )
    assert Digest.of(inspect_raw(target_registry.host, repo, "v1")) == third.digest
    await cache.aclose()


async def test_an_immutable_target_reports_drift_from_its_real_digest(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """The cache never decides a drift: the target's own answer is the one reported."""
    first, second = make_image(f"{repo}/first"), make_image(f"{repo}/second")
    await push_image(source_registry, repo, first, "v1")
    cache = await TagCache.open(tmp_path)
    await _pass(source_registry, target_registry, repo, cache, immutable_tags=True)
    await push_image(source_registry, repo, second, "v1")

    report, _ = await _pass(source_registry, target_registry, repo, cache, immutable_tags=True)

    (item,) = report.items
    assert (item.outcome, item.digest, item.moved_from) == (
        "drift",
        str(second.digest),
        str(first.digest),
    )
    assert Digest.of(inspect_raw(target_registry.host, repo, "v1")) == first.digest
    await cache.aclose()


async def test_an_expired_entry_finds_a_tag_rewritten_at_the_target(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    A tag rewritten at the target while the source stayed put is trusted until its entry
    expires, then found by the HEAD and put back.
    """
    ours, theirs = make_image(f"{repo}/ours"), make_image(f"{repo}/theirs")
    await push_image(source_registry, repo, ours, "v1")
    clock = Clock()
    cache = await TagCache.open(tmp_path, clock=clock, max_age=timedelta(hours=1))
    await _pass(source_registry, target_registry, repo, cache)
    await push_image(target_registry, repo, theirs, "v1")

    hidden, _ = await _pass(source_registry, target_registry, repo, cache)
    assert [i.outcome for i in hidden.items] == ["skipped"]

    clock.now += 3600
    report, _ = await _pass(source_registry, target_registry, repo, cache)

    (item,) = report.items
    assert (item.outcome, item.moved_from) == ("copied", str(theirs.digest))
    assert Digest.of(inspect_raw(target_registry.host, repo, "v1")) == ours.digest
    await cache.aclose()


def test_drd_replicate_keeps_the_cache_in_the_state_directory(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`drd replicate` writes the cache under [daemon] state_dir; --no-cache leaves it alone."""
    import asyncio

    asyncio.run(push_image(source_registry, repo, make_image(f"{repo}/cli"), "v1"))
    state = tmp_path / "state"
    config = tmp_path / "drd.toml"
    config.write_text(
        "version = 1\n"
        f'[endpoints.src]\nurl = "{source_registry.url}"\n'
        f'[endpoints.dst]\nurl = "{target_registry.url}"\n'
        '[[replication]]\nname = "p"\nsource = "src"\ntargets = ["dst"]\n'
        f'repositories = ["{repo}"]\n'
        f'[daemon]\nstate_dir = "{state}"\n'
    )

    assert main(["replicate", "--config", str(config), "--json", "--no-cache"]) == 0
    assert not (state / CACHE_FILE).exists()
    assert main(["replicate", "--config", str(config), "--json"]) == 0
    assert (state / CACHE_FILE).is_file()
    capsys.readouterr()
    assert main(["replicate", "--config", str(config), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["policies"][0]["summary"]
    assert (summary["skipped"], summary["copied"]) == (1, 0)
