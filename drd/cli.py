"""Command line: parse arguments, load settings, configure logging, call one function, exit."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import sys
import tomllib
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import structlog

from drd import __version__, logs, manual
from drd.app.outcome import Outcome
from drd.errors import ConfigError, DrdError, TransientError
from drd.reporting import report_error

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 3
EXIT_UNAVAILABLE, EXIT_SOFTWARE, EXIT_CONFIG = 69, 70, 78
EXIT_BUSY = 75  # sysexits' EX_TEMPFAIL: someone else is doing it now, try again later
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C
# The one place outcomes become exit codes.
EXIT_CODES = {
    Outcome.OK: EXIT_OK,
    Outcome.FAILED: EXIT_FAILED,
    Outcome.USAGE: EXIT_USAGE,
    Outcome.REJECTED: EXIT_REJECTED,
    Outcome.UNAVAILABLE: EXIT_UNAVAILABLE,
    Outcome.BUSY: EXIT_BUSY,
}

# Every subcommand: name → (the module that registers it, its one-line help). Only the
# module of the command being run is imported, so `drd --help` and `drd version` load no
# engine, and command modules import what they use at the top.
COMMANDS: dict[str, tuple[str, str]] = {
    "version": ("drd.commands.basic", "print the version"),
    "config": ("drd.commands.basic", "check the configuration (--show prints it resolved)"),
    "completion": ("drd.commands.completion", "print a bash or zsh completion script"),
    "drill": ("drd.commands.drill", "rehearse a restore (or check a replica) against RTO/RPO"),
    "failover": (
        "drd.commands.failover",
        "make a standby the primary, after pre-flight checks",
    ),
    "failback": (
        "drd.commands.failover",
        "return to the configured primary, after pre-flight checks",
    ),
    "replicate": ("drd.commands.replicate", "one replication pass (--dry-run: the plan)"),
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


_HELP_FORMAT = argparse.RawDescriptionHelpFormatter


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """
    The command-line grammar; runbooks are checked against it.

    With *argv*, only the module of the subcommand it names is imported and registered
    (the others appear by name and help only); without, every command is (the whole
    grammar). Each module's ``register(sub, command)`` adds its subcommands.
    """
    parser = _Parser(
        prog="drd",
        description="Disaster recovery for OCI registries: replicate, snapshot, restore,"
        " drill and fail over.",
        epilog="run `drd COMMAND --help` for a command's options and examples.\n\n"
        + manual.epilog(),
        formatter_class=_HELP_FORMAT,
    )
    parser.add_argument("--version", action="version", version=f"drd {__version__}")
    manual.add_common(parser)
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="COMMAND", title="commands"
    )

    def command(name: str, handler: Handler) -> argparse.ArgumentParser:
        p = described(sub, name)
        p.set_defaults(handler=handler)
        return p

    named = next((a for a in argv if a in COMMANDS), None) if argv is not None else None
    registered: set[str] = set()
    for name, (module_name, _) in COMMANDS.items():
        if module_name in registered:
            continue
        if argv is None or COMMANDS.get(named or "", ("",))[0] == module_name:
            importlib.import_module(module_name).register(sub, command)
            registered.add(module_name)
        else:
            described(sub, name)
    return parser


def described(sub: Any, name: str) -> argparse.ArgumentParser:
    """Add command *name*: its one-line help, its examples and the common options."""
    help_ = COMMANDS[name][1]
    p: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_,
        description=help_[:1].upper() + help_[1:] + ".",
        epilog=manual.epilog(name),
        formatter_class=_HELP_FORMAT,
    )
    manual.add_common(p)
    return p


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse *argv* (raises `UsageError`), with the common options' defaults filled in."""
    args = build_parser(argv).parse_args(argv)
    for dest, default in manual.COMMON_DEFAULTS.items():
        if not hasattr(args, dest):
            setattr(args, dest, default)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse(argv)
    except UsageError as exc:
        # The arguments did not parse, so --json is looked for among them as given.
        report_error(argparse.Namespace(json=_asks_json(argv)), "usage", str(exc))
        return EXIT_USAGE
    finally:
        collect_from_here()
    logs.configure(level=log_level(args))
    try:
        outcome: Outcome = asyncio.run(args.handler(args))
    except ConfigError as exc:
        report_config_error(args, exc)
        return EXIT_CONFIG
    except TransientError as exc:
        report_error(args, "unavailable", f"unavailable after retries: {exc}")
        return EXIT_UNAVAILABLE
    except DrdError as exc:
        report_error(args, "failed", str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        # Tags are written only after everything they name is in place, so a stop at
        # any point leaves whole, untagged content that the next run reuses.
        tally = getattr(args, "tally", None)
        n = tally.items_done if tally is not None else None
        done = "" if n is None else f" {n} item{'' if n == 1 else 's'} done,"
        line = f"interrupted:{done} re-run to resume; nothing half-written is tagged"
        sys.stderr.write(line + "\n")  # for the person who pressed Ctrl-C, --json or not
        if getattr(args, "json", False):
            report_error(args, "interrupted", line)  # and the document a script reads
        return EXIT_INTERRUPTED
    except Exception:
        log.exception("drd.internal_error")
        return EXIT_SOFTWARE
    return EXIT_CODES[outcome]


def collect_from_here() -> None:
    """
    Start-up is over (the command's module is loaded): when `drd.__main__` turned the
    garbage collector off for it, freeze everything start-up made (later collections,
    the daemon's included, skip it) and turn the collector back on. A no-op otherwise.
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def log_level(args: argparse.Namespace) -> str:
    """
    --log-level, else the config's ``log_level``, else warning for a command a person
    runs (its summary is the output; info lines would repeat it) and info for the daemon.
    """
    if args.log_level:
        return str(args.log_level)
    if args.command in ("version", "completion"):
        return "warning"
    return configured_level(args.config) or ("info" if args.command == "run" else "warning")


def configured_level(path: Path | None) -> str | None:
    """
    ``log_level`` as DRD_LOG_LEVEL or the config file sets it, or None when unset or
    unreadable: the command loads (and reports on) the whole file itself. One key read
    with tomllib, not the models, so that logging is set before the command starts.
    """
    level = os.environ.get("DRD_LOG_LEVEL")
    if level is None:
        where = path or Path(os.environ.get("DRD_CONFIG") or "/etc/drd/drd.toml")
        try:
            level = tomllib.loads(where.read_text(encoding="utf-8")).get("log_level")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
            return None
    if not isinstance(level, str) or level.strip().lower() not in logs.LEVELS:
        return None
    return level.strip().lower()


def _asks_json(argv: Sequence[str]) -> bool:
    """Whether *argv* holds ``--json`` as an option (not after ``--``)."""
    options = argv[: list(argv).index("--")] if "--" in argv else argv
    return "--json" in options


def report_config_error(args: argparse.Namespace, exc: ConfigError) -> None:
    """Every configuration problem, once: with its dotted path, or as JSON with --json."""
    if args.json:
        problems = [{"path": path, "message": message} for path, message in exc.errors]
        document = {"error": {"kind": "config", "message": str(exc), "problems": problems}}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    lines = [f"drd: invalid configuration: {exc}"]
    # A file-level problem (missing file, bad TOML) is the whole message: say it once.
    if [f"{path}: {message}" for path, message in exc.errors] != [str(exc)]:
        lines += [f"  {path}: {message}" for path, message in exc.errors]
    sys.stderr.write("\n".join(lines) + "\n")


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
