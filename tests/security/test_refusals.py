"""
What a hostile registry's auth answers get: a named error and a recorded pass.

A token that would split a header line, a realm that smuggles its own credentials,
a realm on the registry's host but another port. The registry is real (distribution
2.8) behind a `FaultProxy` that serves the hostile answers; `drd replicate` runs as
a subprocess, so the exit code and the JSON report are what an operator would see.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from drd.config import Credentials
from drd.errors import RegistryError, Unauthorized, UnsafeResponse
from drd.oci.digest import Digest
from drd.registry.client import RegistryClient
from drd.registry.transport import TLSSettings, build_http_client
from drd.retry import RetryPolicy
from tests.faults import Fault, Recorder, fault_proxy
from tests.images import make_image, push_image
from tests.reliability.cli import FAST_RETRY, run_drd, write_config
from tests.reliability.consistency import check_target
from tests.security.conftest import HOSTILE_INPUTS
from tests.servers import LocalRegistry

RETRY = RetryPolicy.no_wait(attempts=2)
CREDS = Credentials(username="drd", password=SecretStr("refusals-Pw-42"))


def challenge(realm: str) -> Fault:
    header = f'Bearer realm="{realm}",service="registry"'
    return Fault.respond(401, b"{}", {"WWW-Authenticate": header})


def token_answer(token: str) -> Fault:
    body = json.dumps({"token": token}).encode()
    return Fault.respond(200, body, {"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("realm", "token", "reason"),
    [
        pytest.param("{proxy}/token", "abc\r\nX-Injected: 1", "a header cannot carry", id="crlf"),
        pytest.param("{proxy}/token", "abc\nX-Injected: 1", "a header cannot carry", id="lf"),
        pytest.param("{proxy}/token", "t0ken with space", "a header cannot carry", id="space"),
        pytest.param("{proxy}/token", "tökén", "a header cannot carry", id="non-ascii"),
        pytest.param(
            "http://drd:realm-Secret@{host}/token", "fine", "credentials in its URL", id="userinfo"
        ),
    ],
)
def test_a_hostile_token_or_realm_fails_the_pass_with_a_report(
    realm: str,
    token: str,
    reason: str,
    tmp_path: Path,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
) -> None:
    """
    A token with a line break (or a space, or non-ASCII) and a realm with userinfo are
    refused as `UnsafeResponse`: the pass is recorded with that error, drd exits 1 (not
    70), nothing reaches the target, and neither the token nor the realm's secret is
    echoed.
    """
    asyncio.run(push_image(source_registry, repo, make_image(repo), "v1"))
    with fault_proxy(source_registry.url, name="hostile-auth") as proxy:
        proxy.add(challenge(realm.format(proxy=proxy.url, host=proxy.host)), kinds="tags_list")
        proxy.add(token_answer(token), kinds="token")
        HOSTILE_INPUTS.append(f"auth: {reason}")
        config = write_config(
            tmp_path / "drd.toml",
            endpoints={"src": {"url": proxy.url}, "dst": {"url": target_registry.url}},
            tables={"retry": FAST_RETRY, "daemon": {"state_dir": str(tmp_path / "state")}},
            replication=[
                {"name": "p", "source": "src", "targets": ["dst"], "repositories": [repo]}
            ],
        )
        result = run_drd("replicate", "--config", config, "--json")

    assert result.returncode == 1, result.stderr.decode()[-2000:]
    [policy] = json.loads(result.stdout)["policies"]
    assert policy["error"].startswith("UnsafeResponse: "), policy["error"]
    assert reason in policy["error"]
    assert policy["error"].endswith(f"(repository {repo})")
    output = result.stdout + result.stderr
    assert b"X-Injected" not in output
    assert b"realm-Secret" not in output
    assert proxy.calls("token") == (0 if "@" in realm else 1)
    walked = asyncio.run(check_target(target_registry, repo))
    assert walked.tags == {}


async def test_a_token_with_a_line_break_is_never_sent(source_registry: LocalRegistry) -> None:
    """The refused token is not retried and never goes out in a header."""
    with fault_proxy(source_registry.url) as proxy:
        proxy.add(challenge(f"{proxy.url}/token"), kinds="manifest_head")
        proxy.add(token_answer("abc\r\nX-Injected: 1"), kinds="token")
        async with build_http_client(TLSSettings()) as http:
            client = RegistryClient("src", proxy.url, http, RETRY, credentials=CREDS)
            with pytest.raises(UnsafeResponse) as caught:
                await client.head_manifest("some/app", "v1")
    assert caught.value.registry == proxy.host
    assert proxy.calls("token") == 1
    assert proxy.calls("manifest_head") == 1
    assert all("X-Injected" not in str(s.headers) for s in proxy.requests())


async def test_a_realm_on_another_port_of_the_same_host_gets_no_credentials(
    source_registry: LocalRegistry,
) -> None:
    """Another port is another server: the realm is asked without our credentials."""
    with (
        Recorder(body=b'{"token": "from-another-port"}') as other_port,
        fault_proxy(source_registry.url) as proxy,
    ):
        proxy.add(challenge(f"http://127.0.0.1:{other_port.port}/token"), kinds="manifest_head")
        HOSTILE_INPUTS.append("realm on another port")
        async with build_http_client(TLSSettings()) as http:
            client = RegistryClient("src", proxy.url, http, RETRY, credentials=CREDS)
            with pytest.raises(Unauthorized):
                await client.head_manifest("some/app", "v1")
        assert other_port.seen, "the realm was not asked at all"
        assert other_port.authorization_headers == []


# ---------------------------------------------------------------------------
# URLs that do not parse: a named error, never a bare ValueError

BAD_URL = "http://[::1/x"  # urllib raises ValueError("Invalid IPv6 URL")


async def test_a_realm_that_does_not_parse_is_unauthorized(source_registry: LocalRegistry) -> None:
    """An unparseable realm is an unusable challenge, with nothing fetched."""
    with fault_proxy(source_registry.url) as proxy:
        proxy.add(challenge(BAD_URL), kinds="manifest_head")
        HOSTILE_INPUTS.append("unparseable realm")
        async with build_http_client(TLSSettings()) as http:
            client = RegistryClient("src", proxy.url, http, RETRY, credentials=CREDS)
            with pytest.raises(Unauthorized, match="unusable auth challenge"):
                await client.head_manifest("some/app", "v1")
    assert proxy.calls("token") == 0


@pytest.mark.parametrize(
    ("kind", "headers", "reason"),
    [
        pytest.param(
            "tags_list",
            {"Link": f'<{BAD_URL}>; rel="next"', "Content-Type": "application/json"},
            "pagination link that does not parse",
            id="link",
        ),
        pytest.param(
            "upload_post", {"Location": BAD_URL}, "upload location that does not", id="upload"
        ),
        pytest.param("blob_get", {"Location": BAD_URL}, "a URL that does not parse", id="redirect"),
    ],
)
async def test_urls_that_do_not_parse_are_named_errors(
    kind: str, headers: dict[str, str], reason: str, source_registry: LocalRegistry, repo: str
) -> None:
    """A Link, upload Location or redirect that urllib cannot split fails as a RegistryError."""
    status = {"tags_list": 200, "upload_post": 202, "blob_get": 307}[kind]
    body = b'{"tags": ["v1"]}' if kind == "tags_list" else b""
    with fault_proxy(source_registry.url) as proxy:
        proxy.add(Fault.respond(status, body, headers), kinds=kind)
        HOSTILE_INPUTS.append(f"unparseable URL in {kind}")
        async with build_http_client(TLSSettings()) as http:
            client = RegistryClient("src", proxy.url, http, RETRY)
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "tags_list": lambda: client.list_tags(repo),
                "upload_post": lambda: client.upload_blob_bytes(repo, Digest.of(b"x"), b"x"),
                "blob_get": lambda: client.get_blob_bytes(repo, Digest.of(b"x"), 10),
            }
            with pytest.raises(RegistryError, match=reason):
                await calls[kind]()
