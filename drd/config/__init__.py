"""
drd's configuration: `drd.config.settings` (the models and `load_settings`, the only
code that reads the config file, the environment and the credential files it names),
`drd.config.fields` (field types), `drd.config.problems` (error paths and hints),
`drd.config.explain` (`format_errors`, `describe`). The public names are re-exported
here: ``from drd.config import Settings, load_settings``.
"""

from drd.config.explain import describe, format_errors
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
