"""Text output's units: IEC sizes, short digests, attached tags folded; JSON keeps it all."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from drd.commands.units import iec, short
from drd.oci.digest import Digest
from drd.oci.referrers import signature_tag
from tests.images import make_cosign_signature, make_image, push_image
from tests.servers import LocalRegistry
from tests.snapshot.helpers import json_out, run_drd, store_config, write_config

A = Digest.of(b"image a")
B = Digest.of(b"image b")
ORPHAN = Digest.of(b"no tag here")


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 * 1024**2, "5.0 MiB"),
        (3 * 1024**3 + 1024**3 // 5, "3.2 GiB"),
        (2 * 1024**4, "2.0 TiB"),
        (3 * 1024**5, "3072.0 TiB"),
    ],
)
def test_iec_sizes(n: int, text: str) -> None:
    """Sizes in text are IEC units with one decimal, bytes below 1 KiB."""
    assert iec(n) == text


def test_short_digest() -> None:
    """A short digest is the algorithm and 12 hex digits; empty stays empty."""
    assert short(A) == str(A)[:19]
    assert len(short(str(A))) == 19
    assert short("") == ""
    assert short(None) == ""


async def test_snapshot_show_folds_signatures_and_shortens_digests(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    `snapshot show` lists a signed image once, with "(+ signature)" and a short digest;
    `--all-tags` lists the .sig tag; --json keeps every tag and the full digests.
    """
    image = make_image(f"{repo}/units")
    await push_image(source_registry, repo, image, "v1")
    key = ec.generate_private_key(ec.SECP256R1())
    sig = make_cosign_signature(image, key, docker_reference=f"{source_registry.host}/{repo}")
    await push_image(source_registry, repo, sig, signature_tag(image.digest))
    config = write_config(
        tmp_path,
        {"primary": source_registry},
        source="primary",
        store=store_config("dir", tmp_path),
        repositories=[repo],
    )
    created = await run_drd("snapshot", "create", "--json", config=config)
    snap_id = json_out(created)["id"]

    shown = await run_drd("snapshot", "show", snap_id, config=config)
    assert shown.returncode == 0, shown.stderr
    listing = shown.stdout.split(f"\n  {repo}\n", 1)[1].split("\n  settings\n")[0]
    assert listing.split() == ["v1", short(image.digest), "(+", "signature)"]
    assert str(image.digest) not in shown.stdout

    every = await run_drd("snapshot", "show", snap_id, "--all-tags", config=config)
    assert signature_tag(image.digest) in every.stdout

    doc = json_out(await run_drd("snapshot", "show", snap_id, "--json", config=config))
    assert doc["repositories"][repo] == {
        "v1": str(image.digest),
        signature_tag(image.digest): str(sig.digest),
    }
