"""
propagate_deletions between two real registries, through `python -m drd`: a tag deleted
at the source is deleted at the target only after a snapshot of the target recorded it,
and `drd restore` brings it back; the brake holds a pass that would delete too much; a
dry run lists what would go; a digest another tag still names is never deleted.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from drd.oci.digest import Digest
from drd.replicate.deletions import (
    Brake,
    Deletion,
    Recorded,
    brake_reason,
    confirm,
    plan_deletions,
)
from drd.replicate.runner import run_policy
from drd.snapshot.catalog import list_snapshots, load_snapshot
from tests.clients import RETRY, open_client, policy_for
from tests.faults import Fault, fault_proxy
from tests.images import RegistryWriter, make_image, push_image
from tests.servers import LocalRegistry
from tests.snapshot.helpers import json_out, opened, run_drd, store_config
from tests.snapshot.test_sign import private_pem

A, B, C, D = (Digest.of(x) for x in (b"a", b"b", b"c", b"d"))


# --- pure planning -------------------------------------------------------------------------


def test_plan_deletes_only_selected_tags_gone_at_the_source() -> None:
    """Attached tags and tags the filters leave out stay; a shared digest is kept, named."""
    target = {"v1": A, "v2": B, "latest": B, "old": C, f"{A.tag_form}.sig": D, "dev": A}
    delete, kept = plan_deletions(
        "app", ["v1", "latest"], target, lambda t: t != "dev" and t != f"{A.tag_form}.sig"
    )
    assert delete == [Deletion("app", "old", C)]
    assert kept == [(Deletion("app", "v2", B), "latest")]


def test_two_doomed_tags_on_one_digest_are_deleted_together() -> None:
    """When every tag on a digest is gone at the source, the digest goes (one delete)."""
    delete, kept = plan_deletions("app", ["v1"], {"v1": A, "x": B, "y": B}, lambda _: True)
    assert delete == [Deletion("app", "x", B), Deletion("app", "y", B)]
    assert kept == []


def test_brake_counts_and_percentages() -> None:
    """Over the count, or over the percentage of the managed tags, the brake holds."""
    brake = Brake(max_count=3, max_percent=50.0)
    assert brake_reason(0, 0, brake) is None
    assert brake_reason(2, 4, brake) is None
    assert "exceed max_deletions = 3" in (brake_reason(4, 100, brake) or "")
    assert "75.0% of the 4 tags" in (brake_reason(3, 4, brake) or "")


def test_confirm_deletes_only_what_the_snapshot_recorded() -> None:
    """A tag that moved since it was planned, or now shares its digest, is not deleted."""
    planned = [Deletion("app", "a", A), Deletion("app", "b", B), Deletion("app", "c", C)]
    recorded = Recorded("id", "dr", {"app": {"a": A, "b": C, "c": C, "keep": C}})
    go, kept, unrecorded = confirm(planned, recorded)
    assert go == [Deletion("app", "a", A)]
    assert kept == [(Deletion("app", "c", C), "keep")]
    assert unrecorded == [Deletion("app", "b", B)]


# --- against real registries -----------------------------------------------------------------


def write_config(
    tmp_path: Path,
    source: LocalRegistry,
    target: LocalRegistry,
    repo: str,
    *,
    max_deletions: int = 100,
    max_percent: float = 100.0,
) -> Path:
    """primary -> dr with propagate_deletions, a signed folder store for snapshots."""
    key = tmp_path / "index.key"
    key.write_bytes(private_pem(ed25519.Ed25519PrivateKey.generate()))
    store = store_config("dir", tmp_path)
    path = tmp_path / "drd.toml"
    path.write_text(
        f"""version = 1

[endpoints.primary]
url = "{source.url}"

[endpoints.dr]
url = "{target.url}"

[[replication]]
name = "prod"
source = "primary"
targets = ["dr"]
repositories = ["{repo}"]
propagate_deletions = true
max_deletions = {max_deletions}
max_deletion_percent = {max_percent}

[snapshots]
source = "primary"
store = "{store.store}"
signing_key_file = "{key}"

[daemon]
state_dir = "{tmp_path / "state"}"

[retry]
attempts = 2
budget = "10s"
wait_initial = 0.0
wait_max = 0.0
"""
    )
    return path


async def push_three(source: LocalRegistry, repo: str) -> dict[str, Digest]:
    """v1, v2 and v3, three different images."""
    return {
        tag: await push_image(source, repo, make_image(f"{repo}/{tag}"), tag)
        for tag in ("v1", "v2", "v3")
    }


async def tags_at(registry: LocalRegistry, repo: str) -> list[str]:
    async with RegistryWriter(registry) as w:
        return await w.list_tags(repo)


async def exists(registry: LocalRegistry, repo: str, digest: Digest) -> bool:
    async with RegistryWriter(registry) as w:
        return await w.manifest_exists(repo, digest)


async def replicate(config: Path, *extra: str) -> tuple[int, dict[str, object]]:
    """`drd replicate --json`: its exit code and its policy's report."""
    proc = await run_drd("replicate", "--json", *extra, config=config)
    [policy] = json_out(proc)["policies"]
    return proc.returncode, policy


async def test_deletion_is_recorded_propagated_and_undone_by_restore(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    v2 deleted at the source: the dry run lists it and deletes nothing; the pass takes a
    signed snapshot of the target's repository that records v2 -> its digest, then
    deletes it there; `drd restore --snapshot ID --source dr --to dr --yes` puts v2
    back at the same digest.
    """
    config = write_config(tmp_path, source_registry, target_registry, repo)
    pushed = await push_three(source_registry, repo)
    code, first = await replicate(config)
    assert code == 0, first
    assert first["deletions"] == {}
    source_registry.remove_tag(repo, "v2")

    code, dry = await replicate(config, "--dry-run")
    assert code == 0, dry
    planned = dry["deletions"]["dr"]["planned"]  # type: ignore[index]
    assert planned == [{"repository": repo, "tag": "v2", "digest": str(pushed["v2"])}]
    assert dry["deletions"]["dr"]["deleted"] == []  # type: ignore[index]
    assert await tags_at(target_registry, repo) == ["v1", "v2", "v3"]
    text = await run_drd("replicate", "--dry-run", config=config)
    assert f"to delete dr {repo}:v2" in text.stdout

    code, real = await replicate(config)
    assert code == 0, real
    done = real["deletions"]["dr"]  # type: ignore[index]
    assert done["deleted"] == planned
    assert await tags_at(target_registry, repo) == ["v1", "v3"]
    assert not await exists(target_registry, repo, pushed["v2"])
    async with opened(store_config("dir", tmp_path)) as store:
        snap = await load_snapshot(store, "dr", done["snapshot"])
    assert snap.signature is not None
    assert dict(snap.repositories[repo].tags) == pushed

    restored = await run_drd(
        "restore",
        "--snapshot",
        done["snapshot"],
        "--source",
        "dr",
        "--to",
        "dr",
        "--yes",
        config=config,
    )
    assert restored.returncode == 0, restored.stderr
    assert await tags_at(target_registry, repo) == ["v1", "v2", "v3"]
    async with RegistryWriter(target_registry) as w:
        raw, _ = await w.get_manifest(repo, "v2")
    assert Digest.of(raw) == pushed["v2"]


async def test_the_brake_holds_a_pass_that_would_delete_too_much(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """Two deletions over max_deletions = 1: nothing deleted, no snapshot, exit 1, why."""
    config = write_config(tmp_path, source_registry, target_registry, repo, max_deletions=1)
    await push_three(source_registry, repo)
    assert (await replicate(config))[0] == 0
    source_registry.remove_tag(repo, "v1")
    source_registry.remove_tag(repo, "v2")

    code, report = await replicate(config)

    assert code == 1
    plan = report["deletions"]["dr"]  # type: ignore[index]
    assert plan["deleted"] == []
    assert plan["braked"] == "nothing deleted at dr: 2 deletions exceed max_deletions = 1"
    assert [d["tag"] for d in plan["planned"]] == ["v1", "v2"]
    assert await tags_at(target_registry, repo) == ["v1", "v2", "v3"]
    async with opened(store_config("dir", tmp_path)) as store:
        assert await list_snapshots(store, "dr") == []
    text = await run_drd("replicate", config=config)
    assert "brake    nothing deleted at dr: 2 deletions exceed" in text.stdout


async def test_the_percentage_brake_holds_by_default(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """One of three tags is 33 %, over the default 10 %: held, and said so."""
    config = write_config(tmp_path, source_registry, target_registry, repo, max_percent=10.0)
    await push_three(source_registry, repo)
    assert (await replicate(config))[0] == 0
    source_registry.remove_tag(repo, "v3")

    code, report = await replicate(config)

    assert code == 1
    assert "33.3% of the 3 tags" in report["deletions"]["dr"]["braked"]  # type: ignore[index]
    assert await tags_at(target_registry, repo) == ["v1", "v2", "v3"]


async def test_a_tag_whose_digest_another_tag_names_is_kept(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    latest and v1 name one digest; latest deleted at the source: deleting the manifest
    would take v1 with it, so latest is kept at the target and reported as kept.
    """
    config = write_config(tmp_path, source_registry, target_registry, repo)
    image = make_image(f"{repo}/shared")
    digest = await push_image(source_registry, repo, image, "v1")
    await push_image(source_registry, repo, image, "latest")
    assert (await replicate(config))[0] == 0
    source_registry.remove_tag(repo, "latest")

    code, report = await replicate(config)

    assert code == 0, report
    plan = report["deletions"]["dr"]  # type: ignore[index]
    assert plan["deleted"] == []
    assert plan["kept"] == [
        {"repository": repo, "tag": "latest", "digest": str(digest), "shared_with": "v1"}
    ]
    assert await tags_at(target_registry, repo) == ["latest", "v1"]
    assert await exists(target_registry, repo, digest)
    assert json.dumps(plan)  # the report is JSON all the way down


async def test_a_target_whose_tags_cannot_be_read_deletes_nothing(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    The target fails the HEAD of the tag gone at the source (after retries): nothing is
    recorded or deleted there, the report says why, and the pass is not ok.
    """
    await push_three(source_registry, repo)
    policy = policy_for(repo, propagate_deletions=True, brake=Brake(100, 100.0))
    recorded: list[str] = []

    async def recorder(target: str, client: object, repositories: object) -> Recorded:
        recorded.append(target)
        raise AssertionError("nothing may be recorded")

    async with open_client(source_registry) as src, open_client(target_registry) as dst:
        assert (await run_policy(policy, src, {"dr": dst}, RETRY)).ok
    source_registry.remove_tag(repo, "v2")
    with fault_proxy(target_registry.url) as proxy:
        proxy.add(Fault.http(503), kinds="manifest_head", path=r"/manifests/v2$")
        async with open_client(source_registry) as src, open_client(proxy.url) as dst:
            report = await run_policy(policy, src, {"dr": dst}, RETRY, recorder=recorder)

    assert not report.ok
    plan = report.deletions["dr"]
    assert plan.deleted == []
    assert plan.error.startswith(f"cannot read the tags of {repo} at dr")
    assert recorded == []
    assert await tags_at(target_registry, repo) == ["v1", "v2", "v3"]
