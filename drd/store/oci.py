"""
An OCI registry as a snapshot store (``store = "oci://<endpoint>/<repository>"``).

Every store key is one OCI artifact in one repository: an image manifest whose
``artifactType`` is drd's own (the snapshot index is
``application/vnd.drd.snapshot.v1+json``), whose config is the OCI empty
descriptor, and whose one layer holds the object's bytes. The manifest is tagged
with the key, encoded (`key_tag`), so the tag list is the store's listing. A
content-addressed key's layer is the object itself under its own digest
(``blobs/sha256/<hex>`` is the registry blob ``sha256:<hex>``), so the registry
checks every upload's digest and shares the bytes across snapshots. Each
manifest carries the key and the time it was written as annotations: two keys
never share a manifest digest, so deleting one never untags the other.

A delete removes the key's manifest (the registry must have deletes enabled);
the layer blob stays until the registry's garbage collector runs
(``registry garbage-collect --delete-untagged``): no registry API deletes a blob
still linked in a repository. A registry has no object lock: ``lock`` puts are
ordinary puts (an immutable repository would not do either: leases and the latest
pointer are rewritten in place, and prune deletes).

The registry protocol goes through the ``oras`` package, which is synchronous
(requests): every call runs in a worker thread (`asyncio.to_thread`) so the event
loop never blocks. oras pushes blobs (monolithic or chunked), pushes and fetches
manifests and fetches blobs, and answers the registry's auth challenge (basic, or
the bearer-token flow against the registry's own realm). Done here by hand:
blobs are spooled to a temporary file first (oras uploads from paths), tags are
listed page by page through oras' request method (its ``get_tags`` turns every
failure, an absent repository included, into a bare ValueError), oras' own retry
loop is bypassed (it sleeps 3 s to 83 s on any exception; drd's `RetryPolicy`
retries each call instead, and nested retries multiply), and every request gets
a timeout (oras sets none). HTTP statuses and requests' exceptions are mapped to
drd's storage errors in `_storage_error` and nowhere else.

Longer than most modules on purpose: the key ↔ tag encoding, the oras session and
the store's operations share the one client and its error mapping, and none of them
is useful without the others.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import datetime as dt
import functools
import hashlib
import json
import re
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar, runtime_checkable
from urllib.parse import urljoin

import structlog

from drd.errors import (
    ConfigError,
    InvalidReference,
    SnapshotNotFound,
    StorageError,
    StorageUnavailable,
)
from drd.oci.ref import validate_repository
from drd.registry.auth import may_send_credentials
from drd.retry import RetryPolicy
from drd.store.base import CHUNK, StoredObject, StoreStats

if TYPE_CHECKING:
    import requests

    from drd.config import Endpoint

log = structlog.get_logger(__name__)

T = TypeVar("T")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY_JSON).hexdigest()
# drd's artifact types: one per kind of key, so `oras discover`-style tools tell them apart.
SNAPSHOT_ARTIFACT = "application/vnd.drd.snapshot.v1+json"
MANIFEST_ARTIFACT = "application/vnd.drd.manifest.v1"
BLOB_ARTIFACT = "application/vnd.drd.blob.v1"
OBJECT_ARTIFACT = "application/vnd.drd.object.v1"
LAYER_MEDIA_TYPE = "application/octet-stream"
KEY_ANNOTATION = "vnd.drd.key"
CREATED_ANNOTATION = "org.opencontainers.image.created"
# A wrapper manifest is a few hundred bytes; anything far larger is not ours.
MAX_WRAPPER_BYTES = 64 * 1024
# Chunked blob uploads send this much per PATCH: one chunk in memory at a time.
UPLOAD_CHUNK = 8 * 1024 * 1024
# Wrapper manifests fetched at once while listing (each a small GET in a worker thread).
LIST_CONCURRENCY = 8
CONNECT_TIMEOUT_S = 15.0

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# Key characters a tag can hold as they are; "/", "." and "_" are escaped (see key_tag).
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_ESCAPES = {"/": ".", ".": "_d", "_": "_u"}
_UNESCAPES = {"d": ".", "u": "_"}


@runtime_checkable
class OciStoreSettings(Protocol):
    """What an ``oci://`` store needs: the URL and the endpoint it names, credentials loaded."""

    @property
    def store(self) -> str: ...
    def store_endpoint(self) -> Endpoint | None: ...


# --------------------------------------------------------------------------- pure


def parse_oci_url(url: str) -> tuple[str, str]:
    """``oci://<endpoint>/<repository>`` → ``(endpoint, repository)``; `ConfigError` otherwise."""
    rest = url.removeprefix("oci://")
    endpoint, _, repository = rest.partition("/")
    repository = repository.strip("/")
    if not url.startswith("oci://") or not endpoint or not repository:
        raise ConfigError(
            'an OCI store is "oci://<endpoint>/<repository>"',
            errors=[("snapshots.store", f"{url[:100]!r} names no endpoint and repository")],
        )
    try:
        validate_repository(repository)
    except InvalidReference as exc:
        raise ConfigError(
            "an OCI store's repository must be a valid repository name",
            errors=[("snapshots.store", str(exc))],
        ) from exc
    return endpoint, repository


def key_tag(key: str) -> str:
    """
    The tag that holds *key*: ``/`` becomes ``.``, ``.`` becomes ``_d``, ``_`` becomes
    ``_u`` (reversible, and ``manifests/sha256/<hex>`` fits in 85 characters).
    `StorageError` when the key has a character a tag cannot carry or is too long.
    """
    out: list[str] = []
    for char in key:
        if char in _PLAIN:
            out.append(char)
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        else:
            raise StorageError(f"store key {key[:120]!r} cannot be an OCI tag", key=key)
    tag = "".join(out)
    if not _TAG.fullmatch(tag):
        raise StorageError(
            f"store key {key[:120]!r} is too long (or badly formed) for an OCI tag", key=key
        )
    return tag


def tag_key(tag: str) -> str | None:
    """The key *tag* encodes, or None for a tag `key_tag` cannot have written."""
    out: list[str] = []
    chars = iter(tag)
    for char in chars:
        if char in _PLAIN:
            out.append(char)
        elif char == ".":
            out.append("/")
        elif char == "_":
            code = next(chars, "")
            if code not in _UNESCAPES:
                return None
            out.append(_UNESCAPES[code])
        else:
            return None
    return "".join(out) or None


def artifact_type(key: str) -> str:
    """drd's artifact type for the object under *key*."""
    if key.startswith("snapshots/") and key.endswith(".json.gz"):
        return SNAPSHOT_ARTIFACT
    if key.startswith("manifests/"):
        return MANIFEST_ARTIFACT
    if key.startswith("blobs/"):
        return BLOB_ARTIFACT
    return OBJECT_ARTIFACT


def wrapper_manifest(key: str, layer_digest: str, size: int, now: dt.datetime) -> dict[str, Any]:
    """The artifact manifest that holds one object (*layer_digest*, *size*) under *key*."""
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type(key),
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": EMPTY_DIGEST,
            "size": len(EMPTY_JSON),
            "data": base64.b64encode(EMPTY_JSON).decode(),
        },
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer_digest, "size": size}],
        "annotations": {
            KEY_ANNOTATION: key,
            CREATED_ANNOTATION: now.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        },
    }


def parse_wrapper(key: str, raw: bytes) -> tuple[str, int, dt.datetime]:
    """``(layer digest, size, written at)`` of *key*'s manifest; `StorageError` if not drd's."""
    try:
        doc = json.loads(raw)
        [layer] = doc["layers"]
        digest, size = str(layer["digest"]), int(layer["size"])
        annotations = doc.get("annotations") or {}
        written = dt.datetime.fromisoformat(str(annotations[CREATED_ANNOTATION]))
        named = annotations.get(KEY_ANNOTATION)
    except (ValueError, KeyError, TypeError) as exc:
        raise ForeignTag(f"tag for {key} does not hold a drd object: {exc}", key=key) from exc
    if named != key or size < 0:
        raise ForeignTag(f"tag for {key} holds the object of {str(named)[:120]!r}", key=key)
    if written.tzinfo is None:
        written = written.replace(tzinfo=dt.UTC)
    return digest, size, written


# --------------------------------------------------------------------------- errors


class ForeignTag(StorageError):
    """A tag in the store's repository that does not hold a drd object."""


def _storage_error(exc: BaseException, *, where: str, key: str, op: str) -> StorageError:
    """Map an oras or requests failure (or an `_HttpStatus`) to drd's storage errors."""
    import requests

    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, _HttpStatus):
        status = exc.status
        if status == 404:
            return SnapshotNotFound(f"no object {key} in {where}", key=key)
        if status == 429 or status >= 500:
            return StorageUnavailable(f"OCI store {op} {key} failed: HTTP {status}", key=key)
        if status in (401, 403):
            return StorageError(
                f"OCI store {where} refused {op} {key}: HTTP {status} (check the endpoint's "
                "credentials and their rights on the repository)",
                key=key,
                status=status,
            )
        if status == 405 and op == "delete":
            return StorageError(
                f"OCI store {where} does not allow deletes (the registry needs deletes "
                "enabled, e.g. storage.delete.enabled in distribution)",
                key=key,
                status=status,
            )
        return StorageError(f"OCI store {op} {key} failed: HTTP {status} {exc.detail}", key=key)
    if isinstance(exc, requests.exceptions.SSLError):
        return StorageError(f"TLS with OCI store {where} failed: {exc}", key=key)
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return StorageUnavailable(f"cannot reach OCI store {where}: {exc}", key=key)
    if isinstance(exc, OSError):
        return StorageError(f"OCI store {op} {key}: local file error: {exc}", key=key)
    # oras raises ValueError / RuntimeError / AuthenticationException with a message.
    return StorageError(f"OCI store {op} {key} failed: {exc}", key=key)


class _HttpStatus(Exception):
    """A registry answer that is not the one expected; mapped by `_storage_error`."""

    def __init__(self, status: int, detail: str = "") -> None:
        super().__init__(f"HTTP {status} {detail}".strip())
        self.status, self.detail = status, detail


def _expect(response: requests.Response, *ok: int) -> requests.Response:
    if response.status_code not in ok:
        detail = ""
        with contextlib.suppress(ValueError, KeyError, TypeError, IndexError):
            detail = str(response.json()["errors"][0].get("message", ""))[:200]
        response.close()
        raise _HttpStatus(response.status_code, detail)
    return response


# --------------------------------------------------------------------------- oras


def _oras_registry(endpoint: Endpoint) -> Any:
    """
    An oras `Registry` for *endpoint*: its TLS, client certificate and credentials
    (thread side). One ``GET /v2/`` picks oras' auth backend: ``basic`` for a Basic
    challenge (oras' default token backend cannot answer one), ``token`` otherwise;
    credentials go only to a token realm `may_send_credentials` allows, as for
    drd's own registry client (oras would send them to any realm).
    """
    import oras.auth
    import oras.provider
    from requests.adapters import HTTPAdapter

    class _Registry(oras.provider.Registry):  # type: ignore[misc]
        # oras' do_request is wrapped in a retry loop that sleeps up to 83 s on any
        # exception; call the undecorated request: drd's RetryPolicy retries instead.
        def do_request(self, *args: Any, **kwargs: Any) -> Any:
            return oras.provider.Registry.do_request.__wrapped__(self, *args, **kwargs)

    tls_verify: bool | str = str(endpoint.ca_file) if endpoint.ca_file else True
    insecure = endpoint.scheme == "http"
    registry = _Registry(hostname=endpoint.host, insecure=insecure, tls_verify=tls_verify)
    if endpoint.cert_file is not None:
        key = str(endpoint.key_file) if endpoint.key_file else None
        registry.session.cert = (str(endpoint.cert_file), key) if key else str(endpoint.cert_file)
    # One pooled connection per worker thread that may use it at once (urllib3's default is 10).
    pool = max(LIST_CONCURRENCY, endpoint.concurrency)
    registry.session.mount(f"{endpoint.scheme}://", HTTPAdapter(pool_maxsize=pool))
    # requests has no session-wide timeout and oras passes none: add one to every request.
    registry.session.request = functools.partial(
        registry.session.request, timeout=(CONNECT_TIMEOUT_S, endpoint.timeout)
    )
    credentials = endpoint.credentials()
    if credentials is None:
        return registry
    if credentials.token is not None:
        registry.auth.set_token_auth(credentials.token.get_secret_value())
        return registry
    username, password = credentials.username, credentials.password
    if username is None or password is None:  # Credentials holds a token or both of these
        return registry
    probe = registry.session.request("GET", f"{endpoint.url}/v2/", verify=tls_verify)
    probe.close()
    challenge = probe.headers.get("WWW-Authenticate", "") if probe.status_code == 401 else ""
    if challenge.lower().startswith("basic"):
        registry.auth = oras.auth.get_auth_backend(
            "basic", registry.session, insecure, tls_verify=tls_verify
        )
    elif challenge.lower().startswith("bearer"):
        realm = _challenge_realm(challenge)
        allowed = frozenset(host.lower() for host in endpoint.auth_hosts)
        if not may_send_credentials(endpoint.url, realm, allowed):
            raise StorageError(
                f"OCI store endpoint {endpoint.name or endpoint.host} sends its token "
                "requests to a host its auth_hosts does not name; credentials not sent"
            )
    registry.auth.set_basic_auth(username, password.get_secret_value())
    return registry


def _challenge_realm(challenge: str) -> str:
    found = re.search(r'realm="([^"]*)"', challenge)
    return found.group(1) if found else ""


class OciStore:
    """
    One repository of an OCI registry, as a snapshot store (see the module docstring).

    Every request is retried on `StorageUnavailable` by *retry*; streams are not
    replayed. ``create_only`` puts look the tag up first: a registry has no
    conditional manifest put, so two writers racing on one new key both write, and
    the tag ends at one of them; for content-addressed keys both wrote the same bytes.
    """

    def __init__(
        self,
        registry: Any,
        repository: str,
        *,
        url: str,
        retry: RetryPolicy | None = None,
        upload_chunk: int = UPLOAD_CHUNK,
    ) -> None:
        self._oras = registry
        self.repository = repository
        self.url = url
        self.stats = StoreStats()
        self._retry = retry or RetryPolicy()
        self.upload_chunk = upload_chunk
        self._config_pushed = False
        self._container = registry.get_container(f"{registry.hostname}/{repository}")

    @property
    def retry(self) -> RetryPolicy:
        """The policy every request is retried by; a caller reading a whole stream uses it too."""
        return self._retry

    # ------------------------------------------------------------------ plumbing

    async def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        """*fn* in a worker thread, retried on `StorageUnavailable`, errors mapped."""

        async def mapped() -> T:
            try:
                return await asyncio.to_thread(fn)
            except (StorageError, asyncio.CancelledError):
                raise
            except Exception as exc:
                raise _storage_error(exc, where=self.url, key=key, op=op) from exc

        return await self._retry.call(f"store.{op}", mapped)

    def _base(self) -> str:
        return f"{self._oras.prefix}://{self._oras.hostname}/v2/{self.repository}"

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        response: requests.Response = self._oras.do_request(url, method, **kwargs)
        return response

    def _manifest_url(self, reference: str) -> str:
        return f"{self._base()}/manifests/{reference}"

    def _get_wrapper(self, key: str) -> bytes:
        """The raw manifest under *key*'s tag (thread side); `_HttpStatus` 404 when absent."""
        response = _expect(
            self._request(
                "GET",
                self._manifest_url(key_tag(key)),
                headers={"Accept": OCI_MANIFEST},
                stream=True,
            ),
            200,
        )
        with response:
            data = response.raw.read(MAX_WRAPPER_BYTES + 1, decode_content=True)
        if len(data) > MAX_WRAPPER_BYTES:
            raise ForeignTag(f"tag for {key} holds an oversized manifest", key=key)
        return bytes(data)

    def _head_digest(self, key: str) -> str | None:
        """The digest *key*'s tag points at, or None (thread side)."""
        response = self._request(
            "HEAD", self._manifest_url(key_tag(key)), headers={"Accept": OCI_MANIFEST}
        )
        if response.status_code == 404:
            return None
        _expect(response, 200)
        return response.headers.get("Docker-Content-Digest")

    def _push_blob(self, path: str, digest: str, size: int) -> None:
        """Upload one blob through oras (skipped when the repository has it)."""
        layer = {"mediaType": LAYER_MEDIA_TYPE, "digest": digest, "size": size}
        # Chunked past one chunk: oras' monolithic put reads the whole file into memory.
        chunked = size > self.upload_chunk
        response = self._oras.upload_blob(
            path, self._container, layer, do_chunked=chunked, chunk_size=self.upload_chunk
        )
        _expect(response, 200, 201, 202)

    def _push_config(self) -> None:
        """The empty config blob every wrapper manifest names (once per store)."""
        if self._config_pushed:
            return
        with _spooled([EMPTY_JSON]) as (path, digest, size):
            self._push_blob(path, digest, size)
        self._config_pushed = True

    def _push_wrapper(self, key: str, digest: str, size: int) -> str:
        """Tag a new wrapper manifest for *key*; its digest (thread side)."""
        manifest = wrapper_manifest(key, digest, size, dt.datetime.now(dt.UTC))
        container = self._oras.get_container(
            f"{self._oras.hostname}/{self.repository}:{key_tag(key)}"
        )
        response = _expect(self._oras.upload_manifest(manifest, container), 200, 201)
        return str(response.headers.get("Docker-Content-Digest", ""))

    def _put_file(self, key: str, path: str, digest: str, size: int, create_only: bool) -> bool:
        """Blob, then the manifest that names it under *key*'s tag (thread side)."""
        previous = self._head_digest(key)
        if create_only and previous is not None:
            return False
        self._push_config()
        self._push_blob(path, digest, size)
        pushed = self._push_wrapper(key, digest, size)
        if previous is not None and previous != pushed:
            # An overwrite (a lease renewal, the latest pointer) leaves the old manifest
            # untagged: delete it now rather than leave one per renewal for the GC.
            with contextlib.suppress(Exception):
                self._request("DELETE", self._manifest_url(previous)).close()
        return True

    # ------------------------------------------------------------------ SnapshotStore

    async def put_bytes(
        self, key: str, data: bytes, *, create_only: bool = False, lock: bool = False
    ) -> bool:
        """
        Push *data* as *key*'s artifact; False when *create_only* and the tag exists.
        *lock* is accepted and has no effect: a registry has no per-object retention.
        """
        key_tag(key)

        def go() -> bool:
            with _spooled([data]) as (path, digest, size):
                return self._put_file(key, path, digest, size, create_only)

        written = await self._call("put", key, go)
        if written:
            self.stats.count_put(key, len(data))
        return written

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        size: int | None = None,
        create_only: bool = False,
        lock: bool = False,
    ) -> bool:
        """
        Spool *chunks* to a temporary file (hashing them), then push it as *key*'s
        artifact, chunked when large. Nothing is pushed if *chunks* raises; the
        temporary file is removed whatever happens. *lock* has no effect, as in `put_bytes`.
        """
        key_tag(key)
        if create_only and await self.stat(key) is not None:
            return False
        handle = await asyncio.to_thread(_temporary)
        try:
            hasher, count = hashlib.sha256(), 0
            async for chunk in chunks:
                hasher.update(chunk)
                count += len(chunk)
                await asyncio.to_thread(_write, handle, chunk)
            await asyncio.to_thread(handle.flush)
            digest = f"sha256:{hasher.hexdigest()}"
            written = await self._call(
                "put",
                key,
                lambda: self._put_file(key, handle.name, digest, count, create_only),
            )
        finally:
            await asyncio.to_thread(_discard, handle)
        if written:
            self.stats.count_put(key, count)
        return written

    async def get_bytes(self, key: str, *, max_size: int) -> bytes:
        """The object's bytes; `SnapshotNotFound` when absent, `StorageError` past *max_size*."""

        def go() -> bytes:
            digest, size, _ = parse_wrapper(key, self._get_wrapper(key))
            if size > max_size:
                raise StorageError(
                    f"object {key} is {size} bytes, over the {max_size} byte limit", key=key
                )
            response = _expect(self._oras.get_blob(self._container, digest, stream=True), 200)
            with response:
                data = response.raw.read(max_size + 1, decode_content=True)
            if len(data) > max_size:
                raise StorageError(f"object {key} is over the {max_size} byte limit", key=key)
            return bytes(data)

        self.stats.gets += 1
        data = await self._call("get", key, go)
        self.stats.bytes_got += len(data)
        return data

    @contextlib.asynccontextmanager
    async def open_stream(self, key: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """The object's layer as a stream of chunks; only opening it is retried."""

        def go() -> requests.Response:
            digest, _, _ = parse_wrapper(key, self._get_wrapper(key))
            return _expect(self._oras.get_blob(self._container, digest, stream=True), 200)

        self.stats.gets += 1
        response = await self._call("get", key, go)
        pieces: Iterator[bytes] = response.iter_content(CHUNK)

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                try:
                    chunk = await asyncio.to_thread(next, pieces, b"")
                except Exception as exc:
                    raise _storage_error(exc, where=self.url, key=key, op="get") from exc
                if not chunk:
                    return
                self.stats.bytes_got += len(chunk)
                yield chunk

        try:
            yield chunks()
        finally:
            await asyncio.to_thread(response.close)

    async def stat(self, key: str) -> StoredObject | None:
        """The object's size and the time its manifest was written, or None."""
        self.stats.heads += 1
        try:
            raw = await self._call("stat", key, lambda: self._get_wrapper(key))
        except SnapshotNotFound:
            return None
        _, size, written = parse_wrapper(key, raw)
        return StoredObject(key, size, written)

    async def list(self, prefix: str) -> AsyncIterator[StoredObject]:
        """
        Every object under *prefix*, sorted by key: the repository's tags, then each
        matching tag's manifest for size and time. Tags that do not hold drd objects
        are skipped (and logged); an object deleted while listing is skipped.
        """
        tags = await self._call("list", prefix, self._tags)
        keys = sorted(k for t in tags if (k := tag_key(t)) is not None and k.startswith(prefix))
        limit = asyncio.Semaphore(LIST_CONCURRENCY)

        async def one(key: str) -> StoredObject | None:
            async with limit:
                try:
                    return await self.stat(key)
                except ForeignTag:
                    # Someone else's tag in the repository: not a store object.
                    log.warning("store.foreign_tag", store=self.url, tag=key_tag(key))
                    return None

        found = await asyncio.gather(*(one(k) for k in keys))
        for obj in found:
            if obj is not None:
                yield obj

    def _tags(self) -> builtins.list[str]:
        """Every tag of the repository, page by page; none when it does not exist yet."""
        url = f"{self._base()}/tags/list?n=1000"
        tags: builtins.list[str] = []
        while url:
            self.stats.lists += 1
            response = self._request("GET", url)
            if response.status_code == 404 and not tags:
                response.close()
                return []  # NAME_UNKNOWN: no object was ever pushed
            with _expect(response, 200):
                tags.extend(response.json().get("tags") or [])
                link = response.links.get("next", {}).get("url")
            url = urljoin(url, link) if link else ""
        return tags

    async def delete(self, key: str) -> None:
        """
        Delete *key*'s manifest (which untags it); a missing key is not an error. The
        layer blob is left to the registry's garbage collector.
        """

        def go() -> None:
            self.stats.deletes += 1
            digest = self._head_digest(key)
            if digest is None:
                return
            response = self._request("DELETE", self._manifest_url(digest))
            if response.status_code != 404:
                _expect(response, 200, 202).close()

        await self._call("delete", key, go)

    def __repr__(self) -> str:
        return f"OciStore({self.url})"


# --------------------------------------------------------------------------- files


def _temporary() -> Any:
    # Deleted on close; the directory is $TMPDIR (the unit's PrivateTmp under systemd).
    return tempfile.NamedTemporaryFile(prefix="drd-oci-", suffix=".blob")


def _write(handle: BinaryIO, data: bytes) -> None:
    handle.write(data)


def _discard(handle: BinaryIO) -> None:
    with contextlib.suppress(OSError):
        handle.close()


@contextlib.contextmanager
def _spooled(parts: builtins.list[bytes]) -> Iterator[tuple[str, str, int]]:
    """*parts* in a temporary file: ``(path, sha256 digest, size)`` (oras uploads paths)."""
    handle = _temporary()
    try:
        hasher, size = hashlib.sha256(), 0
        for part in parts:
            handle.write(part)
            hasher.update(part)
            size += len(part)
        handle.flush()
        yield handle.name, f"sha256:{hasher.hexdigest()}", size
    finally:
        _discard(handle)


# --------------------------------------------------------------------------- opening


@contextlib.asynccontextmanager
async def open_oci_store(
    config: OciStoreSettings, retry: RetryPolicy | None = None
) -> AsyncIterator[OciStore]:
    """
    The ``oci://<endpoint>/<repository>`` store *config* names, for the block: the
    endpoint's URL, TLS settings and credentials (as `load_settings` loaded them)
    are the store's. Raises `ConfigError` when the endpoint is not known.
    """
    name, repository = parse_oci_url(config.store)
    endpoint = config.store_endpoint()
    if endpoint is None or endpoint.name not in ("", name):
        raise ConfigError(
            f"the OCI store names endpoint {name!r}, which is not configured",
            errors=[("snapshots.store", f"unknown endpoint {name!r}")],
        )

    async def connect() -> Any:
        try:
            return await asyncio.to_thread(_oras_registry, endpoint)
        except StorageError:
            raise
        except Exception as exc:
            raise _storage_error(exc, where=config.store, key="", op="connect") from exc

    registry = await (retry or RetryPolicy()).call("store.connect", connect)
    try:
        yield OciStore(registry, repository, url=f"oci://{name}/{repository}", retry=retry)
    finally:
        await asyncio.to_thread(registry.session.close)
