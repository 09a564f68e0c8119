"""
`drd run` end to end, as a subprocess against real registries.

One daemon serves the whole module. Its source registry requires a password
(htpasswd) and sends its push notifications to the daemon's /webhook with the
bearer token; a second source ("quiet") sends none, so webhooks the test sends
by hand decide alone whether its content moves. The policies run every hour:
whatever reaches a target within seconds got there through a webhook.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from drd.metrics import PER_NODE
from drd.oci.digest import Digest
from tests.daemon.process import (
    Daemon,
    daemon_env,
    http_get,
    render_config,
    run_drd,
    running_daemon,
    wait_for,
)
from tests.images import RegistryWriter, get_manifest, list_tags, make_image, push_image
from tests.servers import LocalRegistry, free_port, registry_binary, write_htpasswd

USER = "drd"
DISTRIBUTION_EVENTS = "application/vnd.docker.distribution.events.v1+json"


@dataclass
class Setup:
    """The running daemon and what it talks to."""

    daemon: Daemon
    source: LocalRegistry
    quiet: LocalRegistry
    target: LocalRegistry
    prefix: str  # every repository the "mirror" policy selects starts with it
    password: str
    token: str
    env: dict[str, str]
    good_config: str

    @property
    def auth(self) -> tuple[str, str]:
        return USER, self.password

    def post_webhook(self, body: bytes, headers: dict[str, str]) -> int:
        request = urllib.request.Request(  # noqa: S310 - loopback URL
            f"{self.daemon.url}/webhook", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, target_registry: LocalRegistry
) -> Iterator[Setup]:
    """Registries, config and one `drd run` for the module; stopped with SIGINT afterwards."""
    work = tmp_path_factory.mktemp("drd-run")
    password = f"pw-{secrets.token_hex(16)}"
    token = f"tok-{secrets.token_hex(16)}"
    port = free_port()
    (work / "source.password").write_text(password + "\n")
    (work / "webhook.token").write_text(token + "\n")
    htpasswd = write_htpasswd(work / "htpasswd", {USER: password})
    prefix = f"run{uuid.uuid4().hex[:8]}"
    with (
        LocalRegistry.start(
            registry_binary(),
            work / "source",
            htpasswd=htpasswd,
            notifications_url=f"http://127.0.0.1:{port}/webhook",
            notification_headers={"Authorization": f"Bearer {token}"},
        ) as source,
        LocalRegistry.start(registry_binary(), work / "quiet") as quiet,
    ):
        config = render_config(
            {
                "src": {
                    "url": source.url,
                    "username": USER,
                    "password_file": str(work / "source.password"),
                },
                "quiet": {"url": quiet.url},
                "dst": {"url": target_registry.url},
            },
            [
                {
                    "name": "mirror",
                    "source": "src",
                    "targets": ["dst"],
                    "repositories": [f"{prefix}/**"],
                    "interval": "1h",
                },
                {
                    "name": "quiet",
                    "source": "quiet",
                    "targets": ["dst"],
                    "repositories": [f"{prefix}q/**"],
                    "interval": "1h",
                },
            ],
            {
                "listen": f"127.0.0.1:{port}",
                "state_dir": str(work / "state"),
                "webhook_token_file": str(work / "webhook.token"),
                "drain_timeout": "10s",
                "jitter": 0.0,
            },
            extra=(
                "\n[snapshots]\n"
                'source = "src"\n'
                f'store = "{(work / "snapshots").as_uri()}"\n'
                'interval = "1h"\n'
            ),
        )
        config_path = work / "drd.toml"
        config_path.write_text(config)
        env = daemon_env(work / "home")
        with running_daemon(config_path, work, port, env, stop=signal.SIGINT) as daemon:
            wait_for(daemon.ready, 30, "/readyz to answer 200")
            wait_for(
                lambda: len(daemon.events("replicate.run_finished")) >= 2,
                30,
                "the first pass of both policies",
            )
            wait_for(lambda: daemon.events("snapshot.run_finished"), 60, "the first snapshot")
            yield Setup(
                daemon, source, quiet, target_registry, prefix, password, token, env, config
            )


async def wait_for_tag(registry: LocalRegistry, repository: str, tag: str, within: float) -> float:
    """Poll the registry until *tag* exists; return the seconds it took."""
    began = time.monotonic()
    while tag not in await list_tags(registry, repository):
        if time.monotonic() - began > within:
            raise AssertionError(f"{repository}:{tag} did not reach {registry.host} in {within}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - began


async def test_a_push_reaches_the_target_without_waiting_for_the_interval(setup: Setup) -> None:
    """A tag pushed to the source is at the target in seconds, byte for byte; lag drops to ~0."""
    repository = f"{setup.prefix}/app"
    image = make_image(f"{repository}/v1", layers=2)
    async with RegistryWriter(setup.source, auth=setup.auth) as writer:
        await writer.push_image(repository, image, "v1")
    latency = await wait_for_tag(setup.target, repository, "v1", within=90)
    print(f"\nwebhook-to-target latency: {latency:.2f}s (policy interval 1h)")

    raw, _ = await get_manifest(setup.target, repository, "v1")
    assert Digest.of(raw) == image.digest
    assert raw == image.raw
    daemon = setup.daemon
    labels = {"policy": "mirror", "target": "dst"}
    wait_for(
        lambda: (daemon.sample("drd_replication_pending_changes", **labels) or 0) == 0,
        10,
        "no pending change",
    )
    copied = daemon.sample("drd_replication_artifacts_total", **labels, outcome="copied")
    assert copied is not None
    assert copied >= 1.0
    push_runs = daemon.sample(
        "drd_replication_runs_total", policy="mirror", trigger="push", outcome="ok"
    )
    assert push_runs is not None
    assert push_runs >= 1.0
    lag = daemon.sample("drd_replication_lag_seconds", **labels)
    assert lag is not None
    assert lag < 5.0, f"lag {lag}s right after the push was replicated"
    copied_bytes = daemon.sample("drd_replication_bytes_total", **labels) or 0.0
    assert copied_bytes >= sum(blob.size for blob in image.blobs)


async def test_a_push_no_policy_selects_is_accepted_and_ignored(setup: Setup) -> None:
    """Pushes outside every policy are answered 202 and counted as ignored; nothing moves."""
    other = f"other{uuid.uuid4().hex[:8]}/app"
    selected = f"{setup.prefix}/after"
    ignored_before = setup.daemon.sample("drd_webhook_events_total", outcome="ignored") or 0.0
    async with RegistryWriter(setup.source, auth=setup.auth) as writer:
        await writer.push_image(other, make_image(other), "v1")
        await writer.push_image(selected, make_image(selected), "v1")
    # Notifications arrive in order: once the later push is replicated the first was handled.
    await wait_for_tag(setup.target, selected, "v1", within=30)
    assert await list_tags(setup.target, other) == []
    ignored_after = setup.daemon.sample("drd_webhook_events_total", outcome="ignored") or 0.0
    assert ignored_after > ignored_before


REJECTIONS = {
    "no-token": 401,
    "wrong-token": 401,
    "malformed-json": 400,
    "oversized": 413,
    "dotdot-repository": 400,
}


def rejected_request(setup: Setup, case: str, event: bytes) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a webhook request spoilt the way *case* says."""
    body = event
    headers = {"Content-Type": DISTRIBUTION_EVENTS, "Authorization": f"Bearer {setup.token}"}
    match case:
        case "no-token":
            del headers["Authorization"]
        case "wrong-token":
            headers["Authorization"] = f"Bearer {setup.token[:-1]}x"
        case "malformed-json":
            body = body[:-3]
        case "oversized":
            body = body[:-2] + b" " * (1024 * 1024) + body[-2:]
        case "dotdot-repository":
            body = body.replace(b'"repository": "', b'"repository": "../../')
    return body, headers


async def test_rejected_webhooks_replicate_nothing(setup: Setup) -> None:
    """
    No token, a wrong token, bad JSON, an oversized body, a hostile name: each is refused
    with its status and the image it names stays put; sent properly, the same event moves it.
    """
    events: dict[str, bytes] = {}
    for case, status in REJECTIONS.items():
        repository = f"{setup.prefix}q/{case}"
        await push_image(setup.quiet, repository, make_image(repository), "v1")  # no notification
        event = {"action": "push", "target": {"repository": repository, "tag": "v1"}}
        events[case] = json.dumps({"events": [event]}).encode()
        before = setup.daemon.sample("drd_webhook_requests_total", status=str(status)) or 0.0
        assert setup.post_webhook(*rejected_request(setup, case, events[case])) == status, case
        after = setup.daemon.sample("drd_webhook_requests_total", status=str(status))
        assert after == before + 1
    # Longer than the push window: a run, had one been triggered, would have finished.
    await asyncio.sleep(2.5)
    for case in REJECTIONS:
        assert await list_tags(setup.target, f"{setup.prefix}q/{case}") == [], case
    assert setup.daemon.alive()

    headers = {"Content-Type": DISTRIBUTION_EVENTS, "Authorization": f"Bearer {setup.token}"}
    for case in REJECTIONS:
        assert setup.post_webhook(events[case], headers) == 202
    for case in REJECTIONS:
        await wait_for_tag(setup.target, f"{setup.prefix}q/{case}", "v1", within=30)


async def test_sighup_with_a_broken_config_keeps_the_config_in_force(setup: Setup) -> None:
    """An invalid config on SIGHUP is logged and refused; the daemon keeps serving the old one."""
    daemon = setup.daemon
    broken = setup.good_config.replace('interval = "1h"', 'interval = "often"', 1)
    daemon.config.write_text(broken + "\n[daemon.unknown]\n")
    try:
        daemon.send(signal.SIGHUP)
        failed = wait_for(lambda: daemon.events("daemon.reload_failed"), 15, "the reload to fail")
        assert any("replication[mirror].interval" in line for line in failed[-1]["errors"])
        assert daemon.sample("drd_config_last_reload_successful") == 0.0
        assert daemon.alive()
        assert daemon.ready()
        # The old config is in force: its policy still replicates a push at once.
        repository = f"{setup.prefix}/after-hup"
        async with RegistryWriter(setup.source, auth=setup.auth) as writer:
            await writer.push_image(repository, make_image(repository), "v1")
        await wait_for_tag(setup.target, repository, "v1", within=30)
    finally:
        daemon.config.write_text(setup.good_config)
    reloads = len(daemon.events("daemon.reloading"))
    daemon.send(signal.SIGHUP)
    wait_for(lambda: len(daemon.events("daemon.reloading")) > reloads, 15, "a valid reload")
    wait_for(lambda: daemon.sample("drd_config_last_reload_successful") == 1.0, 15, "reload ok")
    wait_for(daemon.ready, 15, "/readyz after the reload")


def test_the_snapshot_job_runs_on_start_and_is_recorded(setup: Setup) -> None:
    """With [snapshots], the daemon commits a snapshot at start and exports when it did."""
    daemon = setup.daemon
    [finished] = daemon.events("snapshot.run_finished")[:1]
    assert finished["ok"] is True
    committed = daemon.sample("drd_snapshot_last_success_timestamp_seconds", endpoint="src")
    assert committed is not None
    assert time.time() - 300 < committed <= time.time()
    assert daemon.sample("drd_snapshot_runs_total", endpoint="src", outcome="ok") == 1.0
    assert daemon.sample("drd_snapshot_interval_seconds", endpoint="src") == 3600.0
    listed = run_drd("snapshot", "list", "--json", "--config", str(daemon.config), env=setup.env)
    assert listed.returncode == 0, listed.stderr.decode()
    assert [s["id"] for s in json.loads(listed.stdout)["snapshots"]] == [finished["id"]]


def test_per_node_metrics_carry_the_host_name_as_node_and_cluster_wide_ones_none(
    setup: Setup,
) -> None:
    """
    A single node without ``[daemon] node``: every per-node series on /metrics carries
    node="<host name>" (stable across restarts); lag, pending and the targets carry no node.
    """
    host = socket.gethostname()
    families = {
        family.name: family
        for family in text_string_to_metric_families(setup.daemon.metrics_text())
    }
    for name in ("drd_build_info", "drd_replication_runs", "drd_snapshot_runs", "drd_job_runs"):
        samples = families[name].samples
        assert samples, name
        assert {s.labels.get("node") for s in samples} == {host}, name
    for name in PER_NODE:
        assert all(s.labels.get("node") == host for s in families[name].samples), name
    for name in (
        "drd_replication_lag_seconds",
        "drd_replication_pending_changes",
        "drd_snapshot_last_success_timestamp_seconds",
        "drd_rpo_target_seconds",
    ):
        samples = families[name].samples
        assert samples, name
        assert all("node" not in s.labels for s in samples), name


def test_status_prints_what_the_daemon_recorded(setup: Setup) -> None:
    """`drd status --json` reads the running daemon's state: runs, last success, lag."""
    result = run_drd("status", "--json", "--config", str(setup.daemon.config), env=setup.env)
    assert result.returncode == 0, result.stderr.decode()
    document = json.loads(result.stdout)
    mirror = [r for r in document["replication"] if r["policy"] == "mirror"]
    assert [r["target"] for r in mirror] == ["dst"]
    assert mirror[0]["last_success"] is not None
    assert mirror[0]["pending"] == 0
    triggers = {(r["job"], r["trigger"], r["outcome"]) for r in document["runs"]}
    assert ("push:mirror", "push", "ok") in triggers
    assert ("replicate:mirror", "schedule", "ok") in triggers
    human = run_drd("status", "--config", str(setup.daemon.config), env=setup.env)
    assert human.returncode == 0
    assert b"mirror -> dst: lag " in human.stdout


def test_the_password_and_token_appear_in_no_output(setup: Setup) -> None:
    """Every byte drd printed (logs, metrics, status, config check) is free of the secrets."""
    config = str(setup.daemon.config)
    outputs = {
        "daemon": setup.daemon.output(),
        "metrics": setup.daemon.metrics_text().encode(),
        "readyz": http_get(f"{setup.daemon.url}/readyz")[1],
    }
    for args in (["status", "--json"], ["status"], ["config", "check", "--json"]):
        result = run_drd(*args, "--config", config, env=setup.env)
        outputs[" ".join(args)] = result.stdout + result.stderr
    assert b"replicate.run_finished" in outputs["daemon"]  # the daemon did log its work
    for secret in (setup.password, setup.token):
        for name, data in outputs.items():
            assert secret.encode() not in data, f"a secret appears in the {name} output"


def test_an_invalid_config_exits_78_before_doing_anything(tmp_path: Path) -> None:
    """A config that does not validate is exit 78 (systemd will not restart), errors named."""
    config = tmp_path / "drd.toml"
    config.write_text('version = 1\n[endpoints.src]\nurl = "ftp://nowhere"\n')
    result = run_drd("run", "--config", str(config), env=daemon_env(tmp_path / "home"))
    assert result.returncode == 78
    assert b"endpoints.src.url" in result.stderr


def test_a_busy_listen_address_exits_69(tmp_path: Path, target_registry: LocalRegistry) -> None:
    """When the listen port is taken (a previous process still draining), exit 69: retry later."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "drd.toml"
        config.write_text(
            render_config(
                {"dst": {"url": target_registry.url}},
                [],
                {"listen": f"127.0.0.1:{port}", "state_dir": str(tmp_path / "state")},
            )
        )
        result = run_drd("run", "--config", str(config), env=daemon_env(tmp_path / "home"))
    assert result.returncode == 69, result.stderr.decode()
    assert f"cannot listen on 127.0.0.1:{port}".encode() in result.stderr
