"""
The daemon's listening socket: how long a client may take, how many may connect, TLS.

aiohttp bounds what a request may *contain* but not how slowly it may arrive:
a client that trickles a request head or a body holds its connection for as
long as it likes. `ConnectionGuard` closes a connection that has not sent a
complete request head within ``header_timeout`` of connecting (or of its
previous response being handed over, so a client that will not read its
response is cut off too); the webhook reads its body under ``body_timeout``.

At most ``max_connections`` connections are open. A connection beyond the cap
closes the *oldest* connection that is waiting for a request head or reading a
body, not itself: slow clients cannot lock out a health check or a scrape,
which sends its request at once and so is never the oldest waiting. Only when
every open connection is being answered is the newcomer refused (closed).
TLS handshakes happen before a connection counts; ``header_timeout`` bounds
them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from drd.errors import ConfigError

__all__ = [
    "ConnectionGuard",
    "HttpLimits",
    "guard_middleware",
    "reading_body",
    "tls_context",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class HttpLimits:
    """Timeouts and the connection cap of the listener (``[daemon]``)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 64


def _ignore(reason: str) -> None:
    pass


@dataclass(eq=False)
class _Connection:
    """One open connection; *waiting* while it owes a request head or a body."""

    handler: RequestHandler
    opened: float
    waiting: bool = True
    timer: asyncio.TimerHandle | None = None


class ConnectionGuard:
    """
    Per-connection deadlines and the connection cap (see the module docstring).

    *dropped* is told why each connection it closes was closed: ``header_timeout``,
    ``evicted`` or ``refused``.
    """

    def __init__(self, limits: HttpLimits, dropped: Callable[[str], None] = _ignore) -> None:
        self.limits = limits
        self._dropped = dropped
        self._open: dict[RequestHandler, _Connection] = {}

    @property
    def open_connections(self) -> int:
        """How many connections are open now."""
        return len(self._open)

    @property
    def waiting_connections(self) -> int:
        """How many of them owe a request head or a body (the ones a newcomer may evict)."""
        return sum(c.waiting for c in self._open.values())

    def handler_factory(self, server: web.Server, **kwargs: Any) -> Callable[[], RequestHandler]:
        """The protocol factory for ``loop.create_server``: aiohttp's handler, guarded."""
        loop = asyncio.get_running_loop()
        guard = self

        class Guarded(RequestHandler):
            # Subclassed, not wrapped: asyncio and TLS call these on the protocol itself.
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                guard._opened(self)

            def connection_lost(self, exc: BaseException | None) -> None:
                guard._closed(self)
                super().connection_lost(exc)

        def make() -> RequestHandler:
            return Guarded(server, loop=loop, **kwargs)

        return make

    def _opened(self, handler: RequestHandler) -> None:
        loop = asyncio.get_running_loop()
        if len(self._open) >= self.limits.max_connections:
            waiting = [c for c in self._open.values() if c.waiting]
            if not waiting:
                self._drop(handler, "refused")
                return
            self._drop(min(waiting, key=lambda c: c.opened).handler, "evicted")
        connection = _Connection(handler, loop.time())
        self._open[handler] = connection
        self._arm(connection)

    def _closed(self, handler: RequestHandler) -> None:
        connection = self._open.pop(handler, None)
        if connection is not None and connection.timer is not None:
            connection.timer.cancel()

    def _arm(self, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        connection.waiting = True
        connection.opened = loop.time()
        connection.timer = loop.call_later(
            self.limits.header_timeout, self._expired, connection.handler
        )

    def _expired(self, handler: RequestHandler) -> None:
        connection = self._open.get(handler)
        if connection is not None and connection.waiting:
            self._drop(handler, "header_timeout")

    def _drop(self, handler: RequestHandler, reason: str) -> None:
        self._closed(handler)
        peer = handler.transport.get_extra_info("peername") if handler.transport else None
        log.debug("http.connection_dropped", reason=reason, peer=peer[0] if peer else None)
        self._dropped(reason)
        handler.force_close()

    def request_started(self, handler: RequestHandler) -> None:
        """A complete request head arrived: no deadline while it is answered."""
        connection = self._open.get(handler)
        if connection is not None:
            connection.waiting = False
            if connection.timer is not None:
                connection.timer.cancel()
                connection.timer = None

    def request_finished(self, handler: RequestHandler) -> None:
        """The response is out: the next request head is due within ``header_timeout``."""
        connection = self._open.get(handler)
        if connection is not None:
            self._arm(connection)

    @contextlib.contextmanager
    def body(self, handler: RequestHandler) -> Iterator[None]:
        """While a body is read the connection may be evicted, like one owing a head."""
        connection = self._open.get(handler)
        if connection is not None:
            connection.waiting = True
        try:
            yield
        finally:
            if connection is not None:
                connection.waiting = False


GUARD = web.AppKey("drd.listener.guard", ConnectionGuard)


@web.middleware
async def guard_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Tell the app's `ConnectionGuard` when each request starts and ends."""
    guard = request.app.get(GUARD)
    protocol = request.protocol
    if guard is None or not isinstance(protocol, RequestHandler):
        response: web.StreamResponse = await handler(request)
        return response
    guard.request_started(protocol)
    try:
        response = await handler(request)
        return response
    finally:
        guard.request_finished(protocol)


@contextlib.contextmanager
def reading_body(request: web.Request) -> Iterator[None]:
    """Mark the connection of *request* evictable while its body is read."""
    guard = request.app.get(GUARD)
    protocol = request.protocol
    if guard is None or not isinstance(protocol, RequestHandler):
        yield
        return
    with guard.body(protocol):
        yield


def tls_context(cert_file: Path, key_file: Path, client_ca_file: Path | None) -> ssl.SSLContext:
    """
    A server-side TLS context (TLS 1.2 or later) from PEM files; with *client_ca_file*,
    clients must present a certificate that CA signed (mTLS).

    Raises:
        ConfigError: a file cannot be read, or the key does not match the certificate.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        message = f"cannot load the certificate and key: {exc}"
        raise ConfigError(
            message, errors=[("daemon.tls_cert_file", message), ("daemon.tls_key_file", message)]
        ) from exc
    if client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            message = f"cannot load the client CA: {exc}"
            raise ConfigError(message, errors=[("daemon.tls_client_ca_file", message)]) from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context
