"""`RegistryClient.probe`: one request, never retried, whose auth challenge is not wasted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from drd.config import Credentials
from drd.errors import RegistryUnavailable
from drd.registry.client import RegistryClient
from drd.registry.transport import TLSSettings, build_http_client
from drd.retry import RetryPolicy
from tests.clients import open_client
from tests.images import make_image, push_image
from tests.servers import LocalRegistry, free_port, write_htpasswd

RETRY = RetryPolicy.no_wait(attempts=4)


async def test_a_closed_port_is_unreachable_after_one_attempt() -> None:
    """Nobody listens: `RegistryUnavailable` naming the host, and no retry."""
    host = f"127.0.0.1:{free_port()}"
    async with open_client(f"http://{host}", retry=RETRY) as client:
        with pytest.raises(RegistryUnavailable, match=f"cannot talk to {host}"):
            await client.probe()
    assert client.requests == 1


async def test_the_check_learns_the_challenge_the_first_request_would_have(
    tmp_path: Path, registry_factory: Callable[..., LocalRegistry], repo: str
) -> None:
    """
    Against a registry wanting a password, the check answered 401 counts as reachable,
    and the tag listing after it goes with the password at once: two requests in all,
    as many as the listing alone takes (one to be challenged, one with the password).
    """
    registry = registry_factory(
        htpasswd=write_htpasswd(tmp_path / "htpasswd", {"drd": "probe-pw-7"})
    )
    creds = Credentials(username="drd", password=SecretStr("probe-pw-7"))
    await push_image(registry, repo, make_image(f"{repo}/probe"), "v1", auth=("drd", "probe-pw-7"))
    async with build_http_client(TLSSettings()) as http:
        alone = RegistryClient("alone", registry.url, http, RETRY, credentials=creds)
        assert await alone.list_tags(repo) == ["v1"]
        checked = RegistryClient("checked", registry.url, http, RETRY, credentials=creds)
        await checked.probe()
        assert await checked.list_tags(repo) == ["v1"]

    assert (alone.requests, checked.requests) == (2, 2)
