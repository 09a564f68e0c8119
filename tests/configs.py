"""TOML configs for tests: written to a file, built from the pieces most tests share."""

from __future__ import annotations

from pathlib import Path


def write_toml(path: Path, text: str) -> Path:
    """Write a config file and return its path."""
    path.write_text(text.strip() + "\n")
    return path


def signed_replication(
    urls: dict[str, str], repo: str, key: Path, regions: dict[str, str] | None = None
) -> str:
    """
    ``version = 1``, one endpoint per *urls* entry (with its ``region`` from *regions*),
    the trust policy ``release`` (the public key file *key*) and the policy ``prod``
    copying *repo* from ``primary`` to ``dr`` with ``require_signature = "release"``.
    """
    regions = regions or {}
    endpoints = "".join(
        f'[endpoints.{name}]\nurl = "{url}"\n'
        + (f'region = "{regions[name]}"\n' if name in regions else "")
        + "\n"
        for name, url in urls.items()
    )
    return f"""
version = 1

{endpoints}[trust.release]
keys = ["{key}"]

[[replication]]
name = "prod"
source = "primary"
targets = ["dr"]
repositories = ["{repo}"]
require_signature = "release"
"""


def local_daemon(state_dir: Path) -> str:
    """A ``[daemon]`` state directory of the test's own and quick retries."""
    return f"""
[daemon]
state_dir = "{state_dir}"

[retry]
attempts = 2
wait_initial = 0.0
wait_max = 0.0
"""
