"""
A layer lost under a present manifest at a replica: `drd scrub`, a replica drill and the
failover pre-flight find it; `drd restore` puts it back. Real registries, the CLI, and
the commands of runbooks/partial-corruption.md.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from drd.commands.units import short
from tests.configs import write_toml
from tests.drill.helpers import KEY, push_signed
from tests.images import RegistryWriter, make_image
from tests.servers import LocalRegistry
from tests.snapshot.helpers import json_out, run_drd
from tests.snapshot.test_sign import private_pem


def config(
    tmp_path: Path, primary: LocalRegistry, dr: LocalRegistry, drill: LocalRegistry, repo: str
) -> Path:
    """primary -> dr (signatures required), signed snapshots of primary without blobs."""
    (tmp_path / "release.pub").write_bytes(KEY.public_pem())
    (tmp_path / "index.key").write_bytes(private_pem(ed25519.Ed25519PrivateKey.generate()))
    return write_toml(
        tmp_path / "drd.toml",
        f"""
version = 1

[endpoints.primary]
url = "{primary.url}"

[endpoints.dr]
url = "{dr.url}"

[endpoints.drill]
url = "{drill.url}"

[trust.release]
keys = ["{tmp_path / "release.pub"}"]

[[replication]]
name = "prod"
source = "primary"
targets = ["dr"]
repositories = ["{repo}"]
require_signature = "release"

[snapshots]
source = "primary"
store = "file://{tmp_path / "snapshots"}"
repositories = ["{repo}"]
signing_key_file = "{tmp_path / "index.key"}"

[drills]
target = "drill"
replica = "dr"
mode = "replica"
rpo = "1h"
report_dir = "{tmp_path / "reports"}"

[failover]
overrides_file = "{tmp_path / "overrides.json"}"

[daemon]
state_dir = "{tmp_path / "state"}"

[retry]
attempts = 2
wait_initial = 0.0
wait_max = 0.0
""",
    )


async def test_a_layer_lost_under_a_present_manifest_is_found_and_repaired(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """
    The replica's manifest still answers, one layer is gone: scrub exits 1 naming the
    layer and the tag, the replica drill and the failover pre-flight call the tag
    incomplete, a restore without --yes writes nothing, the restore puts the layer
    back byte for byte, and scrub --deep and the drill then pass.
    """
    path = config(tmp_path, source_registry, target_registry, third_registry, repo)
    image = make_image(f"{repo}/app", layers=2)
    await push_signed(source_registry, repo, image, "v1")
    assert (await run_drd("replicate", config=path)).returncode == 0
    created = await run_drd("snapshot", "create", "--json", config=path)
    assert created.returncode == 0, created.stderr
    snap_id = json_out(created)["id"]
    lost = image.layers[1]
    async with RegistryWriter(target_registry) as w:
        await w.delete_blob(repo, lost.digest)
        assert await w.manifest_exists(repo, "v1")
        assert not await w.blob_exists(repo, lost.digest)

    scrub = await run_drd("scrub", "dr", "--repository", repo, "--json", config=path)
    assert scrub.returncode == 1, scrub.stderr
    damage = json_out(scrub)["damage"]
    assert [(d["digest"], d["kind"], d["tags"]) for d in damage] == [
        (str(lost.digest), "missing-blob", ["v1"])
    ]
    human = await run_drd("scrub", "dr", "--repository", repo, config=path)
    assert f"missing-blob     {repo}@{short(lost.digest)} (tags v1)" in human.stdout

    drill = await run_drd("drill", "--replica", "--json", config=path)
    assert drill.returncode == 1, drill.stderr
    [failure] = json_out(drill)["failures"]
    assert (failure["tag"], failure["digest"]) == ("v1", str(image.digest))
    assert failure["reason"] == f"incomplete: missing-blob {lost.digest}"
    drill_text = await run_drd("drill", "--replica", config=path)
    assert f"incomplete: missing-blob {short(lost.digest)}" in drill_text.stdout
    assert str(lost.digest) not in drill_text.stdout

    preflight = await run_drd("failover", "--to", "dr", "--dry-run", "--json", config=path)
    findings = {f["check"]: f for f in json_out(preflight)["preflight"]["findings"]}
    assert not findings["completeness"]["ok"]
    assert any(f"{repo}:v1 incomplete" in d for d in findings["completeness"]["details"])

    restore = ["restore", "--snapshot", snap_id, "--to", "dr", "--repository", repo]
    unconfirmed = await run_drd(*restore, config=path)
    assert unconfirmed.returncode == 2
    assert "Pass --yes" in unconfirmed.stderr
    assert (await run_drd(*restore, "--dry-run", config=path)).returncode == 0
    async with RegistryWriter(target_registry) as w:
        assert not await w.blob_exists(repo, lost.digest)

    repaired = await run_drd(*restore, "--yes", "--json", config=path)
    assert repaired.returncode == 0, repaired.stderr
    stats = json_out(repaired)["summary"]
    assert (stats["blobs_from_endpoints"], stats["manifests_pushed"]) == (1, 0)
    async with RegistryWriter(target_registry) as w:
        assert await w.get_blob(repo, lost.digest) == lost.data

    deep = await run_drd("scrub", "dr", "--repository", repo, "--deep", "--json", config=path)
    assert deep.returncode == 0, deep.stdout
    assert json_out(deep)["bytes_hashed"] >= sum(b.size for b in image.blobs)
    assert (await run_drd("drill", "--replica", config=path)).returncode == 0
