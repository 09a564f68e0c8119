"""
The configuration's field types: names, paths, durations, globs, regular expressions,
hooks and HTTP URLs, each validated with the error message a user sees;
and the limits and constants the models and the loader share.
"""

from __future__ import annotations

import ipaddress
import re
import string
from datetime import timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
)
from pydantic_core import PydanticCustomError

from drd.durations import MAX_SECONDS, parse_duration, seconds_to_timedelta
from drd.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/drd/drd.toml")
MASK = "********"

_MAX_CONFIG_BYTES = 16 * 1024 * 1024
_MAX_SECRET_BYTES = 64 * 1024
_MAX_PEM_BYTES = 1024 * 1024
_MAX_TRUST_STORE_FILES = 1024
_MAX_DOCKER_CONFIG_BYTES = 4 * 1024 * 1024
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class _Invalid(ValueError):
    """Problems found by a model validator, at paths relative to the model."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))
        self.problems = problems


_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_POLICY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# An OCI tag is at most 128 characters; a snapshot index key's tag spends 56 on all but
# the source (see drd.store.oci.key_tag).
_OCI_SOURCE_BUDGET = 128 - 56
# The OCI distribution spec's repository name (drd.oci.ref checks the same; config is a leaf).
_REPO_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"(?=.{{1,255}}$){_REPO_PART}(?:/{_REPO_PART})*")


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            "must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit"
        )
    return value


def _policy_name(value: str) -> str:
    if not _POLICY_NAME.fullmatch(value):
        raise ValueError("must be 1-63 letters, digits, '.', '-' or '_'")
    return value


def _notation_identity(value: str) -> str:
    # Imported here, not at module level: config stays a leaf that loads no crypto at import.
    from drd.trust.notation_trust import parse_identity

    try:
        parse_identity(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc
    return value


def _predicate_type(value: str) -> str:
    if not value or len(value) > 512 or any(c.isspace() for c in value):
        raise ValueError("must be a predicate type URI such as https://slsa.dev/provenance/v1")
    return value


def _path_input(value: object) -> object:
    if not isinstance(value, str | Path):
        raise PydanticCustomError("path_type", "must be a path (a string)")
    if isinstance(value, str):
        if not value:
            raise ValueError("path is empty")
        if len(value) > 4096:
            raise ValueError("path is longer than 4096 characters")
        if "\0" in value:
            raise ValueError("path contains a NUL character")
    return value


def _duration_input(value: object) -> object:
    if isinstance(value, bool):
        raise PydanticCustomError("duration_type", 'must be a duration such as "5m" or seconds')
    if isinstance(value, int | float):
        return seconds_to_timedelta(value)
    if isinstance(value, str) and not value.strip().lstrip("+-").upper().startswith("P"):
        return parse_duration(value)
    return value  # ISO 8601 ("PT5M") and timedelta: pydantic's own parser


def _bounded(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("duration must not be negative")
    if value.total_seconds() > MAX_SECONDS:
        raise ValueError(f"duration must be at most {MAX_SECONDS} seconds")
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("duration must be greater than zero")
    return value


def _glob(value: str) -> str:
    if not value or len(value) > 512:
        raise ValueError("pattern must be 1-512 characters")
    if any(char.isspace() or not char.isprintable() for char in value):
        raise ValueError("pattern must not contain spaces or control characters")
    return value


def _regex(value: str) -> str:
    if len(value) > 1024:
        raise ValueError("regular expression is longer than 1024 characters")
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(f"invalid regular expression: {exc}") from exc
    return value


def _hook(value: str) -> str:
    if not value.strip() or len(value) > 4096:
        raise ValueError("hook must be a non-empty command of at most 4096 characters")
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
    except ValueError as exc:
        raise ValueError(f"invalid placeholder: {exc}") from exc
    # Plain names only, not {to.attr} or {to[0]}: str.format would otherwise reach into objects.
    if any(not name.isidentifier() for name in fields):
        raise ValueError("placeholders must be plain names such as {to}")
    return value


Name = Annotated[str, AfterValidator(_name)]
PolicyName = Annotated[str, AfterValidator(_policy_name)]
ConfigPath = Annotated[Path, BeforeValidator(_path_input)]
NotationIdentity = Annotated[str, AfterValidator(_notation_identity)]
PredicateType = Annotated[str, AfterValidator(_predicate_type)]
Duration = Annotated[timedelta, BeforeValidator(_duration_input), AfterValidator(_bounded)]
Interval = Annotated[Duration, AfterValidator(_positive)]
Glob = Annotated[str, AfterValidator(_glob)]
Regex = Annotated[str, AfterValidator(_regex)]
Hook = Annotated[str, AfterValidator(_hook)]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _netloc(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def _check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise ValueError("host is not a valid host name or IP address") from None


def _http_url(value: str, *, allow_path: bool) -> tuple[str, str, str]:
    """Split an http(s) URL into (scheme, netloc, path); never echoes the input in errors."""
    # Messages here never quote the URL: a password pasted into it must not reach a log.
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL (check the host and port)") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError("must start with https:// (or http://)")
    if "@" in parts.netloc:
        raise ValueError("must not contain credentials: use username and password_file")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("has no host")
    _check_host(host)
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    path = parts.path.rstrip("/")
    if path and not allow_path:
        raise ValueError("must not have a path: registries serve /v2/ at the root")
    return scheme, _netloc(host, port), path
