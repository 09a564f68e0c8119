"""
Verified replication between two real registries: only signed content reaches a trusted target.

Signatures are made in cosign's tag form by `tests.trust.signing` and pushed with the
independent test client; the real cosign-made signature of ``ocmirror-cosign-single``
is replicated too. Every attack asserts that nothing reached the target: no tag, no
manifest by digest, no blob.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog

from drd.config import Settings, load_settings
from drd.errors import VerificationError
from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.registry.client import RegistryClient
from drd.replicate.report import ItemResult, PolicyReport
from drd.replicate.runner import run_policy
from drd.resources import policy_from_config, trust_policy, verifier_for
from drd.trust.verify import verify_artifact
from tests.clients import RETRY, open_client
from tests.images import (
    Image,
    RegistryWriter,
    make_image,
    make_multiarch,
    pseudo_random,
    push_image,
    push_index,
    signature_tag,
)
from tests.layouts import fixture_path, push_layout
from tests.servers import LocalRegistry
from tests.skopeo import inspect_raw, list_tags
from tests.trust.signing import (
    SigningKey,
    cached_key,
    policy_for,
    rekor_bundle,
    sign,
    signature_manifest,
    simple_signing_payload,
)

KEY = cached_key("ecdsa-p256")  # the trusted release key
OTHER = cached_key("ecdsa-p256", 1)  # a well-formed key nobody trusts
LOG = cached_key("ecdsa-p256", 2)  # stands in for Rekor's log key
COSIGN_CASE = "ocmirror-cosign-single"
COSIGN_KEY_PREFIX = "e8ed5dd0"  # PROVENANCE.md: sha256 of the fixture key's DER

Verifier = Callable[[RegistryClient, str, Digest], Awaitable[str]]


# --- setup helpers ---------------------------------------------------------------------


def write_config(
    tmp_path: Path,
    source: LocalRegistry,
    target: LocalRegistry,
    repo: str,
    *,
    keys: list[bytes | Path] | None = None,
    rekor_keys: Sequence[Path] = (),
    require_rekor: bool = False,
    require_children: bool = False,
    trusted: bool = True,
    repositories: Sequence[str] = (),
    immutable_tags: bool = False,
) -> Path:
    """A drd.toml replicating *repo* (or *repositories*) from *source* to *target*."""
    key_paths: list[Path] = []
    for i, key in enumerate(keys if keys is not None else [KEY.public_pem()]):
        if isinstance(key, Path):
            key_paths.append(key)
        else:
            path = tmp_path / f"key-{i}.pub"
            path.write_bytes(key)
            key_paths.append(path)
    text = f"""
version = 1

[endpoints.source]
url = "{source.url}"

[endpoints.target]
url = "{target.url}"

[retry]
attempts = 2

[trust.release]
keys = {json.dumps([str(p) for p in key_paths])}
rekor_keys = {json.dumps([str(p) for p in rekor_keys])}
require_rekor = {str(require_rekor).lower()}
require_children = {str(require_children).lower()}

[[replication]]
name = "trusted"
source = "source"
targets = ["target"]
repositories = {json.dumps(list(repositories) or [repo])}
immutable_tags = {str(immutable_tags).lower()}
{'require_signature = "release"' if trusted else ""}
"""
    config = tmp_path / "drd.toml"
    config.write_text(text)
    return config


async def replicate(
    settings: Settings,
    source: LocalRegistry,
    target: LocalRegistry,
    wrap: Callable[[Verifier], Verifier] | None = None,
) -> PolicyReport:
    """One pass of the config's policy, with the verifier `verifier_for` builds (wrapped)."""
    rep = settings.replication[0]
    verifier = verifier_for(settings, rep)
    if wrap is not None and verifier is not None:
        verifier = wrap(verifier)
    async with open_client(source, "source") as src, open_client(target, "target") as dst:
        return await run_policy(
            policy_from_config(rep), src, {"target": dst}, RETRY, verifier=verifier
        )


def signed_layer(
    digest: Digest, repo: str, key: SigningKey = KEY, *, payload: bytes | None = None
) -> tuple[bytes, str]:
    """(payload, base64 signature): a cosign signature of *digest* by *key*."""
    body = payload if payload is not None else simple_signing_payload(digest, f"example/{repo}")
    return body, sign(body, key)


async def push_signature(
    registry: LocalRegistry,
    repo: str,
    subject: Digest,
    layers: list[tuple[bytes, str]],
    bundles: list[str | None] | None = None,
) -> tuple[Digest, bytes]:
    """Push a ``.sig`` manifest under *subject*'s signature tag; its digest and bytes."""
    raw, blobs = signature_manifest(layers, bundles)
    async with RegistryWriter(registry) as w:
        for data in blobs.values():
            if len(data) <= 1024 * 1024:
                await w.push_blob(repo, data)
                continue
            # From a file object, not bytes: aiohttp warns (here, fails) on large raw bodies.
            location = await w._start_upload(repo)
            await w._finish_upload(location, Digest.of(data), io.BytesIO(data))
        await w.push_manifest(repo, signature_tag(subject), raw, mediatype.OCI_MANIFEST)
    return Digest.of(raw), raw


async def push_signed(
    registry: LocalRegistry, repo: str, image: Image, tag: str, key: SigningKey = KEY
) -> Digest:
    """Push *image* under *tag* and its signature by *key*; the signature manifest's digest."""
    await push_image(registry, repo, image, tag)
    sig, _ = await push_signature(
        registry, repo, image.digest, [signed_layer(image.digest, repo, key)]
    )
    return sig


async def assert_nothing_reached(target: LocalRegistry, repo: str, *images: Image) -> None:
    """No tag in *repo* at *target*, and no manifest or blob of *images* either."""
    async with RegistryWriter(target) as w:
        assert await w.list_tags(repo) == []
        for image in images:
            assert not await w.manifest_exists(repo, image.digest), image.digest
            for blob in image.blobs:
                assert not await w.blob_exists(repo, blob.digest), blob.digest


def assert_rejected(
    report: PolicyReport,
    logs: list[MutableMapping[str, Any]],
    tag: str,
    digest: Digest,
    reason: str,
) -> ItemResult:
    """
    *tag* alone was rejected with *reason*, nothing was copied, and it was logged; the
    pass itself is ok (a rejection is the trust policy working, not a failure).
    """
    assert report.ok, report.to_json()
    assert report.rejected == 1
    assert report.count("copied") == 0, report.to_json()
    [item] = [i for i in report.items if i.tag == tag]
    assert (item.outcome, item.reason, item.digest, item.target) == (
        "rejected",
        reason,
        str(digest),
        "target",
    ), item
    # A rejected image takes its signatures with it: no item hangs off its digest.
    assert not [i for i in report.items if i.tag.startswith(digest.tag_form)], report.items
    rejected = [e for e in logs if e["event"] == "replicate.rejected"]
    assert [(e["tag"], e["reason"], e["digest"], e["log_level"]) for e in rejected] == [
        (tag, reason, str(digest), "warning")
    ]
    return item


async def tag_at(registry: LocalRegistry, repo: str, tag: str) -> Digest:
    """The digest of the bytes *registry* serves for *repo:tag*."""
    async with RegistryWriter(registry) as w:
        raw, _ = await w.get_manifest(repo, tag)
    return Digest.of(raw)


# --- signed content arrives, and verifies where it landed ------------------------------


async def test_signed_image_and_its_signature_arrive_and_verify_at_the_target(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    Under a trusted policy a signed image is copied with its ``.sig`` tag; both are
    byte-exact at the target (read by skopeo), the signature verifies there with drd's
    verifier, and openssl verifies the signature bytes fetched from the target.
    """
    image = make_image(f"{repo}/signed")
    sig = await push_signed(source_registry, repo, image, "v1")
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    with structlog.testing.capture_logs() as logs:
        report = await replicate(settings, source_registry, target_registry)

    assert report.ok, report.to_json()
    items = {i.tag: i for i in report.items}
    assert set(items) == {"v1", signature_tag(image.digest)}
    assert items["v1"].outcome == "copied"
    assert items["v1"].digest == str(image.digest)
    assert items["v1"].key == KEY.trust_key().fingerprint
    assert (
        items[signature_tag(image.digest)].outcome,
        items[signature_tag(image.digest)].digest,
    ) == (
        "copied",
        str(sig),
    )
    assert not [e for e in logs if e["event"] == "replicate.rejected"]

    assert Digest.of(inspect_raw(target_registry, repo, "v1")) == image.digest
    assert Digest.of(inspect_raw(target_registry, repo, signature_tag(image.digest))) == sig
    assert list_tags(target_registry, repo) == sorted(["v1", signature_tag(image.digest)])
    async with open_client(target_registry, "target") as dst:
        verified = await verify_artifact(dst, repo, image.digest, policy_for(KEY))
    assert verified.digest == image.digest
    assert verified.key_fingerprint == KEY.trust_key().fingerprint

    # Independently: openssl checks the signature over the payload as the target serves it.
    async with RegistryWriter(target_registry) as w:
        raw, _ = await w.get_manifest(repo, signature_tag(image.digest))
        layer = json.loads(raw)["layers"][0]
        payload = await w.get_blob(repo, Digest.parse(layer["digest"]))
    (tmp_path / "payload").write_bytes(payload)
    (tmp_path / "payload.sig").write_bytes(
        base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    )
    (tmp_path / "cosign.pub").write_bytes(KEY.public_pem())
    openssl = await asyncio.to_thread(
        subprocess.run,
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            str(tmp_path / "cosign.pub"),
            "-signature",
            str(tmp_path / "payload.sig"),
            str(tmp_path / "payload"),
        ],
        capture_output=True,
        check=False,
    )
    assert openssl.returncode == 0, openssl.stderr
    assert openssl.stdout.strip() == b"Verified OK"
    assert json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == str(image.digest)

    again = await replicate(settings, source_registry, target_registry)
    assert again.ok
    assert {(i.tag, i.outcome) for i in again.items} == {
        ("v1", "skipped"),
        (signature_tag(image.digest), "skipped"),
    }


async def test_real_cosign_signature_with_rekor_bundle_replicates(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    The cosign-made signature of ``ocmirror-cosign-single`` verifies with its key and the
    Rekor public-good key (require_rekor); image and ``.sig`` arrive byte-exact and the
    Rekor entry verifies again at the target.
    """
    layout = await push_layout(source_registry, repo, COSIGN_CASE)
    trust = fixture_path(COSIGN_CASE) / "trust"
    config = write_config(
        tmp_path,
        source_registry,
        target_registry,
        repo,
        keys=[trust / "cosign.pub"],
        rekor_keys=[trust / "rekor-public-good.pub"],
        require_rekor=True,
    )
    settings = load_settings(config)
    image = layout.tags["latest"]
    sig_tag = signature_tag(image)

    report = await replicate(settings, source_registry, target_registry)

    assert report.ok, report.to_json()
    items = {i.tag: i for i in report.items}
    assert (items["latest"].outcome, items["latest"].digest) == ("copied", str(image))
    assert items["latest"].key.startswith(COSIGN_KEY_PREFIX)
    assert (items[sig_tag].outcome, items[sig_tag].digest) == ("copied", str(layout.tags[sig_tag]))
    assert inspect_raw(target_registry, repo, "latest") == layout.manifests[image]
    assert inspect_raw(target_registry, repo, sig_tag) == layout.manifests[layout.tags[sig_tag]]
    async with open_client(target_registry, "target") as dst:
        verified = await verify_artifact(dst, repo, image, trust_policy(settings.trust["release"]))
    assert verified.rekor
    assert verified.key_fingerprint.startswith(COSIGN_KEY_PREFIX)
    assert verified.log_index is not None


async def test_policy_without_require_signature_copies_unsigned_and_signed(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """Without ``require_signature`` unsigned images are copied, and signatures ride along."""
    unsigned = make_image(f"{repo}/unsigned")
    signed = make_image(f"{repo}/signed")
    await push_image(source_registry, repo, unsigned, "unsigned")
    sig = await push_signed(source_registry, repo, signed, "signed", key=OTHER)
    settings = load_settings(
        write_config(tmp_path, source_registry, target_registry, repo, trusted=False)
    )

    report = await replicate(settings, source_registry, target_registry)

    assert report.ok, report.to_json()
    assert {(i.tag, i.outcome, i.digest) for i in report.items} == {
        ("unsigned", "copied", str(unsigned.digest)),
        ("signed", "copied", str(signed.digest)),
        (signature_tag(signed.digest), "copied", str(sig)),
    }
    assert await tag_at(target_registry, repo, "unsigned") == unsigned.digest
    assert await tag_at(target_registry, repo, "signed") == signed.digest
    assert await tag_at(target_registry, repo, signature_tag(signed.digest)) == sig


# --- attacks: nothing reaches the trusted target ---------------------------------------


async def test_unsigned_image_is_rejected(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """An image without any signature is rejected with ``no-signature``."""
    image = make_image(f"{repo}/unsigned")
    await push_image(source_registry, repo, image, "v1")
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    with structlog.testing.capture_logs() as logs:
        report = await replicate(settings, source_registry, target_registry)

    assert_rejected(report, logs, "v1", image.digest, "no-signature")
    await assert_nothing_reached(target_registry, repo, image)


async def test_signature_by_another_key_is_rejected(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """A valid signature by an untrusted key is ``bad-signature``; nothing is copied."""
    image = make_image(f"{repo}/other-key")
    sig = await push_signed(source_registry, repo, image, "v1", key=OTHER)
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    with structlog.testing.capture_logs() as logs:
        report = await replicate(settings, source_registry, target_registry)

    assert_rejected(report, logs, "v1", image.digest, "bad-signature")
    await assert_nothing_reached(target_registry, repo, image)
    async with RegistryWriter(target_registry) as w:
        assert not await w.manifest_exists(repo, sig)


async def test_signature_by_a_logged_foreign_key_is_unknown_key(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    A signature whose Rekor bundle names the (untrusted) key that made it is rejected
    as ``unknown-key``, naming that key's fingerprint.
    """
    image = make_image(f"{repo}/foreign")
    await push_image(source_registry, repo, image, "v1")
    payload, signature = signed_layer(image.digest, repo, OTHER)
    bundle = rekor_bundle(payload, signature, OTHER, LOG)
    await push_signature(source_registry, repo, image.digest, [(payload, signature)], [bundle])
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    with structlog.testing.capture_logs() as logs:
        report = await replicate(settings, source_registry, target_registry)

    assert_rejected(report, logs, "v1", image.digest, "unknown-key")
    await assert_nothing_reached(target_registry, repo, image)


async def test_signature_copied_from_another_image_is_rejected(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    A trusted signature of image B, placed under image A's ``.sig`` tag, names B's digest:
    A is rejected as ``wrong-digest``; B (untagged) is not copied either.
    """
    a = make_image(f"{repo}/a")
    b = make_image(f"{repo}/b")
    await push_image(source_registry, repo, a, "v1")
    await push_image(source_registry, repo, b)
    await push_signature(source_registry, repo, a.digest, [signed_layer(b.digest, repo)])
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    with structlog.testing.capture_logs() as logs:
        report = await replicate(settings, source_registry, target_registry)

    assert_rejected(report, logs, "v1", a.digest, "wrong-digest")
    await assert_nothing_reached(target_registry, repo, a, b)


async def test_one_tampered_payload_byte_is_rejected(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """The trusted key's signature over a payload with one byte changed is ``bad-signature``."""
    image = make_image(f"{repo}/tampered")
    await push_image(source_registry, repo, image, "v1")
    payload, signature = signed_layer(image.digest, repo)
    at = payload.index(b"example/") + len(b"example/")
    tampered = payload[:at] + b"X" + payload[at + 1 :]
    assert len(tampered) == len(payload)
    assert tampered != payload
    await push_signature(source_registry, repo, image.digest, [(tampered, signature)])
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    with structlog.testing.capture_logs() as logs:
        report = await replicate(settings, source_registry, target_registry)

    assert_rejected(report, logs, "v1", image.digest, "bad-signature")
    await assert_nothing_reached(target_registry, repo, image)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("garbage", "malformed"),
        ("empty", "malformed"),
        ("garbage-signature", "malformed"),
        ("no-layers", "no-signature"),
    ],
)
async def test_sig_tag_with_garbage_or_empty_layer_is_rejected(
    kind: str,
    reason: str,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """
    A ``.sig`` layer that is random bytes or empty (even signed by the trusted key), a
    signature annotation that is not base64, or a ``.sig`` manifest without layers: rejected.
    """
    image = make_image(f"{repo}/{kind}")
    await push_image(source_registry, repo, image, "v1")
    layers: list[tuple[bytes, str]] = []
    if kind == "garbage":
        layers = [signed_layer(image.digest, repo, payload=pseudo_random(repo, 512))]
    elif kind == "empty":
        layers = [signed_layer(image.digest, repo, payload=b"")]
    elif kind == "garbage-signature":
        layers = [(simple_signing_payload(image.digest, f"example/{repo}"), "not base64!")]
    await push_signature(source_registry, repo, image.digest, layers)
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    with structlog.testing.capture_logs() as logs:
        report = await replicate(settings, source_registry, target_registry)

    assert_rejected(report, logs, "v1", image.digest, reason)
    await assert_nothing_reached(target_registry, repo, image)


async def test_sig_manifest_referencing_a_missing_blob_is_rejected(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """A ``.sig`` manifest whose payload blob is gone from the source is ``missing-blob``."""
    image = make_image(f"{repo}/missing")
    await push_image(source_registry, repo, image, "v1")
    payload, signature = signed_layer(image.digest, repo)
    await push_signature(source_registry, repo, image.digest, [(payload, signature)])
    async with RegistryWriter(source_registry) as w:
        await w.delete_blob(repo, Digest.of(payload))
        assert not await w.blob_exists(repo, Digest.of(payload))
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    with structlog.testing.capture_logs() as logs:
        report = await replicate(settings, source_registry, target_registry)

    assert_rejected(report, logs, "v1", image.digest, "missing-blob")
    await assert_nothing_reached(target_registry, repo, image)


async def test_payload_over_one_mebibyte_is_rejected(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """A validly signed payload just over 1 MiB is ``payload-too-large``, never parsed."""
    image = make_image(f"{repo}/large")
    await push_image(source_registry, repo, image, "v1")
    doc = json.loads(simple_signing_payload(image.digest, f"example/{repo}"))
    doc["optional"] = {"padding": "x" * (1024 * 1024)}
    payload = json.dumps(doc, separators=(",", ":")).encode()
    assert len(payload) > 1024 * 1024
    await push_signature(
        source_registry, repo, image.digest, [signed_layer(image.digest, repo, payload=payload)]
    )
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    with structlog.testing.capture_logs() as logs:
        report = await replicate(settings, source_registry, target_registry)

    assert_rejected(report, logs, "v1", image.digest, "payload-too-large")
    await assert_nothing_reached(target_registry, repo, image)


async def test_tag_moved_to_unsigned_digest_after_verification_is_not_followed(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    The source tag moves from a signed to an unsigned digest right after verification:
    the copy is made by the verified digest, so the target's tag names the signed image
    and the unsigned one never arrives. The next pass rejects the unsigned digest and
    leaves the target's tag where it was.
    """
    signed = make_image(f"{repo}/signed")
    unsigned = make_image(f"{repo}/unsigned")
    await push_signed(source_registry, repo, signed, "v1")
    await push_image(source_registry, repo, unsigned)  # present by digest, not yet tagged
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))
    moved: list[Digest] = []

    def move_after_verifying(inner: Verifier) -> Verifier:
        async def verify(client: RegistryClient, repository: str, digest: Digest) -> str:
            key = await inner(client, repository, digest)
            if client.name == "source" and not moved:
                await push_image(source_registry, repo, unsigned, "v1")
                moved.append(digest)
            return key

        return verify

    report = await replicate(settings, source_registry, target_registry, move_after_verifying)

    assert moved == [signed.digest]
    assert await tag_at(source_registry, repo, "v1") == unsigned.digest
    assert report.ok, report.to_json()
    [item] = [i for i in report.items if i.tag == "v1"]
    assert (item.outcome, item.digest) == ("copied", str(signed.digest))
    assert await tag_at(target_registry, repo, "v1") == signed.digest
    async with RegistryWriter(target_registry) as w:
        assert not await w.manifest_exists(repo, unsigned.digest)

    with structlog.testing.capture_logs() as logs:
        again = await replicate(settings, source_registry, target_registry)
    item = assert_rejected(again, logs, "v1", unsigned.digest, "no-signature")
    assert item.moved_from == str(signed.digest)
    assert await tag_at(target_registry, repo, "v1") == signed.digest
    async with RegistryWriter(target_registry) as w:
        assert not await w.manifest_exists(repo, unsigned.digest)


# --- indexes: require_children -----------------------------------------------------------


async def test_require_children_rejects_an_index_whose_children_are_unsigned(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    With ``require_children`` a signed index whose platform images are unsigned is
    rejected (``no-signature``, naming the child); once every child is signed too, the
    index, its children and all their ``.sig`` tags arrive and verify at the target.
    """
    index = make_multiarch(f"{repo}/multi")
    await push_index(source_registry, repo, index, "v1")
    await push_signature(source_registry, repo, index.digest, [signed_layer(index.digest, repo)])
    settings = load_settings(
        write_config(tmp_path, source_registry, target_registry, repo, require_children=True)
    )

    with structlog.testing.capture_logs() as logs:
        report = await replicate(settings, source_registry, target_registry)

    assert_rejected(report, logs, "v1", index.digest, "no-signature")
    async with RegistryWriter(target_registry) as w:
        assert await w.list_tags(repo) == []
        assert not await w.manifest_exists(repo, index.digest)
        for image in index.images:
            assert not await w.manifest_exists(repo, image.digest)
    verify = verifier_for(settings, settings.replication[0])
    assert verify is not None
    async with open_client(source_registry, "source") as src:
        with pytest.raises(VerificationError) as caught:
            await verify(src, repo, index.digest)
    assert caught.value.reason == "no-signature"
    assert f"child {index.images[0].digest} is not verified" in caught.value.message

    child_sigs = {}
    for image in index.images:
        child_sigs[image.digest], _ = await push_signature(
            source_registry, repo, image.digest, [signed_layer(image.digest, repo)]
        )
    report = await replicate(settings, source_registry, target_registry)

    assert report.ok, report.to_json()
    copied = {(i.tag, i.outcome, i.digest) for i in report.items}
    assert ("v1", "copied", str(index.digest)) in copied
    for child, sig in child_sigs.items():
        assert (signature_tag(child), "copied", str(sig)) in copied
        assert Digest.of(inspect_raw(target_registry, repo, signature_tag(child))) == sig
    assert Digest.of(inspect_raw(target_registry, repo, "v1")) == index.digest
    async with open_client(target_registry, "target") as dst:
        assert await verify(dst, repo, index.digest) == KEY.trust_key().fingerprint


# --- the command line --------------------------------------------------------------------


async def test_replicate_command_copies_signed_and_rejects_unsigned(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    ``drd replicate --json`` on a trusted policy: the signed image and its ``.sig`` are
    copied, the unsigned image and the one signed by another key are rejected with their
    reasons, the process exits 1, and stderr carries a ``replicate.rejected`` line for each.
    """
    signed = make_image(f"{repo}/signed")
    unsigned = make_image(f"{repo}/unsigned")
    forged = make_image(f"{repo}/forged")

    sig = await push_signed(source_registry, repo, signed, "signed")
    await push_image(source_registry, repo, unsigned, "unsigned")
    await push_signed(source_registry, repo, forged, "forged", key=OTHER)
    config = write_config(tmp_path, source_registry, target_registry, repo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRD_")}
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "drd", "replicate", "--config", str(config), "--json"],
        capture_output=True,
        timeout=120,
        env=env,
        check=False,
    )

    # Rejections are the trust policy working: the pass succeeds, with exit 3 to say so.
    assert proc.returncode == 3, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    [policy] = doc["policies"]
    assert policy["policy"] == "trusted"
    assert (policy["ok"], policy["rejected"]) == (True, 2)
    items = {i["tag"]: i for i in policy["items"]}
    assert set(items) == {"signed", signature_tag(signed.digest), "unsigned", "forged"}
    assert (items["signed"]["outcome"], items["signed"]["digest"]) == ("copied", str(signed.digest))
    assert items["signed"]["key"] == KEY.trust_key().fingerprint
    assert items[signature_tag(signed.digest)]["digest"] == str(sig)
    assert (items["unsigned"]["outcome"], items["unsigned"]["reason"]) == (
        "rejected",
        "no-signature",
    )
    assert (items["forged"]["outcome"], items["forged"]["reason"]) == ("rejected", "bad-signature")
    assert policy["summary"]["rejected"] == 2
    assert policy["summary"]["copied"] == 2

    lines = [json.loads(line) for line in proc.stderr.decode().splitlines() if line.startswith("{")]
    rejected = {e["tag"]: e["reason"] for e in lines if e["event"] == "replicate.rejected"}
    assert rejected == {"unsigned": "no-signature", "forged": "bad-signature"}

    assert list_tags(target_registry, repo) == sorted(["signed", signature_tag(signed.digest)])
    assert Digest.of(inspect_raw(target_registry, repo, "signed")) == signed.digest
