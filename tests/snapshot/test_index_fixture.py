"""
An index written by drd as of December 2026 (``data/index-2026-12.json.gz``, committed
before the index was encoded and read as a stream) still reads, verifies and encodes to
the same bytes: old indexes stay readable and the same content keeps its digest.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from drd.oci.digest import Digest
from drd.snapshot.model import parse_index
from drd.snapshot.sign import IndexKey

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "index-2026-12.json.gz"
KEY = "snapshots/primary/2026/12/01/20261201T030405.678901Z.json.gz"
DIGEST = "sha256:2131693ada7c1861516c019986be48e7009bf5286f29d10de620d9f7bcbbbb8a"
FILE_SHA256 = "53ce71503ad0ed4965662dccc2ea196c184bcb464f9e2d99a7c0663b4a34d5a0"


def d(seed: str) -> Digest:
    return Digest.of(seed.encode())


def test_the_committed_index_is_the_one_pinned() -> None:
    """The fixture itself has not changed."""
    assert hashlib.sha256(FIXTURE.read_bytes()).hexdigest() == FILE_SHA256


def test_an_old_index_reads_with_its_digest_and_signature() -> None:
    """Every part of the old index parses, hashes to its recorded digest and verifies."""
    snap = parse_index(FIXTURE.read_bytes(), key=KEY)
    assert str(snap.digest) == DIGEST
    assert snap.repositories["team/app"].tags["v1.0"] == d("index")
    assert snap.repositories["team/app"].referrers == {d("index"): (d("sbom"),)}
    assert snap.repositories["empty/tags"].tags == {}
    assert snap.manifests[d("index")].children == (d("amd64"), d("arm64"))
    assert snap.manifests[d("sbom")].subject == d("index")
    assert snap.blobs[d("base")] == 31_457_280
    assert snap.metadata_blobs == frozenset({d("cfg"), d("cfg2"), d("payload"), d("sbom-blob")})
    assert snap.skipped[0].reason == "manifest is unusable: größe ≠ 0 — “quoted”"
    assert [s.path for s in snap.settings] == ["/etc/docker/registry/config.yml", "drd/config.json"]
    assert snap.duration_s == 12.346
    IndexKey.from_pem((DATA / "index-2026-12.pub.pem").read_bytes()).verify(snap)


def test_an_old_index_encodes_to_the_same_bytes() -> None:
    """Read and written again, the same content is the same file, byte for byte."""
    snap = parse_index(FIXTURE.read_bytes(), key=KEY)
    assert hashlib.sha256(snap.to_bytes()).hexdigest() == FILE_SHA256
