"""
Notation-signed images replicated between real registries to a ``require_signature`` target.

docker-registry has no referrers API, so the signature is found (and copied) the way
Notation itself attaches it there: the signature manifest by digest, listed in the
``sha256-<hex>`` fallback tag's index. A replica drill then verifies the copy in place,
and a restore drill verifies it again after a snapshot brought it back.
"""

from __future__ import annotations

import json
from pathlib import Path

import structlog

from drd.config import load_settings
from drd.drill.judge import Targets
from drd.drill.runner import run_drill, run_replica_drill
from drd.oci.digest import Digest
from drd.replica.check import ReplicaScope
from drd.resources import policy_from_config, trust_policy
from drd.selection.filters import RepoFilter
from drd.snapshot.collect import take_snapshot
from drd.trust.keys import TrustPolicy
from drd.trust.notation import JWS_MEDIA_TYPE
from drd.trust.notation_trust import NotationTrust, TrustedCertificate
from drd.trust.verify import verify_artifact
from tests.clients import RETRY, open_client
from tests.images import RegistryWriter, make_image
from tests.replicate.test_trusted import assert_nothing_reached, assert_rejected, replicate
from tests.servers import LocalRegistry
from tests.skopeo import inspect_raw, list_tags
from tests.snapshot.helpers import opened, store_config
from tests.trust.notary import (
    cached_signer,
    push_notation_signed,
)


def write_config(tmp_path: Path, source: LocalRegistry, dest: LocalRegistry, repo: str) -> Path:
    """A drd.toml replicating *repo* under a policy trusting only cached_signer(0)'s root."""
    root = tmp_path / "notary-root.crt"
    root.write_bytes(cached_signer(0).root_pem())
    config = tmp_path / "drd.toml"
    config.write_text(
        f"""
version = 1

[endpoints.source]
url = "{source.url}"

[endpoints.target]
url = "{dest.url}"

[retry]
attempts = 2

[trust.notary]
notation_roots = ["{root}"]
notation_identities = ["x509.subject: O=drd tests, CN=release 0"]

[[replication]]
name = "trusted"
source = "source"
targets = ["target"]
repositories = ["{repo}"]
require_signature = "notary"
"""
    )
    return config


async def test_notation_signed_image_replicates_and_verifies_at_the_target_and_in_a_drill(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    image = make_image(f"{repo}/notation")
    signature, index = await push_notation_signed(
        source_registry, repo, image, "v1", cached_signer(0)
    )
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    report = await replicate(settings, source_registry, target_registry)

    assert report.ok, report.to_json()
    items = {i.tag: i for i in report.items}
    assert (items["v1"].outcome, items["v1"].digest) == ("copied", str(image.digest))
    fallback = image.digest.tag_form
    assert (items[fallback].outcome, items[fallback].digest) == ("copied", str(index))
    # Byte-exact at the target, read by skopeo: the image, the fallback index, the signature.
    assert Digest.of(inspect_raw(target_registry, repo, "v1")) == image.digest
    assert Digest.of(inspect_raw(target_registry, repo, fallback)) == index
    assert list_tags(target_registry, repo) == sorted(["v1", fallback])
    async with RegistryWriter(target_registry) as w:
        raw, _ = await w.get_manifest(repo, signature)
        layer = json.loads(raw)["layers"][0]
        assert layer["mediaType"] == JWS_MEDIA_TYPE
        assert await w.blob_exists(repo, Digest.parse(layer["digest"]))

    policy = trust_policy(settings.trust["notary"])
    async with open_client(target_registry, "target") as dst:
        verified = await verify_artifact(dst, repo, image.digest, policy)
    assert (verified.form, verified.signature_digest) == ("notation-jws", signature)
    assert verified.identity == "CN=release 0,O=drd tests,C=US"

    scope = ReplicaScope(policy_from_config(settings.replication[0]), "source", policy, policy)
    async with (
        open_client(source_registry, "source") as src,
        open_client(target_registry, "target") as dst,
    ):
        drill = await run_replica_drill(
            {"source": src}, dst, [scope], targets=Targets(rto_s=600.0, rpo_s=3600.0)
        )
    assert drill.ok, drill.to_json()
    assert ("v1", "ok") in {(c.tag, c.status) for c in drill.checks}
    assert drill.readback.signed_ok == 1


async def test_cose_signed_image_replicates_too(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    image = make_image(f"{repo}/cose")
    await push_notation_signed(source_registry, repo, image, "v1", cached_signer(0), "cose")
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    report = await replicate(settings, source_registry, target_registry)

    assert report.ok, report.to_json()
    assert {i.tag: i.outcome for i in report.items}["v1"] == "copied"


async def test_notation_signature_under_another_root_is_rejected_and_nothing_lands(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    image = make_image(f"{repo}/foreign")
    await push_notation_signed(source_registry, repo, image, "v1", cached_signer(1))
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    with structlog.testing.capture_logs() as logs:
        report = await replicate(settings, source_registry, target_registry)

    assert_rejected(report, logs, "v1", image.digest, "untrusted-root")
    await assert_nothing_reached(target_registry, repo, image)


async def test_notation_signature_naming_another_digest_is_rejected(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    image = make_image(f"{repo}/moved")
    other = make_image(f"{repo}/other")
    await push_notation_signed(
        source_registry, repo, image, "v1", cached_signer(0), signs=other.digest
    )
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    with structlog.testing.capture_logs() as logs:
        report = await replicate(settings, source_registry, target_registry)

    assert_rejected(report, logs, "v1", image.digest, "wrong-digest")
    await assert_nothing_reached(target_registry, repo, image)


async def test_restore_drill_of_a_snapshot_verifies_the_notation_signature(
    source_registry: LocalRegistry, third_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """Snapshot, restore into the drill registry, verify there: the fallback index comes back."""
    image = make_image(f"{repo}/restored")
    await push_notation_signed(source_registry, repo, image, "v1", cached_signer(0))
    policy = notation_policy()
    cfg = store_config("dir", tmp_path)
    async with opened(cfg) as store, open_client(source_registry, "primary") as client:  # type: ignore[arg-type]
        await take_snapshot(
            client,
            store,
            source_name="primary",
            repositories=RepoFilter((repo,)),
            blobs=True,
            retry=RETRY,
        )

    async with opened(cfg) as store, open_client(third_registry, "drill") as client:  # type: ignore[arg-type]
        report = await run_drill(
            store,
            client,
            source="primary",
            targets=Targets(rto_s=3600.0, rpo_s=3600.0),
            snapshot="latest",
            sample=0,
            trust=policy,
            retry=RETRY,
        )

    assert report.ok, report.to_json()
    assert (report.readback.signed_ok, report.readback.signature_failures) == (1, 0)


def notation_policy() -> TrustPolicy:
    root = TrustedCertificate("root.crt", cached_signer(0).root)
    return TrustPolicy(name="notary", keys=(), notation=(NotationTrust(roots=(root,)),))
