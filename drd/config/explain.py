"""
The configuration explained to people: validation errors with their paths and
environment hints (`format_errors`), and the resolved configuration with secrets
masked (`describe`, what `drd config check` prints).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import (
    SecretBytes,
    SecretStr,
)

from drd.config.fields import (
    MASK,
)
from drd.config.settings import Credentials, Settings
from drd.durations import format_duration
from drd.errors import ConfigError


def format_errors(err: ConfigError) -> str:
    """One line per problem: `path: message`."""
    if not err.errors:
        return err.message
    return "\n".join(f"{path}: {message}" if path else message for path, message in err.errors)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, SecretStr | SecretBytes):
        return MASK
    if isinstance(value, timedelta):
        return format_duration(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _describe_credentials(credentials: Credentials | None) -> dict[str, Any]:
    if credentials is None:
        return {"kind": "anonymous"}
    if credentials.token is not None:
        return {"kind": "token", "token": MASK, "source": credentials.source}
    return {
        "kind": "basic",
        "username": credentials.username,
        "password": MASK,
        "source": credentials.source,
    }


def describe(settings: Settings) -> dict[str, Any]:
    """The resolved configuration as JSON-able data, every secret replaced by `MASK`."""
    data: dict[str, Any] = _plain(settings.model_dump())
    for key, ep in settings.endpoints.items():
        data["endpoints"][key]["credentials"] = _describe_credentials(ep.credentials())
    for key, table in settings.trust.items():
        data["trust"][key]["loaded_keys"] = len(table.key_pems())
        data["trust"][key]["loaded_fulcio_roots"] = len(table.fulcio_pems())
        data["trust"][key]["loaded_notation_roots"] = len(table.notation_root_files())
    data["daemon"]["webhook_token"] = MASK if settings.daemon.webhook_token() else None
    if settings.snapshots is not None:
        signing = settings.snapshots.signing_key() is not None
        data["snapshots"]["signing_key"] = MASK if signing else None
    return data
