"""
The words of ``drd --help`` and the options every command shares: each command's
examples, the config lookup order, the exit codes. No drd import beyond `drd.logs`, so
building the parser for ``--help`` stays cheap.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from drd.logs import LEVELS

# The common options' real defaults; `drd.cli.parse` fills them in (see `add_common`).
COMMON_DEFAULTS = {"config": None, "json": False, "log_level": None}


def add_common(p: argparse.ArgumentParser) -> None:
    """
    --config, --json and --log-level: accepted before a command's name and after it.

    Every parser's default is SUPPRESS, not the real default: a subcommand's parser
    would otherwise reset what was given before the command.
    """
    p.add_argument(
        "--config", type=Path, metavar="FILE", default=argparse.SUPPRESS, help="config file"
    )
    p.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="one JSON document on stdout (errors too)",
    )
    p.add_argument(
        "--log-level",
        type=str.lower,
        choices=LEVELS,
        metavar="LEVEL",
        default=argparse.SUPPRESS,
        help=f"{', '.join(LEVELS)} (default: the config's log_level, else warning;"
        " info for `drd run`)",
    )


# Each command's examples, shown under its own --help (as git, restic and kubectl do).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "version": ("drd version", "drd version --json"),
    "config": (
        "drd config check --config /etc/drd/drd.toml",
        "drd config check --show   # the resolved configuration, secrets masked",
    ),
    "completion": (
        "drd completion bash > /etc/bash_completion.d/drd",
        "drd completion zsh > ~/.zfunc/_drd   # with fpath+=(~/.zfunc) in ~/.zshrc",
    ),
    "drill": ("drd drill --report-dir /var/lib/drd/drills", "drd drill --snapshot latest --json"),
    "failover": ("drd failover --to dr --dry-run", "drd failover --to dr"),
    "failback": ("drd failback --dry-run", "drd failback"),
    "replicate": (
        "drd replicate --dry-run",
        "drd replicate --policy prod --json > pass.json",
    ),
    "restore": (
        "drd restore --snapshot latest --to dr --dry-run",
        "drd restore --snapshot latest --to dr",
    ),
    "run": ("drd run --config /etc/drd/drd.toml", "systemctl start drd   # the packaged unit"),
    "scrub": ("drd scrub dr", "drd scrub dr --repository 'team-a/**' --deep --json"),
    "snapshot": ("drd snapshot create", "drd snapshot list", "drd snapshot diff OLD latest"),
    "snapshot create": ("drd snapshot create", "drd snapshot create --source primary --json"),
    "snapshot list": ("drd snapshot list", "drd snapshot list --json"),
    "snapshot show": ("drd snapshot show latest", "drd snapshot show latest --all-tags"),
    "snapshot diff": ("drd snapshot diff OLD latest", "drd snapshot diff OLD NEW --json"),
    "snapshot verify": ("drd snapshot verify latest",),
    "snapshot prune": ("drd snapshot prune --dry-run", "drd snapshot prune"),
    "state": ("drd state migrate", "drd state migrate --json"),
    "status": ("drd status", "drd status --json | jq .policies"),
    "verify": (
        "drd verify primary/team-a/app:v1.2.3   # endpoint `primary`: its URL, credentials, TLS",
        "drd verify registry.example.com/app@sha256:... --trust release --json",
    ),
}

CONFIG_LOOKUP = """\
configuration, first found:
  --config FILE      before or after the command
  $DRD_CONFIG        the path of the file
  /etc/drd/drd.toml
  DRD_<SECTION>__<KEY> variables override keys of the file; secrets come from
  *_file keys or DRD_ENDPOINT_<NAME>_PASSWORD / _TOKEN, never from the file."""

EXIT_CODES = """\
exit codes:
  0    success
  1    finished, but something failed, was rejected or did not verify
  2    usage error (the command line, or a request that cannot be carried out)
  3    finished, but the trust policy rejected some artifacts (drd replicate)
  69   a registry or the snapshot store was unavailable after retries
  70   internal error (a bug): the traceback is logged
  75   busy: another failover or failback is running (who and since when is printed)
  78   invalid configuration
  130  interrupted (Ctrl-C): re-run to resume"""


def epilog(command: str | None = None) -> str:
    """The text after a help's options: examples (for *command*), lookup order, exit codes."""
    parts = []
    if command is not None and command in EXAMPLES:
        parts.append("examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[command]))
    parts += [CONFIG_LOOKUP, EXIT_CODES]
    return "\n\n".join(parts)
