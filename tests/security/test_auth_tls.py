"""
Authentication and TLS against real servers.

distribution with htpasswd basic auth; distribution with token auth behind the test
token server (ES256 JWTs, scoped per repository); distribution over TLS with a
throwaway CA, with and without client certificates. Plus the pure decision of where
credentials may go, and the config's refusal of plain http to a remote host.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from drd.config import Credentials, Endpoint
from drd.errors import RegistryError, RegistryUnavailable, Unauthorized
from drd.registry.auth import may_send_credentials
from drd.registry.client import RegistryClient
from drd.registry.transport import TLSSettings, build_http_client
from drd.replicate.runner import run_policy
from drd.retry import RetryPolicy
from tests.clients import open_client, policy_for
from tests.images import make_image, make_multiarch, push_image, push_index
from tests.reliability.cli import FAST_RETRY, run_drd, write_config
from tests.reliability.consistency import assert_target_consistent
from tests.security.tokens import TokenServer
from tests.servers import LocalRegistry, TlsFiles, make_tls, write_htpasswd

USER = "drd-sync"
PASSWORD = "auth-Tls-pw-91z"  # noqa: S105 - a test password
CREDS = Credentials(username=USER, password=SecretStr(PASSWORD))
RETRY = RetryPolicy.no_wait(attempts=3)


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    """An Authorization header for the checker and the test's own pushes."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# ---------------------------------------------------------------------------
# htpasswd basic auth


@pytest.fixture
def basic_registry(tmp_path: Path, registry_factory: Callable[..., LocalRegistry]) -> LocalRegistry:
    """A registry that wants USER / PASSWORD over HTTP basic auth."""
    return registry_factory(htpasswd=write_htpasswd(tmp_path / "htpasswd", {USER: PASSWORD}))


async def test_basic_auth_replicates_into_an_htpasswd_registry(
    source_registry: LocalRegistry, basic_registry: LocalRegistry, repo: str
) -> None:
    """With the right password every tag arrives; the password is sent only once challenged."""
    index = make_multiarch(repo)
    await push_index(source_registry, repo, index, "v1")
    async with (
        open_client(source_registry, "source") as src,
        build_http_client(TLSSettings()) as http,
    ):
        dst = RegistryClient("target", basic_registry.url, http, RETRY, credentials=CREDS)
        report = await run_policy(policy_for(repo), src, {"target": dst}, RETRY)

    assert report.ok, report.to_json()
    walked = await assert_target_consistent(basic_registry, repo, headers=basic())
    assert walked.tags == {"v1": str(index.digest)}


async def test_a_wrong_password_fails_clearly_and_is_not_retried(
    basic_registry: LocalRegistry, repo: str
) -> None:
    """A refused password is reported as such after one challenge, not hammered at."""
    wrong = Credentials(username=USER, password=SecretStr("not-the-password"))
    async with build_http_client(TLSSettings()) as http:
        client = RegistryClient("target", basic_registry.url, http, RETRY, credentials=wrong)
        with pytest.raises(Unauthorized, match="refused our credentials"):
            await client.list_tags(repo)
    # One request to learn the challenge, one with the password: no retries.
    assert client.requests == 2


async def test_no_credentials_for_a_basic_registry_is_unauthorized(
    basic_registry: LocalRegistry, repo: str
) -> None:
    """Without credentials the answer is a clear Unauthorized, after one request."""
    async with build_http_client(TLSSettings()) as http:
        client = RegistryClient("target", basic_registry.url, http, RETRY)
        with pytest.raises(Unauthorized, match="wants credentials we do not have"):
            await client.list_tags(repo)
    assert client.requests == 1


# ---------------------------------------------------------------------------
# token auth


def auth(token_server: TokenServer) -> frozenset[str]:
    """The token server, on its own port, as an auth host that may receive credentials."""
    return frozenset({token_server.host})


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[TokenServer]:
    """The token server the token registry sends clients to."""
    with TokenServer(tmp_path / "tokens", users={USER: PASSWORD}) as server:
        yield server


@pytest.fixture
def token_registry(
    token_server: TokenServer, registry_factory: Callable[..., LocalRegistry]
) -> LocalRegistry:
    """A registry behind token authentication."""
    return registry_factory(extra_config=token_server.registry_config())


async def test_one_token_per_scope_across_a_replication(
    source_registry: LocalRegistry,
    token_registry: LocalRegistry,
    token_server: TokenServer,
    repo: str,
) -> None:
    """
    Replicating two repositories fetches exactly one token per scope (pull, and
    pull+push, per repository), each with the basic credentials, however many
    requests run concurrently.
    """
    second = repo.replace("/app", "/other")
    for name in (repo, second):
        await push_index(source_registry, name, make_multiarch(name), "v1")
        await push_image(source_registry, name, make_image(f"{name}/solo"), "v2")
    async with (
        open_client(source_registry, "source") as src,
        build_http_client(TLSSettings()) as http,
    ):
        dst = RegistryClient(
            "target",
            token_registry.url,
            http,
            RETRY,
            credentials=CREDS,
            auth_hosts=auth(token_server),
        )
        report = await run_policy(policy_for(repo, second), src, {"target": dst}, RETRY)

    assert report.ok, report.to_json()
    counts = Counter(token_server.scopes())
    expected = {
        f"repository:{name}:{actions}"
        for name in (repo, second)
        for actions in ("pull", "pull,push")
    }
    assert set(counts) == expected
    assert set(counts.values()) == {1}, counts
    assert {i.user for i in token_server.requests()} == {USER}
    for name in (repo, second):
        await assert_target_consistent(
            token_registry, name, headers=token_server.admin_headers(name)
        )


async def test_concurrent_requests_share_one_token(
    source_registry: LocalRegistry,
    token_registry: LocalRegistry,
    token_server: TokenServer,
    repo: str,
) -> None:
    """Twenty concurrent first requests for one scope cause one token fetch, not twenty."""
    async with build_http_client(TLSSettings()) as http:
        client = RegistryClient(
            "target",
            token_registry.url,
            http,
            RETRY,
            credentials=CREDS,
            auth_hosts=auth(token_server),
        )
        found = await asyncio.gather(*(client.head_manifest(repo, "v1") for _ in range(20)))
    assert found == [None] * 20
    assert Counter(token_server.scopes()) == {f"repository:{repo}:pull": 1}


async def test_an_expired_token_is_replaced_after_a_401(
    token_registry: LocalRegistry, token_server: TokenServer, repo: str
) -> None:
    """When the registry starts refusing a cached token, drd fetches a new one and goes on."""
    # distribution accepts a token up to 60 s past "exp": this one dies in about 2 s.
    token_server.lifetime = -58
    async with build_http_client(TLSSettings()) as http:
        client = RegistryClient(
            "target",
            token_registry.url,
            http,
            RETRY,
            credentials=CREDS,
            auth_hosts=auth(token_server),
        )
        assert await client.list_tags(repo) == []
        token_server.lifetime = 300
        await asyncio.sleep(3)
        assert await client.list_tags(repo) == []

    assert Counter(token_server.scopes()) == {f"repository:{repo}:pull": 2}


async def test_a_wrong_password_at_the_token_server_fails_clearly(
    token_registry: LocalRegistry, token_server: TokenServer, repo: str
) -> None:
    """Refused by the token server: Unauthorized naming the token, one attempt only."""
    wrong = Credentials(username=USER, password=SecretStr("nope"))
    async with build_http_client(TLSSettings()) as http:
        client = RegistryClient(
            "target",
            token_registry.url,
            http,
            RETRY,
            credentials=wrong,
            auth_hosts=auth(token_server),
        )
        with pytest.raises(Unauthorized, match="refused our credentials"):
            await client.list_tags(repo)
    assert [i.status for i in token_server.requests()] == [401]


# ---------------------------------------------------------------------------
# TLS


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    """A throwaway CA with a server certificate for 127.0.0.1 and a client certificate."""
    return make_tls(tmp_path / "tls")


async def test_tls_with_the_ca_replicates(
    tls: TlsFiles,
    source_registry: LocalRegistry,
    registry_factory: Callable[..., LocalRegistry],
    repo: str,
) -> None:
    """A target with a private CA works when the endpoint names that CA."""
    target = registry_factory(tls=tls)
    index = make_multiarch(repo)
    await push_index(source_registry, repo, index, "v1")
    async with (
        open_client(source_registry, "source") as src,
        build_http_client(TLSSettings(ca_file=tls.ca)) as http,
    ):
        dst = RegistryClient("target", target.url, http, RETRY)
        report = await run_policy(policy_for(repo), src, {"target": dst}, RETRY)

    assert report.ok, report.to_json()
    walked = await assert_target_consistent(target, repo)
    assert walked.tags == {"v1": str(index.digest)}


@pytest.mark.parametrize("which", ["system-store", "another-ca"])
async def test_tls_verification_is_on_and_fails_clearly(
    which: str,
    tls: TlsFiles,
    tmp_path: Path,
    registry_factory: Callable[..., LocalRegistry],
) -> None:
    """
    Without the right CA the connection is refused with a message that says TLS
    verification failed, once: a wrong CA does not fix itself on retry.
    """
    target = registry_factory(tls=tls)
    ca = None if which == "system-store" else make_tls(tmp_path / "other").ca
    async with build_http_client(TLSSettings(ca_file=ca)) as http:
        client = RegistryClient("target", target.url, http, RETRY)
        with pytest.raises(RegistryError, match=r"TLS verification of .* failed") as caught:
            await client.ping()
    assert not isinstance(caught.value, RegistryUnavailable)
    assert "certificate verify failed" in str(caught.value)
    assert client.requests == 1


async def test_a_client_certificate_is_presented_when_required(
    tls: TlsFiles, registry_factory: Callable[..., LocalRegistry]
) -> None:
    """
    A registry requiring client certificates accepts drd's; without one, the refusal is
    reported as such, once, not retried as if the network had failed.
    """
    target = registry_factory(tls=tls, require_client_cert=True)
    with_cert = TLSSettings(ca_file=tls.ca, cert_file=tls.client_cert, key_file=tls.client_key)
    async with build_http_client(with_cert) as http:
        await RegistryClient("target", target.url, http, RETRY).ping()

    async with build_http_client(TLSSettings(ca_file=tls.ca)) as http:
        client = RegistryClient("target", target.url, http, RETRY)
        with pytest.raises(RegistryError, match="refused the client certificate") as caught:
            await client.ping()
    assert not isinstance(caught.value, RegistryUnavailable)
    assert client.requests == 1


def test_tls_and_client_certificates_from_the_config(
    tls: TlsFiles,
    tmp_path: Path,
    source_registry: LocalRegistry,
    registry_factory: Callable[..., LocalRegistry],
    repo: str,
) -> None:
    """`drd replicate` reaches an mTLS target through ca_file, cert_file and key_file."""
    target = registry_factory(tls=tls, require_client_cert=True)
    asyncio.run(push_image(source_registry, repo, make_image(repo), "v1"))
    endpoint = {
        "url": target.url,
        "ca_file": str(tls.ca),
        "cert_file": str(tls.client_cert),
        "key_file": str(tls.client_key),
    }
    config = write_config(
        tmp_path / "drd.toml",
        endpoints={"src": {"url": source_registry.url}, "dst": endpoint},
        tables={"retry": FAST_RETRY, "daemon": {"state_dir": str(tmp_path / "state")}},
        replication=[{"name": "p", "source": "src", "targets": ["dst"], "repositories": [repo]}],
    )
    result = run_drd("replicate", "--config", config)
    assert result.returncode == 0, result.stderr.decode()
    walked = asyncio.run(assert_target_consistent(target, repo))
    assert set(walked.tags) == {"v1"}


# ---------------------------------------------------------------------------
# where credentials may go (pure) and what the config refuses


@pytest.mark.parametrize(
    ("registry", "realm", "allowed", "expected"),
    [
        pytest.param("https://r.example.com", "https://r.example.com/token", (), True, id="same"),
        pytest.param("https://r.example.com", "https://R.EXAMPLE.COM/t", (), True, id="case"),
        pytest.param("https://r.example.com", "https://auth.example.com/t", (), False, id="other"),
        pytest.param(
            "https://r.example.com",
            "https://auth.example.com/t",
            ("auth.example.com",),
            True,
            id="allowed-auth-host",
        ),
        pytest.param("https://r.example.com", "http://r.example.com/t", (), False, id="plain"),
        pytest.param("http://10.0.0.5", "http://10.0.0.5/token", (), False, id="plain-remote"),
        pytest.param(
            "https://r.example.com", "https://r.example.com.evil.net/t", (), False, id="suffix"
        ),
        pytest.param(
            "https://r.example.com", "https://r.example.com@evil.net/t", (), False, id="userinfo"
        ),
        pytest.param(
            "https://r.example.com", "https://evil.net/?r.example.com", (), False, id="query"
        ),
        pytest.param(
            "http://127.0.0.1.evil.net", "http://127.0.0.1.evil.net/t", (), False, id="fake-lo"
        ),
        pytest.param("http://127.0.0.1:5000", "http://127.0.0.1:5000/t", (), True, id="loopback"),
        pytest.param("http://[::1]:5000", "http://[::1]:5000/t", (), True, id="loopback-v6"),
        pytest.param("http://localhost", "http://localhost/t", (), True, id="localhost"),
        pytest.param(
            "http://127.0.0.1:5000", "http://127.0.0.1:5001/t", (), False, id="other-port"
        ),
        pytest.param("http://[::1]:5000", "http://[::1]:5001/t", (), False, id="other-port-v6"),
        pytest.param("http://localhost:5000", "http://localhost/t", (), False, id="default-port"),
        pytest.param(
            "https://r.example.com", "https://r.example.com:443/t", (), True, id="explicit-443"
        ),
        pytest.param(
            "https://r.example.com", "https://r.example.com:8443/t", (), False, id="port-8443"
        ),
        pytest.param(
            "https://r.example.com",
            "https://auth.example.com:8443/t",
            ("auth.example.com",),
            False,
            id="auth-host-other-port",
        ),
        pytest.param(
            "https://r.example.com",
            "https://auth.example.com:8443/t",
            ("auth.example.com:8443",),
            True,
            id="auth-host-with-port",
        ),
        pytest.param(
            "http://127.0.0.1:5000",
            "http://127.0.0.1:5001/t",
            ("127.0.0.1:5001",),
            True,
            id="loopback-auth-host",
        ),
        pytest.param(
            "https://r.example.com", "https://r.example.com:x/t", (), False, id="bad-port"
        ),
    ],
)
def test_where_credentials_may_go(
    registry: str, realm: str, allowed: tuple[str, ...], expected: bool
) -> None:
    """Only to the registry's own host and port (or a named auth host), never in clear afar."""
    assert may_send_credentials(registry, realm, frozenset(allowed)) is expected


def test_plain_http_to_a_remote_host_needs_insecure() -> None:
    """The config refuses http:// for a non-loopback host unless insecure = true."""
    with pytest.raises(ValueError, match="plain http is allowed only for a loopback host"):
        Endpoint(name="remote", url="http://registry.example.com")
    assert Endpoint(name="remote", url="http://registry.example.com", insecure=True).insecure
    assert Endpoint(name="local", url="http://127.0.0.1:5000").scheme == "http"


def test_the_cli_refuses_plain_http_to_a_remote_host(tmp_path: Path) -> None:
    """`drd config check` exits 78 and names the endpoint's url."""
    config = write_config(
        tmp_path / "drd.toml", endpoints={"remote": {"url": "http://registry.example.com"}}
    )
    result = run_drd("config", "check", "--config", config)
    assert result.returncode == 78
    assert b"endpoints.remote.url" in result.stderr
    assert b"plain http is allowed only for a loopback host" in result.stderr
