"""
skopeo as an independent client: what drd wrote is read back by another implementation.

Every call gets its own empty registries.conf, registries.d, auth file and an
accept-anything policy, so skopeo only ever talks to the loopback registry it
is pointed at, with no credentials but the ones given. TLS verification is off:
the test registries serve plain HTTP on 127.0.0.1.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from drd.oci.digest import Digest
from tests.servers import LocalRegistry, missing

SKOPEO_HINT = "apt-get install skopeo"

Host = str | LocalRegistry


class SkopeoError(AssertionError):
    """skopeo exited non-zero; carries its arguments and stderr."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"skopeo {' '.join(args)} exited {returncode}: {stderr.strip()[-2000:]}")
        self.returncode = returncode
        self.stderr = stderr


def skopeo_binary() -> Path:
    """The skopeo binary; fails under CI and skips elsewhere when it is missing."""
    found = shutil.which("skopeo")
    if found is None:
        missing("skopeo", SKOPEO_HINT)
        raise AssertionError("unreachable")  # missing() always raises
    return Path(found)


@functools.cache
def _config_dir() -> Path:
    """A private folder of empty skopeo configuration, removed when the process exits."""
    root = Path(tempfile.mkdtemp(prefix="drd-skopeo-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    (root / "registries.conf").write_text("# no mirrors, no search registries\n")
    (root / "containers.conf").write_text("")
    (root / "registries.d").mkdir()
    (root / "auth.json").write_text('{"auths": {}}\n')
    (root / "policy.json").write_text(
        json.dumps({"default": [{"type": "insecureAcceptAnything"}]}) + "\n"
    )
    (root / "tmp").mkdir()
    return root


def _env() -> dict[str, str]:
    conf = _config_dir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k in ("PATH", "LANG", "LC_ALL", "TZ") or k.startswith("LC_")
    }
    env.update(
        HOME=str(conf),
        CONTAINERS_REGISTRIES_CONF=str(conf / "registries.conf"),
        CONTAINERS_CONF=str(conf / "containers.conf"),
        REGISTRY_AUTH_FILE=str(conf / "auth.json"),
        DOCKER_CONFIG=str(conf),
        TMPDIR=str(conf / "tmp"),
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """Run ``skopeo <global options> *args``; raise `SkopeoError` when it fails."""
    conf = _config_dir()
    argv = [
        str(skopeo_binary()),
        "--policy",
        str(conf / "policy.json"),
        "--registries.d",
        str(conf / "registries.d"),
        "--tmpdir",
        str(conf / "tmp"),
        *args,
    ]
    proc = subprocess.run(
        argv,
        capture_output=True,
        timeout=timeout,
        env=_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode != 0:
        raise SkopeoError(list(args), proc.returncode, proc.stderr.decode(errors="replace"))
    return proc


def _host(host: Host) -> str:
    return host.host if isinstance(host, LocalRegistry) else host


def image_ref(host: Host, repository: str, ref: str | Digest | None = None) -> str:
    """``docker://host/repository[:tag|@digest]``."""
    base = f"docker://{_host(host)}/{repository}"
    if ref is None:
        return base
    text = str(ref)
    return f"{base}@{text}" if ":" in text else f"{base}:{text}"


def _creds(prefix: str, creds: str | None) -> list[str]:
    return [f"--{prefix}creds", creds] if creds else [f"--{prefix}no-creds"]


def inspect_raw(
    host: Host, repository: str, ref: str | Digest, *, creds: str | None = None
) -> bytes:
    """The manifest bytes exactly as the registry serves them under *ref* (tag or digest)."""
    return run(
        "inspect",
        "--raw",
        "--tls-verify=false",
        *_creds("", creds),
        image_ref(host, repository, ref),
    ).stdout


def inspect(
    host: Host, repository: str, ref: str | Digest, *, creds: str | None = None
) -> dict[str, Any]:
    """``skopeo inspect`` (for an index: the linux/amd64 image) without listing tags."""
    out = run(
        "inspect",
        "--no-tags",
        "--tls-verify=false",
        *_creds("", creds),
        image_ref(host, repository, ref),
    ).stdout
    doc: dict[str, Any] = json.loads(out)
    return doc


def list_tags(host: Host, repository: str, *, creds: str | None = None) -> list[str]:
    """The repository's tags as skopeo lists them, sorted."""
    out = run(
        "list-tags", "--tls-verify=false", *_creds("", creds), image_ref(host, repository)
    ).stdout
    return sorted(json.loads(out).get("Tags") or [])


def copy(
    src: str,
    dest: str,
    *,
    all_images: bool = True,
    preserve_digests: bool = True,
    src_creds: str | None = None,
    dest_creds: str | None = None,
    extra: tuple[str, ...] = (),
    timeout: float = 300,
) -> None:
    """
    ``skopeo copy`` from *src* to *dest* (full transport references, e.g. `image_ref`).

    By default copies every image of an index and refuses to change any digest.
    """
    args = ["copy", "--quiet", "--retry-times", "0"]
    if all_images:
        args.append("--all")
    if preserve_digests:
        args.append("--preserve-digests")
    if src.startswith("docker://"):
        args += ["--src-tls-verify=false", *_creds("src-", src_creds)]
    if dest.startswith("docker://"):
        args += ["--dest-tls-verify=false", *_creds("dest-", dest_creds)]
    run(*args, *extra, src, dest, timeout=timeout)


def sync(
    src_host: Host,
    repository: str,
    dest_host: Host,
    dest_prefix: str,
    *,
    extra: tuple[str, ...] = (),
    timeout: float = 600,
) -> None:
    """``skopeo sync`` every tag of *repository* to ``dest_host/dest_prefix/<last path part>``."""
    run(
        "sync",
        "--all",
        "--preserve-digests",
        "--retry-times",
        "0",
        "--src",
        "docker",
        "--dest",
        "docker",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-no-creds",
        "--dest-no-creds",
        *extra,
        f"{_host(src_host)}/{repository}",
        f"{_host(dest_host)}/{dest_prefix}",
        timeout=timeout,
    )


def delete(host: Host, repository: str, ref: str | Digest, *, creds: str | None = None) -> None:
    """``skopeo delete``: removes the manifest (and so every tag on it)."""
    run("delete", "--tls-verify=false", *_creds("", creds), image_ref(host, repository, ref))
