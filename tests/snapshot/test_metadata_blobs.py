"""
With ``[snapshots] blobs = false`` the metadata blobs are still stored: image configs,
cosign signature payloads, attestation envelopes. A restore after the source is gone
brings every signature and attestation back whole, and they verify at the restored
registry. Real registries, a folder store, the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from drd.oci import mediatype
from drd.oci.digest import Digest
from tests.configs import write_toml
from tests.drill.helpers import KEY, push_signed
from tests.images import RegistryWriter, make_image, make_multiarch, push_image, push_index
from tests.servers import LocalRegistry
from tests.snapshot.helpers import json_out, run_drd
from tests.snapshot.test_sign import private_pem
from tests.trust.signing import attestation_manifest, intoto_statement


def config(
    tmp_path: Path,
    endpoints: dict[str, LocalRegistry],
    repo: str,
    metadata_blob_max: str = "4MiB",
) -> Path:
    """Endpoints by name, the release key, signed snapshots of ``primary`` without blobs."""
    (tmp_path / "release.pub").write_bytes(KEY.public_pem())
    (tmp_path / "index.key").write_bytes(private_pem(ed25519.Ed25519PrivateKey.generate()))
    listed = "\n".join(f'[endpoints.{n}]\nurl = "{r.url}"\n' for n, r in endpoints.items())
    return write_toml(
        tmp_path / "drd.toml",
        f"""
version = 1

{listed}
[trust.release]
keys = ["{tmp_path / "release.pub"}"]

[snapshots]
source = "primary"
store = "file://{tmp_path / "snapshots"}"
repositories = ["{repo}"]
blobs = false
metadata_blob_max = "{metadata_blob_max}"
signing_key_file = "{tmp_path / "index.key"}"

[daemon]
state_dir = "{tmp_path / "state"}"

[retry]
attempts = 2
wait_initial = 0.0
wait_max = 0.0
""",
    )


async def push_attestation(registry: LocalRegistry, repo: str, subject: Digest) -> Digest:
    """A cosign ``.att`` (DSSE envelope) on *subject*, signed by KEY; its manifest digest."""
    raw, blobs = attestation_manifest(intoto_statement(subject), KEY)
    async with RegistryWriter(registry) as w:
        for data in blobs.values():
            await w.push_blob(repo, data)
        tag = f"sha256-{subject.hex}.att"
        return await w.push_manifest(repo, tag, raw, mediatype.OCI_MANIFEST)


async def test_signatures_restore_whole_and_verify_with_the_source_gone(
    registry_factory: Callable[..., LocalRegistry], repo: str, tmp_path: Path
) -> None:
    """
    blobs = false: the store holds the configs, the signature payloads and the
    attestation envelope, and no layer. The source stops; a restore into an empty
    registry takes the layers from a mirror that has the images but no signature,
    and everything else from the store; every signature verifies there.
    """
    primary, mirror, restored = registry_factory(), registry_factory(), registry_factory()
    image, index = make_image(f"{repo}/app", layers=2), make_multiarch(f"{repo}/multi")
    await push_signed(primary, repo, image, "v1")
    await push_signed(primary, repo, index, "v2")
    att = await push_attestation(primary, repo, image.digest)
    # The mirror has the content, and not one signature or attestation.
    await push_image(mirror, repo, image, "v1")
    await push_index(mirror, repo, index, "v2")
    path = config(tmp_path, {"primary": primary, "mirror": mirror, "restored": restored}, repo)

    created = await run_drd("snapshot", "create", "--json", config=path)
    assert created.returncode == 0, created.stderr
    stored = {p.name for p in (tmp_path / "snapshots" / "blobs" / "sha256").iterdir()}
    layers = {b.digest.hex for m in (image, *index.images) for b in m.layers}
    configs = {m.config.digest.hex for m in (image, *index.images)}
    assert configs <= stored
    assert not layers & stored
    shown = await run_drd("snapshot", "show", "latest", "--json", config=path)
    assert json_out(shown)["metadata_blobs"] == len(stored)
    primary.stop()

    restore = await run_drd(
        "restore", "--snapshot", "latest", "--to", "restored", "--yes", "--json", config=path
    )
    assert restore.returncode == 0, restore.stdout + restore.stderr
    summary = json_out(restore)["summary"]
    assert summary["blobs_from_store"] == len(stored)
    assert summary["blobs_from_endpoints"] == len(layers)

    async with RegistryWriter(restored) as w:
        tags = set(await w.list_tags(repo))
        for subject in (image.digest, index.digest):
            sig_tag = f"sha256-{subject.hex}.sig"
            assert sig_tag in tags
            raw, _ = await w.get_manifest(repo, sig_tag)
            for desc in [json.loads(raw)["config"], *json.loads(raw)["layers"]]:
                blob = await w.get_blob(repo, Digest.parse(desc["digest"]))
                assert Digest.of(blob) == Digest.parse(desc["digest"])
        raw, _ = await w.get_manifest(repo, f"sha256-{image.digest.hex}.att")
        assert Digest.of(raw) == att
        envelope = json.loads(raw)["layers"][0]
        assert envelope["mediaType"] == "application/vnd.dsse.envelope.v1+json"
        data = await w.get_blob(repo, Digest.parse(envelope["digest"]))
        assert json.loads(data)["payloadType"] == "application/vnd.in-toto+json"

    for tag in ("v1", "v2"):
        verified = await run_drd(
            "verify", f"{restored.host}/{repo}:{tag}", "--trust", "release", "--json", config=path
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert json_out(verified)["verified"] is True


async def test_a_metadata_blob_over_the_cap_is_not_stored(
    registry_factory: Callable[..., LocalRegistry], repo: str, tmp_path: Path
) -> None:
    """metadata_blob_max bounds what blobs = false stores: a config over it stays out."""
    primary = registry_factory()
    image = make_image(f"{repo}/app")
    await push_signed(primary, repo, image, "v1")
    cap = image.config.size - 1
    path = config(tmp_path, {"primary": primary}, repo, metadata_blob_max=str(cap))

    assert (await run_drd("snapshot", "create", config=path)).returncode == 0

    stored = {p.name for p in (tmp_path / "snapshots" / "blobs" / "sha256").iterdir()}
    assert image.config.digest.hex not in stored
    assert stored  # the signature's small config and payload are under the cap
    assert all(
        (tmp_path / "snapshots" / "blobs" / "sha256" / n).stat().st_size <= cap for n in stored
    )
