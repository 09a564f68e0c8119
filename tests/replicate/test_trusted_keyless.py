"""
Keyless-signed images between two real registries: a trusted target takes only the
images signed by the identity its policy names.

Signatures are cosign's tag form with a leaf from a test Fulcio CA and a SET from a
test Rekor key (`tests.trust.keyless_signing`), pushed with the independent test client.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import structlog

from drd.config import load_settings
from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.replicate.runner import run_policy
from drd.resources import policy_from_config, trust_policy, verifier_for
from drd.trust.verify import verify_artifact
from tests.clients import RETRY, open_client
from tests.images import Image, RegistryWriter, make_image, push_image, signature_tag
from tests.servers import LocalRegistry
from tests.skopeo import inspect_raw, list_tags
from tests.snapshot.helpers import json_out, run_drd
from tests.trust.keyless_signing import GHA, WORKFLOW, FakeFulcio, KeylessSigner, default_log
from tests.trust.signing import signature_manifest, simple_signing_payload

FULCIO = FakeFulcio.create()
LOG = default_log()
OTHER_WORKFLOW = "https://github.com/org/fork/.github/workflows/release.yml@refs/heads/main"


def write_config(tmp_path: Path, source: LocalRegistry, target: LocalRegistry, repo: str) -> Path:
    """A drd.toml whose trusted target accepts WORKFLOW's keyless signatures only."""
    (tmp_path / "fulcio-root.pem").write_bytes(FULCIO.root_pem())
    (tmp_path / "rekor.pub").write_bytes(LOG.public_pem())
    config = tmp_path / "drd.toml"
    config.write_text(
        f"""
version = 1

[endpoints.source]
url = "{source.url}"

[endpoints.target]
url = "{target.url}"

[retry]
attempts = 2

[trust.ci]
fulcio_roots = ["fulcio-root.pem"]
rekor_keys = ["rekor.pub"]
require_rekor = true

[[trust.ci.identities]]
issuer = "{GHA}"
subject_regex = 'https://github\\.com/org/app/\\.github/workflows/release\\.yml@refs/heads/main'
source_ref = "refs/heads/main"

[[replication]]
name = "trusted"
source = "source"
targets = ["target"]
repositories = ["{repo}"]
require_signature = "ci"
"""
    )
    return config


async def push_keyless_signed(
    registry: LocalRegistry, repo: str, image: Image, tag: str, subject: str
) -> Digest:
    """Push *image* under *tag* and a keyless ``.sig`` by *subject*; the .sig's digest."""
    await push_image(registry, repo, image, tag)
    signer = KeylessSigner(
        FULCIO, LOG, leaf_options={"subject": subject, "claims": {"source_ref": "refs/heads/main"}}
    )
    payload, signature, annotations = signer.sign_layer(
        simple_signing_payload(image.digest, f"registry.example/{repo}")
    )
    raw, blobs = signature_manifest([(payload, signature)], extra=[annotations])
    async with RegistryWriter(registry) as w:
        for data in blobs.values():
            await w.push_blob(repo, data)
        await w.push_manifest(repo, signature_tag(image.digest), raw, mediatype.OCI_MANIFEST)
    return Digest.of(raw)


async def test_keyless_signed_image_lands_with_its_signature_and_a_foreign_identity_does_not(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    The image signed by the trusted workflow and its ``.sig`` arrive byte-exact and verify
    at the target; the one signed (validly, same Fulcio) by another workflow is rejected
    as ``untrusted-identity`` and nothing of it lands: no tag, manifest, blob or .sig.
    """
    good = make_image(f"{repo}/keyless-good")
    foreign = make_image(f"{repo}/keyless-foreign")
    sig = await push_keyless_signed(source_registry, repo, good, "v1", WORKFLOW)
    await push_keyless_signed(source_registry, repo, foreign, "v2", OTHER_WORKFLOW)
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))
    rep = settings.replication[0]

    with structlog.testing.capture_logs() as logs:
        async with (
            open_client(source_registry, "source") as src,
            open_client(target_registry, "target") as dst,
        ):
            report = await run_policy(
                policy_from_config(rep),
                src,
                {"target": dst},
                RETRY,
                verifier=verifier_for(settings, rep),
            )

    items = {i.tag: i for i in report.items}
    assert set(items) == {"v1", signature_tag(good.digest), "v2"}, report.to_json()
    assert (items["v1"].outcome, items["v1"].digest) == ("copied", str(good.digest))
    assert (
        items[signature_tag(good.digest)].outcome,
        items[signature_tag(good.digest)].digest,
    ) == (
        "copied",
        str(sig),
    )
    assert (items["v2"].outcome, items["v2"].reason, items["v2"].digest) == (
        "rejected",
        "untrusted-identity",
        str(foreign.digest),
    )
    rejected = [e for e in logs if e["event"] == "replicate.rejected"]
    assert [(e["tag"], e["reason"]) for e in rejected] == [("v2", "untrusted-identity")]

    assert list_tags(target_registry, repo) == sorted(["v1", signature_tag(good.digest)])
    assert Digest.of(inspect_raw(target_registry, repo, "v1")) == good.digest
    assert Digest.of(inspect_raw(target_registry, repo, signature_tag(good.digest))) == sig
    async with RegistryWriter(target_registry) as w:
        assert not await w.manifest_exists(repo, foreign.digest)
        for blob in foreign.blobs:
            assert not await w.blob_exists(repo, blob.digest), blob.digest
    async with open_client(target_registry, "target") as dst:
        verified = await verify_artifact(dst, repo, good.digest, trust_policy(settings.trust["ci"]))
    assert (verified.identity, verified.issuer, verified.rekor) == (WORKFLOW, GHA, True)


async def test_replicate_and_verify_commands_name_the_keyless_identity(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """``drd replicate`` exits 1 for the foreign identity; ``drd verify`` names the signer."""
    good = make_image(f"{repo}/cli-good")
    foreign = make_image(f"{repo}/cli-foreign")
    await push_keyless_signed(source_registry, repo, good, "good", WORKFLOW)
    await push_keyless_signed(source_registry, repo, foreign, "foreign", OTHER_WORKFLOW)
    config = write_config(tmp_path, source_registry, target_registry, repo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRD_")}

    def drd(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "drd", *args, "--config", str(config), "--json"],
            capture_output=True,
            timeout=120,
            env=env,
            check=False,
        )

    proc = await asyncio.to_thread(drd, "replicate")
    assert proc.returncode == 3, proc.stderr.decode()  # a rejection: the pass succeeded
    [policy] = json.loads(proc.stdout)["policies"]
    outcomes = {i["tag"]: (i["outcome"], i.get("reason")) for i in policy["items"]}
    assert outcomes["good"][0] == "copied"
    assert outcomes["foreign"] == ("rejected", "untrusted-identity")

    check = await asyncio.to_thread(drd, "verify", f"{target_registry.host}/{repo}:good")
    assert check.returncode == 0, check.stderr.decode()
    doc = json.loads(check.stdout)
    assert (doc["kind"], doc["identity"], doc["issuer"]) == ("cosign", WORKFLOW, GHA)
    check = await asyncio.to_thread(drd, "verify", f"{source_registry.host}/{repo}:foreign")
    assert check.returncode == 1
    assert "untrusted-identity" in check.stdout.decode()


async def test_drill_verifies_keyless_signatures_of_restored_images(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """
    A drill under the keyless policy passes with the keyless-signed image verified after
    restore; once an image signed by a foreign identity is in the snapshot, it fails
    naming ``untrusted-identity``.
    """
    config = write_config(tmp_path, source_registry, target_registry, repo)
    config.write_text(
        config.read_text()
        + f"""
[endpoints.drill]
url = "{third_registry.url}"

[snapshots]
source = "source"
store = "file://{tmp_path / "snapshots"}"
repositories = ["{repo}"]

[drills]
target = "drill"
trust = "ci"
rto = "10m"
rpo = "1h"
report_dir = "{tmp_path / "reports"}"

[daemon]
state_dir = "{tmp_path / "state"}"
"""
    )
    await push_keyless_signed(source_registry, repo, make_image(f"{repo}/drill"), "v1", WORKFLOW)
    assert (await run_drd("snapshot", "create", config=config)).returncode == 0

    passed = await run_drd("drill", "--json", config=config)

    assert passed.returncode == 0, passed.stderr
    assert json_out(passed)["readback"]["signed_ok"] == 1

    foreign = make_image(f"{repo}/drill-foreign")
    await push_keyless_signed(source_registry, repo, foreign, "v2", OTHER_WORKFLOW)
    assert (await run_drd("snapshot", "create", config=config)).returncode == 0
    failed = await run_drd("drill", "--json", config=config)

    assert failed.returncode == 1, failed.stderr
    [failure] = json_out(failed)["failures"]
    assert (failure["tag"], failure["digest"]) == ("v2", str(foreign.digest))
    assert "untrusted-identity" in failure["reason"]
