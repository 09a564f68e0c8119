"""
A fault-injecting HTTP proxy on loopback, in front of a real registry or moto's S3.

`FaultProxy` forwards every request to its upstream and, per rule, misbehaves
instead: answers 429 (with ``Retry-After``) or 5xx, resets the connection, stalls
past the client's timeout, truncates a body mid-stream, trickles a body a few bytes
at a time, flips a byte of a body, or serves a body of the test's choosing. Rules
match a request *kind* (``blob_get``, ``upload_patch``, ``s3_put``, …), a method
and a path pattern, and fire a bounded
number of times. Every request is recorded with its arrival time, so tests count
calls and measure rates at the proxy, where drd cannot fool them.

It can also emulate the OCI 1.1 referrers API in front of distribution 2.8,
which has none: manifests with a ``subject`` pushed through the proxy (or found
under the repository's tags) are listed at ``/v2/<name>/referrers/<digest>``.

The proxy runs its own event loop in a thread, so it serves subprocesses, sync
tests and async tests alike; it listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Self
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

# Request kinds a rule can name.
REGISTRY_KINDS = (
    "token",
    "ping",
    "catalog",
    "tags_list",
    "manifest_head",
    "manifest_get",
    "manifest_put",
    "manifest_delete",
    "blob_head",
    "blob_get",
    "blob_delete",
    "blob_mount",
    "upload_post",
    "upload_patch",
    "upload_put",
    "upload_status",
    "upload_delete",
    "referrers",
)
S3_KINDS = ("s3_put", "s3_get", "s3_head", "s3_list", "s3_multipart", "s3_delete")

# Hop-by-hop headers, and those aiohttp recomputes from the body it sends.
_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Expect",
        "Content-Length",
    )
)

_NAME = r"(?P<name>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
_MANIFEST_PATH = re.compile(rf"^/v2/{_NAME}/manifests/(?P<ref>[^/]+)$")
_REFERRERS_PATH = re.compile(rf"^/v2/{_NAME}/referrers/(?P<ref>[^/]+)$")
_REGISTRY_PATHS = (
    (re.compile(rf"^/v2/{_NAME}/tags/list$"), "tags_list"),
    (_MANIFEST_PATH, "manifest"),
    (re.compile(rf"^/v2/{_NAME}/blobs/uploads/?$"), "upload_start"),
    (re.compile(rf"^/v2/{_NAME}/blobs/uploads/(?P<uuid>[^/]+)$"), "upload"),
    (re.compile(rf"^/v2/{_NAME}/blobs/(?P<ref>[^/]+)$"), "blob"),
    (_REFERRERS_PATH, "referrers"),
)


def classify(method: str, path: str, query: str = "", *, s3: bool = False) -> str:
    """The request kind of *method* *path*: what a rule's ``kinds`` name."""
    method = method.upper()
    if s3:
        return _classify_s3(method, path, query)
    if path.startswith("/token"):
        return "token"
    if path.rstrip("/") == "/v2":
        return "ping"
    if path == "/v2/_catalog":
        return "catalog"
    for pattern, family in _REGISTRY_PATHS:
        if pattern.match(path) is None:
            continue
        if family == "manifest":
            return {
                "HEAD": "manifest_head",
                "PUT": "manifest_put",
                "DELETE": "manifest_delete",
            }.get(method, "manifest_get")
        if family == "blob":
            return {"HEAD": "blob_head", "DELETE": "blob_delete"}.get(method, "blob_get")
        if family == "upload_start":
            return "blob_mount" if "mount=" in query else "upload_post"
        if family == "upload":
            return {
                "PATCH": "upload_patch",
                "PUT": "upload_put",
                "DELETE": "upload_delete",
            }.get(method, "upload_status")
        return family
    return "other"


def _classify_s3(method: str, path: str, query: str) -> str:
    params = parse_qs(query, keep_blank_values=True)
    key = path.lstrip("/").partition("/")[2]
    if method == "PUT":
        return "s3_put"
    if method == "POST":
        return "s3_multipart"
    if method == "DELETE":
        return "s3_delete"
    if method == "HEAD":
        return "s3_head"
    if not key or "list-type" in params:
        return "s3_list"
    return "s3_get"


# ---------------------------------------------------------------------------
# faults and rules


@dataclass(frozen=True)
class Reply:
    """A response as the proxy will send it: status, headers, whole body."""

    status: int
    headers: CIMultiDict[str]
    body: bytes


@dataclass(frozen=True)
class Fault:
    """What the proxy does instead of (or on top of) forwarding. Build with the class methods."""

    action: str
    name: str
    status: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    seconds: float = 0.0
    fraction: float = 0.5
    edit: Callable[[Reply], Reply] | None = None
    step: int = 1  # bytes per write, for trickle

    @classmethod
    def http(
        cls, status: int, *, retry_after: float | None = None, headers: Mapping[str, str] = {}
    ) -> Fault:
        """Answer *status* without forwarding (429 with ``Retry-After`` when given)."""
        extra = dict(headers)
        if retry_after is not None:
            extra["Retry-After"] = f"{retry_after:g}"
        body = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "injected"}]})
        return cls("status", f"http{status}", status=status, headers=extra, body=body.encode())

    @classmethod
    def reset(cls) -> Fault:
        """Reset the connection (TCP RST) before forwarding anything."""
        return cls("reset", "reset")

    @classmethod
    def stall(cls, seconds: float = 3.0) -> Fault:
        """Forward, then hold the answer for *seconds*: the upstream acted, the client waits."""
        return cls("stall", "stall", seconds=seconds)

    @classmethod
    def truncate(cls, fraction: float = 0.5) -> Fault:
        """Forward, send the headers and *fraction* of the body, then reset the connection."""
        return cls("truncate", "truncate", fraction=fraction)

    @classmethod
    def corrupt(cls) -> Fault:
        """
        Forward, then flip one bit in the middle of the body.

        A bodiless answer gets its ``Docker-Content-Digest`` header flipped instead;
        with neither, the answer passes unchanged.
        """
        return cls("corrupt", "corrupt")

    @classmethod
    def respond(
        cls, status: int = 200, body: bytes = b"", headers: Mapping[str, str] = {}
    ) -> Fault:
        """Answer with exactly this, without forwarding (hostile content, redirects)."""
        return cls("respond", f"respond{status}", status=status, body=body, headers=dict(headers))

    @classmethod
    def rewrite(cls, edit: Callable[[Reply], Reply], name: str = "rewrite") -> Fault:
        """Forward, then answer with *edit* applied to the upstream's reply."""
        return cls("rewrite", name, edit=edit)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait *seconds*, then forward normally."""
        return cls("delay", "delay", seconds=seconds)

    @classmethod
    def trickle(cls, seconds: float = 0.1, step: int = 1) -> Fault:
        """
        Forward, then send the headers at once and the body *step* bytes every *seconds*.

        Each read gets data long before a read timeout: only a deadline for the whole
        request ends it. The proxy stops when the client hangs up.
        """
        return cls("trickle", "trickle", seconds=seconds, step=max(step, 1))


@dataclass
class Rule:
    """
    When *fault* fires: kind, method and path must all match; at most *times* (None: always).

    *path* is a regex searched in the path and query (``/token?scope=repository:…`` too),
    so a rule naming a repository leaves other tests' requests alone.
    """

    fault: Fault
    kinds: frozenset[str] | None = None
    method: str | None = None
    path: re.Pattern[str] | None = None
    times: int | None = None
    skip: int = 0
    min_body: int = 0
    matched: int = 0
    fired: int = 0

    def matches(self, kind: str, method: str, target: str, body_size: int = 0) -> bool:
        """Whether this request (``target`` is path and query) is one the rule is about."""
        return (
            body_size >= self.min_body
            and (self.kinds is None or kind in self.kinds)
            and (self.method is None or self.method == method)
            and (self.path is None or self.path.search(target) is not None)
        )

    def take(self) -> bool:
        """Count one matching request; True when the fault fires on it."""
        self.matched += 1
        if self.matched <= self.skip or (self.times is not None and self.fired >= self.times):
            return False
        self.fired += 1
        return True


@dataclass
class Seen:
    """One request as it arrived at the proxy, and what it got."""

    at: float  # time.monotonic() at arrival
    method: str
    path: str
    query: str
    kind: str
    headers: dict[str, str]
    body_size: int
    fault: str = ""  # the fault applied, "" when forwarded untouched
    status: int | None = None  # what the client was sent (None: reset or no answer)
    done: float | None = None

    @property
    def target(self) -> str:
        """Path and query, as rules and filters see them."""
        return f"{self.path}?{self.query}" if self.query else self.path


# ---------------------------------------------------------------------------
# a threaded aiohttp server


class ThreadedServer:
    """An aiohttp application served from its own thread and event loop on 127.0.0.1."""

    def __init__(self, name: str = "server") -> None:
        self.name = name
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}"

    def build_app(self) -> web.Application:
        """The application to serve; subclasses override."""
        raise NotImplementedError

    async def on_start(self) -> None:
        """Run in the server's loop before it accepts connections."""

    async def on_stop(self) -> None:
        """Run in the server's loop after it stopped accepting connections."""

    def start(self) -> None:
        """Start serving; returns once the port is bound."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._bind())
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._unbind())
            loop.close()

        self._thread = threading.Thread(target=serve, name=self.name, daemon=True)
        self._thread.start()
        ready.wait(timeout=15)
        if failure:
            raise failure[0]
        if not self.port:
            raise RuntimeError(f"{self.name} did not start")

    async def _bind(self) -> None:
        await self.on_start()
        # Short shutdown: a stalled handler must not hold the test's teardown.
        self._runner = web.AppRunner(
            self.build_app(), access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _unbind(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.on_stop()

    def stop(self) -> None:
        """Stop serving and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=15)
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------
# the proxy


class FaultProxy(ThreadedServer):
    """
    A reverse proxy to *upstream* that applies `Rule`s and records every request.

    *routes* sends paths under a prefix elsewhere (``{"/token": token_server.url}``),
    so one proxy fronts a registry and its token server. With *s3*, kinds are the
    S3 ones. With *emulate_referrers*, ``GET /v2/<name>/referrers/<digest>`` is
    answered by the proxy (distribution 2.8 has no referrers API).
    """

    def __init__(
        self,
        upstream: str | None = None,
        *,
        routes: Mapping[str, str] | None = None,
        s3: bool = False,
        emulate_referrers: bool = False,
        name: str = "fault-proxy",
    ) -> None:
        super().__init__(name)
        self.upstream = upstream.rstrip("/") if upstream else None
        self.routes = dict(routes or {})
        self.s3 = s3
        self.emulate_referrers = emulate_referrers
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._seen: list[Seen] = []
        self._session: aiohttp.ClientSession | None = None
        # (repository, subject digest) -> {manifest digest: descriptor}
        self._referrers: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}

    # -- configuration, from the test's thread

    def add(
        self,
        fault: Fault,
        *,
        kinds: str | tuple[str, ...] | frozenset[str] | None = None,
        method: str | None = None,
        path: str | None = None,
        times: int | None = None,
        skip: int = 0,
        min_body: int = 0,
    ) -> Rule:
        """
        Add a rule; the first rule that matches a request and still fires wins.

        With *min_body*, only requests whose body holds at least that many bytes match
        (a registry refusing large uploads).
        """
        if isinstance(kinds, str):
            kinds = (kinds,)
        rule = Rule(
            fault,
            frozenset(kinds) if kinds is not None else None,
            method.upper() if method else None,
            re.compile(path) if path else None,
            times,
            skip,
            min_body,
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        """Drop one rule."""
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        """Drop every rule and forget every request recorded."""
        with self._lock:
            self._rules.clear()
            self._seen.clear()

    def requests(
        self, kind: str | None = None, *, method: str | None = None, path: str | None = None
    ) -> list[Seen]:
        """Recorded requests, oldest first, optionally narrowed (*path* searches path and query)."""
        pattern = re.compile(path) if path else None
        with self._lock:
            seen = list(self._seen)
        return [
            s
            for s in seen
            if (kind is None or s.kind == kind)
            and (method is None or s.method == method.upper())
            and (pattern is None or pattern.search(s.target))
        ]

    def calls(
        self, kind: str | None = None, *, method: str | None = None, path: str | None = None
    ) -> int:
        """How many requests of that kind (method, path) arrived."""
        return len(self.requests(kind, method=method, path=path))

    def wait_idle(self, path: str | None = None, timeout: float = 15.0) -> None:
        """
        Block until no request (matching *path*) is still being handled.

        A client that gave up may leave a complete request behind: the proxy still
        forwards it, and the upstream still acts on it, as a real registry would.
        """
        deadline = time.monotonic() + timeout
        while any(s.done is None for s in self.requests(path=path)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still busy after {timeout}s")
            time.sleep(0.02)

    def add_referrer(self, repository: str, subject: str, descriptor: Mapping[str, Any]) -> None:
        """List *descriptor* among *subject*'s referrers in *repository* (emulated API)."""
        with self._lock:
            key = (repository, subject)
            self._referrers.setdefault(key, {})[str(descriptor["digest"])] = dict(descriptor)

    # -- serving, in the proxy's thread

    async def on_start(self) -> None:
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=120),
            connector=aiohttp.TCPConnector(limit=256),
        )

    async def on_stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def _match(self, kind: str, method: str, path: str, body_size: int = 0) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(kind, method, path, body_size) and rule.take():
                    return rule.fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        kind = classify(request.method, request.path, request.query_string, s3=self.s3)
        seen = Seen(
            at=time.monotonic(),
            method=request.method,
            path=request.path,
            query=request.query_string,
            kind=kind,
            headers=dict(request.headers),
            body_size=len(body),
        )
        with self._lock:
            self._seen.append(seen)
        fault = self._match(kind, request.method, seen.target, len(body))
        seen.fault = fault.name if fault else ""
        try:
            return await self._apply(request, body, kind, fault, seen)
        finally:
            seen.done = time.monotonic()

    async def _apply(
        self, request: web.Request, body: bytes, kind: str, fault: Fault | None, seen: Seen
    ) -> web.StreamResponse:
        if fault is None:
            return self._send(await self._answer(request, body, kind), seen)
        match fault.action:
            case "status" | "respond":
                headers = CIMultiDict(fault.headers)
                if fault.action == "status":
                    headers.setdefault("Content-Type", "application/json")
                return self._send(Reply(fault.status, headers, fault.body), seen)
            case "reset":
                return self._reset(request)
            case "delay":
                await asyncio.sleep(fault.seconds)
                return self._send(await self._answer(request, body, kind), seen)
        reply = await self._answer(request, body, kind)
        match fault.action:
            case "stall":
                await asyncio.sleep(fault.seconds)
            case "corrupt":
                reply = corrupted(reply)
            case "rewrite":
                assert fault.edit is not None
                reply = fault.edit(reply)
            case "truncate":
                return await self._truncated(request, reply, fault.fraction, seen)
            case "trickle":
                return await self._trickled(request, reply, fault, seen)
        return self._send(reply, seen)

    async def _answer(self, request: web.Request, body: bytes, kind: str) -> Reply:
        if kind == "referrers" and self.emulate_referrers:
            return await self._referrers_reply(request)
        reply = await self._forward(request, body)
        if kind == "manifest_put" and self.emulate_referrers and reply.status == 201:
            self._note_referrer(request, body, reply)
        return reply

    def _upstream_for(self, path: str) -> str:
        for prefix, target in self.routes.items():
            if path.startswith(prefix):
                return target.rstrip("/")
        if self.upstream is None:
            raise web.HTTPBadGateway(text="no upstream configured")
        return self.upstream

    async def _forward(self, request: web.Request, body: bytes) -> Reply:
        assert self._session is not None
        url = self._upstream_for(request.path) + request.path_qs
        # Host is kept: distribution builds upload Locations from it, S3 signs it.
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP)
        try:
            async with self._session.request(
                request.method,
                url,
                headers=headers,
                data=body if body or request.method in ("PUT", "POST", "PATCH") else None,
                allow_redirects=False,
            ) as resp:
                data = await resp.read()
                out = CIMultiDict(
                    (k, v)
                    for k, v in resp.headers.items()
                    if k.lower() not in _HOP or (k.lower() == "content-length" and not data)
                )
                return Reply(resp.status, out, data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Reply(502, CIMultiDict(), f"upstream failed: {exc}".encode())

    def _send(self, reply: Reply, seen: Seen) -> web.Response:
        seen.status = reply.status
        headers = CIMultiDict(reply.headers)
        if reply.body:
            headers.pop("Content-Length", None)
            return web.Response(status=reply.status, headers=headers, body=reply.body)
        # Bodiless (HEAD): keep the upstream's Content-Length, it is the answer.
        return web.Response(status=reply.status, headers=headers)

    def _reset(self, request: web.Request) -> web.Response:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return web.Response(status=599)

    async def _truncated(
        self, request: web.Request, reply: Reply, fraction: float, seen: Seen
    ) -> web.StreamResponse:
        seen.status = reply.status
        transport = request.transport
        if transport is None:
            return web.Response(status=599)
        headers = CIMultiDict(reply.headers)
        if reply.body:
            headers["Content-Length"] = str(len(reply.body))
        reason = "OK" if reply.status < 400 else "Error"
        head = f"HTTP/1.1 {reply.status} {reason}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        keep = reply.body[: int(len(reply.body) * fraction)]
        # Written by hand, not through aiohttp: the response must stop mid-body.
        transport.write(head.encode("latin-1") + (keep if request.method != "HEAD" else b""))
        await asyncio.sleep(0.05)
        return self._reset(request)

    async def _trickled(
        self, request: web.Request, reply: Reply, fault: Fault, seen: Seen
    ) -> web.StreamResponse:
        seen.status = reply.status
        headers = CIMultiDict(reply.headers)
        headers["Content-Length"] = str(len(reply.body))
        response = web.StreamResponse(status=reply.status, headers=headers)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for start in range(0, len(reply.body), fault.step):
                await response.write(reply.body[start : start + fault.step])
                await asyncio.sleep(fault.seconds)
            await response.write_eof()
        return response

    # -- the emulated referrers API

    def _note_referrer(self, request: web.Request, body: bytes, reply: Reply) -> None:
        match = _MANIFEST_PATH.match(request.path)
        try:
            doc = json.loads(body)
        except ValueError:
            return
        if match is None or not isinstance(doc, dict) or not isinstance(doc.get("subject"), dict):
            return
        subject = str(doc["subject"].get("digest", ""))
        reply.headers["OCI-Subject"] = subject
        self.add_referrer(match.group("name"), subject, _descriptor_of(body, doc, request))

    async def _referrers_reply(self, request: web.Request) -> Reply:
        match = _REFERRERS_PATH.match(request.path)
        assert match is not None
        assert self._session is not None
        name, subject = match.group("name"), match.group("ref")
        found = await self._scan_tags(request, name, subject)
        with self._lock:
            found.update(self._referrers.get((name, subject), {}))
        wanted = request.query.get("artifactType")
        entries = [d for d in found.values() if not wanted or d.get("artifactType") == wanted]
        doc = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": sorted(entries, key=lambda d: str(d["digest"])),
        }
        headers = CIMultiDict({"Content-Type": "application/vnd.oci.image.index.v1+json"})
        if wanted:
            headers["OCI-Filters-Applied"] = "artifactType"
        return Reply(200, headers, json.dumps(doc).encode())

    async def _scan_tags(
        self, request: web.Request, name: str, subject: str
    ) -> dict[str, dict[str, Any]]:
        """Referrers found under the repository's tags at the upstream."""
        assert self._session is not None
        base = self._upstream_for(request.path)
        given = request.headers.get("Authorization")
        auth = {"Authorization": given} if given else {}
        found: dict[str, dict[str, Any]] = {}
        async with self._session.get(f"{base}/v2/{name}/tags/list", headers=auth) as resp:
            listing = await resp.json() if resp.status == 200 else {}
        tags = listing.get("tags") or []
        accept = {
            **auth,
            "Accept": "application/vnd.oci.image.manifest.v1+json,"
            "application/vnd.oci.image.index.v1+json",
        }
        for tag in tags:
            async with self._session.get(f"{base}/v2/{name}/manifests/{tag}", headers=accept) as r:
                body = await r.read()
            try:
                doc = json.loads(body)
            except ValueError:
                continue
            if isinstance(doc, dict) and (doc.get("subject") or {}).get("digest") == subject:
                desc = _descriptor_of(body, doc, request)
                found[str(desc["digest"])] = desc
        return found


def _descriptor_of(body: bytes, doc: dict[str, Any], request: web.Request) -> dict[str, Any]:
    """The referrers-API descriptor of a manifest with a subject."""
    desc: dict[str, Any] = {
        "mediaType": doc.get("mediaType") or request.headers.get("Content-Type", ""),
        "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
        "size": len(body),
    }
    artifact_type = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
    if artifact_type:
        desc["artifactType"] = artifact_type
    if isinstance(doc.get("annotations"), dict):
        desc["annotations"] = doc["annotations"]
    return desc


def corrupted(reply: Reply) -> Reply:
    """*reply* with one bit flipped mid-body, or in its digest header when it has no body."""
    if reply.body:
        data = bytearray(reply.body)
        data[len(data) // 2] ^= 0x01
        return replace(reply, body=bytes(data))
    digest = reply.headers.get("Docker-Content-Digest")
    if digest:
        headers = CIMultiDict(reply.headers)
        last = digest[-1]
        headers["Docker-Content-Digest"] = digest[:-1] + ("0" if last != "0" else "1")
        return replace(reply, headers=headers)
    return reply


def with_headers(**headers: str) -> Callable[[Reply], Reply]:
    """An edit for `Fault.rewrite` that sets response headers."""

    def edit(reply: Reply) -> Reply:
        out = CIMultiDict(reply.headers)
        for key, value in headers.items():
            out[key.replace("_", "-")] = value
        return replace(reply, headers=out)

    return edit


def intervals(seen: list[Seen]) -> list[float]:
    """Seconds between consecutive arrivals."""
    return [b.at - a.at for a, b in itertools.pairwise(seen)]


def max_in_window(seen: list[Seen], window: float) -> int:
    """The most arrivals inside any window of *window* seconds."""
    times = [s.at for s in seen]
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


@contextlib.contextmanager
def fault_proxy(upstream: str | None = None, **options: Any) -> Iterator[FaultProxy]:
    """A started `FaultProxy`, stopped on exit."""
    proxy = FaultProxy(upstream, **options)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


class Recorder(ThreadedServer):
    """
    A server on loopback that answers every request with *status* and records it.

    Plays a foreign host: the realm a hostile challenge names, the next page a
    hostile ``Link`` names, the target of a redirect. Tests assert what reached it.
    """

    def __init__(self, status: int = 200, body: bytes = b"{}", name: str = "recorder") -> None:
        super().__init__(name)
        self.status = status
        self.body = body
        self.seen: list[Seen] = []
        self._lock = threading.Lock()

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.seen.append(
                Seen(
                    time.monotonic(),
                    request.method,
                    request.path,
                    request.query_string,
                    "other",
                    dict(request.headers),
                    len(body),
                    status=self.status,
                )
            )
        return web.Response(status=self.status, body=self.body, content_type="application/json")

    @property
    def authorization_headers(self) -> list[str]:
        """Every Authorization header that arrived."""
        with self._lock:
            return [s.headers["Authorization"] for s in self.seen if "Authorization" in s.headers]
