"""The daemon's scheduled pass checks its endpoints first, as `drd replicate` does."""

from __future__ import annotations

import signal
from pathlib import Path

from drd.oci.digest import Digest
from tests.daemon.process import daemon_env, render_config, running_daemon, wait_for
from tests.faults import Fault, fault_proxy
from tests.images import get_manifest, make_image, push_image
from tests.servers import LocalRegistry, free_port


async def test_a_scheduled_pass_skips_a_dead_target_and_copies_to_the_live_one(
    tmp_path: Path,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
) -> None:
    """
    One target resets every connection: the pass logs it unreachable once, asks it for
    nothing but ``/v2/``, fails no item there, counts one error for it, and the live
    target gets the image byte for byte.
    """
    image = make_image(f"{repo}/daemon-reach")
    await push_image(source_registry, repo, image, "v1")
    port = free_port()
    with fault_proxy(third_registry.url) as dead:
        dead.add(Fault.reset())
        config = tmp_path / "drd.toml"
        config.write_text(
            render_config(
                {
                    "src": {"url": source_registry.url},
                    "dr": {"url": dead.url},
                    "live": {"url": target_registry.url},
                },
                [
                    {
                        "name": "p",
                        "source": "src",
                        "targets": ["dr", "live"],
                        "repositories": [repo],
                        "interval": "1h",
                    }
                ],
                {"listen": f"127.0.0.1:{port}", "state_dir": str(tmp_path / "state")},
                extra="\n[retry]\nattempts = 4\nwait_initial = 0.0\nwait_max = 0.0\n",
            )
        )
        env = daemon_env(tmp_path / "home")
        with running_daemon(config, tmp_path, port, env, stop=signal.SIGTERM) as daemon:
            wait_for(lambda: daemon.events("replicate.run_finished"), 60, "the first pass")
            unreachable = daemon.events("endpoint.unreachable")
            failed_items = daemon.events("replicate.target_failed")
            errors = daemon.sample(
                "drd_replication_errors_total",
                policy="p",
                target="dr",
                reason="RegistryUnavailable",
            )
        asked = {(s.method, s.target) for s in dead.requests()}

    assert [(e["endpoint"], e.get("job")) for e in unreachable] == [("dr", "replicate:p")]
    assert failed_items == []
    assert errors == 1.0
    assert asked == {("GET", "/v2/")}
    raw, _ = await get_manifest(target_registry, repo, "v1")
    assert Digest.of(raw) == image.digest
