"""
Real servers on loopback for integration tests.

`LocalRegistry` runs Debian's ``docker-registry`` (CNCF distribution 2.8) on
127.0.0.1 with filesystem storage; `moto_server` runs moto's S3 server in a
thread. Everything listens on 127.0.0.1 on a free port, and every process is
stopped by its own PID.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
REGISTRY_HINT = "apt-get install docker-registry"
MOTO_HINT = 'pip install "moto[server]"'

# Seconds a registry gets to answer GET /v2/ after it was started.
START_TIMEOUT = 15.0
# Seconds a registry gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0

_PR_SET_PDEATHSIG = 1
try:
    # Resolved once here, not in the child: a forked child must not load libraries.
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: children simply outlive a killed test run
    _prctl = None


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM this child when pytest dies, so no registry is left behind."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def missing(what: str, hint: str) -> None:
    """Fail under CI, skip elsewhere, saying how to install *what*."""
    # Imported here, not at the top: the demo uses these helpers without the test toolchain.
    import pytest

    message = f"{what} is not available: {hint}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def registry_binary() -> Path:
    """The distribution binary; fails under CI and skips elsewhere when it is missing."""
    if REGISTRY_BINARY.is_file() and os.access(REGISTRY_BINARY, os.X_OK):
        return REGISTRY_BINARY
    found = shutil.which("docker-registry")
    if found:
        return Path(found)
    missing("docker-registry", REGISTRY_HINT)
    raise AssertionError("unreachable")  # missing() always raises


# ---------------------------------------------------------------------------
# TLS material and htpasswd files


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA, a server certificate for 127.0.0.1, and a client certificate."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path

    def client_context(self, *, with_client_cert: bool = True) -> ssl.SSLContext:
        """An SSL context that trusts the CA and, when asked, presents the client certificate."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if with_client_cert:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


def make_tls(directory: Path) -> TlsFiles:
    """Write a CA, a server cert (SAN 127.0.0.1, localhost) and a client cert into *directory*."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("drd test CA"))
        .issuer_name(name("drd test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common_name: str, usage: x509.ObjectIdentifier, san: bool) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common_name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                        x509.DNSName("localhost"),
                    ]
                ),
                critical=False,
            )
        return key, builder.sign(ca_key, hashes.SHA256())

    server_key, server_cert = leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, True)
    client_key, client_cert = leaf("drd test client", ExtendedKeyUsageOID.CLIENT_AUTH, False)

    files = TlsFiles(
        ca=directory / "ca.pem",
        cert=directory / "server.pem",
        key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    pem = serialization.Encoding.PEM
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    files.cert.write_bytes(server_cert.public_bytes(pem))
    files.client_cert.write_bytes(client_cert.public_bytes(pem))
    write_key(server_key, files.key)
    write_key(client_key, files.client_key)
    return files


def bcrypt_hash(password: str) -> str:
    """
    A bcrypt hash of *password*, the only scheme distribution's htpasswd accepts.

    Uses libcrypt (libxcrypt, in every Debian) at cost 4 so tests stay fast,
    falling back to apache2-utils' ``htpasswd`` when libcrypt is not there.
    """
    try:
        lib = ctypes.CDLL("libcrypt.so.1")
        lib.crypt_gensalt.restype = ctypes.c_char_p
        lib.crypt_gensalt.argtypes = [
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        lib.crypt.restype = ctypes.c_char_p
        lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        salt = lib.crypt_gensalt(b"$2b$", 4, None, 0)
        hashed = lib.crypt(password.encode(), salt) if salt else None
        if hashed and hashed.startswith(b"$2"):
            return str(hashed.decode())
    except (OSError, AttributeError):
        pass
    if shutil.which("htpasswd") is None:
        missing("a bcrypt implementation", "apt-get install libcrypt1 (or apache2-utils)")
    out = subprocess.run(
        ["htpasswd", "-nbBC", "4", "user", password],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout.decode()
    return out.strip().partition(":")[2]


def write_htpasswd(path: Path, users: Mapping[str, str]) -> Path:
    """Write an htpasswd file for *users* (name → password) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{user}:{bcrypt_hash(pw)}\n" for user, pw in users.items()))
    return path


# ---------------------------------------------------------------------------
# distribution's config


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    # JSON strings are valid double-quoted YAML scalars.
    return json.dumps(str(value))


def _yaml(value: Mapping[str, Any], indent: int = 0) -> list[str]:
    """Block-style YAML for nested mappings, lists of scalars and lists of mappings."""
    pad = "  " * indent
    lines: list[str] = []
    for key, item in value.items():
        if isinstance(item, Mapping):
            lines.append(f"{pad}{key}:")
            lines.extend(_yaml(item, indent + 1))
        elif isinstance(item, list):
            lines.append(f"{pad}{key}:")
            for element in item:
                if isinstance(element, Mapping):
                    nested = _yaml(element, indent + 2)
                    first = nested[0].lstrip()
                    lines.append(f"{pad}  - {first}")
                    lines.extend(nested[1:])
                else:
                    lines.append(f"{pad}  - {_scalar(element)}")
        else:
            lines.append(f"{pad}{key}: {_scalar(item)}")
    return lines


def registry_config(
    *,
    root: Path,
    addr: str,
    notifications_url: str | None = None,
    notification_headers: Mapping[str, str] | None = None,
    htpasswd: Path | None = None,
    tls: TlsFiles | None = None,
    require_client_cert: bool = False,
    extra_config: str = "",
) -> str:
    """
    distribution's YAML config for a test registry at *addr* storing under *root*.

    Deletes are enabled and upload purging is off (it would race long tests).
    *extra_config* is raw YAML appended at the top level.
    """
    http: dict[str, Any] = {"addr": addr}
    if tls is not None:
        http["tls"] = {"certificate": str(tls.cert), "key": str(tls.key)}
        if require_client_cert:
            http["tls"]["clientcas"] = [str(tls.ca)]
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "warn", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "drd-test", "path": str(htpasswd)}}
    if notifications_url is not None:
        endpoint: dict[str, Any] = {
            "name": "drd",
            "url": notifications_url,
            "timeout": "1s",
            "threshold": 1,
            "backoff": "1s",
        }
        if notification_headers:
            endpoint["headers"] = {k: [v] for k, v in notification_headers.items()}
        config["notifications"] = {"endpoints": [endpoint]}
    text = "\n".join(_yaml(config)) + "\n"
    if extra_config:
        text += extra_config if extra_config.endswith("\n") else extra_config + "\n"
    return text


# ---------------------------------------------------------------------------
# the registry process


class RegistryProcess:
    """
    One ``docker-registry serve`` process that can be stopped and started again.

    The port, config and storage stay the same across restarts, so outage tests
    see the same registry come back with the same content.
    """

    def __init__(
        self,
        binary: Path,
        config: Path,
        log: Path,
        port: int,
        *,
        tls: TlsFiles | None = None,
        require_client_cert: bool = False,
    ) -> None:
        self.binary = binary
        self.config = config
        self.log = log
        self.port = port
        self._tls = tls
        self._require_client_cert = require_client_cert
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The PID of the running process, or None."""
        return self._proc.pid if self.running and self._proc else None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the process and wait until GET /v2/ answers 200 or 401."""
        if self.running:
            return
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(self.binary), "serve", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Only prctl runs between fork and exec; it was resolved before the fork.
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the process by its PID and wait; SIGKILL it if it does not exit in time."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the process, as a crash would, and reap it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop, then start on the same port with the same storage."""
        self.stop()
        self.start(timeout)

    def _probe(self) -> int:
        conn: http.client.HTTPConnection
        if self._tls is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        else:
            context = self._tls.client_context(with_client_cert=self._require_client_cert)
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=2, context=context)
        try:
            conn.request("GET", "/v2/")
            return conn.getresponse().status
        finally:
            conn.close()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc else None
                raise RegistryStartError(
                    f"docker-registry exited with {code} before answering:\n{self.log_tail()}",
                    address_in_use="address already in use" in self.log_tail(),
                )
            try:
                status = self._probe()
            except (OSError, http.client.HTTPException) as exc:
                last = exc
            else:
                if status in (200, 401):
                    return
                last = f"HTTP {status}"
            time.sleep(0.05)
        raise RegistryStartError(
            f"docker-registry on port {self.port} did not answer GET /v2/ within {timeout}s "
            f"(last: {last}):\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        """The last *lines* lines the process wrote."""
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class RegistryStartError(RuntimeError):
    """The registry did not come up; the message carries its log."""

    def __init__(self, message: str, *, address_in_use: bool = False) -> None:
        super().__init__(message)
        self.address_in_use = address_in_use


@dataclass(frozen=True)
class LocalRegistry:
    """A running test registry: ``host`` is what a reference's registry part will be."""

    host: str  # "127.0.0.1:<port>"
    root: Path  # filesystem storage root
    scheme: str = "http"
    tls: TlsFiles | None = None
    htpasswd: Path | None = None
    process: RegistryProcess | None = field(default=None, compare=False, repr=False)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:5000``."""
        return f"{self.scheme}://{self.host}"

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        return int(self.host.rpartition(":")[2])

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        binary: Path,
        workdir: Path,
        *,
        notifications_url: str | None = None,
        notification_headers: Mapping[str, str] | None = None,
        htpasswd: Path | None = None,
        tls: TlsFiles | None = None,
        require_client_cert: bool = False,
        extra_config: str = "",
    ) -> Iterator[LocalRegistry]:
        """
        Start a registry on 127.0.0.1:<free port> storing under ``workdir/data``.

        Writes ``workdir/config.yml`` and logs to ``workdir/registry.log``. Stops the
        process (by its PID) on exit. A port taken between choosing and binding is
        retried with another port.
        """
        workdir.mkdir(parents=True, exist_ok=True)
        root = workdir / "data"
        config = workdir / "config.yml"
        for attempt in range(5):
            port = free_port()
            config.write_text(
                registry_config(
                    root=root,
                    addr=f"127.0.0.1:{port}",
                    notifications_url=notifications_url,
                    notification_headers=notification_headers,
                    htpasswd=htpasswd,
                    tls=tls,
                    require_client_cert=require_client_cert,
                    extra_config=extra_config,
                )
            )
            process = RegistryProcess(
                binary,
                config,
                workdir / "registry.log",
                port,
                tls=tls,
                require_client_cert=require_client_cert,
            )
            try:
                process.start()
            except RegistryStartError as exc:
                if exc.address_in_use and attempt < 4:
                    continue
                raise
            break
        try:
            yield cls(
                host=f"127.0.0.1:{port}",
                root=root,
                scheme="https" if tls else "http",
                tls=tls,
                htpasswd=htpasswd,
                process=process,
            )
        finally:
            process.stop()

    def _proc(self) -> RegistryProcess:
        if self.process is None:
            raise RuntimeError("this LocalRegistry has no process handle")
        return self.process

    def stop(self) -> None:
        """Stop the process; the port then refuses connections."""
        self._proc().stop()

    def kill(self) -> None:
        """SIGKILL the process, as a crash would."""
        self._proc().kill()

    def resume(self) -> None:
        """Start the process again on the same port with the same storage."""
        self._proc().start()

    def restart(self) -> None:
        """Stop, then start again on the same port with the same storage."""
        self._proc().restart()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the registry's log."""
        return self._proc().log_tail(lines)

    def repository_dir(self, repository: str) -> Path:
        """Where distribution keeps *repository*'s links on disk."""
        return self.root / "docker" / "registry" / "v2" / "repositories" / repository

    def remove_tag(self, repository: str, tag: str) -> None:
        """
        Remove *tag* from disk, leaving the manifest in place.

        distribution 2.8 has no API to delete only a tag; its filesystem driver
        reads tags from disk on every request (no cache is configured), so
        removing the tag's directory is what a tag deletion would do.
        """
        path = self.repository_dir(repository) / "_manifests" / "tags" / tag
        if not path.is_dir():
            raise FileNotFoundError(f"no tag {tag!r} in {repository!r} at {self.host}")
        shutil.rmtree(path)


# ---------------------------------------------------------------------------
# S3 (moto)


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Run moto's S3 server on 127.0.0.1:<free port>; yield its endpoint URL."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        missing("moto's server", MOTO_HINT)
        raise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    """A synchronous boto3 S3 client for *endpoint*, test credentials, retries off.

    Retries off, not the default: a wedged request should fail the test, not
    replay a non-idempotent create against the server.
    """
    # boto3 ships no types; only botocore's stubs are installed.
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's fixed test credentials
        config=Config(retries={"max_attempts": 0, "mode": "standard"}),
    )
