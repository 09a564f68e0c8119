"""
Deterministic test images, indexes, referrers and signatures, and a plain push client.

Everything here is built from a seed: the same seed gives the same bytes and so
the same digests on every run. The push helpers speak the distribution API with
plain aiohttp, independently of drd's own registry client, so a test never uses
the code under test to set up its expectations.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
import yarl

from drd.oci import mediatype
from drd.oci.digest import Digest
from tests.servers import LocalRegistry
from tests.trust.signing import as_signing_key, sign_raw, simple_signing_payload

OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LAYER_TAR_GZIP = mediatype.DOCKER_LAYER_GZIP
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"

MiB = 1024 * 1024
# Large blobs are generated in blocks of this size, whatever size the transfer uses.
LARGE_BLOB_BLOCK = MiB

DEFAULT_PLATFORMS = (
    ("linux", "amd64", ""),
    ("linux", "arm64", ""),
    ("linux", "arm", "v7"),
    ("linux", "arm", "v6"),
    ("linux", "ppc64le", ""),
    ("linux", "s390x", ""),
)

# A registry given as a base URL or as a running LocalRegistry (which brings its TLS).
Target = str | LocalRegistry
# (username, password) for HTTP basic auth, what distribution's htpasswd mode asks for.
Credentials = tuple[str, str]


def _json(obj: Any) -> bytes:
    """Compact, key-ordered JSON: the bytes a manifest is pushed as."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode()


def pseudo_random(seed: str, size: int) -> bytes:
    """*size* random-looking bytes determined by *seed*."""
    return hashlib.shake_256(seed.encode()).digest(size) if size else b""


# ---------------------------------------------------------------------------
# content model


@dataclass(frozen=True)
class Blob:
    """Content addressed by its sha256."""

    data: bytes
    media_type: str = OCI_LAYER_TAR

    @property
    def digest(self) -> Digest:
        """The sha256 of ``data``."""
        return Digest.of(self.data)

    @property
    def size(self) -> int:
        """``len(data)``."""
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        """This blob's descriptor as JSON-ready data; *extra* keys are added."""
        return {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
            **extra,
        }


@dataclass(frozen=True)
class Image:
    """An image (or artifact) manifest with its config and layers."""

    raw: bytes  # the manifest bytes, exactly as pushed
    media_type: str
    config: Blob
    layers: tuple[Blob, ...]
    platform: Mapping[str, str] | None = None  # for index entries: os, architecture[, variant]
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str = ""

    @property
    def digest(self) -> Digest:
        """The sha256 of the manifest bytes."""
        return Digest.of(self.raw)

    @property
    def size(self) -> int:
        """The manifest's length in bytes."""
        return len(self.raw)

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """Config then layers."""
        return (self.config, *self.layers)

    def descriptor(self, *, with_platform: bool = True) -> dict[str, Any]:
        """A descriptor pointing at this manifest (with its platform, if any)."""
        desc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if with_platform and self.platform:
            desc["platform"] = dict(self.platform)
        if self.artifact_type:
            desc["artifactType"] = self.artifact_type
        return desc

    def json(self) -> dict[str, Any]:
        """The manifest parsed, for reading."""
        doc: dict[str, Any] = json.loads(self.raw)
        return doc


@dataclass(frozen=True)
class Index:
    """An OCI index or Docker manifest list over images."""

    raw: bytes
    media_type: str
    images: tuple[Image, ...]

    @property
    def digest(self) -> Digest:
        """The sha256 of the index bytes."""
        return Digest.of(self.raw)

    @property
    def size(self) -> int:
        """The index's length in bytes."""
        return len(self.raw)

    def descriptor(self) -> dict[str, Any]:
        """A descriptor pointing at this index."""
        return {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}

    def json(self) -> dict[str, Any]:
        """The index parsed, for reading."""
        doc: dict[str, Any] = json.loads(self.raw)
        return doc


Subject = Image | Index


# ---------------------------------------------------------------------------
# builders


def _tar_layer(name: str, payload: bytes) -> bytes:
    """A one-file tar with fixed metadata, so its bytes depend only on *payload*."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        info.mtime = 0
        info.mode = 0o644
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _platform(spec: str | Mapping[str, str] | None) -> dict[str, str] | None:
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return dict(spec)
    parts = spec.split("/")
    if len(parts) not in (2, 3):
        raise ValueError(f"platform {spec!r} is not os/arch[/variant]")
    platform = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        platform["variant"] = parts[2]
    return platform


def make_image(
    seed: str,
    *,
    layers: int = 1,
    layer_size: int = 1024,
    docker: bool = False,
    platform: str | Mapping[str, str] | None = None,
    subject: Subject | None = None,
    annotations: Mapping[str, str] | None = None,
    artifact_type: str = "",
) -> Image:
    """
    A small image whose bytes depend only on the arguments.

    Each layer is a real tar holding one file of *layer_size* seeded bytes:
    uncompressed (``application/vnd.oci.image.layer.v1.tar``) for OCI, gzip
    (mtime 0) for Docker schema 2. The config is a real image config whose
    ``diff_ids`` match the layers. *platform* is ``"linux/arm64"``-style or a
    mapping and sets the config's os/architecture and the index entry.
    *subject* makes it a referrer of that image or index (OCI only).
    """
    if docker and (subject is not None or artifact_type):
        raise ValueError("Docker schema 2 manifests have no subject or artifactType")
    plat = _platform(platform) or {"os": "linux", "architecture": "amd64"}
    blobs: list[Blob] = []
    diff_ids: list[str] = []
    for i in range(layers):
        tar = _tar_layer(f"layer-{i}.bin", pseudo_random(f"{seed}/layer/{i}", layer_size))
        diff_ids.append(str(Digest.of(tar)))
        if docker:
            blobs.append(Blob(gzip.compress(tar, mtime=0), DOCKER_LAYER_TAR_GZIP))
        else:
            blobs.append(Blob(tar, OCI_LAYER_TAR))
    config_doc: dict[str, Any] = {
        "architecture": plat["architecture"],
        "os": plat["os"],
        "config": {"Labels": {"org.example.drd-test.seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"drd test layer {i}"} for i in range(layers)],
    }
    if "variant" in plat:
        config_doc["variant"] = plat["variant"]
    config = Blob(_json(config_doc), mediatype.DOCKER_CONFIG if docker else mediatype.OCI_CONFIG)
    media_type = mediatype.DOCKER_MANIFEST if docker else mediatype.OCI_MANIFEST
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["config"] = config.descriptor()
    doc["layers"] = [b.descriptor() for b in blobs]
    if subject is not None:
        doc["subject"] = _subject_descriptor(subject)
    if annotations:
        doc["annotations"] = dict(annotations)
    return Image(
        raw=_json(doc),
        media_type=media_type,
        config=config,
        layers=tuple(blobs),
        platform=_platform(platform),
        annotations=dict(annotations or {}),
        artifact_type=artifact_type,
    )


def _subject_descriptor(subject: Subject) -> dict[str, Any]:
    return {"mediaType": subject.media_type, "digest": str(subject.digest), "size": subject.size}


def make_index(
    images: Sequence[Image],
    *,
    docker: bool = False,
    annotations: Mapping[str, str] | None = None,
    subject: Subject | None = None,
    artifact_type: str = "",
) -> Index:
    """
    An OCI index (or, with *docker*, a Docker manifest list) over *images*.

    An image without a platform is listed as the next of linux/amd64,
    linux/arm64, linux/arm/v7, … in order.
    """
    if docker and (subject is not None or artifact_type or annotations):
        raise ValueError("Docker manifest lists have no subject, artifactType or annotations")
    media_type = mediatype.DOCKER_LIST if docker else mediatype.OCI_INDEX
    entries = []
    for i, image in enumerate(images):
        entry = image.descriptor(with_platform=False)
        os_, arch, variant = DEFAULT_PLATFORMS[i % len(DEFAULT_PLATFORMS)]
        default = {"os": os_, "architecture": arch, **({"variant": variant} if variant else {})}
        entry["platform"] = dict(image.platform) if image.platform else default
        entries.append(entry)
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["manifests"] = entries
    if subject is not None:
        doc["subject"] = _subject_descriptor(subject)
    if annotations:
        doc["annotations"] = dict(annotations)
    return Index(raw=_json(doc), media_type=media_type, images=tuple(images))


def make_multiarch(
    seed: str,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    *,
    docker: bool = False,
    layers: int = 1,
    layer_size: int = 1024,
) -> Index:
    """An index over one seeded image per platform."""
    images = [
        make_image(f"{seed}/{p}", layers=layers, layer_size=layer_size, docker=docker, platform=p)
        for p in platforms
    ]
    return make_index(images, docker=docker)


def make_referrer(
    subject: Subject,
    seed: str,
    *,
    artifact_type: str = "application/vnd.example.sbom.v1+json",
    payload: bytes | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Image:
    """
    An OCI 1.1 artifact manifest whose ``subject`` is *subject*.

    The config is the empty descriptor (``{}``, ``application/vnd.oci.empty.v1+json``)
    and the one layer is *payload* (seeded JSON by default) typed *artifact_type*.
    """
    body = payload if payload is not None else _json({"seed": seed, "subject": str(subject.digest)})
    layer = Blob(body, artifact_type)
    config = Blob(b"{}", mediatype.OCI_EMPTY)
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
        "subject": _subject_descriptor(subject),
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    return Image(
        raw=_json(doc),
        media_type=mediatype.OCI_MANIFEST,
        config=config,
        layers=(layer,),
        annotations=dict(annotations or {}),
        artifact_type=artifact_type,
    )


def referrers_tag(digest: Digest) -> str:
    """The referrers fallback tag for *digest*: ``sha256-<hex>``."""
    return digest.tag_form


def signature_tag(digest: Digest) -> str:
    """cosign's tag for the signatures of *digest*: ``sha256-<hex>.sig``."""
    return f"{digest.tag_form}.sig"


def make_cosign_signature(
    subject: Subject | Digest,
    key: Any,
    *,
    docker_reference: str,
    payload: bytes | None = None,
    signatures: Iterable[tuple[bytes, bytes]] = (),
) -> Image:
    """
    A cosign tag-form signature manifest (push it under `signature_tag`).

    One ``application/vnd.dev.cosign.simplesigning.v1+json`` layer per signature,
    its base64 signature in the ``dev.cosignproject.cosign/signature``
    annotation, and cosign's config shape. *key* signs *payload* (by default the
    simple-signing payload naming *subject* as *docker_reference*); *signatures*
    adds further (payload, signature) pairs verbatim, e.g. a forged one.
    """
    digest = subject if isinstance(subject, Digest) else subject.digest
    body = payload if payload is not None else simple_signing_payload(digest, docker_reference)
    pairs = [(body, sign_raw(body, as_signing_key(key))), *signatures]
    layers = [Blob(p, mediatype.COSIGN_SIMPLESIGNING) for p, _ in pairs]
    config = Blob(
        _json(
            {
                "architecture": "",
                "created": "0001-01-01T00:00:00Z",
                "history": [{"created": "0001-01-01T00:00:00Z"}],
                "os": "",
                "rootfs": {"type": "layers", "diff_ids": [str(b.digest) for b in layers]},
                "config": {},
            }
        ),
        mediatype.OCI_CONFIG,
    )
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [
            layer.descriptor(
                annotations={COSIGN_SIGNATURE_ANNOTATION: base64.b64encode(sig).decode()}
            )
            for layer, (_, sig) in zip(layers, pairs, strict=True)
        ],
    }
    return Image(
        raw=_json(doc), media_type=mediatype.OCI_MANIFEST, config=config, layers=tuple(layers)
    )


# ---------------------------------------------------------------------------
# large blobs


def large_blob_chunks(size: int, seed: str, chunk_size: int = LARGE_BLOB_BLOCK) -> Iterator[bytes]:
    """Yield *size* seeded bytes in chunks of at most *chunk_size*; never all at once."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    sent = 0
    block_no = 0
    pending = b""
    while sent < size:
        while len(pending) < chunk_size and sent + len(pending) < size:
            block = min(LARGE_BLOB_BLOCK, size - sent - len(pending))
            pending += pseudo_random(f"{seed}/block/{block_no}", block)
            block_no += 1
        chunk, pending = pending[:chunk_size], pending[chunk_size:]
        sent += len(chunk)
        yield chunk


def large_blob_digest(size: int, seed: str) -> Digest:
    """The digest `large_blob_chunks(size, seed)` streams, computed in bounded memory."""
    hasher = hashlib.sha256()
    for chunk in large_blob_chunks(size, seed):
        hasher.update(chunk)
    return Digest("sha256", hasher.hexdigest())


# ---------------------------------------------------------------------------
# the push client


class RegistryRequestError(AssertionError):
    """The registry refused a request the test setup needed; carries status and body."""

    def __init__(self, what: str, status: int, body: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


def _ssl_for(registry: Target) -> Any:
    if isinstance(registry, LocalRegistry) and registry.tls is not None:
        return registry.tls.client_context()
    return None


def _url_for(registry: Target) -> str:
    return registry.url if isinstance(registry, LocalRegistry) else registry.rstrip("/")


class RegistryWriter:
    """
    A minimal distribution API client over one aiohttp session.

    Use it as ``async with RegistryWriter(registry) as w:``; the module-level
    functions open one for a single call. *auth* is (username, password) for
    HTTP basic auth, sent with every request.
    """

    def __init__(self, registry: Target, *, auth: Credentials | None = None) -> None:
        self.base = _url_for(registry)
        self._ssl = _ssl_for(registry)
        self._auth = auth
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RegistryWriter:
        headers = {}
        if self._auth is not None:
            token = base64.b64encode(":".join(self._auth).encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=300, sock_connect=10),
            connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session."""
        if self._session is None:
            raise RuntimeError("use RegistryWriter as an async context manager")
        return self._session

    def _url(self, repository: str, *parts: str) -> str:
        return "/".join([self.base, "v2", repository, *parts])

    async def blob_exists(self, repository: str, digest: Digest) -> bool:
        """HEAD the blob: True on 200, False on 404."""
        async with self.session.head(self._url(repository, "blobs", str(digest))) as resp:
            if resp.status in (200, 404):
                return resp.status == 200
            raise RegistryRequestError(f"HEAD blob {digest}", resp.status, await resp.text())

    async def _start_upload(self, repository: str) -> yarl.URL:
        async with self.session.post(self._url(repository, "blobs", "uploads") + "/") as resp:
            if resp.status != 202:
                raise RegistryRequestError(
                    f"start upload in {repository}", resp.status, await resp.text()
                )
            location = resp.headers["Location"]
        # Location may be relative to the registry, not only absolute.
        return yarl.URL(self.base).join(yarl.URL(location))

    async def _finish_upload(self, location: yarl.URL, digest: Digest, data: Any) -> Digest:
        url = location.update_query({"digest": str(digest)})
        headers = {"Content-Type": "application/octet-stream"}
        async with self.session.put(url, data=data, headers=headers) as resp:
            if resp.status != 201:
                raise RegistryRequestError(f"PUT blob {digest}", resp.status, await resp.text())
            returned = resp.headers.get("Docker-Content-Digest")
        if returned is not None and returned != str(digest):
            raise RegistryRequestError(f"PUT blob {digest}", 201, f"registry said {returned}")
        return digest

    async def push_blob(
        self, repository: str, blob: Blob | bytes, *, skip_existing: bool = True
    ) -> Digest:
        """Upload *blob* monolithically (POST, then PUT ?digest=); HEAD first to skip it."""
        data = blob.data if isinstance(blob, Blob) else blob
        digest = Digest.of(data)
        if skip_existing and await self.blob_exists(repository, digest):
            return digest
        location = await self._start_upload(repository)
        return await self._finish_upload(location, digest, data)

    async def push_large_blob(
        self, repository: str, size: int, seed: str, *, chunk_size: int = LARGE_BLOB_BLOCK
    ) -> Digest:
        """Stream `large_blob_chunks(size, seed)` as one PUT; never holds it in memory."""
        digest = large_blob_digest(size, seed)

        async def body() -> AsyncIterator[bytes]:
            for chunk in large_blob_chunks(size, seed, chunk_size):
                yield chunk

        location = await self._start_upload(repository)
        return await self._finish_upload(location, digest, body())

    async def push_manifest(
        self, repository: str, reference: str | Digest, raw: bytes, media_type: str
    ) -> Digest:
        """PUT *raw* as-is under *reference* (tag or digest); check the digest returned."""
        digest = Digest.of(raw)
        url = self._url(repository, "manifests", str(reference))
        body = io.BytesIO(raw)  # not bytes: aiohttp warns on large raw bodies
        async with self.session.put(url, data=body, headers={"Content-Type": media_type}) as resp:
            if resp.status != 201:
                raise RegistryRequestError(
                    f"PUT manifest {repository}:{reference}", resp.status, await resp.text()
                )
            returned = resp.headers.get("Docker-Content-Digest")
        if returned != str(digest):
            raise RegistryRequestError(
                f"PUT manifest {repository}:{reference}", 201, f"registry said {returned}"
            )
        return digest

    async def push_image(self, repository: str, image: Image, tag: str | None = None) -> Digest:
        """Blobs, then the manifest by digest, then the tag (when given)."""
        for blob in image.blobs:
            await self.push_blob(repository, blob)
        await self.push_manifest(repository, image.digest, image.raw, image.media_type)
        if tag is not None:
            await self.push_manifest(repository, tag, image.raw, image.media_type)
        return image.digest

    async def push_index(self, repository: str, index: Index, tag: str | None = None) -> Digest:
        """Every child image, then the index by digest, then the tag (when given)."""
        for image in index.images:
            await self.push_image(repository, image)
        await self.push_manifest(repository, index.digest, index.raw, index.media_type)
        if tag is not None:
            await self.push_manifest(repository, tag, index.raw, index.media_type)
        return index.digest

    async def get_manifest(self, repository: str, reference: str | Digest) -> tuple[bytes, str]:
        """The manifest's bytes and Content-Type, asking for every manifest type."""
        url = self._url(repository, "manifests", str(reference))
        headers = {"Accept": mediatype.MANIFEST_ACCEPT}
        async with self.session.get(url, headers=headers) as resp:
            if resp.status != 200:
                raise RegistryRequestError(
                    f"GET manifest {repository}:{reference}", resp.status, await resp.text()
                )
            return await resp.read(), resp.headers.get("Content-Type", "")

    async def manifest_exists(self, repository: str, reference: str | Digest) -> bool:
        """HEAD the manifest: True on 200, False on 404."""
        url = self._url(repository, "manifests", str(reference))
        headers = {"Accept": mediatype.MANIFEST_ACCEPT}
        async with self.session.head(url, headers=headers) as resp:
            if resp.status in (200, 404):
                return resp.status == 200
            raise RegistryRequestError(f"HEAD manifest {reference}", resp.status, "")

    async def get_blob(self, repository: str, digest: Digest) -> bytes:
        """The whole blob (for small test blobs only)."""
        async with self.session.get(self._url(repository, "blobs", str(digest))) as resp:
            if resp.status != 200:
                raise RegistryRequestError(f"GET blob {digest}", resp.status, await resp.text())
            return await resp.read()

    async def list_tags(self, repository: str) -> list[str]:
        """The repository's tags, sorted; [] for an unknown repository."""
        async with self.session.get(self._url(repository, "tags", "list")) as resp:
            if resp.status == 404:
                return []
            if resp.status != 200:
                raise RegistryRequestError(f"GET tags {repository}", resp.status, await resp.text())
            doc = await resp.json()
        return sorted(doc.get("tags") or [])

    async def delete_manifest(self, repository: str, digest: Digest) -> None:
        """DELETE the manifest by digest (every tag on it goes with it)."""
        url = self._url(repository, "manifests", str(digest))
        async with self.session.delete(url) as resp:
            if resp.status != 202:
                raise RegistryRequestError(f"DELETE {digest}", resp.status, await resp.text())

    async def delete_blob(self, repository: str, digest: Digest) -> None:
        """DELETE the blob's link from *repository*."""
        async with self.session.delete(self._url(repository, "blobs", str(digest))) as resp:
            if resp.status != 202:
                raise RegistryRequestError(f"DELETE blob {digest}", resp.status, await resp.text())


# Module-level one-shot helpers -------------------------------------------------


async def push_blob(
    registry: Target, repository: str, blob: Blob | bytes, *, auth: Credentials | None = None
) -> Digest:
    """Upload one blob (HEAD-skipped when present); return its digest."""
    async with RegistryWriter(registry, auth=auth) as w:
        return await w.push_blob(repository, blob)


async def push_manifest(
    registry: Target,
    repository: str,
    reference: str | Digest,
    raw: bytes,
    media_type: str,
    *,
    auth: Credentials | None = None,
) -> Digest:
    """PUT manifest bytes under a tag or digest; return the digest the registry confirmed."""
    async with RegistryWriter(registry, auth=auth) as w:
        return await w.push_manifest(repository, reference, raw, media_type)


async def push_image(
    registry: Target,
    repository: str,
    image: Image,
    tag: str | None = None,
    *,
    auth: Credentials | None = None,
) -> Digest:
    """Push an image children-first and tag it when *tag* is given."""
    async with RegistryWriter(registry, auth=auth) as w:
        return await w.push_image(repository, image, tag)


async def push_index(
    registry: Target,
    repository: str,
    index: Index,
    tag: str | None = None,
    *,
    auth: Credentials | None = None,
) -> Digest:
    """Push an index with all its images, children first, and tag it when *tag* is given."""
    async with RegistryWriter(registry, auth=auth) as w:
        return await w.push_index(repository, index, tag)


async def push_large_blob(
    registry: Target,
    repository: str,
    size: int,
    seed: str,
    *,
    auth: Credentials | None = None,
) -> Digest:
    """Stream a seeded blob of *size* bytes into *repository*; return its digest."""
    async with RegistryWriter(registry, auth=auth) as w:
        return await w.push_large_blob(repository, size, seed)


async def get_manifest(
    registry: Target,
    repository: str,
    reference: str | Digest,
    *,
    auth: Credentials | None = None,
) -> tuple[bytes, str]:
    """Read a manifest's exact bytes and Content-Type."""
    async with RegistryWriter(registry, auth=auth) as w:
        return await w.get_manifest(repository, reference)


async def list_tags(
    registry: Target, repository: str, *, auth: Credentials | None = None
) -> list[str]:
    """A repository's tags, sorted."""
    async with RegistryWriter(registry, auth=auth) as w:
        return await w.list_tags(repository)


async def delete_manifest(
    registry: Target, repository: str, digest: Digest, *, auth: Credentials | None = None
) -> None:
    """Delete a manifest by digest, which removes every tag pointing at it."""
    async with RegistryWriter(registry, auth=auth) as w:
        await w.delete_manifest(repository, digest)


async def delete_tag(
    registry: Target, repository: str, tag: str, *, auth: Credentials | None = None
) -> None:
    """
    Remove one tag and leave its manifest.

    distribution 2.8 refuses ``DELETE /v2/<name>/manifests/<tag>``, so for a
    `LocalRegistry` the tag is removed from its storage instead; for any other
    registry the API call is made and must succeed.
    """
    if isinstance(registry, LocalRegistry):
        registry.remove_tag(repository, tag)
        return
    async with RegistryWriter(registry, auth=auth) as w:
        url = w._url(repository, "manifests", tag)
        async with w.session.delete(url) as resp:
            if resp.status != 202:
                raise RegistryRequestError(f"DELETE tag {tag}", resp.status, await resp.text())
