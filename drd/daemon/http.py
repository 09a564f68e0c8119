"""
The daemon's HTTP endpoint: ``/metrics``, ``/healthz``, ``/readyz`` and ``/webhook``.

``/webhook`` takes registry push notifications, distribution's envelopes
(``application/vnd.docker.distribution.events.v1+json``) and Harbor's
``PUSH_ARTIFACT`` payloads, behind ``Authorization: Bearer <token>``. A request
is checked in this order, and a rejected one changes nothing: token (401),
size (413, over 1 MiB), body time (408, see `HttpLimits.body_timeout`), JSON
(400), payload shape and names (400). What to do with the pushes is the
service's business (`HttpHooks.on_push`). How slow a client may be, how many
may connect, and TLS are `drd.daemon.listener`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from drd.daemon.listener import (
    GUARD,
    ConnectionGuard,
    HttpLimits,
    guard_middleware,
    reading_body,
)
from drd.errors import InvalidReference, StateError
from drd.metrics import Metrics
from drd.oci.ref import validate_repository, validate_tag

__all__ = [
    "MAX_BODY",
    "HttpHooks",
    "HttpLimits",
    "PayloadError",
    "Push",
    "build_app",
    "parse_push_events",
    "serve_http",
]

log = structlog.get_logger(__name__)

MAX_BODY = 1024 * 1024
# More events than this in one body is not a registry notifying, whatever the size.
MAX_EVENTS = 10_000
DISTRIBUTION_EVENTS = "application/vnd.docker.distribution.events.v1+json"
# After an early answer (408, 413), unread body is drained this long before closing, so the
# client reads the answer rather than a reset: long enough for that, too short to hold on to.
LINGER = 1.0


@dataclass(frozen=True)
class Push:
    """A tag pushed to a repository of the source registry."""

    repository: str
    tag: str


class PayloadError(ValueError):
    """The webhook body is JSON but not a notification drd understands; says why."""


@dataclass(frozen=True)
class HttpHooks:
    """What the HTTP endpoint asks of the service."""

    # The bearer token webhook callers must present; None disables the webhook.
    token: Callable[[], str | None]
    # Route pushes to the policies that select them; returns (accepted, ignored).
    on_push: Callable[[list[Push]], Awaitable[tuple[int, int]]]
    # (ready?, reasons keyed by what is not ready).
    readiness: Callable[[], tuple[bool, Mapping[str, str]]]


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise PayloadError(f"{what} is not a string")
    return value


def _push(repository: object, tag: object) -> Push:
    try:
        return Push(
            validate_repository(_text(repository, "repository")), validate_tag(_text(tag, "tag"))
        )
    except InvalidReference as exc:
        raise PayloadError(str(exc)) from exc


def _distribution(events: object) -> tuple[list[Push], int]:
    if not isinstance(events, list):
        raise PayloadError('"events" is not a list')
    if len(events) > MAX_EVENTS:
        raise PayloadError(f"more than {MAX_EVENTS} events")
    pushes: list[Push] = []
    ignored = 0
    for event in events:
        if not isinstance(event, dict):
            raise PayloadError("an event is not an object")
        target = event.get("target")
        if not isinstance(target, dict):
            raise PayloadError('an event has no "target" object')
        # Blob pushes and manifests pushed by digest carry no tag: the tag push follows.
        if event.get("action") != "push" or not target.get("tag"):
            ignored += 1
            continue
        pushes.append(_push(target.get("repository"), target.get("tag")))
    return pushes, ignored


def _harbor(document: Mapping[str, Any]) -> tuple[list[Push], int]:
    data = document.get("event_data")
    if not isinstance(data, dict):
        raise PayloadError('"event_data" is not an object')
    if document.get("type") != "PUSH_ARTIFACT":
        return [], 1
    repository = data.get("repository")
    if not isinstance(repository, dict):
        raise PayloadError('"event_data.repository" is not an object')
    resources = data.get("resources")
    if not isinstance(resources, list) or len(resources) > MAX_EVENTS:
        raise PayloadError('"event_data.resources" is not a list of resources')
    pushes: list[Push] = []
    ignored = 0
    for resource in resources:
        if not isinstance(resource, dict):
            raise PayloadError("a resource is not an object")
        if not resource.get("tag"):
            ignored += 1
            continue
        pushes.append(_push(repository.get("repo_full_name"), resource.get("tag")))
    return pushes, ignored


def parse_push_events(document: object) -> tuple[list[Push], int]:
    """
    The distinct pushes in a notification body, and how many events were not pushes.

    Raises:
        PayloadError: the document is neither a distribution envelope nor a Harbor
            payload, or names an invalid repository or tag (the whole body is refused).
    """
    if not isinstance(document, dict):
        raise PayloadError("the body is not a JSON object")
    if "events" in document:
        pushes, ignored = _distribution(document["events"])
    elif "event_data" in document and "type" in document:
        pushes, ignored = _harbor(document)
    else:
        raise PayloadError("not a distribution or Harbor notification")
    return list(dict.fromkeys(pushes)), ignored


def _authorized(header: str, expected: str) -> bool:
    scheme, _, given = header.strip().partition(" ")
    # Compare in constant time, bytes to bytes: str comparison would leak the match length.
    same = hmac.compare_digest(given.strip().encode(), expected.encode())
    return scheme.lower() == "bearer" and same


def build_app(
    metrics: Metrics, hooks: HttpHooks, limits: HttpLimits | None = None
) -> web.Application:
    """
    The aiohttp application; bodies over `MAX_BODY` are refused while being read.

    The app carries the `ConnectionGuard` that `serve_http` enforces *limits* with;
    connections it closes are counted in ``drd_http_connections_dropped_total``.
    """
    limits = limits or HttpLimits()

    def answer(status: int, document: Mapping[str, Any], **headers: str) -> web.Response:
        return web.json_response(document, status=status, headers=headers or None)

    def refuse(status: int, error: str, **headers: str) -> web.Response:
        metrics.record_webhook(status)
        log.warning("webhook.rejected", status=status, error=error)
        return answer(status, {"error": error}, **headers)

    async def webhook(request: web.Request) -> web.Response:
        expected = hooks.token()
        if expected is None:
            return refuse(403, "webhook disabled: no daemon.webhook_token_file configured")
        if not _authorized(request.headers.get("Authorization", ""), expected):
            return refuse(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
        if request.content_length is not None and request.content_length > MAX_BODY:
            return refuse(413, f"body larger than {MAX_BODY} bytes")
        try:
            with reading_body(request):
                async with asyncio.timeout(limits.body_timeout):
                    body = await request.read()
            document = json.loads(body)
        except web.HTTPRequestEntityTooLarge:
            return refuse(413, f"body larger than {MAX_BODY} bytes")
        except TimeoutError:
            metrics.record_http_drop("body_timeout")
            response = refuse(408, f"body not received within {limits.body_timeout:g}s")
            response.force_close()  # the rest of the body may still trickle in: not here
            return response
        except ConnectionResetError:
            # The client left, or the guard evicted it for a newer connection (counted there).
            log.debug("webhook.client_gone")
            return web.Response(status=400)
        except (ValueError, RecursionError) as exc:
            return refuse(400, f"malformed JSON: {str(exc)[:200]}")
        try:
            pushes, not_pushes = parse_push_events(document)
        except PayloadError as exc:
            return refuse(400, str(exc))
        try:
            accepted, ignored = await hooks.on_push(pushes)
        except StateError as exc:
            # Not queued, so not accepted: the sender retries (registries do), or the next
            # full pass finds the tags.
            return refuse(503, f"cannot queue the pushes: {exc}", **{"Retry-After": "30"})
        metrics.record_webhook(202, accepted=accepted, ignored=ignored + not_pushes)
        # Registries announce every blob and pull too: only pushes a policy takes are news.
        (log.info if accepted else log.debug)(
            "webhook.received", pushes=len(pushes), accepted=accepted, ignored=ignored
        )
        return answer(202, {"accepted": accepted, "ignored": ignored + not_pushes})

    async def healthz(_: web.Request) -> web.Response:
        return answer(200, {"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ready, reasons = hooks.readiness()
        return answer(200 if ready else 503, {"ready": ready, "reasons": dict(reasons)})

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application(client_max_size=MAX_BODY, middlewares=[guard_middleware])
    app[GUARD] = ConnectionGuard(limits, metrics.record_http_drop)
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/webhook", webhook)
    return app


class _GuardedSite(web.BaseSite):
    """A TCP site whose connections go through the app's `ConnectionGuard`."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:  # setup() not run: BaseSite's constructor refuses that already
            raise RuntimeError("the runner is not set up")
        timeout = self._guard.limits.header_timeout
        # aiohttp's keep-alive timer only as a backstop a second later: the guard closes
        # (and counts) idle connections first. 0 would disable keep-alive, not the timer.
        factory = self._guard.handler_factory(
            server, access_log=None, keepalive_timeout=timeout + 1.0, lingering_time=LINGER
        )
        self._server = await asyncio.get_running_loop().create_server(
            factory,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=timeout if self._ssl_context else None,
        )


@contextlib.asynccontextmanager
async def serve_http(
    app: web.Application, host: str, port: int, *, tls: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """
    Serve *app* (from `build_app`) on host:port (port 0: any free port) until the block
    exits, over TLS when *tls* is given; yield the port.

    Raises:
        OSError: the address cannot be bound.
    """
    guard = app[GUARD]
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = _GuardedSite(runner, host, port, guard, tls)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        yield int(bound)
    finally:
        await runner.cleanup()
