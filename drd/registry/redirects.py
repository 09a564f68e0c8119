"""
Where a registry may send drd: redirect targets and the addresses hosts resolve to. Pure.

A blob GET may follow a registry's redirect to object storage on another host, but
only over http(s), never with our credentials (see `same_origin`), and never from a
registry that is not on loopback (or link-local) to an address that is: a hostile
registry must not turn drd into a client of the machine's own services or of the
cloud metadata endpoint.
"""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import SplitResult, urljoin, urlsplit

from drd.registry.auth import effective_port, has_userinfo

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

Kind = Literal["loopback", "link-local"]


def host_kind(host: str) -> Kind | None:
    """Whether *host* (an address, or a name) is loopback or link-local; None otherwise."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return "loopback"  # RFC 6761: these names are loopback wherever they resolve
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None  # a name: its addresses are checked when it resolves
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback or address.is_unspecified:
        return "loopback"  # 0.0.0.0 and :: reach the local machine
    if address.is_link_local:
        return "link-local"
    return None


def address_refusal(registry_host: str, host: str) -> str | None:
    """
    Why a registry on *registry_host* may not send drd to *host*; None when it may.

    The registry's own host is always fine; a loopback or link-local *host* only for
    a registry that is itself of that kind.
    """
    if host.lower() == registry_host.lower():
        return None
    kind = host_kind(host)
    if kind is None or host_kind(registry_host) == kind:
        return None
    return f"a {kind} address"


def redirect_target(registry_url: str, current_url: str, location: str) -> tuple[str, str | None]:
    """
    The absolute URL a ``Location`` header names, and why it must not be followed (or None).

    Refused: another scheme than http(s), userinfo, no host or a bad port, and the
    addresses `address_refusal` forbids.
    """
    try:
        url = urljoin(current_url, location.strip())
        parts = urlsplit(url)
    except ValueError:
        return location[:200], "a redirect to a URL that does not parse"
    if parts.scheme not in ("http", "https"):
        return url, f"a redirect to a {parts.scheme or 'relative'}: URL"
    if has_userinfo(url):
        return url, "a redirect with credentials in its URL"
    if not parts.hostname or effective_port(parts) is None:
        return url, "a redirect to a URL without a valid host and port"
    why = address_refusal(urlsplit(registry_url).hostname or "", parts.hostname)
    return url, (f"a redirect to {why}" if why else None)


def same_origin(url: str, other: str) -> bool:
    """Whether *url* and *other* share scheme, host and port: only then may credentials go."""
    return _origin(urlsplit(url)) == _origin(urlsplit(other))


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    return parts.scheme, (parts.hostname or ""), effective_port(parts)
