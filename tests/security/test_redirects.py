"""
Redirects: where a registry may send drd, and what goes along.

A blob GET may follow a registry's redirect to object storage on another host:
without our credentials, only over http(s), and never from a registry that is not on
loopback to a loopback or link-local address (written as such, named ``localhost``,
or resolving there). Manifest and token requests follow no redirect at all.

The registry is real (distribution 2.8) behind a `FaultProxy`; the redirect targets
are small aiohttp servers on 127.0.0.1. To play a registry that is *not* on loopback,
the client reaches the proxy as ``registry.test``, a name a static resolver maps to
127.0.0.1: drd judges the registry by its name, as it would judge
``registry.example.com``, and no packet leaves loopback.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import SecretStr

from drd.config import Credentials
from drd.errors import DigestMismatch, RegistryError, UnsafeResponse
from drd.registry.client import RegistryClient
from drd.registry.redirects import address_refusal, host_kind, redirect_target, same_origin
from drd.registry.transport import TLSSettings, build_http_client
from drd.retry import RetryPolicy
from tests.faults import Fault, FaultProxy, Recorder, ThreadedServer, fault_proxy
from tests.images import Image, make_image, push_image
from tests.security.conftest import HOSTILE_INPUTS
from tests.servers import LocalRegistry

RETRY = RetryPolicy.no_wait(attempts=2)
CREDS = Credentials(username="drd", password=SecretStr("redirect-Pw-7"))
BASIC = Fault.respond(401, b"{}", {"WWW-Authenticate": 'Basic realm="r"'})


class StaticResolver(AbstractResolver):
    """Test names → 127.0.0.1; any other name does not resolve."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.names:
            raise OSError(f"{host} is not a test name")
        return [
            ResolveResult(
                hostname=host,
                host=self.names[host],
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        pass


class Redirector(ThreadedServer):
    """Answers every request with a 307 to *location* (formatted with its own URL)."""

    def __init__(self, location: str = "{url}/again") -> None:
        super().__init__("redirector")
        self.location = location
        self.count = 0
        self._lock = threading.Lock()

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        with self._lock:
            self.count += 1
        return web.Response(status=307, headers={"Location": self.location.format(url=self.url)})


@pytest.fixture
def proxy(source_registry: LocalRegistry) -> Iterator[FaultProxy]:
    with fault_proxy(source_registry.url, name="redirecting-registry") as started:
        yield started


@pytest.fixture
async def image(source_registry: LocalRegistry, repo: str) -> Image:
    built = make_image(repo)
    await push_image(source_registry, repo, built, "v1")
    return built


def redirect(location: str) -> Fault:
    return Fault.respond(307, b"", {"Location": location})


@contextlib.asynccontextmanager
async def client_for(
    url: str, *, public: bool = False, names: dict[str, str] | None = None
) -> AsyncIterator[RegistryClient]:
    """A client with credentials; *public* reaches the proxy as ``registry.test``."""
    resolver = StaticResolver({"registry.test": "127.0.0.1", **(names or {})})
    if public:
        url = url.replace("127.0.0.1", "registry.test")
    host = "registry.test" if public else "127.0.0.1"
    async with build_http_client(TLSSettings(), registry_host=host, resolver=resolver) as http:
        yield RegistryClient("src", url, http, RETRY, credentials=CREDS)


# ---------------------------------------------------------------------------
# blob GETs: followed, but not anywhere and not with credentials


async def test_a_blob_redirect_to_another_port_carries_no_credentials(
    proxy: FaultProxy, image: Image, repo: str
) -> None:
    """Another port of the same host is another origin: the hop gets no Authorization."""
    with Recorder(body=b"not the blob") as storage:
        proxy.add(BASIC, kinds="blob_get", times=1)
        proxy.add(redirect(f"http://127.0.0.1:{storage.port}/blob"), kinds="blob_get")
        async with client_for(proxy.url) as client:
            with pytest.raises(DigestMismatch, match="hashes to"):
                await client.get_blob_bytes(repo, image.config.digest, 1 << 20)
        assert [s.path for s in storage.seen] == ["/blob"]
        assert storage.authorization_headers == []
    assert any("Authorization" in s.headers for s in proxy.requests("blob_get"))


async def test_a_blob_redirect_on_the_registry_origin_keeps_the_credentials(
    proxy: FaultProxy, image: Image, repo: str
) -> None:
    """A redirect back to the registry itself (same origin) still authenticates and arrives."""
    digest = image.config.digest
    proxy.add(BASIC, kinds="blob_get", times=1)
    proxy.add(redirect(f"/v2/{repo}/blobs/{digest}?moved=1"), kinds="blob_get", times=1)
    async with client_for(proxy.url) as client:
        data = await client.get_blob_bytes(repo, digest, 1 << 20)
    assert digest.matches(data)
    last = proxy.requests("blob_get")[-1]
    assert last.query == "moved=1"
    assert last.headers["Authorization"].startswith("Basic ")


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/blob",
        "gopher://127.0.0.1:70/x",
        "http://drd:pw@127.0.0.1:1/blob",
    ],
    ids=["file", "ftp", "gopher", "userinfo"],
)
async def test_a_blob_redirect_to_another_scheme_is_refused_and_not_retried(
    location: str, proxy: FaultProxy, image: Image, repo: str
) -> None:
    """Only http(s) is followed; anything else is UnsafeResponse at once, with no retry."""
    proxy.add(redirect(location), kinds="blob_get")
    HOSTILE_INPUTS.append(f"redirect to {location}")
    async with client_for(proxy.url) as client:
        with pytest.raises(UnsafeResponse, match="refused") as caught:
            await client.get_blob_bytes(repo, image.config.digest, 1 << 20)
    assert "pw" not in str(caught.value)
    assert proxy.calls("blob_get") == 1


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        pytest.param("http://127.0.0.1:{port}/blob", "loopback", id="127.0.0.1"),
        pytest.param("http://127.3.2.1:{port}/blob", "loopback", id="127.3.2.1"),
        pytest.param("http://[::1]:{port}/blob", "loopback", id="ipv6-loopback"),
        pytest.param("http://[::ffff:127.0.0.1]:{port}/blob", "loopback", id="ipv4-mapped"),
        pytest.param("http://0.0.0.0:{port}/blob", "loopback", id="unspecified"),
        pytest.param("http://localhost:{port}/blob", "loopback", id="localhost"),
        pytest.param("http://x.localhost:{port}/blob", "loopback", id="dot-localhost"),
        pytest.param("http://storage.test:{port}/blob", "loopback", id="name-resolving-there"),
        pytest.param("http://169.254.169.254/latest/meta-data/", "link-local", id="metadata"),
        pytest.param("http://[fe80::1]:{port}/blob", "link-local", id="ipv6-link-local"),
    ],
)
async def test_a_public_registry_cannot_redirect_to_loopback_or_link_local(
    target: str, kind: str, proxy: FaultProxy, image: Image, repo: str
) -> None:
    """
    From a registry that is not on loopback, a redirect to a loopback or link-local
    address (however written, or a name resolving there) is UnsafeResponse; nothing is
    sent there, and the refusal is not retried.
    """
    with Recorder(body=b"local service") as local:
        proxy.add(redirect(target.format(port=local.port)), kinds="blob_get")
        HOSTILE_INPUTS.append(f"public registry redirects to {kind}")
        async with client_for(proxy.url, public=True, names={"storage.test": "127.0.0.1"}) as c:
            assert c.host == f"registry.test:{proxy.port}"
            with pytest.raises(UnsafeResponse, match=f"a {kind} address; refused"):
                await c.get_blob_bytes(repo, image.config.digest, 1 << 20)
        assert local.seen == []
    assert proxy.calls("blob_get") == 1


async def test_a_public_registry_is_served_itself(
    proxy: FaultProxy, image: Image, repo: str
) -> None:
    """The guard is for other hosts: a registry whose own name resolves to loopback works."""
    async with client_for(proxy.url, public=True) as client:
        data = await client.get_blob_bytes(repo, image.config.digest, 1 << 20)
    assert image.config.digest.matches(data)


async def test_a_loopback_registry_cannot_redirect_to_link_local(
    proxy: FaultProxy, image: Image, repo: str
) -> None:
    """Loopback may go to loopback, not to the link-local metadata address."""
    proxy.add(redirect("http://169.254.169.254/latest/meta-data/"), kinds="blob_get")
    async with client_for(proxy.url) as client:
        with pytest.raises(UnsafeResponse, match="a link-local address"):
            await client.get_blob_bytes(repo, image.config.digest, 1 << 20)


async def test_a_redirect_loop_is_cut_after_five_hops(
    proxy: FaultProxy, image: Image, repo: str
) -> None:
    """A storage host that keeps redirecting is refused after five hops."""
    with Redirector() as loop:
        proxy.add(redirect(f"{loop.url}/blob"), kinds="blob_get")
        async with client_for(proxy.url) as client:
            with pytest.raises(UnsafeResponse, match="more than 5 redirects"):
                await client.get_blob_bytes(repo, image.config.digest, 1 << 20)
        assert loop.count == 5


async def test_open_blob_streams_through_a_redirect(
    proxy: FaultProxy, image: Image, repo: str, source_registry: LocalRegistry
) -> None:
    """The streaming GET follows a redirect to storage (here: the registry, unproxied)."""
    digest = image.config.digest
    proxy.add(redirect(f"{source_registry.url}/v2/{repo}/blobs/{digest}"), kinds="blob_get")
    async with client_for(proxy.url) as client, client.open_blob(repo, digest) as reader:
        data = await reader.read()
    assert digest.matches(data)


# ---------------------------------------------------------------------------
# manifests and tokens: no redirect at all


async def test_a_manifest_redirect_is_not_followed(
    proxy: FaultProxy, image: Image, repo: str
) -> None:
    """A manifest GET answered with a redirect fails; the target hears nothing."""
    with Recorder(body=b"{}") as elsewhere:
        proxy.add(redirect(f"http://127.0.0.1:{elsewhere.port}/m"), kinds="manifest_get")
        async with client_for(proxy.url) as client:
            with pytest.raises(RegistryError, match="answered 307"):
                await client.get_manifest(repo, "v1")
        assert elsewhere.seen == []


async def test_a_token_redirect_is_not_followed(proxy: FaultProxy, repo: str) -> None:
    """A token endpoint answering with a redirect fails as unauthorized; nothing follows it."""
    with Recorder(body=b'{"token": "elsewhere"}') as elsewhere:
        header = f'Bearer realm="{proxy.url}/token",service="registry"'
        proxy.add(Fault.respond(401, b"{}", {"WWW-Authenticate": header}), kinds="manifest_get")
        proxy.add(redirect(f"http://127.0.0.1:{elsewhere.port}/token"), kinds="token")
        async with client_for(proxy.url) as client:
            with pytest.raises(RegistryError, match="answered 307"):
                await client.get_manifest(repo, "v1")
        assert elsewhere.seen == []


async def test_a_public_registry_cannot_name_a_loopback_realm(proxy: FaultProxy, repo: str) -> None:
    """A realm at a loopback address, from a registry that is not, is refused unasked."""
    with Recorder(body=b'{"token": "local"}') as local:
        header = f'Bearer realm="http://127.0.0.1:{local.port}/token",service="r"'
        proxy.add(Fault.respond(401, b"{}", {"WWW-Authenticate": header}), kinds="manifest_get")
        async with client_for(proxy.url, public=True) as client:
            with pytest.raises(UnsafeResponse, match="auth realm at a loopback address"):
                await client.get_manifest(repo, "v1")
        assert local.seen == []


# ---------------------------------------------------------------------------
# the pure rules


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("[::1]", "loopback"),
        ("0.0.0.0", "loopback"),  # noqa: S104 - an address under test, not a bind
        ("LOCALHOST.", "loopback"),
        ("169.254.1.1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("10.0.0.1", None),
        ("s3.amazonaws.com", None),
        ("127.0.0.1.nip.io", None),  # a name: judged by what it resolves to
    ],
)
def test_host_kinds(host: str, kind: str | None) -> None:
    """Loopback and link-local, written as addresses or as localhost names."""
    assert host_kind(host) == kind


def test_what_a_registry_may_send_drd_to() -> None:
    """Loopback registries may use loopback; nobody else may, and the registry itself always."""
    assert address_refusal("127.0.0.1", "127.0.0.2") is None
    assert address_refusal("registry.example.com", "127.0.0.1") == "a loopback address"
    assert address_refusal("registry.example.com", "10.1.2.3") is None
    assert address_refusal("127.0.0.1", "169.254.169.254") == "a link-local address"
    assert address_refusal("localhost", "localhost") is None
    url, why = redirect_target("https://r.example.com", "https://r.example.com/v2/x", "/v2/y")
    assert (url, why) == ("https://r.example.com/v2/y", None)
    assert redirect_target("https://r.example.com", "https://r.example.com/", "https://s3:x/")[1]


@pytest.mark.parametrize(
    ("url", "other", "same"),
    [
        ("https://r.example.com/a", "https://r.example.com:443/b", True),
        ("https://r.example.com/a", "http://r.example.com/a", False),
        ("http://127.0.0.1:5000/a", "http://127.0.0.1:5001/a", False),
        ("https://R.example.com/a", "https://r.example.com", True),
    ],
)
def test_same_origin_compares_scheme_host_and_port(url: str, other: str, same: bool) -> None:
    """Credentials follow only to the same scheme, host and port."""
    assert same_origin(url, other) is same
