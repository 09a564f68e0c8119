"""`drd state migrate`: bring the state database's schema up to this drd's version."""

from __future__ import annotations

import argparse
from typing import Any

from drd.app.outcome import Outcome
from drd.app.state import migrate
from drd.commands.output import add_late_common, emit, fail
from drd.config import load_settings
from drd.errors import StateError


def register(sub: Any, command: Any) -> None:
    """Add `state` with its subcommand `migrate`."""
    state = command("state", state_migrate)
    actions = state.add_subparsers(dest="action", required=True, parser_class=type(state))
    add_late_common(
        actions.add_parser(
            "migrate", help="apply the schema's missing forward steps (drd run also does at start)"
        )
    )


async def state_migrate(args: argparse.Namespace) -> Outcome:
    """Apply the missing schema steps; print where, what was applied and the version now."""
    settings = load_settings(args.config)
    try:
        where, applied, version = await migrate(settings)
    except (OSError, StateError) as exc:
        return fail(args, f"cannot migrate the state: {exc}", Outcome.FAILED)
    document = {"state": where, "applied": applied, "version": version}
    steps = ", ".join(str(v) for v in applied) or "none (already up to date)"
    emit(args, document, f"state {where}: schema version {version}; applied {steps}")
    return Outcome.OK
