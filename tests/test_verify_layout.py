"""
`drd verify oci:PATH:TAG` and `oci:PATH@sha256:…`: verify what an OCI image layout holds.

Layouts are the real cosign fixture (its layer blobs removed) and layouts built here
around the real notation-go cose-cli signature and self-made Notation and cosign
material. The answer names the kind, the identity or key, and one documented reason.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pycose.headers import X5chain
from pycose.messages import Sign1Message

from drd.cli import main
from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.registry.layout import REF_NAME, LayoutRef
from drd.trust.notation import COSE_MEDIA_TYPE, SIGNATURE_ARTIFACT_TYPE
from tests.images import make_image
from tests.layouts import fixture_path
from tests.trust.notary import (
    DAY,
    NOW,
    cached_signer,
    envelope,
    media_type_of,
    notation_fixture,
    signature_manifest,
    target,
)
from tests.trust.signing import cached_key, sign, simple_signing_payload
from tests.trust.signing import signature_manifest as cosign_signature_manifest

COSIGN_CASE = "ocmirror-cosign-single"
COSIGN_KEY_PREFIX = "e8ed5dd0"
COSE_CLI = "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0"
KEY = cached_key("ecdsa-p256")


class Layout:
    """An OCI image layout being written: blobs by digest, index.json entries."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.entries: list[dict[str, Any]] = []
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def blob(self, data: bytes) -> Digest:
        digest = Digest.of(data)
        (self.root / "blobs" / "sha256" / digest.hex).write_bytes(data)
        return digest

    def manifest(self, raw: bytes, media_type: str, tag: str | None = None, **extra: Any) -> Digest:
        digest = self.blob(raw)
        entry: dict[str, Any] = {"mediaType": media_type, "digest": str(digest), "size": len(raw)}
        entry.update(extra)
        if tag is not None:
            entry["annotations"] = {REF_NAME: tag}
        self.entries.append(entry)
        self.save()
        return digest

    def save(self) -> None:
        doc = {"schemaVersion": 2, "manifests": self.entries}
        (self.root / "index.json").write_text(json.dumps(doc))


def write_config(tmp_path: Path, trust: str) -> Path:
    config = tmp_path / "drd.toml"
    config.write_text(f'version = 1\n[endpoints.none]\nurl = "https://registry.invalid"\n{trust}')
    return config


def pem_file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


async def drd_verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = await asyncio.to_thread(main, ["verify", *args, "--json"])
    out, _ = capsys.readouterr()
    return code, json.loads(out) if out else None


# --- cosign: the real fixture, without its layer blobs ------------------------------------


async def test_real_cosign_layout_verifies_without_its_layer_blobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = tmp_path / "exported"
    shutil.copytree(fixture_path(COSIGN_CASE), layout)
    index = json.loads((layout / "index.json").read_text())
    image = next(m for m in index["manifests"] if m["annotations"][REF_NAME] == "latest")
    manifest = json.loads((layout / "blobs/sha256" / image["digest"].split(":")[1]).read_text())
    for blob in [manifest["config"], *manifest["layers"]]:
        (layout / "blobs/sha256" / blob["digest"].split(":")[1]).unlink()
    key = fixture_path(COSIGN_CASE) / "trust" / "cosign.pub"
    config = write_config(tmp_path, f'[trust.release]\nkeys = ["{key}"]\n')

    code, doc = await drd_verify(capsys, f"oci:{layout}:latest", "--config", str(config))

    assert code == 0, doc
    assert (doc["verified"], doc["kind"], doc["reason"]) == (True, "cosign", "")
    assert doc["digest"] == image["digest"]
    assert doc["key"]["fingerprint"].startswith(COSIGN_KEY_PREFIX)
    assert doc["layout"] == str(layout)

    code, pinned = await drd_verify(
        capsys, f"oci:{layout}@{image['digest']}", "--config", str(config)
    )
    assert (code, pinned["verified"]) == (0, True)


async def test_cosign_layout_signed_by_a_logged_foreign_key_is_unknown_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = pem_file(tmp_path, "other.pub", KEY.public_pem())
    config = write_config(tmp_path, f'[trust.release]\nkeys = ["{other}"]\n')

    code, doc = await drd_verify(
        capsys, f"oci:{fixture_path(COSIGN_CASE)}:latest", "--config", str(config)
    )

    # The signature's Rekor bundle names its key: a key the policy does not know.
    assert (code, doc["verified"], doc["reason"]) == (1, False, "unknown-key")


# --- Notation: the real cose-cli signature ------------------------------------------------


def cose_cli_layout(root: Path) -> tuple[Path, bytes]:
    """The cose-cli subject manifest (v1) and its signature; no config or layer blob."""
    layout = Layout(root)
    manifest = notation_fixture(f"cose-cli-1.0.0/sha256_{COSE_CLI.split(':')[1]}.manifest.json")
    raw = manifest.read_bytes()
    assert str(layout.manifest(raw, mediatype.OCI_MANIFEST, "v1")) == COSE_CLI
    sig = notation_fixture("cose-cli-1.0.0/cose_signature.sig").read_bytes()
    subject = {"mediaType": mediatype.OCI_MANIFEST, "digest": COSE_CLI, "size": len(raw)}
    sig_raw, blobs = signature_manifest(subject, sig, COSE_MEDIA_TYPE)
    for data in blobs.values():
        layout.blob(data)
    layout.manifest(sig_raw, mediatype.OCI_MANIFEST, artifactType=SIGNATURE_ARTIFACT_TYPE)
    chain = Sign1Message.decode(sig).uhdr[X5chain]
    leaf = x509.load_der_x509_certificate(chain[0] if isinstance(chain, list) else chain)
    return root, leaf.public_bytes(serialization.Encoding.PEM)


async def test_real_notation_cose_layout_verifies_once_its_signer_is_trusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout, leaf_pem = cose_cli_layout(tmp_path / "layout")
    root = pem_file(tmp_path, "alpine.crt", leaf_pem)
    config = write_config(tmp_path, f'[trust.notary]\nnotation_roots = ["{root}"]\n')

    code, doc = await drd_verify(capsys, f"oci:{layout}:v1", "--config", str(config))

    assert code == 0, doc
    assert (doc["kind"], doc["digest"]) == ("notation-cose", COSE_CLI)
    assert doc["identity"] == "CN=alpine,O=Notary,L=Seattle,ST=WA,C=US"
    assert doc["key"]["source"] == str(root)


async def test_real_notation_cose_layout_without_its_signer_is_untrusted_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout, _ = cose_cli_layout(tmp_path / "layout")
    store = notation_fixture("truststore/x509/ca/valid-trust-store/NotationTestRoot.pem")
    config = write_config(tmp_path, f'[trust.notary]\nnotation_roots = ["{store}"]\n')

    code, doc = await drd_verify(capsys, f"oci:{layout}@{COSE_CLI}", "--config", str(config))

    assert (code, doc["verified"], doc["reason"]) == (1, False, "untrusted-root")


# --- self-made layouts: expired, identity, attestation, unsigned --------------------------


def notation_layout(root: Path, kind: str = "jws", **envelope_args: Any) -> Digest:
    layout = Layout(root)
    image = make_image(f"layout/{root.name}")
    digest = layout.manifest(image.raw, image.media_type, "v1")
    subject = {"mediaType": image.media_type, "digest": str(digest), "size": image.size}
    env = envelope(
        kind, target(digest, image.size, image.media_type), cached_signer(), **envelope_args
    )
    raw, blobs = signature_manifest(subject, env, media_type_of(kind))
    for data in blobs.values():
        layout.blob(data)
    layout.manifest(raw, mediatype.OCI_MANIFEST, artifactType=SIGNATURE_ARTIFACT_TYPE)
    return digest


def notary_config(tmp_path: Path, extra: str = "") -> Path:
    root = pem_file(tmp_path, "root.crt", cached_signer().root_pem())
    return write_config(tmp_path, f'[trust.notary]\nnotation_roots = ["{root}"]\n{extra}')


async def test_expired_notation_signature_in_a_layout_is_expired(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notation_layout(tmp_path / "layout", "cose", signing_time=NOW - 3 * DAY, expiry=NOW - DAY)

    code, doc = await drd_verify(
        capsys, f"oci:{tmp_path / 'layout'}:v1", "--config", str(notary_config(tmp_path))
    )

    assert (code, doc["reason"]) == (1, "expired")


async def test_notation_identity_mismatch_is_untrusted_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notation_layout(tmp_path / "layout")
    config = notary_config(tmp_path, 'notation_identities = ["x509.subject: CN=someone else"]\n')

    code, doc = await drd_verify(capsys, f"oci:{tmp_path / 'layout'}:v1", "--config", str(config))

    assert (code, doc["reason"]) == (1, "untrusted-identity")


async def test_signed_layout_without_a_required_attestation_is_missing_attestation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = Layout(tmp_path / "layout")
    image = make_image("layout/attest")
    digest = layout.manifest(image.raw, image.media_type, "v1")
    payload = simple_signing_payload(digest, "registry.example/app")
    raw, blobs = cosign_signature_manifest([(payload, sign(payload, KEY))])
    for data in blobs.values():
        layout.blob(data)
    layout.manifest(raw, mediatype.OCI_MANIFEST, f"{digest.tag_form}.sig")
    key = pem_file(tmp_path, "release.pub", KEY.public_pem())
    slsa = "https://slsa.dev/provenance/v1"
    trust = f'[trust.release]\nkeys = ["{key}"]\nrequire_attestations = ["{slsa}"]\n'

    code, doc = await drd_verify(
        capsys, f"oci:{layout.root}:v1", "--config", str(write_config(tmp_path, trust))
    )

    assert (code, doc["reason"]) == (1, "missing-attestation")
    assert slsa in doc["message"]


async def test_unsigned_layout_is_no_signature_and_a_bad_reference_is_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = Layout(tmp_path / "layout")
    image = make_image("layout/unsigned")
    layout.manifest(image.raw, image.media_type, "v1")
    config = notary_config(tmp_path)

    code, doc = await drd_verify(capsys, f"oci:{layout.root}:v1", "--config", str(config))
    assert (code, doc["reason"]) == (1, "no-signature")

    code, doc = await drd_verify(capsys, f"oci:{layout.root}:v2", "--config", str(config))
    assert (code, doc["reason"]) == (1, "not-found")

    code = await asyncio.to_thread(main, ["verify", f"oci:{layout.root}", "--config", str(config)])
    assert code == 2


def test_layout_references_parse() -> None:
    assert LayoutRef.parse("oci:/srv/export:v1") == LayoutRef(Path("/srv/export"), tag="v1")
    pinned = LayoutRef.parse(f"oci:rel/dir@{COSE_CLI}")
    assert (pinned.path, str(pinned.digest)) == (Path("rel/dir"), COSE_CLI)
    assert str(pinned) == f"oci:rel/dir@{COSE_CLI}"
