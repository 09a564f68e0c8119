"""
`drd restore` does not trust the store blindly: an unsigned or badly signed index is
refused (unless --allow-unsigned-snapshot), `latest` cannot be rolled back by deleting
newer indexes, and a restore into an endpoint that is not the drill target is confirmed
on a terminal (or by --yes). Real registries, a real folder store and moto S3.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import pty
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from drd.selection.filters import RepoFilter
from drd.snapshot.catalog import list_snapshots, write_index
from drd.snapshot.collect import take_snapshot
from drd.snapshot.model import RepositoryRecord, snapshot_id
from drd.snapshot.sign import IndexKey
from tests.clients import open_client
from tests.images import list_tags, make_image, push_image
from tests.servers import LocalRegistry, s3_client
from tests.snapshot.helpers import (
    StoreConfig,
    drd_argv,
    drd_env,
    json_out,
    opened,
    run_drd,
    store_config,
    write_config,
)
from tests.snapshot.test_sign import private_pem

RESTORE_TIMEOUT = 120


def signing_key(tmp_path: Path, name: str) -> IndexKey:
    """A new Ed25519 key written to *tmp_path*/*name*; its IndexKey."""
    pem = private_pem(ed25519.Ed25519PrivateKey.generate())
    (tmp_path / name).write_bytes(pem)
    return IndexKey.from_pem(pem, name)


def config_for(
    tmp_path: Path,
    source: LocalRegistry,
    drill: LocalRegistry,
    production: LocalRegistry,
    store: StoreConfig,
    repo: str,
    key: str | None,
) -> Path:
    """primary (the source), drill (the drill target) and dr (not a drill target)."""
    extra = {"signing_key_file": str(tmp_path / key)} if key else {}
    path = write_config(
        tmp_path,
        {"primary": source, "drill": drill, "dr": production},
        source="primary",
        store=store,
        repositories=[repo],
        **extra,
    )
    path.write_text(path.read_text() + '\n[drills]\ntarget = "drill"\n')
    return path


async def snapshot(
    registry: LocalRegistry, store: StoreConfig, repo: str, key: IndexKey | None
) -> str:
    """Take a snapshot of *repo* (signed with *key*, when given) and return its id."""
    async with opened(store) as opened_store, open_client(registry) as client:
        snap = await take_snapshot(
            client,
            opened_store,
            source_name="primary",
            repositories=RepoFilter((repo,)),
            blobs=False,
            signing_key=key,
        )
    return snap.id


async def test_an_unsigned_index_is_refused_unless_allowed(
    source_registry: LocalRegistry,
    third_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """
    A key is configured, the store holds an unsigned index (written by anyone with
    store access): restore exits 1 naming the reason and writes nothing; with
    --allow-unsigned-snapshot it restores, with a warning.
    """
    image = make_image(f"{repo}/unsigned")
    await push_image(source_registry, repo, image, "v1")
    signing_key(tmp_path, "index.key")
    store = store_config("dir", tmp_path)
    config = config_for(
        tmp_path, source_registry, third_registry, target_registry, store, repo, "index.key"
    )
    snap_id = await snapshot(source_registry, store, repo, None)

    refused = await run_drd("restore", "--snapshot", snap_id, "--to", "drill", config=config)
    assert refused.returncode == 1, refused.stderr
    assert f"snapshot {snap_id} is not signed" in refused.stderr
    assert "refusing to restore it (--allow-unsigned-snapshot" in refused.stderr
    assert await list_tags(third_registry, repo) == []

    allowed = await run_drd(
        "restore",
        "--snapshot",
        snap_id,
        "--to",
        "drill",
        "--allow-unsigned-snapshot",
        "--json",
        config=config,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "WARNING: restoring an unverified snapshot" in allowed.stderr
    assert json_out(allowed)["summary"]["restored"] == 1
    assert await list_tags(third_registry, repo) == ["v1"]


async def test_without_a_key_nothing_can_be_verified_so_restore_refuses(
    source_registry: LocalRegistry,
    third_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """No signing_key_file: the index cannot be checked, and restore says so (exit 1)."""
    await push_image(source_registry, repo, make_image(f"{repo}/nokey"), "v1")
    store = store_config("dir", tmp_path)
    config = config_for(
        tmp_path, source_registry, third_registry, target_registry, store, repo, None
    )
    snap_id = await snapshot(source_registry, store, repo, None)

    refused = await run_drd("restore", "--snapshot", "latest", "--to", "drill", config=config)
    assert refused.returncode == 1
    assert f"snapshot {snap_id} cannot be checked: no snapshots.signing_key_file" in refused.stderr
    assert await list_tags(third_registry, repo) == []


async def test_a_tampered_or_foreign_signed_index_is_refused(
    source_registry: LocalRegistry,
    third_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """
    Someone with store write access copies a signed index, points v1 at their own image
    and keeps the signature (it no longer verifies); another index is signed by a key
    that is not the configured one. Both are refused; the target is untouched.
    """
    good, evil = make_image(f"{repo}/good"), make_image(f"{repo}/evil")
    await push_image(source_registry, repo, good, "v1")
    await push_image(source_registry, repo, evil, "evil")
    key = signing_key(tmp_path, "index.key")
    store = store_config("dir", tmp_path)
    config = config_for(
        tmp_path, source_registry, third_registry, target_registry, store, repo, "index.key"
    )
    async with opened(store) as opened_store, open_client(source_registry) as client:
        snap = await take_snapshot(
            client,
            opened_store,
            source_name="primary",
            repositories=RepoFilter((repo,)),
            blobs=False,
            signing_key=key,
        )
        record = snap.repositories[repo]
        forged = dataclasses.replace(
            snap,
            id=snapshot_id(snap.taken_at + dt.timedelta(seconds=1)),
            taken_at=snap.taken_at + dt.timedelta(seconds=1),
            repositories={
                repo: RepositoryRecord(
                    tags={"v1": evil.digest}, manifests=record.manifests, referrers={}
                )
            },
        )
        await write_index(opened_store, forged)
        stranger = IndexKey.from_pem(private_pem(ed25519.Ed25519PrivateKey.generate()))
        later = snap.taken_at + dt.timedelta(seconds=2)
        foreign = dataclasses.replace(snap, id=snapshot_id(later), taken_at=later)
        foreign = dataclasses.replace(foreign, signature=stranger.sign(foreign.digest))
        await write_index(opened_store, foreign)

    tampered = await run_drd("restore", "--snapshot", forged.id, "--to", "drill", config=config)
    assert tampered.returncode == 1
    assert f"snapshot {forged.id}'s signature does not verify" in tampered.stderr
    other = await run_drd("restore", "--snapshot", "latest", "--to", "drill", config=config)
    assert other.returncode == 1
    assert f"snapshot {foreign.id} is signed by key {stranger.key_id[:16]}" in other.stderr
    assert await list_tags(third_registry, repo) == []


async def test_latest_cannot_be_rolled_back_by_deleting_newer_indexes(
    source_registry: LocalRegistry,
    third_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    s3_endpoint: str,
    bucket: str,
) -> None:
    """
    Two signed snapshots in S3 by `drd snapshot create` (v1: A, then v1: B); someone
    deletes the newest index. `restore --snapshot latest` refuses, naming both ids, and
    restores nothing; an explicit id still restores.
    """
    a, b = make_image(f"{repo}/a"), make_image(f"{repo}/b")
    signing_key(tmp_path, "index.key")
    store = store_config("s3", tmp_path, s3_endpoint, bucket)
    config = config_for(
        tmp_path, source_registry, third_registry, target_registry, store, repo, "index.key"
    )
    ids = []
    for image in (a, b):
        await push_image(source_registry, repo, image, "v1")
        created = await run_drd("snapshot", "create", "--json", config=config)
        assert created.returncode == 0, created.stderr
        ids.append(json_out(created)["id"])
    async with opened(store) as opened_store:
        [newest] = [e for e in await list_snapshots(opened_store, "primary") if e.id == ids[1]]
    s3_client(s3_endpoint).delete_object(Bucket=bucket, Key=f"snaps/{newest.key}")

    rolled = await run_drd("restore", "--snapshot", "latest", "--to", "drill", config=config)
    assert rolled.returncode == 1
    assert (
        f"refusing to restore latest: the store's newest snapshot of primary is {ids[0]}, "
        f"older than {ids[1]}"
    ) in rolled.stderr
    assert await list_tags(third_registry, repo) == []

    explicit = await run_drd("restore", "--snapshot", ids[0], "--to", "drill", config=config)
    assert explicit.returncode == 0, explicit.stderr
    assert await list_tags(third_registry, repo) == ["v1"]


def restore_on_a_terminal(config: Path, snap_id: str, answer: bytes) -> tuple[int, str]:
    """Run `drd restore --to dr` with a pseudo-terminal as stdin, type *answer*."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            drd_argv("restore", "--snapshot", snap_id, "--to", "dr", config=config),
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=drd_env(),
        )
        os.close(follower)
        os.write(leader, answer)
        _, err = proc.communicate(timeout=RESTORE_TIMEOUT)
    finally:
        os.close(leader)
    return proc.returncode, err.decode()


async def test_a_restore_outside_the_drill_target_is_confirmed(
    source_registry: LocalRegistry,
    third_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """
    Into `dr` (not the drill target): without a terminal and without --yes, exit 2 and
    nothing written; on a terminal, a wrong answer writes nothing (exit 2), the
    endpoint's name restores; --yes restores from a script.
    """
    await push_image(source_registry, repo, make_image(f"{repo}/confirm"), "v1")
    signing_key(tmp_path, "index.key")
    store = store_config("dir", tmp_path)
    config = config_for(
        tmp_path, source_registry, third_registry, target_registry, store, repo, "index.key"
    )
    created = await run_drd("snapshot", "create", "--json", config=config)
    snap_id = json_out(created)["id"]

    scripted = await run_drd("restore", "--snapshot", snap_id, "--to", "dr", config=config)
    assert scripted.returncode == 2
    assert "refusing to restore into 'dr' without confirmation" in scripted.stderr
    assert "it is not the drill target 'drill'" in scripted.stderr
    assert "Pass --yes" in scripted.stderr
    assert await list_tags(target_registry, repo) == []

    code, err = await asyncio.to_thread(restore_on_a_terminal, config, snap_id, b"yes\n")
    assert code == 2, err
    assert f"Restore snapshot {snap_id} into dr?" in err
    assert "restore into dr not confirmed; nothing was written" in err
    assert await list_tags(target_registry, repo) == []

    code, err = await asyncio.to_thread(restore_on_a_terminal, config, snap_id, b"dr\n")
    assert code == 0, err
    assert await list_tags(target_registry, repo) == ["v1"]

    again = await run_drd("restore", "--snapshot", snap_id, "--to", "dr", "--yes", config=config)
    assert again.returncode == 0, again.stderr


async def test_latest_rolled_back_is_refused_by_show_diff_verify_and_drill(
    source_registry: LocalRegistry,
    third_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """
    The same rollback as above, in a folder store: `snapshot show|verify latest`, a diff
    against `latest` and a drill of `latest` each refuse it, naming both ids; the drill
    writes nothing into its target; explicit ids still show.
    """
    a, b = make_image(f"{repo}/a"), make_image(f"{repo}/b")
    signing_key(tmp_path, "index.key")
    store = store_config("dir", tmp_path)
    config = config_for(
        tmp_path, source_registry, third_registry, target_registry, store, repo, "index.key"
    )
    ids = []
    for image in (a, b):
        await push_image(source_registry, repo, image, "v1")
        created = await run_drd("snapshot", "create", "--json", config=config)
        assert created.returncode == 0, created.stderr
        ids.append(json_out(created)["id"])
    async with opened(store) as opened_store:
        [newest] = [e for e in await list_snapshots(opened_store, "primary") if e.id == ids[1]]
    (tmp_path / "store" / newest.key).unlink()
    rolled_back = f"the store's newest snapshot of primary is {ids[0]}, older than {ids[1]}"

    for action, argv in (
        ("show", ("snapshot", "show", "latest")),
        ("diff", ("snapshot", "diff", ids[0], "latest")),
    ):
        refused = await run_drd(*argv, config=config)
        assert refused.returncode == 1, (argv, refused.stdout, refused.stderr)
        assert f"refusing to {action} latest: {rolled_back}" in refused.stderr

    verified = await run_drd("snapshot", "verify", "latest", "--json", config=config)
    assert verified.returncode == 1, verified.stderr
    [problem] = json_out(verified)["problems"]
    assert f"refusing to verify latest: {rolled_back}" in str(problem)

    drilled = await run_drd("drill", "--json", config=config)
    assert drilled.returncode == 1, drilled.stderr
    report = json_out(drilled)
    assert f"refusing to drill latest: {rolled_back}" in report["error"]
    assert await list_tags(third_registry, repo) == []

    explicit = await run_drd("snapshot", "show", ids[0], "--json", config=config)
    assert explicit.returncode == 0, explicit.stderr
    assert json_out(explicit)["id"] == ids[0]
