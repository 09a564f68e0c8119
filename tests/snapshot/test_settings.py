"""
Registry settings recorded with a snapshot: files round-tripped byte-exact with their modes
through the folder store and moto's S3, secrets kept out of the store, verify and restore.
"""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from drd.errors import SnapshotCorrupt
from drd.oci.digest import Digest
from drd.snapshot.catalog import load_snapshot, prune, verify_snapshot
from drd.snapshot.model import Snapshot, encode_document, parse_index
from drd.snapshot.settings import SettingsRecord, settings_key
from tests.images import make_image, push_image
from tests.servers import LocalRegistry, free_port, s3_client
from tests.snapshot.helpers import drd_here, opened, store_config, write_config

SECRET = b"admin:$2y$05$never-in-the-store-0123456789abcdefghijkl\n"
ENDPOINT_PASSWORD = "endpoint-password-never-stored-42"  # noqa: S105 - a test value
CONFIG_YML = b"version: 0.1\r\nauth:\n  htpasswd:\n    realm: r\n\x00\xff binary tail\n"
NOTIFY = b'{"endpoints": [{"name": "audit", "url": "http://127.0.0.1:9/hook"}]}\n'


def settings_files(tmp_path: Path) -> dict[str, tuple[bytes, int]]:
    """Three registry settings files with distinct modes; returns path -> (bytes, mode)."""
    etc = tmp_path / "etc" / "docker" / "registry"
    etc.mkdir(parents=True)
    files = {
        etc / "config.yml": (CONFIG_YML, 0o640),
        etc / "notifications.json": (NOTIFY, 0o604),
        etc / "htpasswd": (SECRET, 0o600),
    }
    for path, (data, mode) in files.items():
        path.write_bytes(data)
        path.chmod(mode)
    return {str(p): v for p, v in files.items()}


def trust_key(tmp_path: Path) -> Path:
    """A cosign-style public key file, for a trust table."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    path = tmp_path / "cosign.pub"
    path.write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    path.chmod(0o644)
    return path


def signing_key(tmp_path: Path) -> Path:
    """An Ed25519 private key for signing snapshot indexes (made once per test)."""
    path = tmp_path / "index-signing.key"
    if not path.exists():
        key = ed25519.Ed25519PrivateKey.generate()
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
    return path


def configure(tmp_path: Path, registry: LocalRegistry | str, store: Any, repo: str) -> Path:
    """A config recording the settings files (htpasswd excluded), a trust key, a secret."""
    files = settings_files(tmp_path) if not (tmp_path / "etc").exists() else {}
    paths = sorted(files) or sorted(
        str(p) for p in (tmp_path / "etc" / "docker" / "registry").iterdir()
    )
    config = write_config(
        tmp_path,
        {"primary": registry},
        source="primary",
        store=store,
        repositories=[repo],
        settings=paths,
        settings_exclude=["*/htpasswd"],
        signing_key_file=str(signing_key(tmp_path)),
    )
    (tmp_path / "vault.password").write_text(ENDPOINT_PASSWORD + "\n")
    key = tmp_path / "cosign.pub" if (tmp_path / "cosign.pub").exists() else trust_key(tmp_path)
    extra = (
        '\n[endpoints.vault]\nurl = "https://vault.example.com"\nusername = "drd"\n'
        'password_file = "vault.password"\n'
        f"\n[trust.release]\nkeys = [{json.dumps(str(key))}]\n"
    )
    config.write_text(config.read_text() + extra)
    return config


async def everything_stored(kind: str, tmp_path: Path, s3_endpoint: str, bucket: str) -> bytes:
    """Every byte of every object in the store, concatenated."""
    if kind == "dir":
        root = tmp_path / "store"
        return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())
    client = s3_client(s3_endpoint)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return b"".join(client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys)


@pytest.mark.parametrize("kind", ["dir", "s3"])
async def test_settings_round_trip_byte_exact_with_modes_and_secrets_kept_out(
    kind: str,
    source_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    s3_endpoint: str,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """
    `snapshot create` records the settings files, drd's masked configuration and the
    trust key; `snapshot show` lists them; `restore --settings` (with every registry
    unreachable) writes them back byte-exact with their modes; the excluded htpasswd
    and the endpoint's password are nowhere in the store.
    """
    await push_image(source_registry, repo, make_image(f"{repo}/s"), "v1")
    store = store_config(kind, tmp_path, s3_endpoint, bucket)
    config = configure(tmp_path, source_registry, store, repo)
    files = settings_files_on_disk(tmp_path)
    code, created = await drd_here("snapshot", "create", config=config, capsys=capsys)
    assert code == 0, created

    code, shown = await drd_here("snapshot", "show", "latest", config=config, capsys=capsys)
    assert code == 0
    listed = {s["path"]: s for s in shown["settings"]}
    key = str(tmp_path / "cosign.pub")
    assert set(listed) == {*files, "drd/config.json", key}
    assert listed[key]["kind"] == "trust"
    htpasswd = str(tmp_path / "etc/docker/registry/htpasswd")
    assert listed[htpasswd]["stored"] is False
    assert listed[htpasswd]["digest"] == str(Digest.of(SECRET))
    assert listed[htpasswd]["mode"] == 0o600
    assert shown["settings_files"] == 5

    stored = await everything_stored(kind, tmp_path, s3_endpoint, bucket)
    assert CONFIG_YML in stored  # the store holds the files in clear, except ...
    assert SECRET not in stored
    assert b"never-in-the-store" not in stored
    assert ENDPOINT_PASSWORD.encode() not in stored

    # Restoring settings needs no registry: point the source at a closed port.
    offline = configure(tmp_path, f"http://127.0.0.1:{free_port()}", store, repo)
    out = tmp_path / "restored"
    code, restored = await drd_here(
        "restore", "--snapshot", "latest", "--settings", str(out), config=offline, capsys=capsys
    )
    assert code == 0, restored
    for path, (data, mode) in files.items():
        target = out / path.lstrip("/")
        if data == SECRET:
            assert not target.exists()
            continue
        assert target.read_bytes() == data
        assert stat.S_IMODE(target.stat().st_mode) == mode, path
    assert [s["path"] for s in restored["secrets"]] == [htpasswd]
    drd_config = json.loads((out / "drd/config.json").read_bytes())
    assert drd_config["endpoints"]["vault"]["credentials"]["password"] != ENDPOINT_PASSWORD
    assert (out / key.lstrip("/")).read_bytes() == (tmp_path / "cosign.pub").read_bytes()


def settings_files_on_disk(tmp_path: Path) -> dict[str, tuple[bytes, int]]:
    """The settings files as they are now: path -> (bytes, mode)."""
    etc = tmp_path / "etc" / "docker" / "registry"
    return {str(p): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in etc.iterdir()}


async def test_restore_settings_never_overwrites_without_force(
    source_registry: LocalRegistry, repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One file already in DIR: exit 1, it is named, nothing is written; --force writes all."""
    await push_image(source_registry, repo, make_image(f"{repo}/f"), "v1")
    config = configure(tmp_path, source_registry, store_config("dir", tmp_path), repo)
    assert (await drd_here("snapshot", "create", config=config, capsys=capsys))[0] == 0
    out = tmp_path / "out"
    mine = out / str(tmp_path / "etc/docker/registry/config.yml").lstrip("/")
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the operator's own edit\n")
    argv = ("restore", "--snapshot", "latest", "--settings", str(out))
    code, report = await drd_here(*argv, config=config, capsys=capsys)
    assert code == 1
    assert [s["path"] for s in report["existing"]] == [
        str(tmp_path / "etc/docker/registry/config.yml")
    ]
    assert report["written"] == []
    assert mine.read_bytes() == b"the operator's own edit\n"
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["config.yml"]

    code, report = await drd_here(*argv, "--force", config=config, capsys=capsys)
    assert code == 0
    assert mine.read_bytes() == CONFIG_YML
    assert len(report["written"]) == 4  # config.yml, notifications.json, drd/config.json, the key


async def test_verify_names_a_corrupt_or_missing_settings_file(
    source_registry: LocalRegistry, repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An altered stored settings file fails verify (exit 1, its digest named) and restore."""
    await push_image(source_registry, repo, make_image(f"{repo}/v"), "v1")
    config = configure(tmp_path, source_registry, store_config("dir", tmp_path), repo)
    assert (await drd_here("snapshot", "create", config=config, capsys=capsys))[0] == 0
    code, report = await drd_here("snapshot", "verify", "latest", config=config, capsys=capsys)
    assert code == 0
    assert report["settings_checked"] == 4
    digest = Digest.of(CONFIG_YML)
    stored = tmp_path / "store" / settings_key(digest)
    stored.chmod(0o644)
    stored.write_bytes(CONFIG_YML + b"# tampered\n")
    code, report = await drd_here("snapshot", "verify", "latest", config=config, capsys=capsys)
    assert code == 1
    [problem] = report["problems"]
    assert (problem["kind"], problem["digest"]) == ("settings", str(digest))
    assert "is corrupt" in problem["reason"]
    out = tmp_path / "out"
    with pytest.raises(SnapshotCorrupt, match=r"config\.yml is corrupt"):
        await drd_here(
            "restore", "--snapshot", "latest", "--settings", str(out), config=config, capsys=capsys
        )
    assert not (out / str(tmp_path / "etc/docker/registry/config.yml").lstrip("/")).exists()


def _snapshot(settings: tuple[SettingsRecord, ...] = ()) -> Snapshot:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    return Snapshot("20260102T030405.000000Z", "p", when, {}, {}, {}, settings=settings)


def test_an_index_without_settings_is_unchanged_and_bad_settings_are_refused() -> None:
    """
    No settings: no ``settings`` field, so indexes written before it hash and parse the
    same. A path leading out of a restore folder, or an unsorted list, is refused.
    """
    plain = _snapshot()
    assert "settings" not in plain.body()
    assert parse_index(plain.to_bytes()).settings == ()
    record = SettingsRecord("/etc/x.yml", "file", 0o640, 3, Digest.of(b"abc"), stored=True)
    withs = _snapshot((record,))
    assert parse_index(withs.to_bytes()).settings == (record,)
    assert withs.object_keys() == {settings_key(Digest.of(b"abc"))}
    for bad, message in (
        ([{**record.to_json(), "path": "/etc/../../root/.ssh/x"}], "not a plain file path"),
        ([{**record.to_json(), "mode": 0o100644}], "mode must be an integer"),
        ([{**record.to_json(), "kind": "other"}], "kind must be one of"),
        ([record.to_json(), {**record.to_json(), "path": "/a"}], "sorted by path"),
    ):
        doc = withs.to_json()
        doc["settings"] = bad
        with pytest.raises(SnapshotCorrupt, match=message):
            parse_index(encode_document(doc))


async def test_prune_keeps_referenced_settings_and_sweeps_the_rest(
    source_registry: LocalRegistry, repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """config.yml changes between two snapshots; keep_last=1 sweeps only the old version."""
    await push_image(source_registry, repo, make_image(f"{repo}/p"), "v1")
    store = store_config("dir", tmp_path)
    config = configure(tmp_path, source_registry, store, repo)
    assert (await drd_here("snapshot", "create", config=config, capsys=capsys))[0] == 0
    edited = CONFIG_YML + b"# retention tightened\n"
    (tmp_path / "etc/docker/registry/config.yml").write_bytes(edited)
    assert (await drd_here("snapshot", "create", config=config, capsys=capsys))[0] == 0
    old, new = Digest.of(CONFIG_YML), Digest.of(edited)
    async with opened(store) as s:
        assert await s.stat(settings_key(old)) is not None
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        report = await prune(s, "primary", keep_last=1, now=later)
        assert len(report.deleted) == 1
        assert await s.stat(settings_key(old)) is None
        assert await s.stat(settings_key(new)) is not None
        assert await s.stat(settings_key(Digest.of(NOTIFY))) is not None
        kept = await load_snapshot(s, "primary", "latest")
        assert (await verify_snapshot(s, kept)).ok
