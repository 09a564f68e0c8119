"""
`drd verify REFERENCE`: verified or not, by which key, for which digest, found where.

Images and signatures are pushed to a real registry with the independent test client;
the command runs in-process through `drd.cli.main` (and once as a real process).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drd.cli import main
from drd.commands.units import short
from drd.oci import mediatype
from drd.oci.digest import Digest
from tests.images import (
    RegistryWriter,
    make_image,
    make_multiarch,
    push_image,
    push_index,
    signature_tag,
)
from tests.layouts import fixture_path, push_layout
from tests.servers import LocalRegistry, write_htpasswd
from tests.trust.signing import (
    SigningKey,
    cached_key,
    sign,
    signature_manifest,
    simple_signing_payload,
)

KEY = cached_key("ecdsa-p256")
OTHER = cached_key("ed25519", 1)


def write_config(
    tmp_path: Path,
    *registries: LocalRegistry,
    trust: dict[str, list[Path]] | None = None,
    extra: str = "",
) -> Path:
    """A config naming *registries* as endpoints and one ``release`` policy trusting KEY."""
    if trust is None:
        key = tmp_path / "release.pub"
        key.write_bytes(KEY.public_pem())
        trust = {"release": [key]}
    lines = ["version = 1", "", "[retry]", "attempts = 2"]
    for i, registry in enumerate(registries):
        lines += ["", f"[endpoints.reg{i}]", f'url = "{registry.url}"']
    if not registries:
        lines += ["", "[endpoints.elsewhere]", 'url = "https://registry.example.invalid"']
    for name, keys in trust.items():
        lines += ["", f"[trust.{name}]", f"keys = {json.dumps([str(k) for k in keys])}"]
    config = tmp_path / "drd.toml"
    config.write_text("\n".join(lines) + "\n" + extra)
    return config


async def push_signed(
    registry: LocalRegistry,
    repo: str,
    digest: Digest,
    key: SigningKey = KEY,
    auth: tuple[str, str] | None = None,
) -> Digest:
    """Push a cosign ``.sig`` manifest for *digest* signed by *key*; its layer's digest."""
    payload = simple_signing_payload(digest, f"example/{repo}")
    raw, blobs = signature_manifest([(payload, sign(payload, key))])
    async with RegistryWriter(registry, auth=auth) as w:
        for data in blobs.values():
            await w.push_blob(repo, data)
        await w.push_manifest(repo, signature_tag(digest), raw, mediatype.OCI_MANIFEST)
    return Digest.of(payload)


async def drd_verify(
    capsys: pytest.CaptureFixture[str], *args: str, as_json: bool = True
) -> tuple[int, Any, str]:
    """Run ``drd verify *args`` in-process: exit code, stdout (parsed with --json), stderr."""
    argv = ["verify", *args, *(["--json"] if as_json else [])]
    code = await asyncio.to_thread(main, argv)
    out, err = capsys.readouterr()
    return code, json.loads(out) if as_json and out else out, err


async def test_signed_image_is_verified_with_key_digest_and_signature_tag(
    source_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """
    A signed image by tag: exit 0, and the JSON names the resolved digest, the key's
    fingerprint and file, the ``sha256-….sig`` tag and the signed payload's layer.
    """
    image = make_image(f"{repo}/signed")
    await push_image(source_registry, repo, image, "v1")
    layer = await push_signed(source_registry, repo, image.digest)
    config = write_config(tmp_path, source_registry)

    code, doc, _ = await drd_verify(
        capsys, f"{source_registry.host}/{repo}:v1", "--config", str(config)
    )

    assert code == 0
    assert doc["verified"] is True
    assert doc["digest"] == str(image.digest)
    assert doc["reason"] == ""
    assert doc["trust"] == "release"
    assert doc["endpoint"] == "reg0"
    assert doc["key"] == {
        "fingerprint": KEY.trust_key().fingerprint,
        "source": str(tmp_path / "release.pub"),
    }
    assert doc["signature"] == {
        "form": "cosign",
        "tag": f"sha256-{image.digest.hex}.sig",
        "layer": str(layer),
    }
    assert doc["rekor"] is None


async def test_reference_by_digest_and_human_output(
    source_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``host/repo@sha256:…`` verifies that digest; the human text says verified and by what."""
    image = make_image(f"{repo}/pinned")
    await push_image(source_registry, repo, image)
    await push_signed(source_registry, repo, image.digest)
    config = write_config(tmp_path, source_registry)
    ref = f"{source_registry.host}/{repo}@{image.digest}"

    code, text, _ = await drd_verify(capsys, ref, "--config", str(config), as_json=False)

    assert code == 0
    assert text.splitlines()[0] == f"verified: {ref}"
    # Digests are short in text (the reference keeps what was asked); JSON has them in full.
    assert f"digest     {short(image.digest)}" in text
    assert str(image.digest) not in text.replace(ref, "")
    assert KEY.trust_key().fingerprint in text
    assert f"tag sha256-{image.digest.hex}.sig" in text


async def test_unsigned_image_is_not_verified(
    source_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An image without a signature: exit 1, reason ``no-signature``, no key."""
    image = make_image(f"{repo}/unsigned")
    await push_image(source_registry, repo, image, "v1")
    config = write_config(tmp_path, source_registry)

    code, doc, _ = await drd_verify(
        capsys, f"{source_registry.host}/{repo}:v1", "--config", str(config)
    )

    assert code == 1
    assert doc["verified"] is False
    assert doc["digest"] == str(image.digest)
    assert doc["reason"] == "no-signature"
    assert signature_tag(image.digest) in doc["message"]
    assert doc["key"] is None
    assert doc["signature"] is None


async def test_signature_by_another_key_is_not_verified(
    source_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A signature by a key the policy does not trust: exit 1, reason ``bad-signature``."""
    image = make_image(f"{repo}/other")
    await push_image(source_registry, repo, image, "v1")
    await push_signed(source_registry, repo, image.digest, key=OTHER)
    config = write_config(tmp_path, source_registry)

    code, doc, _ = await drd_verify(
        capsys, f"{source_registry.host}/{repo}:v1", "--config", str(config)
    )

    assert code == 1
    assert (doc["verified"], doc["reason"]) == (False, "bad-signature")
    assert "policy release" in doc["message"]
    assert doc["key"] is None


async def test_real_cosign_signature_verifies_with_rekor_entry(
    source_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The cosign-made fixture signature verifies with its key and its Rekor bundle."""
    layout = await push_layout(source_registry, repo, "ocmirror-cosign-single")
    trust = fixture_path("ocmirror-cosign-single") / "trust"
    config = write_config(tmp_path, source_registry, trust={"fixture": [trust / "cosign.pub"]})
    config.write_text(
        config.read_text().replace(
            "[trust.fixture]",
            f'[trust.fixture]\nrekor_keys = ["{trust / "rekor-public-good.pub"}"]\n'
            "require_rekor = true",
        )
    )

    code, doc, _ = await drd_verify(
        capsys, f"{source_registry.host}/{repo}:latest", "--config", str(config)
    )

    assert code == 0, doc
    assert doc["digest"] == str(layout.tags["latest"])
    assert doc["key"]["fingerprint"].startswith("e8ed5dd0")
    assert doc["signature"]["tag"] == signature_tag(layout.tags["latest"])
    assert doc["rekor"]["log_index"] is not None
    assert doc["rekor"]["integrated_time"] > 1_600_000_000


async def test_require_children_reports_each_child(
    source_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """
    With ``require_children`` a signed index with one unsigned child is not verified:
    exit 1, and the children list says which child failed and why.
    """
    index = make_multiarch(f"{repo}/multi")
    await push_index(source_registry, repo, index, "v1")
    await push_signed(source_registry, repo, index.digest)
    await push_signed(source_registry, repo, index.images[0].digest)
    config = write_config(tmp_path, source_registry)
    config.write_text(config.read_text() + "require_children = true\n")
    ref = f"{source_registry.host}/{repo}:v1"

    code, doc, _ = await drd_verify(capsys, ref, "--config", str(config))

    assert code == 1
    assert doc["digest"] == str(index.digest)
    assert doc["key"]["fingerprint"] == KEY.trust_key().fingerprint
    assert [(c["digest"], c["verified"], c["reason"]) for c in doc["children"]] == [
        (str(index.images[0].digest), True, ""),
        (str(index.images[1].digest), False, "no-signature"),
    ]
    assert (doc["verified"], doc["reason"]) == (False, "no-signature")
    assert doc["message"].startswith(f"child {index.images[1].digest}: ")

    await push_signed(source_registry, repo, index.images[1].digest)
    code, doc, _ = await drd_verify(capsys, ref, "--config", str(config))
    assert code == 0
    assert all(c["verified"] for c in doc["children"])


async def test_require_children_reaches_the_children_of_a_nested_index(
    source_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """
    With ``require_children`` an index over a signed nested index is checked to the
    bottom: the nested index's unsigned platform image makes the answer "not verified".
    """
    inner = make_multiarch(f"{repo}/inner")
    await push_index(source_registry, repo, inner)
    outer = json.dumps(
        {"schemaVersion": 2, "mediaType": mediatype.OCI_INDEX, "manifests": [inner.descriptor()]}
    ).encode()
    async with RegistryWriter(source_registry) as w:
        await w.push_manifest(repo, "v1", outer, mediatype.OCI_INDEX)
    outer_digest = Digest.of(outer)
    for digest in (outer_digest, inner.digest, inner.images[0].digest):
        await push_signed(source_registry, repo, digest)
    config = write_config(tmp_path, source_registry)
    config.write_text(config.read_text() + "require_children = true\n")
    ref = f"{source_registry.host}/{repo}:v1"

    code, doc, _ = await drd_verify(capsys, ref, "--config", str(config))

    assert code == 1
    assert [(c["digest"], c["verified"], c["reason"]) for c in doc["children"]] == [
        (str(inner.digest), True, ""),
        (str(inner.images[0].digest), True, ""),
        (str(inner.images[1].digest), False, "no-signature"),
    ]
    assert (doc["verified"], doc["reason"]) == (False, "no-signature")

    await push_signed(source_registry, repo, inner.images[1].digest)
    code, doc, _ = await drd_verify(capsys, ref, "--config", str(config))
    assert code == 0
    assert len(doc["children"]) == 3


async def test_unconfigured_registry_is_read_anonymously(
    target_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A registry host no endpoint names is read anonymously (plain http on loopback)."""
    image = make_image(f"{repo}/anon")
    await push_image(target_registry, repo, image, "v1")
    await push_signed(target_registry, repo, image.digest)
    config = write_config(tmp_path)

    code, doc, _ = await drd_verify(
        capsys, f"{target_registry.host}/{repo}:v1", "--config", str(config)
    )

    assert code == 0
    assert doc["endpoint"] is None
    assert doc["digest"] == str(image.digest)


async def test_an_endpoint_name_uses_its_url_and_credentials(
    registry_factory: Callable[..., LocalRegistry],
    repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """
    `drd verify primary/REPO:v1` reads from the endpoint named ``primary`` with its
    password (the registry refuses anonymous reads), not from a host called "primary".
    """
    user, password = "drd-verify", "verify-pw-7c1"
    registry = registry_factory(htpasswd=write_htpasswd(tmp_path / "htpasswd", {user: password}))
    image = make_image(f"{repo}/by-name")
    await push_image(registry, repo, image, "v1", auth=(user, password))
    await push_signed(registry, repo, image.digest, auth=(user, password))
    (tmp_path / "primary.password").write_text(password + "\n")
    extra = (
        f'\n[endpoints.primary]\nurl = "{registry.url}"\nusername = "{user}"\n'
        'password_file = "primary.password"\n'
    )
    config = write_config(tmp_path, extra=extra)

    code, doc, err = await drd_verify(capsys, f"primary/{repo}:v1", "--config", str(config))

    assert code == 0, err
    assert (doc["endpoint"], doc["registry"]) == ("primary", registry.host)
    assert doc["digest"] == str(image.digest)
    assert doc["reference"] == f"{registry.host}/{repo}:v1"
    code, doc, _ = await drd_verify(capsys, f"{registry.host}/{repo}:v1", "--config", str(config))
    assert (code, doc["endpoint"]) == (0, "primary")


async def test_missing_image_is_not_verified(
    source_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A tag that does not exist: exit 1, reason ``not-found``."""
    config = write_config(tmp_path, source_registry)

    code, doc, _ = await drd_verify(
        capsys, f"{source_registry.host}/{repo}:nope", "--config", str(config)
    )

    assert code == 1
    assert (doc["verified"], doc["reason"], doc["digest"]) == (False, "not-found", None)


@pytest.mark.parametrize(
    ("trust", "args", "message"),
    [
        (["a", "b"], [], "several trust policies (a, b): choose one, --trust"),
        (["a"], ["--trust", "b"], "no trust policy named b (known: a)"),
    ],
)
async def test_trust_policy_must_be_unambiguous(
    trust: list[str],
    args: list[str],
    message: str,
    source_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """
    Without --trust and several policies, or with an unknown name: usage error, exit 2;
    under --json the error is the JSON document on stdout, in text a line on stderr.
    """
    key = tmp_path / "k.pub"
    key.write_bytes(KEY.public_pem())
    config = write_config(tmp_path, source_registry, trust={name: [key] for name in trust})

    ref = f"{source_registry.host}/{repo}:v1"
    code, doc, _ = await drd_verify(capsys, ref, "--config", str(config), *args)
    text_code, out, err = await drd_verify(
        capsys, ref, "--config", str(config), *args, as_json=False
    )

    assert code == text_code == 2
    assert doc["error"] == {"kind": "usage", "message": message}
    assert out == ""
    assert message in err


async def test_bad_reference_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reference outside the grammar (here a traversing path) is refused with exit 2."""
    code, _, err = await drd_verify(capsys, "127.0.0.1:1/../etc:v1", as_json=False)
    assert code == 2
    assert "traversing" in err


async def test_exit_codes_as_a_process(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """As a real process: exit 0 for a signed image, 1 for an unsigned one."""
    signed = make_image(f"{repo}/signed")
    unsigned = make_image(f"{repo}/unsigned")
    await push_image(source_registry, repo, signed, "signed")
    await push_signed(source_registry, repo, signed.digest)
    await push_image(source_registry, repo, unsigned, "unsigned")
    config = write_config(tmp_path, source_registry)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRD_")}

    def run(tag: str) -> subprocess.CompletedProcess[bytes]:
        ref = f"{source_registry.host}/{repo}:{tag}"
        return subprocess.run(
            [sys.executable, "-m", "drd", "verify", ref, "--config", str(config), "--json"],
            capture_output=True,
            timeout=60,
            env=env,
            check=False,
        )

    ok, bad = await asyncio.gather(
        asyncio.to_thread(run, "signed"), asyncio.to_thread(run, "unsigned")
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["digest"] == str(signed.digest)
    assert bad.returncode == 1, bad.stderr
    assert json.loads(bad.stdout)["reason"] == "no-signature"
