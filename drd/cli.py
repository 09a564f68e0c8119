"""Command line: parse arguments, load settings, configure logging, call one function, exit."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import pkgutil
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import structlog

import drd.commands
from drd import __version__, logs
from drd.errors import ConfigError, DrdError, TransientError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_UNAVAILABLE, EXIT_SOFTWARE, EXIT_CONFIG = 69, 70, 78

log = structlog.get_logger("drd.cli")

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
CommandFactory = Callable[[str, str, Handler], argparse.ArgumentParser]


class UsageError(Exception):
    """The command line is wrong (exit 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so tests can check a command parses."""

    def error(self, message: str) -> Any:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """
    The whole command-line grammar; runbooks are checked against it.

    Every module in `drd.commands` with a ``register(sub, command)`` function adds
    its subcommands here: one module per command group.
    """
    parser = _Parser(prog="drd", description="Disaster recovery for OCI registries.")
    parser.add_argument("--version", action="version", version=f"drd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help_: str, handler: Handler) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        add_common(p)
        p.set_defaults(handler=handler)
        return p

    for info in sorted(pkgutil.iter_modules(drd.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"drd.commands.{info.name}")
        if hasattr(module, "register"):
            module.register(sub, command)
    return parser


def add_common(p: argparse.ArgumentParser) -> None:
    """Options every command takes: --config, --json, --log-level."""
    p.add_argument("--config", type=Path, default=None, help="config file")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("--log-level", default=None, help="debug, info, warning, error")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the process exit code."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        sys.stderr.write(f"drd: {exc}\n")
        return EXIT_USAGE
    logs.configure(level=args.log_level or "info")
    try:
        code: int = asyncio.run(args.handler(args))
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
    return code


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
