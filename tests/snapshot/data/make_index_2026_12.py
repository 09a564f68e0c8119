"""
Made ``index-2026-12.json.gz`` and its public key with the encoder as of December 2026.

Kept for reference, not rerun: run from the repository root.
"""

import datetime as dt
import hashlib
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from drd.oci.digest import Digest
from drd.snapshot.model import ManifestRecord, RepositoryRecord, Skipped, Snapshot, snapshot_id
from drd.snapshot.settings import SettingsRecord
from drd.snapshot.sign import IndexKey


def d(seed):
    return Digest.of(seed.encode())


OCI_M = "application/vnd.oci.image.manifest.v1+json"
OCI_I = "application/vnd.oci.image.index.v1+json"
taken = dt.datetime(2026, 12, 1, 3, 4, 5, 678901, tzinfo=dt.UTC)
amd, arm, idx, sig, sbom, single = (
    d("amd64"),
    d("arm64"),
    d("index"),
    d("sig"),
    d("sbom"),
    d("single"),
)
base, layer, cfg, cfg2, payload, sbomb = (
    d("base"),
    d("layer"),
    d("cfg"),
    d("cfg2"),
    d("payload"),
    d("sbom-blob"),
)
manifests = {
    amd: ManifestRecord(OCI_M, 812, blobs=(cfg, base, layer)),
    arm: ManifestRecord(OCI_M, 811, blobs=(cfg2, base)),
    idx: ManifestRecord(OCI_I, 640, children=(amd, arm)),
    sig: ManifestRecord(OCI_M, 402, blobs=(payload,)),
    sbom: ManifestRecord(OCI_M, 530, blobs=(cfg, sbomb), subject=idx),
    single: ManifestRecord(OCI_M, 700, blobs=(cfg, base)),
}
repos = {
    "team/app": RepositoryRecord(
        tags={"v1.0": idx, "latest": idx, f"{idx.tag_form}.sig": sig},
        manifests=frozenset({amd, arm, idx, sig, sbom}),
        referrers={idx: (sbom,)},
    ),
    "base/os": RepositoryRecord(tags={"bookworm": single}, manifests=frozenset({single})),
    "empty/tags": RepositoryRecord(tags={}, manifests=frozenset()),
}
snap = Snapshot(
    id=snapshot_id(taken),
    source="primary",
    taken_at=taken,
    repositories=repos,
    manifests=manifests,
    blobs={base: 31_457_280, layer: 4096, cfg: 1469, cfg2: 1470, payload: 233, sbomb: 20_000},
    blobs_stored=False,
    source_url="https://registry.example.com:5000",
    duration_s=12.3456,
    skipped=(Skipped("team/app", "broken", "manifest is unusable: größe ≠ 0 — “quoted”"),),
    metadata_blobs=frozenset({cfg, cfg2, payload, sbomb}),
    settings=(
        SettingsRecord("/etc/docker/registry/config.yml", "file", 0o644, 512, d("conf"), True),
        SettingsRecord("drd/config.json", "drd", 0o600, 900, d("drdconf"), False),
    ),
)
private = ed25519.Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(b"drd fixture key 2026-12").digest()
)
pem = private.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
key = IndexKey.from_pem(pem)
snap = replace(snap, signature=key.sign(snap.digest))
out = Path("tests/snapshot/data")
data = snap.to_bytes()
(out / "index-2026-12.json.gz").write_bytes(data)
(out / "index-2026-12.pub.pem").write_bytes(
    private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
)
print(snap.key, snap.digest, hashlib.sha256(data).hexdigest(), len(data))
