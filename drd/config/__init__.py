"""
drd's configuration: `drd.config.settings` (the models and `load_settings`, the only
code that reads the config file, the environment and the credential files it names),
`drd.config.fields` (field types), `drd.config.problems` (error paths and hints),
`drd.config.explain` (`format_errors`, `describe`). The public names are re-exported
here: ``from drd.config import Settings, load_settings``. `describe` and `format_errors`
are loaded on first use: a command that explains nothing does not import them.
"""

from typing import TYPE_CHECKING, Any

from drd.config.fields import DEFAULT_CONFIG_PATH, MASK
from drd.config.settings import (
    Credentials,
    Daemon,
    Drills,
    Endpoint,
    Failover,
    Identity,
    Replication,
    RetrySettings,
    Settings,
    Snapshots,
    StateDatabase,
    Trust,
    config_path,
    credential_env,
    load_settings,
    parse_settings,
)

if TYPE_CHECKING:
    from drd.config.explain import describe, format_errors

_LAZY = {"describe", "format_errors"}


def __getattr__(name: str) -> Any:
    """`describe` and `format_errors`, imported from `drd.config.explain` when first asked for."""
    if name in _LAZY:
        from drd.config import explain

        return getattr(explain, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_CONFIG_PATH",
    "MASK",
    "Credentials",
    "Daemon",
    "Drills",
    "Endpoint",
    "Failover",
    "Identity",
    "Replication",
    "RetrySettings",
    "Settings",
    "Snapshots",
    "StateDatabase",
    "Trust",
    "config_path",
    "credential_env",
    "describe",
    "format_errors",
    "load_settings",
    "parse_settings",
]
