"""
Deterministic benchmark corpora, pushed into a source registry with plain aiohttp.

A corpus is a list of repositories, manifests and tags built from seeds: the
same corpus name and scale give the same bytes, and so the same digests, on
every run. Large layers are an AES-CTR key stream (incompressible, generated
at memory speed), never held whole in memory. `Corpus.evolve` makes the
incremental change (new tags, moved tags) and returns exactly what changed, so
the raw reference copies only that.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from drd.oci import mediatype
from drd.oci.digest import Digest
from tests import images

MiB = 1024 * 1024
KiB = 1024
LAYER = "application/vnd.oci.image.layer.v1.tar"
# Generation block: large enough to be fast, small enough to stay out of the way.
BLOCK = 4 * MiB
CORPORA = ("small", "many-tags", "big-blobs", "huge-blob")


def _json(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Blob:
    """A blob: literal bytes (configs, signatures) or a seeded key stream of *size* bytes."""

    size: int
    seed: str = ""
    data: bytes | None = None
    media_type: str = LAYER

    def chunks(self, block: int = BLOCK) -> Iterator[bytes]:
        """The blob's bytes, *block* at a time."""
        if self.data is not None:
            yield self.data
            return
        key = hashlib.sha256(self.seed.encode()).digest()
        stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        zeros = bytes(block)
        left = self.size
        while left > 0:
            n = min(block, left)
            yield stream.update(zeros if n == block else bytes(n))
            left -= n

    def compute_digest(self) -> Digest:
        """Hash the blob's bytes (streamed)."""
        hasher = hashlib.sha256()
        for chunk in self.chunks():
            hasher.update(chunk)
        return Digest("sha256", hasher.hexdigest())


@dataclass(frozen=True)
class Manifest:
    """A manifest or index to push under its digest, with the blobs it needs."""

    repo: str
    raw: bytes
    media_type: str
    blobs: tuple[Digest, ...] = ()
    children: tuple[Digest, ...] = ()

    @property
    def digest(self) -> Digest:
        return Digest.of(self.raw)

    @property
    def level(self) -> int:
        """Push order: images and signatures (0) before indexes (1)."""
        return 1 if mediatype.is_index(self.media_type) else 0


@dataclass
class Change:
    """What one push (the initial corpus or one incremental step) adds to the source."""

    blobs: dict[Digest, Blob] = field(default_factory=dict)
    blob_repos: dict[Digest, list[str]] = field(default_factory=dict)  # first repo is home
    manifests: dict[tuple[str, Digest], Manifest] = field(default_factory=dict)
    tags: dict[tuple[str, str], Digest] = field(default_factory=dict)
    moved: int = 0

    @property
    def bytes(self) -> int:
        """Unique blob bytes in this change."""
        return sum(b.size for b in self.blobs.values())

    def raw_plan(self, source: str, target: str) -> dict[str, Any]:
        """The raw reference's input: every blob once (mounted elsewhere), manifests, tags."""
        manifests = sorted(self.manifests.values(), key=lambda m: m.level)
        return {
            "source": source,
            "target": target,
            "blobs": [
                {"digest": str(d), "size": b.size, "repos": self.blob_repos[d]}
                for d, b in self.blobs.items()
            ],
            "levels": [
                [
                    {"repo": m.repo, "digest": str(m.digest), "media_type": m.media_type}
                    for m in manifests
                    if m.level == level
                ]
                for level in (0, 1)
            ],
            "tags": [
                {"repo": repo, "tag": tag, "digest": str(digest)}
                for (repo, tag), digest in self.tags.items()
            ],
        }


class Corpus:
    """
    One corpus at one scale: the expected source state plus what each step pushed.

    ``tags`` is the truth every tool's target is verified against after each phase.
    """

    def __init__(self, name: str, scale: float) -> None:
        if name not in CORPORA:
            raise ValueError(f"unknown corpus {name!r}; choose from {', '.join(CORPORA)}")
        self.name = name
        self.scale = scale
        self.repos: list[str] = []
        self.tags: dict[tuple[str, str], Digest] = {}
        self.release: list[tuple[str, str]] = []  # tags that are images, not signatures
        self._digests: dict[Blob, Digest] = {}
        self._sizes: dict[Digest, int] = {}
        self._key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"drd-bench").digest())
        self._bases: dict[str, list[Blob]] = {}
        self._app_size = KiB
        self._step = 0
        self.initial = Change()
        _BUILDERS[name](self, self.initial)
        self.changes = [self.initial]

    # ------------------------------------------------------------------ building

    def size(self, nbytes: float) -> int:
        """*nbytes* scaled, at least 512 bytes."""
        return max(512, int(nbytes * self.scale))

    def blob(self, change: Change, repo: str, seed: str, size: int) -> Digest:
        return self._add_blob(change, repo, Blob(size, seed=f"{self.name}/{seed}"))

    def _add_blob(self, change: Change, repo: str, blob: Blob) -> Digest:
        digest = self._digests.get(blob)
        if digest is None:
            digest = blob.compute_digest() if blob.data is None else Digest.of(blob.data)
            self._digests[blob] = digest
            self._sizes[digest] = blob.size
        change.blobs.setdefault(digest, blob)
        homes = change.blob_repos.setdefault(digest, [])
        if repo not in homes:
            homes.append(repo)
        return digest

    def image(
        self, change: Change, repo: str, seed: str, layers: list[Digest], arch: str = "amd64"
    ) -> Manifest:
        """An OCI image manifest over *layers* with a small config naming *seed*."""
        config = _json(
            {
                "architecture": arch,
                "os": "linux",
                "config": {"Labels": {"org.example.bench.seed": f"{self.name}/{seed}"}},
                "rootfs": {"type": "layers", "diff_ids": [str(d) for d in layers]},
            }
        )
        config_digest = self._add_blob(
            change, repo, Blob(len(config), data=config, media_type=mediatype.OCI_CONFIG)
        )
        doc = {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_MANIFEST,
            "config": {
                "mediaType": mediatype.OCI_CONFIG,
                "digest": str(config_digest),
                "size": len(config),
            },
            "layers": [
                {"mediaType": LAYER, "digest": str(d), "size": self._sizes[d]} for d in layers
            ],
        }
        m = Manifest(repo, _json(doc), mediatype.OCI_MANIFEST, (config_digest, *layers))
        change.manifests[(repo, m.digest)] = m
        return m

    def index(self, change: Change, repo: str, children: list[tuple[Manifest, str]]) -> Manifest:
        """An OCI index over (image, architecture) pairs."""
        doc = {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": m.media_type,
                    "digest": str(m.digest),
                    "size": len(m.raw),
                    "platform": {"os": "linux", "architecture": arch},
                }
                for m, arch in children
            ],
        }
        m = Manifest(
            repo, _json(doc), mediatype.OCI_INDEX, children=tuple(c.digest for c, _ in children)
        )
        change.manifests[(repo, m.digest)] = m
        return m

    def sign(self, change: Change, repo: str, subject: Manifest) -> None:
        """A cosign tag-form signature (Ed25519: deterministic bytes) on *subject*."""
        sig = images.make_cosign_signature(
            subject.digest, self._key, docker_reference=f"bench.example/{repo}"
        )
        blobs = [
            self._add_blob(change, repo, Blob(b.size, data=b.data, media_type=b.media_type))
            for b in sig.blobs
        ]
        m = Manifest(repo, sig.raw, sig.media_type, tuple(blobs))
        change.manifests[(repo, m.digest)] = m
        self.tag(change, repo, f"{subject.digest.tag_form}.sig", m, release=False)

    def tag(
        self, change: Change, repo: str, tag: str, manifest: Manifest, *, release: bool = True
    ) -> None:
        if (repo, tag) in self.tags:
            change.moved += 1
        elif release:
            self.release.append((repo, tag))
        self.tags[(repo, tag)] = manifest.digest
        change.tags[(repo, tag)] = manifest.digest

    # ------------------------------------------------------------------ the incremental step

    def evolve(self) -> Change:
        """
        New tags for 5 % of the release tags and moved tags for 2 % (at least one each).

        Each new image reuses its repository's base layers and adds one new layer of the
        corpus's application-layer size; a moved tag points at such a new image.
        """
        self._step += 1
        change = Change()
        count = len(self.release)
        fresh = max(1, math.ceil(count * 0.05))
        moving = max(1, math.ceil(count * 0.02)) if count > 1 else 0
        for i in range(fresh):
            repo = self.repos[i % len(self.repos)]
            m = self._new_image(change, repo, f"new/{self._step}/{i}")
            self.tag(change, repo, f"new-{self._step}-{i}", m)
        # Move tags spread over the corpus, deterministically.
        stride = max(1, count // max(moving, 1))
        for j in range(moving):
            repo, tag = self.release[(j * stride + stride // 2) % count]
            m = self._new_image(change, repo, f"moved/{self._step}/{j}")
            self.tag(change, repo, tag, m)
        self.changes.append(change)
        return change

    def pull_plan(self, registry: str) -> dict[str, Any]:
        """The raw pull reference's input: every unique blob pushed so far, in its first home."""
        homes: dict[Digest, tuple[str, int]] = {}
        for change in self.changes:
            for digest, blob in change.blobs.items():
                homes.setdefault(digest, (change.blob_repos[digest][0], blob.size))
        return {
            "source": registry,
            "blobs": [
                {"digest": str(d), "size": size, "repos": [repo]}
                for d, (repo, size) in homes.items()
            ],
        }

    def heads_plan(self, registry: str) -> dict[str, Any]:
        """The raw no-op reference's input: every tag pushed so far, with its digest."""
        return {
            "source": registry,
            "tags": [
                {"repo": repo, "tag": tag, "digest": str(digest)}
                for (repo, tag), digest in self.tags.items()
            ],
        }

    @property
    def bytes(self) -> int:
        """Unique blob bytes pushed so far."""
        return sum(c.bytes for c in self.changes)

    def _new_image(self, change: Change, repo: str, seed: str) -> Manifest:
        # The bases are already in the repository: only the new layer is part of the change.
        layers = [self._digests[b] for b in self._bases[repo]]
        layers.append(self.blob(change, repo, f"{repo}/{seed}", self._app_size))
        return self.image(change, repo, seed, layers)


# ---------------------------------------------------------------------- the four corpora


def _small(c: Corpus, ch: Change) -> None:
    """5 repositories, 50 images (two multi-arch per repository), shared bases, signatures."""
    c._app_size = c.size(0.9 * MiB)
    c.repos = [f"small/app-{i}" for i in range(5)]
    for r, repo in enumerate(c.repos):
        base = Blob(c.size(20 * MiB), seed="small/base-a") if r < 3 else None
        base = base or Blob(c.size(12 * MiB), seed="small/base-b")
        runtime = Blob(c.size(4 * MiB), seed=f"small/{repo}/runtime")
        arm_base = Blob(c.size(6 * MiB), seed="small/base-arm64")
        c._bases[repo] = [base, runtime]
        shared = [c._add_blob(ch, repo, base), c._add_blob(ch, repo, runtime)]
        for v in range(8):
            app = c.blob(ch, repo, f"{repo}/app/{v}", c._app_size)
            m = c.image(ch, repo, f"{repo}/v1.{v}", [*shared, app])
            c.tag(ch, repo, f"v1.{v}", m)
            if v >= 6:
                c.sign(ch, repo, m)
        for v in range(2):
            amd = c.image(
                ch,
                repo,
                f"{repo}/v2.{v}/amd64",
                [*shared, c.blob(ch, repo, f"{repo}/a{v}", c._app_size)],
            )
            arm_layers = [
                c._add_blob(ch, repo, arm_base),
                c._add_blob(ch, repo, runtime),
                c.blob(ch, repo, f"{repo}/arm{v}", c._app_size),
            ]
            arm = c.image(ch, repo, f"{repo}/v2.{v}/arm64", arm_layers, arch="arm64")
            idx = c.index(ch, repo, [(amd, "amd64"), (arm, "arm64")])
            c.tag(ch, repo, f"v2.{v}", idx)
            if v == 1:
                c.sign(ch, repo, idx)


def _many_tags(c: Corpus, ch: Change) -> None:
    """20 repositories, 100 tags each, of tiny images: bound by metadata, not bytes."""
    per_repo = max(5, round(100 * min(c.scale, 1.0)))
    c._app_size = 512
    c.repos = [f"many-tags/svc-{i:02d}" for i in range(20)]
    for repo in c.repos:
        base = Blob(4 * KiB, seed="many-tags/base")
        c._bases[repo] = [base]
        b = c._add_blob(ch, repo, base)
        for t in range(per_repo):
            app = c.blob(ch, repo, f"{repo}/{t}", c._app_size)
            c.tag(ch, repo, f"1.0.{t}", c.image(ch, repo, f"{repo}/{t}", [b, app]))


def _big_blobs(c: Corpus, ch: Change) -> None:
    """3 repositories, about 1 GiB, blobs up to 130 MiB."""
    c._app_size = c.size(40 * MiB)
    c.repos = [f"big-blobs/data-{i}" for i in range(3)]
    for repo in c.repos:
        common = Blob(c.size(100 * MiB), seed="big-blobs/common")
        base = Blob(c.size(130 * MiB), seed=f"big-blobs/{repo}/base")
        deps = Blob(c.size(60 * MiB), seed=f"big-blobs/{repo}/deps")
        c._bases[repo] = [common, base, deps]
        layers = [c._add_blob(ch, repo, b) for b in (common, base, deps)]
        for t in range(3):
            app = c.blob(ch, repo, f"{repo}/app/{t}", c._app_size)
            c.tag(ch, repo, f"r{t}", c.image(ch, repo, f"{repo}/r{t}", [*layers, app]))


def _huge_blob(c: Corpus, ch: Change) -> None:
    """One image with one 1 GiB layer."""
    c._app_size = c.size(1 * MiB)
    repo = "huge-blob/model"
    c.repos = [repo]
    huge = Blob(c.size(1024 * MiB), seed="huge-blob/weights")
    c._bases[repo] = [huge]
    c.tag(ch, repo, "v1", c.image(ch, repo, "v1", [c._add_blob(ch, repo, huge)]))


_BUILDERS = {
    "small": _small,
    "many-tags": _many_tags,
    "big-blobs": _big_blobs,
    "huge-blob": _huge_blob,
}


# ---------------------------------------------------------------------- pushing


class Pusher:
    """Pushes a `Change` into a registry: blobs (mounted after the first), manifests, tags."""

    def __init__(self, base_url: str, concurrency: int = 4) -> None:
        self.base = base_url.rstrip("/")
        self._sem = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Pusher:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_read=300)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    async def push(self, change: Change) -> None:
        """Push everything in *change*, children before parents, tags last."""
        await asyncio.gather(
            *(self._blob(d, b, change.blob_repos[d]) for d, b in change.blobs.items())
        )
        manifests = sorted(change.manifests.values(), key=lambda m: m.level)
        for level in (0, 1):
            await asyncio.gather(
                *(self._manifest(m.repo, str(m.digest), m) for m in manifests if m.level == level)
            )
        by_digest = {(m.repo, m.digest): m for m in change.manifests.values()}
        await asyncio.gather(
            *(
                self._manifest(repo, tag, by_digest[(repo, digest)])
                for (repo, tag), digest in change.tags.items()
            )
        )

    async def _blob(self, digest: Digest, blob: Blob, repos: list[str]) -> None:
        async with self._sem:
            home, *others = repos
            if not await self._exists(home, digest):
                location = await self._start(home)

                async def body() -> AsyncIterator[bytes]:
                    for chunk in blob.chunks():
                        yield chunk

                put_url = location.update_query({"digest": str(digest)})
                async with self.http.put(
                    put_url, data=body() if blob.data is None else blob.data
                ) as r:
                    _check(r, 201, f"PUT blob {digest}")
            for repo in others:
                url = f"{self.base}/v2/{repo}/blobs/uploads/?mount={digest}&from={home}"
                async with self.http.post(url) as r:
                    _check(r, 201, f"mount {digest} into {repo}")

    async def _exists(self, repo: str, digest: Digest) -> bool:
        async with self.http.head(f"{self.base}/v2/{repo}/blobs/{digest}") as r:
            return r.status == 200

    async def _start(self, repo: str) -> yarl.URL:
        async with self.http.post(f"{self.base}/v2/{repo}/blobs/uploads/") as r:
            _check(r, 202, f"start upload in {repo}")
            return yarl.URL(self.base).join(yarl.URL(r.headers["Location"]))

    async def _manifest(self, repo: str, reference: str, m: Manifest) -> None:
        async with self._sem:
            url = f"{self.base}/v2/{repo}/manifests/{reference}"
            headers = {"Content-Type": m.media_type}
            async with self.http.put(url, data=m.raw, headers=headers) as r:
                _check(r, 201, f"PUT manifest {repo}:{reference}")
                if r.headers.get("Docker-Content-Digest") != str(m.digest):
                    raise AssertionError(f"{repo}:{reference} stored under another digest")


def _check(resp: aiohttp.ClientResponse, status: int, what: str) -> None:
    if resp.status != status:
        raise AssertionError(f"{what}: HTTP {resp.status}")
