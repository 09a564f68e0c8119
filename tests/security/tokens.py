"""
A token server for distribution's ``auth.token`` mode, on loopback.

It checks HTTP basic credentials, grants what each requested scope asks for, and
signs ES256 JWTs with a throwaway key whose self-signed certificate is the
registry's ``rootcertbundle`` (the token carries it in ``x5c``). It records every
token request, so tests count fetches per scope and check what credentials
arrived, and it can hand out already-expired tokens on demand to force a 401.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.faults import ThreadedServer

SERVICE = "drd-test-registry"
ISSUER = "drd-test-token-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Issued:
    """One token request and what came of it."""

    at: float
    scopes: tuple[str, ...]
    user: str | None  # who authenticated; None when anonymous
    authorization: str | None  # the Authorization header as received
    status: int
    token: str = ""


def parse_scope(scope: str) -> dict[str, Any] | None:
    """``repository:name:pull,push`` as a JWT ``access`` entry; None when malformed."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name or not actions:
        return None
    return {"type": kind, "name": name, "actions": actions.split(",")}


class TokenServer(ThreadedServer):
    """distribution's token authentication server, enough of it for tests."""

    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, str] | None = None,
        lifetime: int = 300,
        name: str = "token-server",
    ) -> None:
        super().__init__(name)
        self.users = dict(users or {})
        self.lifetime = lifetime
        self.expire_next = 0  # how many of the next tokens are issued already expired
        self.issued: list[Issued] = []
        self._lock = threading.Lock()
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "drd test token signer")])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        workdir.mkdir(parents=True, exist_ok=True)
        self.bundle = workdir / "token-signer.pem"
        self.bundle.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def registry_config(self, realm: str | None = None) -> str:
        """The ``auth.token`` block for `LocalRegistry.start(extra_config=…)`."""
        return (
            "auth:\n"
            "  token:\n"
            f'    realm: "{realm or self.url + "/token"}"\n'
            f'    service: "{SERVICE}"\n'
            f'    issuer: "{ISSUER}"\n'
            f'    rootcertbundle: "{self.bundle}"\n'
        )

    def mint(self, access: Sequence[Mapping[str, Any]], *, expired: bool = False) -> str:
        """A signed token granting *access* (``[{"type", "name", "actions"}]``)."""
        now = int(time.time())
        # distribution allows 60 s of clock skew past "exp": expired means well past it.
        exp = now - 600 if expired else now + self.lifetime
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": ISSUER,
            "sub": "drd-test",
            "aud": SERVICE,
            "exp": exp,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": list(access),
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{_b64url(signature)}"

    def admin_headers(self, repository: str) -> dict[str, str]:
        """An Authorization header with pull access to *repository*, for checkers."""
        token = self.mint([{"type": "repository", "name": repository, "actions": ["pull"]}])
        return {"Authorization": f"Bearer {token}"}

    def requests(self) -> list[Issued]:
        """Every token request so far."""
        with self._lock:
            return list(self.issued)

    def scopes(self) -> list[str]:
        """Every scope a successful token request asked for, in order (repeats kept)."""
        return [s for i in self.requests() if i.status == 200 for s in i.scopes]

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self.issued.clear()

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self._token)
        return app

    def _user(self, header: str | None) -> tuple[str | None, bool]:
        """(user, acceptable): anonymous is acceptable, wrong credentials are not."""
        if not header:
            return None, True
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None, False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None, False
        return user, self.users.get(user) == password

    async def _token(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization")
        scopes = tuple(request.query.getall("scope", []))
        user, acceptable = self._user(header)
        if not acceptable or (self.users and user is None and scopes):
            self._record(scopes, user, header, 401)
            return web.json_response({"details": "bad credentials"}, status=401)
        access = [a for a in map(parse_scope, scopes) if a is not None]
        with self._lock:
            expired = self.expire_next > 0
            self.expire_next = max(0, self.expire_next - 1)
        token = self.mint(access, expired=expired)
        self._record(scopes, user, header, 200, token)
        return web.json_response(
            {"token": token, "access_token": token, "expires_in": self.lifetime}
        )

    def _record(
        self,
        scopes: tuple[str, ...],
        user: str | None,
        header: str | None,
        status: int,
        token: str = "",
    ) -> None:
        with self._lock:
            self.issued.append(Issued(time.monotonic(), scopes, user, header, status, token))
