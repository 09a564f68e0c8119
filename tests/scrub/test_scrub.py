"""`scrub_registry` against a real registry whose storage was damaged on disk."""

from __future__ import annotations

from pathlib import Path

from drd.scrub.runner import scrub_registry
from drd.selection.filters import RepoFilter
from tests.clients import open_client
from tests.images import RegistryWriter, make_image, make_multiarch, push_image, push_index
from tests.servers import LocalRegistry
from tests.snapshot.helpers import json_out, run_drd, store_config, write_config


def blob_data(registry: LocalRegistry, digest_hex: str) -> str:
    """Where distribution's filesystem driver keeps a blob's bytes."""
    path = registry.root / "docker/registry/v2/blobs/sha256" / digest_hex[:2] / digest_hex / "data"
    return str(path)


async def test_a_flipped_byte_is_found_only_by_deep_and_a_lost_child_by_both(
    source_registry: LocalRegistry, repo: str
) -> None:
    """
    A layer rewritten on disk with the same length passes a HEAD (same size) and fails
    --deep as wrong-digest; an index child deleted under its index is missing-manifest
    for the index's tag in both modes; untouched tags are not named.
    """
    # The session registry is safe to damage: every blob here is this test's own.
    registry = source_registry
    image, index = make_image(f"{repo}/a", layers=2), make_multiarch(f"{repo}/m")
    await push_image(registry, repo, image, "v1")
    await push_index(registry, repo, index, "v2")
    await push_image(registry, repo, make_image(f"{repo}/fine"), "v3")
    damaged = image.layers[0]
    path = blob_data(registry, damaged.digest.hex)
    with open(path, "r+b") as f:  # noqa: ASYNC230 - a local file of a few KiB
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    child = index.images[1]
    async with RegistryWriter(registry) as w:
        await w.delete_manifest(repo, child.digest)

    async with open_client(registry, "dr") as client:
        shallow = await scrub_registry(client, RepoFilter((repo,)))
        deep = await scrub_registry(client, RepoFilter((repo,)), deep=True)

    assert [(d.digest, d.kind, d.tags) for d in shallow.damage] == [
        (str(child.digest), "missing-manifest", ("v2",))
    ]
    assert not shallow.ok
    assert sorted((d.digest, d.kind, d.tags) for d in deep.damage) == sorted(
        [
            (str(child.digest), "missing-manifest", ("v2",)),
            (str(damaged.digest), "wrong-digest", ("v1",)),
        ]
    )
    assert (deep.repositories, deep.tags) == (1, 3)


async def test_a_scrub_run_is_history_for_drd_status(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    `drd scrub --deep` of a registry with one rewritten layer exits 1 and is recorded:
    `drd status --json` lists the run ``scrub:primary`` as failed, with its counts and
    the damaged digest; a clean repository's scrub is recorded as ok.
    """
    image = make_image(f"{repo}/a")
    await push_image(source_registry, repo, image, "v1")
    clean = f"{repo}-clean"
    await push_image(source_registry, clean, make_image(f"{clean}/b"), "v1")
    damaged = image.layers[0]
    path = blob_data(source_registry, damaged.digest.hex)
    with open(path, "r+b") as f:  # noqa: ASYNC230 - a local file of a few KiB
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    config = write_config(
        tmp_path,
        {"primary": source_registry},
        source="primary",
        store=store_config("dir", tmp_path),
    )

    bad = await run_drd("scrub", "primary", "--repository", repo, "--deep", config=config)
    assert bad.returncode == 1, bad.stderr
    good = await run_drd("scrub", "primary", "--repository", clean, config=config)
    assert good.returncode == 0, good.stderr

    status = await run_drd("status", "--json", config=config)
    assert status.returncode == 0, status.stderr
    runs = [r for r in json_out(status)["runs"] if r["job"] == "scrub:primary"]
    assert [r["outcome"] for r in runs] == ["ok", "failed"]  # newest first
    failed = runs[1]
    assert failed["kind"] == "scrub"
    assert failed["trigger"] == "manual"
    assert failed["summary"]["damaged"] == 1
    assert failed["summary"]["deep"] is True
    assert f"{repo}@{damaged.digest}" in failed["error"]
