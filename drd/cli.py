"""Command line: parse arguments, load settings, configure logging, call one function, exit."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import structlog

from drd import __version__, logs
from drd.app.outcome import Outcome
from drd.errors import ConfigError, DrdError, TransientError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 3
EXIT_UNAVAILABLE, EXIT_SOFTWARE, EXIT_CONFIG = 69, 70, 78
# The one place outcomes become exit codes.
EXIT_CODES = {
    Outcome.OK: EXIT_OK,
    Outcome.FAILED: EXIT_FAILED,
    Outcome.USAGE: EXIT_USAGE,
    Outcome.REJECTED: EXIT_REJECTED,
    Outcome.UNAVAILABLE: EXIT_UNAVAILABLE,
}

# Every subcommand: name → (the module that registers it, its one-line help). Only the
# module of the command being run is imported, so `drd --help` and `drd version` load no
# engine, and command modules import what they use at the top.
COMMANDS: dict[str, tuple[str, str]] = {
    "version": ("drd.commands.basic", "print the version"),
    "config": ("drd.commands.basic", "check and print the resolved configuration"),
    "drill": ("drd.commands.drill", "rehearse a restore (or check a replica) against RTO/RPO"),
    "failover": (
        "drd.commands.failover",
        "make a standby the primary, after pre-flight checks",
    ),
    "failback": (
        "drd.commands.failover",
        "return to the configured primary, after pre-flight checks",
    ),
    "replicate": ("drd.commands.replicate", "one replication pass"),
    "restore": ("drd.commands.restore", "recreate repositories and tags from a snapshot"),
    "run": ("drd.commands.run", "the daemon: every policy, snapshot and drill on its schedule"),
    "scrub": (
        "drd.commands.scrub",
        "check every tag's manifests and blobs are whole at an endpoint",
    ),
    "snapshot": (
        "drd.commands.snapshot",
        "take, list, show, compare, verify and prune snapshots",
    ),
    "state": ("drd.commands.state", "apply the state database's schema migrations"),
    "status": (
        "drd.commands.status",
        "replication lag, last runs and drift from the daemon's state",
    ),
    "verify": ("drd.commands.verify", "is this artifact verified? which key, which digest"),
}

log = structlog.get_logger("drd.cli")

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, Outcome]]
CommandFactory = Callable[[str, Handler], argparse.ArgumentParser]


class UsageError(Exception):
    """The command line is wrong (exit 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so tests can check a command parses."""

    def error(self, message: str) -> Any:
        raise UsageError(message)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """
    The command-line grammar; runbooks are checked against it.

    With *argv*, only the module of the subcommand it names is imported and registered
    (the others appear by name and help only); without, every command is (the whole
    grammar). Each module's ``register(sub, command)`` adds its subcommands.
    """
    parser = _Parser(prog="drd", description="Disaster recovery for OCI registries.")
    parser.add_argument("--version", action="version", version=f"drd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, handler: Handler) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=COMMANDS[name][1])
        add_common(p)
        p.set_defaults(handler=handler)
        return p

    named = next((a for a in argv if a in COMMANDS), None) if argv is not None else None
    registered: set[str] = set()
    for name, (module_name, help_) in COMMANDS.items():
        if module_name in registered:
            continue
        if argv is None or COMMANDS.get(named or "", ("",))[0] == module_name:
            importlib.import_module(module_name).register(sub, command)
            registered.add(module_name)
        else:
            sub.add_parser(name, help=help_)
    return parser


def add_common(p: argparse.ArgumentParser) -> None:
    """Options every command takes: --config, --json, --log-level."""
    p.add_argument("--config", type=Path, default=None, help="config file")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("--log-level", default=None, help="debug, info, warning, error")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the process exit code."""
    try:
        args = build_parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
    except UsageError as exc:
        sys.stderr.write(f"drd: {exc}\n")
        return EXIT_USAGE
    logs.configure(level=args.log_level or "info")
    try:
        outcome: Outcome = asyncio.run(args.handler(args))
    except ConfigError as exc:
        sys.stderr.write(f"drd: invalid configuration: {exc}\n")
        for path, message in exc.errors:
            sys.stderr.write(f"  {path}: {message}\n")
        return EXIT_CONFIG
    except TransientError as exc:
        sys.stderr.write(f"drd: unavailable after retries: {exc}\n")
        return EXIT_UNAVAILABLE
    except DrdError as exc:
        sys.stderr.write(f"drd: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception:
        log.exception("drd.internal_error")
        return EXIT_SOFTWARE
    return EXIT_CODES[outcome]


def run() -> None:
    """
    The console entry point (``drd``, ``python -m drd``): `main`, then exit with its code.

    Everything still alive is frozen out of the garbage collector first: the
    interpreter's last full collection walks every object the imports made (pydantic's
    schemas above all), 0.15 to 0.2 s of every command's wall time, to free memory the
    process is about to give back anyway. Files and connections are closed by then.
    """
    code = main()
    gc.freeze()
    sys.exit(code)
