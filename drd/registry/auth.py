"""
Registry authentication: WWW-Authenticate parsing, the bearer-token flow, credential lookup.

The challenge parser is written here rather than taken from a library: the one on
PyPI is unmaintained, and the grammar drd needs (RFC 7235 auth-params with quoted
strings) fits in twenty lines.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlencode, urlsplit

from drd.config import Credentials

_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
_MAX_CHALLENGE = 4096
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 6750's b64token is stricter; visible ASCII is what a header line can carry safely.
_TOKEN = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class Challenge:
    """One parsed ``WWW-Authenticate`` challenge."""

    scheme: str  # lower-case: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def parse_challenge(header: str) -> Challenge | None:
    """Parse a ``WWW-Authenticate`` value; None when it is empty, huge or unparseable."""
    if not header or len(header) > _MAX_CHALLENGE:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if match is None or match.end() == pos:
            return None
        key, value = match.group(1).lower(), match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[key] = value
        pos = match.end()
    return Challenge(scheme.lower(), params)


def basic_header(creds: Credentials) -> str:
    """The ``Authorization: Basic`` value for username + password credentials."""
    if creds.username is None or creds.password is None:
        raise RuntimeError("basic_header called without a username and password")
    raw = f"{creds.username}:{creds.password.get_secret_value()}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def token_url(challenge: Challenge, scope: str) -> str | None:
    """
    The token request URL for *challenge* and *scope*, or None without a usable realm.

    A realm with credentials in it (``user:pw@host``) is not usable: they are the
    registry's choice of credentials, and would replace ours (`has_userinfo`).
    """
    realm = challenge.realm
    parts = split_url(realm)
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    if has_userinfo(realm) or effective_port(parts) is None:
        return None
    query = []
    if service := challenge.params.get("service"):
        query.append(("service", service))
    if scope:
        query.append(("scope", scope))
    sep = "&" if parts.query else "?"
    return realm + (sep + urlencode(query) if query else "")


def may_send_credentials(registry_url: str, realm: str, allowed_hosts: frozenset[str]) -> bool:
    """
    Whether the registry's credentials may go to *realm*.

    Only to the registry's own host and port, or a host named in the endpoint's
    ``auth_hosts`` (``host`` for the scheme's default port, ``host:port`` for another),
    and never over plain http to anything but loopback: a hostile challenge must not
    harvest them.
    """
    reg, tok = urlsplit(registry_url), urlsplit(realm)
    port = effective_port(tok)
    if port is None or not tok.hostname or "@" in tok.netloc:
        return False
    # Host and port, not host alone: another port is another server, maybe another user's.
    same = (tok.hostname, port) == (reg.hostname, effective_port(reg))
    named = f"{_bracketed(tok.hostname)}:{port}" in allowed_hosts or (
        port == _DEFAULT_PORTS[tok.scheme] and tok.hostname in allowed_hosts
    )
    secure = tok.scheme == "https" or _is_loopback(tok.hostname)
    return (same or named) and secure


def effective_port(parts: SplitResult) -> int | None:
    """The port *parts* connect to (the scheme's default when none is given); None if invalid."""
    try:
        port = parts.port
    except ValueError:
        return None
    return port if port is not None else _DEFAULT_PORTS.get(parts.scheme)


def split_url(url: str) -> SplitResult | None:
    """*url* split into its parts; None when it cannot be (``http://[::1/``: a bad address)."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


def has_userinfo(url: str) -> bool:
    """Whether *url* carries ``user[:password]@`` before its host."""
    parts = split_url(url)
    return parts is not None and "@" in parts.netloc


def valid_token(token: str) -> bool:
    """Whether *token* can travel in an ``Authorization`` header: visible ASCII, no spaces."""
    return _TOKEN.fullmatch(token) is not None


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_loopback(host: str) -> bool:
    # An address, not a prefix: "127.0.0.1.example.com" is a name anyone can own.
    if host == "localhost":
        return True
    try:
        return bool(ipaddress.ip_address(host).is_loopback)
    except ValueError:
        return False
