"""`python -m drd snapshot …` end to end with a real config file: exit codes and JSON."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from drd.errors import ConfigError, SnapshotNotFound
from drd.snapshot.model import manifest_key
from tests.images import make_image, push_image
from tests.servers import LocalRegistry, free_port
from tests.snapshot.helpers import drd_here, json_out, run_drd, store_config, write_config
from tests.snapshot.test_sign import private_pem, public_pem


async def test_create_and_list_through_the_command_line(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """``python -m drd snapshot create --json`` exits 0 naming the new id; ``list`` shows it."""
    image = make_image(f"{repo}/a")
    await push_image(source_registry, repo, image, "v1")
    store = store_config("dir", tmp_path)
    config = write_config(
        tmp_path, {"primary": source_registry}, source="primary", store=store, repositories=[repo]
    )

    created = await run_drd("snapshot", "create", "--json", "--log-level", "info", config=config)
    assert created.returncode == 0, created.stderr
    doc = json_out(created)
    assert doc["ok"] is True
    assert doc["tags"] == 1
    assert doc["manifests_uploaded"] == 1
    assert (tmp_path / "store" / manifest_key(image.digest)).read_bytes() == image.raw
    assert '"event": "snapshot.run_finished"' in created.stderr

    listed = await run_drd("snapshot", "list", "--json", config=config)
    assert listed.returncode == 0
    [entry] = json_out(listed)["snapshots"]
    assert entry["id"] == doc["id"]
    assert entry["key"] == doc["key"]


async def test_show_diff_verify_and_prune_read_what_create_wrote(
    source_registry: LocalRegistry, repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    ``show``, ``diff``, ``verify`` and ``prune --dry-run`` accept ids and ``latest``: the diff
    names a moved tag with both digests, verify passes, a dry-run prune deletes nothing.
    """
    first_image, second_image = make_image(f"{repo}/a"), make_image(f"{repo}/b")
    await push_image(source_registry, repo, first_image, "v1")
    store = store_config("dir", tmp_path)
    config = write_config(
        tmp_path, {"primary": source_registry}, source="primary", store=store, repositories=[repo]
    )
    code, doc = await drd_here("snapshot", "create", config=config, capsys=capsys)
    assert code == 0
    first = doc["id"]
    await push_image(source_registry, repo, second_image, "v1")  # v1 moves
    second = (await drd_here("snapshot", "create", config=config, capsys=capsys))[1]["id"]

    code, listed = await drd_here("snapshot", "list", config=config, capsys=capsys)
    assert [s["id"] for s in listed["snapshots"]] == [first, second]
    # What each snapshot holds and what it added, not the size of its index file.
    held = {b.digest: len(b.data) for image in (first_image, second_image) for b in image.blobs}
    first_bytes = len(first_image.raw) + sum(len(b.data) for b in first_image.blobs)
    second_bytes = len(second_image.raw) + sum(len(b.data) for b in second_image.blobs)
    added = len(second_image.raw) + sum(
        held[b.digest] for b in second_image.blobs if b not in first_image.blobs
    )
    assert [(s["logical_bytes"], s["new_bytes"]) for s in listed["snapshots"]] == [
        (first_bytes, first_bytes),
        (second_bytes, added),
    ]
    assert all(s["index_bytes"] > 0 for s in listed["snapshots"])
    code, shown = await drd_here("snapshot", "show", first, config=config, capsys=capsys)
    assert shown["repositories"] == {repo: {"v1": str(first_image.digest)}}
    code, changed = await drd_here(
        "snapshot", "diff", first, "latest", config=config, capsys=capsys
    )
    [moved] = changed["tags"]["moved"]
    assert (moved["before"], moved["after"]) == (str(first_image.digest), str(second_image.digest))
    code, verified = await drd_here("snapshot", "verify", "latest", config=config, capsys=capsys)
    assert (code, verified["ok"], verified["manifests_checked"]) == (0, True, 1)
    code, pruned = await drd_here("snapshot", "prune", "--dry-run", config=config, capsys=capsys)
    assert (code, pruned["deleted"], sorted(pruned["kept"])) == (0, [], [first, second])


async def test_missing_snapshots_table_is_a_config_error(
    source_registry: LocalRegistry, tmp_path: Path
) -> None:
    """Without ``[snapshots]`` the command exits 78 and names the table."""
    config = tmp_path / "drd.toml"
    config.write_text(f'version = 1\n[endpoints.primary]\nurl = "{source_registry.url}"\n')
    proc = await run_drd("snapshot", "list", config=config)
    assert proc.returncode == 78
    assert "snapshots" in proc.stderr


async def test_an_unreachable_source_exits_69_and_commits_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A source that refuses connections: exit 69, the error in JSON, no snapshot listed."""
    store = store_config("dir", tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path, {"primary": dead}, source="primary", store=store)
    proc = await run_drd("snapshot", "create", "--json", config=config)
    assert proc.returncode == 69, proc.stderr
    doc = json_out(proc)
    assert doc["ok"] is False
    assert "RegistryUnavailable" in doc["error"]
    code, listed = await drd_here("snapshot", "list", config=config, capsys=capsys)
    assert (code, listed["snapshots"]) == (0, [])


async def test_unknown_snapshot_ids_fail_with_a_reason(
    source_registry: LocalRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``show`` of an id that is not there, or is not an id, raises with the reason."""
    store = store_config("dir", tmp_path)
    config = write_config(tmp_path, {"primary": source_registry}, source="primary", store=store)
    with pytest.raises(SnapshotNotFound, match="no snapshot of primary"):
        await drd_here("snapshot", "show", "latest", config=config, capsys=capsys)
    with pytest.raises(SnapshotNotFound, match=r"no snapshot 20200101T000000\.000000Z of primary"):
        await drd_here("snapshot", "show", "20200101T000000.000000Z", config=config, capsys=capsys)
    with pytest.raises(SnapshotNotFound, match="is not of the form"):
        await drd_here("snapshot", "show", "../../etc/passwd", config=config, capsys=capsys)


async def test_a_configured_signing_key_signs_and_is_checked_on_read(
    source_registry: LocalRegistry, repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    With ``signing_key_file``, create signs the index and show verifies it; a public key
    alone can verify but not sign.
    """
    await push_image(source_registry, repo, make_image(f"{repo}/signed"), "v1")
    key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "index.key").write_bytes(private_pem(key))
    store = store_config("dir", tmp_path)
    endpoints = {"primary": source_registry}
    config = write_config(
        tmp_path,
        endpoints,
        source="primary",
        store=store,
        repositories=[repo],
        signing_key_file=str(tmp_path / "index.key"),
    )
    code, created = await drd_here("snapshot", "create", config=config, capsys=capsys)
    assert code == 0
    assert created["signed"] is True
    code, shown = await drd_here("snapshot", "show", "latest", config=config, capsys=capsys)
    assert shown["signed"] is True

    (tmp_path / "index.pub").write_bytes(public_pem(key))
    public = write_config(
        tmp_path,
        endpoints,
        source="primary",
        store=store,
        repositories=[repo],
        signing_key_file=str(tmp_path / "index.pub"),
    )
    code, shown = await drd_here("snapshot", "show", created["id"], config=public, capsys=capsys)
    assert shown["digest"] == created["digest"]
    with pytest.raises(ConfigError, match="public key"):
        await drd_here("snapshot", "create", config=public, capsys=capsys)
