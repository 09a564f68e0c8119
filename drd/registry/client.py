"""
RegistryClient: the distribution API, byte-exact, authenticated, limited and retried.

Over 500 lines because it is the one facade over the protocol: every call shares the
session, the token flow, the limits and the retry policy held here. The checked blob
stream is `drd.registry.stream`; the auth header parsing is `drd.registry.auth`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp
import structlog
from aiolimiter import AsyncLimiter

from drd.config import Credentials
from drd.errors import (
    DigestMismatch,
    InvalidManifest,
    InvalidReference,
    ListTooLong,
    NotFound,
    RegistryError,
    RegistryUnavailable,
    SizeMismatch,
    TransientError,
    Unauthorized,
    UnsafeResponse,
    UnsupportedAPI,
)
from drd.oci import mediatype
from drd.oci.descriptor import Descriptor
from drd.oci.digest import Digest
from drd.oci.manifest import MAX_MANIFEST_BYTES, Manifest
from drd.oci.ref import validate_repository, validate_tag
from drd.oci.referrers import MAX_REFERRERS, fallback_tag
from drd.registry.auth import (
    Challenge,
    basic_header,
    has_userinfo,
    may_send_credentials,
    parse_challenge,
    token_url,
    valid_token,
)
from drd.registry.listing import PageUnreadable, page_entries
from drd.registry.redirects import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    address_refusal,
    redirect_target,
    same_origin,
)
from drd.registry.transport import error_for, read_body, retry_after, transport_errors
from drd.retry import RetryPolicy

log = structlog.get_logger(__name__)

# Stream buffers: large enough that per-chunk Python overhead vanishes behind the socket.
CHUNK = 1024 * 1024
# PATCH size for an endpoint that refused a whole blob in one request and has no chunk_size.
FALLBACK_CHUNK_SIZE = 64 * 1024 * 1024
# Answers to a whole-blob PUT that mean "send it in chunks": body too large, range wanted.
MONOLITHIC_REFUSALS = (413, 416)
# Entries asked for per catalog or tags page (``?n=``); registries may send fewer.
PAGE_SIZE = 1000
MAX_PAGES = 10_000
MAX_LIST_BODY = 32 * 1024 * 1024
_MAX_TOKEN_BODY = 1024 * 1024
# Seconds the reachability check at the start of a pass waits for an answer: long enough
# for a TLS handshake across regions, short enough that a dead endpoint costs little.
PROBE_DEADLINE_S = 10.0


@dataclass
class Limits:
    """Per-endpoint limits shared by every request to it."""

    concurrency: int = 16
    requests_per_second: float | None = None
    _sem: asyncio.Semaphore = field(init=False)
    _rate: AsyncLimiter | None = field(init=False)
    # Spacing in seconds asked for by a low ``RateLimit-Remaining``, between request starts.
    backoff_s: float = 0.0
    _pace: asyncio.Lock = field(init=False)
    _last_start: float = field(init=False, default=0.0)
    _paused_until: float = field(init=False, default=0.0)
    # A whole request (its body included) must end within deadline_s, plus its size at
    # min_throughput bytes per second: a registry trickling bytes cannot hold it for hours.
    deadline_s: float = 300.0
    min_throughput: int = 256 * 1024
    # Most entries one tag list (or the catalog) may hold: the pages are held in memory.
    max_tags: int = 100_000
    max_repositories: int = 100_000
    # Blobs larger than this go up in PATCHes of this many bytes; None: each blob in one
    # streamed PUT. Once the registry refuses a whole blob, every blob goes up in PATCHes
    # (of chunk_size, or FALLBACK_CHUNK_SIZE).
    chunk_size: int | None = None
    refuses_monolithic: bool = False

    def __post_init__(self) -> None:
        self._sem = asyncio.Semaphore(self.concurrency)
        self._pace = asyncio.Lock()
        rps = self.requests_per_second
        # One token per request, refilled at rps per second; no burst beyond one second's worth.
        self._rate = AsyncLimiter(max(rps, 1.0), 1.0) if rps else None
        if rps and rps < 1:
            self._rate = AsyncLimiter(1, 1.0 / rps)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one concurrency slot, after waiting for the rate limiter and any backoff."""
        async with self._sem:
            if self._rate is not None:
                await self._rate.acquire()
            if self.backoff_s or self._paused_until:
                await self._spaced()
            else:
                # No lock while nothing asks for spacing; the next spaced start counts from here.
                self._last_start = asyncio.get_running_loop().time()
            yield

    async def _spaced(self) -> None:
        # Starts spaced backoff_s apart across every slot, not one sleep per slot: sixteen
        # concurrent sleepers would still spend a low quota sixteen times as fast.
        async with self._pace:
            loop = asyncio.get_running_loop()
            wait = max(self._last_start + self.backoff_s, self._paused_until) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_start = loop.time()

    def deadline_for(self, size: int) -> float:
        """Seconds one request moving *size* bytes may take in all."""
        return self.deadline_s + self.transfer_s(size)

    def transfer_s(self, size: int) -> float:
        """Seconds *size* bytes take at the minimum throughput."""
        return max(size, 0) / self.min_throughput

    def pause(self, seconds: float) -> None:
        """Start no request for *seconds* (a 429's ``Retry-After`` holds for the endpoint)."""
        until = asyncio.get_running_loop().time() + seconds
        self._paused_until = max(self._paused_until, until)


class MonolithicUploadRefused(RegistryError, TransientError):
    """
    The registry refused a whole blob in one PUT; its client now uploads every blob in PATCHes.

    Transient: the stream is spent, and the retried transfer goes up in PATCHes.
    """


class _Portions:
    """One byte stream cut into consecutive streamed portions; a chunk may straddle two."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = aiter(chunks)
        self._carry = b""

    async def take(self, length: int) -> AsyncIterator[bytes]:
        """The next *length* bytes (fewer when the stream ends first), chunk by chunk."""
        while length > 0:
            if self._carry:
                chunk, self._carry = self._carry, b""
            else:
                try:
                    chunk = await anext(self._chunks)
                except StopAsyncIteration:
                    return
            if len(chunk) > length:
                chunk, self._carry = chunk[:length], chunk[length:]
            length -= len(chunk)
            yield chunk


@dataclass
class _Tokens:
    """Bearer tokens cached per (realm, service, scope)."""

    by_key: dict[tuple[str, str, str], str] = field(default_factory=dict)
    challenge: Challenge | None = None
    # One fetch per key at a time: concurrent 401s for one scope share a single token.
    locks: dict[tuple[str, str, str], asyncio.Lock] = field(default_factory=dict)


class RegistryClient:
    """
    One registry endpoint: catalog, tags, manifests, blobs, mounts and referrers.

    Manifests travel as bytes and are digest-checked both ways. Blob streams are
    hashed as they flow. Every request is bounded by the endpoint's limits and
    retried only on `TransientError`. Raises the `RegistryError` family.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        http: aiohttp.ClientSession,
        retry: RetryPolicy,
        *,
        credentials: Credentials | None = None,
        limits: Limits | None = None,
        auth_hosts: frozenset[str] = frozenset(),
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self.host = parts.netloc
        self._hostname = parts.hostname or ""
        self._http = http
        self._retry = retry
        self._creds = credentials
        self.limits = limits or Limits()
        self._auth_hosts = auth_hosts
        self._tokens = _Tokens()
        self._referrers_api: bool | None = None
        # Held by the first referrers call while the API is unknown: the others wait for
        # its answer instead of each asking (a no-op pass asks for every tag at once).
        self._referrers_probe = asyncio.Lock()
        self.requests = 0  # how many HTTP requests this client sent (benchmarks read it)

    # ------------------------------------------------------------------ plumbing

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _scope(self, repository: str, push: bool = False) -> str:
        if not repository:
            return "registry:catalog:*"
        return f"repository:{repository}:{'pull,push' if push else 'pull'}"

    def _auth_header(self, scope: str) -> str | None:
        ch = self._tokens.challenge
        if ch is not None and ch.scheme == "bearer":
            token = self._tokens.by_key.get((ch.realm, ch.params.get("service", ""), scope))
            return f"Bearer {token}" if token else None
        if ch is not None and ch.scheme == "basic" and self._creds and self._basic_allowed():
            return basic_header(self._creds)
        return None

    def _basic_allowed(self) -> bool:
        """A password may go to this registry: we have one, and not over plain http afar."""
        if self._creds is None or self._creds.is_token:
            return False
        return may_send_credentials(self.base_url, self.base_url, frozenset())

    async def _fetch_token(self, challenge: Challenge, scope: str, stale: str | None) -> None:
        """Fetch a token for *scope* unless another request replaced *stale* meanwhile."""
        key = (challenge.realm, challenge.params.get("service", ""), scope)
        async with self._tokens.locks.setdefault(key, asyncio.Lock()):
            current = self._tokens.by_key.get(key)
            if current is not None and f"Bearer {current}" != stale:
                return
            self._tokens.by_key[key] = await self._new_token(challenge, scope)

    async def _new_token(self, challenge: Challenge, scope: str) -> str:
        if has_userinfo(challenge.realm):
            # Never echoed: the realm's userinfo may be a password.
            raise UnsafeResponse(
                f"{self.host} named an auth realm with credentials in its URL; refused",
                registry=self.host,
            )
        url = token_url(challenge, scope)
        if url is None:
            raise Unauthorized(f"{self.host} sent an unusable auth challenge", registry=self.host)
        headers: dict[str, str] = {}
        if self._creds is not None:
            if not may_send_credentials(self.base_url, url, self._auth_hosts):
                log.warning(
                    "registry.credentials_withheld",
                    registry=self.host,
                    realm_host=urlsplit(url).netloc[:100],
                )
            elif not self._creds.is_token:
                headers["Authorization"] = basic_header(self._creds)
            elif self._creds.token is not None:
                headers["Authorization"] = f"Bearer {self._creds.token.get_secret_value()}"
        if (why := address_refusal(self._hostname, urlsplit(url).hostname or "")) is not None:
            raise UnsafeResponse(
                f"{self.host} named an auth realm at {why}; refused", registry=self.host
            )
        async with self._deadline(self.limits.deadline_for(0), "token request"):
            with transport_errors(self.host):
                self.requests += 1
                async with self._http.get(url, headers=headers, allow_redirects=False) as resp:
                    if resp.status != 200:
                        raise await error_for(resp, self.host, what="token")
                    body = await read_body(resp, _MAX_TOKEN_BODY)
        try:
            data = json.loads(body)
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError) as exc:
            raise Unauthorized(
                f"token answer from {self.host} is not JSON", registry=self.host
            ) from exc
        if not isinstance(token, str) or not token:
            raise Unauthorized(f"token answer from {self.host} has no token", registry=self.host)
        if not valid_token(token):
            # A line break in a header would split the request: refuse, and echo nothing.
            raise UnsafeResponse(
                f"token from {self.host} holds characters a header cannot carry "
                "(a line break, a space or non-ASCII); refused",
                registry=self.host,
            )
        return token

    @contextlib.asynccontextmanager
    async def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        repository: str = "",
        push: bool = False,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        ok: tuple[int, ...] = (200,),
        what: str = "",
        size: int | None = 0,
        redirects: bool = False,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """
        Send one request with auth; on 401, authenticate once and resend.

        Yields a response whose status is in *ok*; anything else raises. The
        request body must be re-sendable (bytes or None) if a 401 can occur.

        The request, reading its body included, must end within the endpoint's
        deadline for *size* bytes (None: for the ``Content-Length`` it answers), or
        raises `RegistryUnavailable`. With *redirects*, a redirect is followed where
        `redirect_target` allows it, without our credentials off this origin.
        """
        url = path_or_url if "://" in path_or_url else self._url(path_or_url)
        scope = self._scope(repository, push)
        subject = what or f"{method} request"
        for attempt in range(2):
            hdrs = dict(headers or {})
            if (auth := self._auth_header(scope)) is not None:
                hdrs["Authorization"] = auth
            async with (
                self.limits.slot(),
                self._deadline(self.limits.deadline_for(size or 0), subject, repository) as due,
            ):
                resp = await self._send(method, url, hdrs, data, repository)
                hops = 0
                try:
                    if redirects:
                        resp, hops = await self._follow(method, resp, hdrs, repository)
                    if size is None and resp.content_length:
                        # Scaled once the size is known: the headers came within the base.
                        due.reschedule(
                            (due.when() or 0.0) + self.limits.transfer_s(resp.content_length)
                        )
                    if "RateLimit-Remaining" in resp.headers and not hops:
                        self._observe_rate_headers(resp)
                    if resp.status == 429 and not hops and (wait := retry_after(resp)):
                        # Every request to the endpoint waits, not only the one refused.
                        self.limits.pause(min(wait, self._retry.wait_max_rate_limit))
                    if resp.status == 401 and attempt == 0 and not hops:
                        await self._on_unauthorized(resp, scope, auth)
                        continue
                    if resp.status not in ok:
                        raise await error_for(resp, self.host, repository, what)
                    with transport_errors(self.host, repository):
                        yield resp
                    return
                finally:
                    resp.release()
        raise Unauthorized(f"{self.host} refused our credentials", registry=self.host)

    async def _send(
        self, method: str, url: str, headers: Mapping[str, str], data: Any, repository: str
    ) -> aiohttp.ClientResponse:
        with transport_errors(self.host, repository):
            self.requests += 1
            return await self._http.request(
                method, url, headers=headers, data=_body(data), allow_redirects=False
            )

    async def _follow(
        self,
        method: str,
        resp: aiohttp.ClientResponse,
        headers: Mapping[str, str],
        repository: str,
    ) -> tuple[aiohttp.ClientResponse, int]:
        """
        Follow *resp*'s redirects (GET, HEAD): the final response and how many hops it took.

        Followed by hand, not by aiohttp: each hop is checked before drd connects to it.
        """
        hops = 0
        while resp.status in REDIRECT_STATUSES and "Location" in resp.headers:
            location, current = resp.headers["Location"], str(resp.url)
            resp.release()
            hops += 1
            url, refusal = redirect_target(self.base_url, current, location)
            if refusal is None and hops > MAX_REDIRECTS:
                refusal = f"more than {MAX_REDIRECTS} redirects"
            if refusal is not None:
                raise UnsafeResponse(
                    f"{self.host} sent {refusal}; refused",
                    registry=self.host,
                    repository=repository,
                )
            hop_headers = dict(headers)
            if not same_origin(url, self.base_url):
                hop_headers.pop("Authorization", None)  # object storage gets no credentials
            resp = await self._send(method, url, hop_headers, None, repository)
        return resp, hops

    @contextlib.asynccontextmanager
    async def _deadline(
        self, seconds: float, what: str, repository: str = ""
    ) -> AsyncIterator[asyncio.Timeout]:
        """Bound one request, body included, by *seconds*; past it, `RegistryUnavailable`."""
        begun = asyncio.get_running_loop().time()
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                yield deadline
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            allowed = (deadline.when() or begun) - begun
            raise RegistryUnavailable(
                f"{what} on {self.host} took longer than its deadline of {allowed:.1f} s",
                registry=self.host,
                repository=repository,
            ) from exc

    async def _on_unauthorized(
        self, resp: aiohttp.ClientResponse, scope: str, sent: str | None
    ) -> None:
        challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            raise Unauthorized(f"{self.host} answered 401 without a challenge", registry=self.host)
        self._tokens.challenge = challenge
        if challenge.scheme == "bearer":
            await self._fetch_token(challenge, scope, sent)
        elif challenge.scheme != "basic" or not (self._creds and not self._creds.is_token):
            raise Unauthorized(f"{self.host} wants credentials we do not have", registry=self.host)
        elif not self._basic_allowed():
            raise Unauthorized(
                f"{self.host} asks for a password over plain http; it was not sent",
                registry=self.host,
            )

    def _observe_rate_headers(self, resp: aiohttp.ClientResponse) -> None:
        """Slow down before a ``RateLimit-Remaining`` quota runs out, not after."""
        remaining = resp.headers.get("RateLimit-Remaining", "")
        limit = resp.headers.get("RateLimit-Limit", "")
        try:
            left = int(remaining.split(";")[0])
            total = int(limit.split(";")[0]) if limit else max(left, 1)
        except ValueError:
            return
        # Below a fifth of the quota, spread the remaining requests out; recover when refilled.
        self.limits.backoff_s = 0.0 if left * 5 >= total else min(1.0, 1.0 / max(left, 1))

    async def _retrying(self, op: str, fn: Any) -> Any:
        return await self._retry.call(op, fn)

    # ------------------------------------------------------------------ discovery

    async def ping(self) -> None:
        """Check that the endpoint speaks the distribution API (``GET /v2/``)."""

        async def go() -> None:
            async with self._request("GET", "/v2/", ok=(200,)):
                pass

        await self._retrying("registry.ping", go)

    async def probe(self, deadline_s: float = PROBE_DEADLINE_S) -> None:
        """
        Whether the endpoint can be reached at all: one ``GET /v2/``, never retried, within
        *deadline_s*. Any HTTP answer counts, an error status included (the requests that
        follow report those with their retries); a 401's challenge is kept, so a password
        goes with the next request instead of after a refusal.

        Raises:
            RegistryUnavailable: no connection, or no answer within *deadline_s*.
            RegistryError: TLS with the endpoint failed.
        """
        auth = self._auth_header(self._scope(""))
        headers = {"Authorization": auth} if auth is not None else {}
        async with self.limits.slot(), self._deadline(deadline_s, "reachability check"):
            resp = await self._send("GET", self._url("/v2/"), headers, None, "")
            try:
                if resp.status == 401 and self._tokens.challenge is None:
                    self._tokens.challenge = parse_challenge(
                        resp.headers.get("WWW-Authenticate", "")
                    )
            finally:
                resp.release()

    async def catalog(self) -> list[str]:
        """
        Every repository name from ``/v2/_catalog``, following ``Link`` pages.

        Raises `ListTooLong` past the endpoint's ``max_repositories``.
        """
        cap = self.limits.max_repositories
        names = await self._paged(f"/v2/_catalog?n={PAGE_SIZE}", "", "repositories", cap)
        valid = []
        for name in names:
            try:
                valid.append(validate_repository(name))
            except ValueError:
                log.warning("registry.bad_repository_name", registry=self.host, name=name[:100])
        return valid

    async def list_tags(self, repository: str) -> list[str]:
        """
        Every tag of *repository*, following ``Link`` pages; [] for an unknown repository.

        Names outside the tag grammar are dropped with a warning: a hostile registry's
        ``../other/manifests/x`` must never become part of a URL drd sends. Raises
        `ListTooLong` past the endpoint's ``max_tags``.
        """
        validate_repository(repository)
        try:
            first = f"/v2/{repository}/tags/list?n={PAGE_SIZE}"
            names = await self._paged(first, repository, "tags", self.limits.max_tags)
        except NotFound:
            return []
        valid = []
        for name in names:
            try:
                valid.append(validate_tag(name))
            except InvalidReference:
                log.warning(
                    "registry.bad_tag_name",
                    registry=self.host,
                    repository=repository,
                    tag=name[:100],
                )
        return valid

    async def _paged(self, first: str, repository: str, key: str, cap: int) -> list[str]:
        """Every entry of every page, at most *cap* in all (`ListTooLong` past it)."""
        items: list[str] = []
        seen: set[str] = set()
        url: str | None = self._url(first)
        while url is not None:
            if url in seen or len(seen) >= MAX_PAGES:
                raise RegistryError(f"{self.host} pagination loops at {url}", registry=self.host)
            seen.add(url)
            room = cap - len(items)
            page, link = await self._retrying(
                "registry.list", lambda u=url, r=room: self._page(u, repository, key, r)
            )
            if len(page) > room:
                raise self._too_long(repository, key, cap)
            items.extend(page)
            url = self._next_page(url, link)
        return list(dict.fromkeys(items))

    async def _page(self, url: str, repository: str, key: str, room: int) -> tuple[list[str], str]:
        """
        One page's entries (at most *room* + 1: one more says the cap is passed) and its
        ``Link`` header. Parsed as it streams: the page is never held whole.
        """
        entries: list[str] = []
        async with self._request(
            "GET", url, repository=repository, what=key, size=MAX_LIST_BODY
        ) as resp:
            link = resp.headers.get("Link", "")
            stream = page_entries(resp.content, key, byte_limit=MAX_LIST_BODY)
            try:
                async with contextlib.aclosing(stream):
                    async for entry in stream:
                        entries.append(entry)
                        if len(entries) > room:
                            break  # the rest is never read: the cap is already passed
            except PageUnreadable as exc:
                raise RegistryError(
                    f"{key} list from {self.host} {exc}", registry=self.host, repository=repository
                ) from exc
        return entries, link

    def _too_long(self, repository: str, key: str, cap: int) -> ListTooLong:
        if key == "tags":
            message = f"{repository} on {self.host} has more than {cap} tags (max_tags)"
        else:
            message = f"the catalog of {self.host} has more than {cap} repositories "
            message += "(max_repositories)"
        return ListTooLong(message, cap=cap, registry=self.host, repository=repository)

    def _next_page(self, current: str, link: str) -> str | None:
        """The next page from a ``Link: <…>; rel="next"`` header, refusing other hosts."""
        if not link or 'rel="next"' not in link:
            return None
        target = link.split(";", 1)[0].strip().lstrip("<").rstrip(">")
        try:
            url = urljoin(current, target)
            parts = urlsplit(url)
        except ValueError:  # e.g. "http://[::1/": not an address
            raise RegistryError(
                f"{self.host} sent a pagination link that does not parse", registry=self.host
            ) from None
        if parts.netloc != self.host or parts.scheme != urlsplit(current).scheme:
            raise RegistryError(
                f"{self.host} sent a pagination link to another host", registry=self.host
            )
        return url

    # ------------------------------------------------------------------ manifests

    async def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        """The descriptor behind *reference* (tag or digest), or None when absent."""
        validate_repository(repository)
        reference = checked_reference(reference)

        async def go() -> Descriptor | None:
            headers = {"Accept": mediatype.MANIFEST_ACCEPT}
            try:
                async with self._request(
                    "HEAD",
                    f"/v2/{repository}/manifests/{reference}",
                    repository=repository,
                    headers=headers,
                    what=f"manifest {reference}",
                ) as resp:
                    digest = resp.headers.get("Docker-Content-Digest", "")
                    media = resp.headers.get("Content-Type", "").split(";")[0]
                    size = int(resp.headers.get("Content-Length", "0") or 0)
            except NotFound:
                return None
            if not digest:
                return None  # a registry that omits the digest forces a GET
            return Descriptor(media, Digest.parse(digest), size)

        result: Descriptor | None = await self._retrying("registry.head_manifest", go)
        return result

    async def get_manifest(self, repository: str, reference: str | Digest) -> Manifest:
        """
        GET a manifest as bytes and parse it.

        A digest reference is checked against the bytes (`DigestMismatch`); a tag
        is checked against ``Docker-Content-Digest`` when the registry sends it.
        Bodies over 4 MiB are refused (`InvalidManifest`). Raises `NotFound`.
        """
        validate_repository(repository)
        reference = checked_reference(reference)
        expected = Digest.parse(reference) if ":" in reference else None

        async def go() -> Manifest:
            headers = {"Accept": mediatype.MANIFEST_ACCEPT}
            async with self._request(
                "GET",
                f"/v2/{repository}/manifests/{reference}",
                repository=repository,
                headers=headers,
                what=f"manifest {reference}",
                size=MAX_MANIFEST_BYTES,
            ) as resp:
                declared = int(resp.headers.get("Content-Length", "0") or 0)
                if declared > MAX_MANIFEST_BYTES:
                    raise InvalidManifest(
                        f"manifest {repository}@{reference} is {declared} bytes, over the "
                        f"{MAX_MANIFEST_BYTES} byte limit",
                        repository=repository,
                    )
                raw = await read_body(resp, MAX_MANIFEST_BYTES)
                served_as = resp.headers.get("Content-Type", "").split(";")[0]
                header_digest = resp.headers.get("Docker-Content-Digest", "")
            check = expected
            if check is None and header_digest:
                check = Digest.parse(header_digest)
            return Manifest.parse(raw, served_as, check)

        result: Manifest = await self._retrying("registry.get_manifest", go)
        return result

    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> Digest:
        """PUT *manifest* byte for byte; raise `DigestMismatch` if the registry disagrees."""
        validate_repository(repository)
        reference = checked_reference(reference)

        async def go() -> Digest:
            async with self._request(
                "PUT",
                f"/v2/{repository}/manifests/{reference}",
                repository=repository,
                push=True,
                headers={"Content-Type": manifest.media_type},
                data=manifest.raw,
                size=len(manifest.raw),
                ok=(200, 201, 202),
                what=f"manifest {reference}",
            ) as resp:
                reported = resp.headers.get("Docker-Content-Digest", "")
            if reported and Digest.parse(reported) != manifest.digest:
                raise DigestMismatch(
                    f"{self.host} stored {repository}@{manifest.digest} as {reported}",
                    expected=str(manifest.digest),
                    actual=reported,
                )
            return manifest.digest

        result: Digest = await self._retrying("registry.put_manifest", go)
        return result

    async def delete_manifest(self, repository: str, digest: Digest) -> None:
        """DELETE a manifest by digest (and so every tag on it). Missing is not an error."""
        validate_repository(repository)

        async def go() -> None:
            with contextlib.suppress(NotFound):
                async with self._request(
                    "DELETE",
                    f"/v2/{repository}/manifests/{digest}",
                    repository=repository,
                    push=True,
                    ok=(200, 202),
                    what=f"manifest {digest}",
                ):
                    pass

        await self._retrying("registry.delete_manifest", go)

    async def delete_blob(self, repository: str, digest: Digest) -> bool:
        """
        DELETE a blob from *repository* (distribution unlinks it there; its garbage
        collection reclaims the bytes). True when deleted or already absent, False when
        the registry does not allow deleting blobs (405 or ``UNSUPPORTED``).
        """
        validate_repository(repository)

        async def go() -> bool:
            try:
                async with self._request(
                    "DELETE",
                    f"/v2/{repository}/blobs/{digest}",
                    repository=repository,
                    push=True,
                    ok=(200, 202),
                    what=f"blob {digest}",
                ):
                    return True
            except NotFound:
                return True
            except RegistryError as exc:
                if exc.status == 405 or exc.code == "UNSUPPORTED":
                    return False
                raise

        result: bool = await self._retrying("registry.delete_blob", go)
        return result

    # ------------------------------------------------------------------ referrers

    @property
    def has_referrers_api(self) -> bool | None:
        """Whether the registry answered the referrers API; None until it was asked."""
        return self._referrers_api

    async def referrers(self, repository: str, digest: Digest) -> list[Descriptor]:
        """
        The manifests whose ``subject`` is *digest*: the referrers API when the registry
        has it (remembered per client), else the ``sha256-<hex>`` fallback tag's index.
        """
        listed = await self.referrers_by_api(repository, digest)
        if listed is not None:
            return listed
        try:
            index = await self.get_manifest(repository, fallback_tag(digest))
        except NotFound:
            return []
        return list(index.manifests) if index.is_index else []

    async def referrers_by_api(
        self, repository: str, digest: Digest, artifact_type: str = ""
    ) -> list[Descriptor] | None:
        """
        *digest*'s referrers through the referrers API, every page (``Link: rel="next"``),
        at most `MAX_REFERRERS`; narrowed to *artifact_type* when given (by the registry
        when it applies the filter, else here). None when the registry has no referrers
        API (remembered per client: asked once, by one call while the others wait).
        """
        validate_repository(repository)
        if self._referrers_api is None:
            async with self._referrers_probe:
                if self._referrers_api is None:
                    return await self._referrers_listing(repository, digest, artifact_type)
        if self._referrers_api is False:
            return None
        return await self._referrers_listing(repository, digest, artifact_type)

    async def _referrers_listing(
        self, repository: str, digest: Digest, artifact_type: str
    ) -> list[Descriptor] | None:
        query = f"?{urlencode({'artifactType': artifact_type})}" if artifact_type else ""
        url: str | None = self._url(f"/v2/{repository}/referrers/{digest}{query}")
        found: dict[Digest, Descriptor] = {}
        pages: set[str] = set()
        while url is not None:
            if url in pages or len(pages) >= MAX_PAGES:
                raise RegistryError(f"{self.host} pagination loops at {url}", registry=self.host)
            pages.add(url)
            try:
                page, link = await self._retrying(
                    "registry.referrers", lambda u=url: self._referrers_page(u, repository)
                )
            except UnsupportedAPI:
                self._referrers_api = False
                return None
            for desc in page:
                found.setdefault(desc.digest, desc)
            if len(found) > MAX_REFERRERS:
                raise RegistryError(
                    f"{digest} has more than {MAX_REFERRERS} referrers on {self.host}",
                    registry=self.host,
                    repository=repository,
                )
            url = self._next_page(url, link)
        listed = list(found.values())
        if artifact_type:
            listed = [d for d in listed if d.artifact_type == artifact_type]
        return listed

    async def _referrers_page(self, url: str, repository: str) -> tuple[list[Descriptor], str]:
        """One page of the referrers API and its ``Link`` header; `UnsupportedAPI` if none."""
        try:
            async with self._request(
                "GET",
                url,
                repository=repository,
                headers={"Accept": mediatype.OCI_INDEX},
                what="referrers",
                size=MAX_MANIFEST_BYTES,
            ) as resp:
                raw = await read_body(resp, MAX_MANIFEST_BYTES)
                is_index = resp.headers.get("Content-Type", "").startswith(mediatype.OCI_INDEX)
                link = resp.headers.get("Link", "")
        except NotFound as exc:
            raise UnsupportedAPI(f"{self.host} has no referrers API", registry=self.host) from exc
        if not is_index:
            raise UnsupportedAPI(f"{self.host} has no referrers API", registry=self.host)
        self._referrers_api = True
        return list(Manifest.parse(raw, mediatype.OCI_INDEX).manifests), link

    # ------------------------------------------------------------------ blobs

    async def has_blob(self, repository: str, digest: Digest) -> int | None:
        """The blob's size when *repository* has it, else None (``HEAD``)."""
        validate_repository(repository)

        async def go() -> int | None:
            try:
                async with self._request(
                    "HEAD",
                    f"/v2/{repository}/blobs/{digest}",
                    repository=repository,
                    what=f"blob {digest}",
                    redirects=True,
                ) as resp:
                    return int(resp.headers.get("Content-Length", "0") or 0)
            except NotFound:
                return None

        result: int | None = await self._retrying("registry.head_blob", go)
        return result

    async def get_blob_bytes(self, repository: str, digest: Digest, max_size: int) -> bytes:
        """A small blob, whole and digest-checked; `SizeMismatch` past *max_size*."""
        validate_repository(repository)

        async def go() -> bytes:
            async with self._request(
                "GET",
                f"/v2/{repository}/blobs/{digest}",
                repository=repository,
                what=f"blob {digest}",
                size=max_size,
                redirects=True,
            ) as resp:
                data = await read_body(resp, max_size)
            if len(data) > max_size:
                raise SizeMismatch(
                    f"blob {digest} is larger than {max_size} bytes",
                    expected=max_size,
                    actual=len(data),
                    digest=str(digest),
                )
            if not digest.matches(data):
                actual = Digest.of(data, digest.algorithm)
                raise DigestMismatch(
                    f"blob {digest} from {self.host} hashes to {actual}",
                    expected=str(digest),
                    actual=str(actual),
                )
            return data

        result: bytes = await self._retrying("registry.get_blob", go)
        return result

    @contextlib.asynccontextmanager
    async def open_blob(
        self, repository: str, digest: Digest, size: int | None = None
    ) -> AsyncIterator[aiohttp.StreamReader]:
        """
        A streaming GET of one blob; the caller hashes what it reads.

        The read must end within the deadline for *size* bytes (the descriptor's size;
        without it, the ``Content-Length`` the registry declares), or the caller sees
        `RegistryUnavailable`. A redirect to object storage is followed without
        credentials, where `redirect_target` allows it.
        """
        validate_repository(repository)
        async with self._request(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            repository=repository,
            what=f"blob {digest}",
            size=size,
            redirects=True,
        ) as resp:
            yield resp.content

    async def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool:
        """Cross-repository mount; True when the registry mounted it (201)."""
        mounted, location = await self._mount(repository, digest, from_repository)
        if not mounted and location:
            await self.cancel_upload(repository, location)
        return mounted

    async def claim_blob(self, repository: str, digest: Digest, from_repository: str) -> str | None:
        """
        Mount *digest* from *from_repository* or open its upload: one POST either way.

        None when the blob is now in *repository*: mounted (201), or already there when
        *from_repository* is *repository* itself. Otherwise the URL of the upload the
        registry opened instead (202), for `upload_blob_stream`: a registry that cannot
        mount falls back to an upload (OCI distribution spec), so a miss costs nothing.
        """
        mounted, location = await self._mount(repository, digest, from_repository)
        if mounted:
            return None
        if not location:
            raise RegistryError(f"{self.host} gave no upload location", registry=self.host)
        return self._upload_url(location)

    async def _mount(
        self, repository: str, digest: Digest, from_repository: str
    ) -> tuple[bool, str]:
        """POST a mount: (mounted, the ``Location`` of the upload opened instead)."""
        validate_repository(repository)
        validate_repository(from_repository)

        async def go() -> tuple[bool, str]:
            async with self._request(
                "POST",
                f"/v2/{repository}/blobs/uploads/?mount={digest}&from={from_repository}",
                repository=repository,
                push=True,
                ok=(201, 202),
                what="mount",
            ) as resp:
                return resp.status == 201, resp.headers.get("Location", "")

        result: tuple[bool, str] = await self._retrying("registry.mount_blob", go)
        return result

    async def _start_upload(self, repository: str) -> str:
        async with self._request(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            repository=repository,
            push=True,
            ok=(202,),
            what="upload",
        ) as resp:
            location = resp.headers.get("Location", "")
        if not location:
            raise RegistryError(f"{self.host} gave no upload location", registry=self.host)
        return self._upload_url(location)

    def _upload_url(self, location: str) -> str:
        """An upload ``Location`` made absolute; `RegistryError` when it leaves this registry."""
        try:
            url = urljoin(self._url("/"), location)
            parts, ours = urlsplit(url), urlsplit(self.base_url)
        except ValueError:  # e.g. "http://[::1/": not an address
            raise RegistryError(
                f"{self.host} sent an upload location that does not parse", registry=self.host
            ) from None
        if (parts.scheme, parts.netloc) != (ours.scheme, ours.netloc):
            # Uploads elsewhere would carry our credentials there: refuse.
            raise RegistryError(
                f"{self.host} sent an upload location on another host", registry=self.host
            )
        return url

    async def cancel_upload(self, repository: str, location: str) -> None:
        """Abandon an upload session (best effort: a registry error is swallowed)."""
        with contextlib.suppress(RegistryError):
            url = self._upload_url(location)
            async with self._request(
                "DELETE", url, repository=repository, push=True, ok=(204, 200, 404)
            ):
                pass

    async def upload_blob_bytes(self, repository: str, digest: Digest, data: bytes) -> None:
        """Monolithic upload of a small blob held in memory."""
        validate_repository(repository)

        async def go() -> None:
            url = await self._start_upload(repository)
            await self._finish_upload(repository, url, digest, data, len(data))

        await self._retrying("registry.upload_blob", go)

    async def upload_blob_stream(
        self,
        repository: str,
        digest: Digest,
        size: int,
        chunks: AsyncIterator[bytes],
        *,
        upload_url: str | None = None,
    ) -> None:
        """
        Upload one blob from a stream: one streamed PUT, or PATCHes of the endpoint's chunk_size.

        Into *upload_url* when `claim_blob` opened one, else into a new upload session.
        Not retried here: the stream cannot be replayed. The caller restarts the
        whole transfer with a new upload session; `MonolithicUploadRefused` (413 or 416
        to a whole-blob PUT) switches this endpoint to chunked uploads first, so the
        restarted transfer goes up in PATCHes.
        """
        validate_repository(repository)
        url = upload_url or await self._start_upload(repository)
        limits = self.limits
        chunk_size = limits.chunk_size or FALLBACK_CHUNK_SIZE
        try:
            if not limits.refuses_monolithic and (limits.chunk_size is None or size <= chunk_size):
                await self._finish_upload(repository, url, digest, chunks, size, may_refuse=True)
                return
            url = await self._patch_chunks(repository, url, chunks, size, chunk_size)
            await self._finish_upload(repository, url, digest, None, 0)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.cancel_upload(repository, url))
            raise

    async def _patch_chunks(
        self, repository: str, url: str, chunks: AsyncIterator[bytes], size: int, chunk_size: int
    ) -> str:
        # Each PATCH body streams from the blob stream, not from a buffer: memory stays at
        # one read chunk per transfer whatever the PATCH size (64 MiB buffers, 8 at once,
        # would be half a GiB).
        portions = _Portions(chunks)
        offset = 0
        while offset < size:
            length = min(chunk_size, size - offset)
            url = await self._patch(repository, url, portions.take(length), offset, length)
            offset += length
        return url

    async def _patch(
        self, repository: str, url: str, data: AsyncIterator[bytes], offset: int, length: int
    ) -> str:
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + length - 1}",
            "Content-Length": str(length),
        }
        async with self._request(
            "PATCH",
            url,
            repository=repository,
            push=True,
            headers=headers,
            data=data,
            ok=(202,),
            what="upload chunk",
            size=length,
        ) as resp:
            location = resp.headers.get("Location", url)
        return self._upload_url(location)

    async def _finish_upload(
        self,
        repository: str,
        url: str,
        digest: Digest,
        data: Any,
        size: int,
        *,
        may_refuse: bool = False,
    ) -> None:
        """
        The closing PUT, with *data* as its body (None after PATCHes).

        With *may_refuse* (a whole blob in one PUT), a 413 or 416 answer switches the
        endpoint to chunked uploads and raises `MonolithicUploadRefused`.
        """
        sep = "&" if "?" in url else "?"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        refusals = MONOLITHIC_REFUSALS if may_refuse else ()
        async with self._request(
            "PUT",
            f"{url}{sep}digest={digest}",
            repository=repository,
            push=True,
            headers=headers,
            data=data,
            ok=(201, 204, *refusals),
            what=f"blob {digest}",
            size=size,
        ) as resp:
            status = resp.status
            reported = resp.headers.get("Docker-Content-Digest", "")
        if status in refusals:
            self.limits.refuses_monolithic = True
            chunk_size = self.limits.chunk_size or FALLBACK_CHUNK_SIZE
            log.warning(
                "registry.chunked_upload_fallback",
                registry=self.host,
                status=status,
                size=size,
                chunk_size=chunk_size,
            )
            raise MonolithicUploadRefused(
                f"{self.host} refused blob {digest} ({size} bytes) in one request "
                f"(HTTP {status}); uploading in PATCHes of {chunk_size} bytes from now on",
                registry=self.host,
                repository=repository,
                status=status,
            )
        if reported and reported != str(digest):
            raise DigestMismatch(
                f"{self.host} stored blob {digest} as {reported[:80]}",
                expected=str(digest),
                actual=reported[:80],
            )


def _body(data: Any) -> Any:
    """Bytes over 1 MiB go as a fresh BytesIO: aiohttp warns that raw bytes block the loop."""
    if isinstance(data, bytes) and len(data) > 1024 * 1024:
        return io.BytesIO(data)
    return data


def checked_reference(reference: str | Digest) -> str:
    """
    *reference* as it may appear in a URL: a digest, or a tag in the OCI grammar.

    Raises `InvalidReference` for anything else, before a request is made.
    """
    if isinstance(reference, Digest):
        return str(reference)
    if ":" in reference:
        return str(Digest.parse(reference))
    return validate_tag(reference)
